//! `codeintel bench nprobe`: one repo's dense search at several `vector.nprobe` values, in
//! process, over real query embeddings (each query embedded once, by the serving query
//! encoder): how many of the top k that probing every inverted list finds each value finds too,
//! and the search's latency without the embedding. For a repo whose primary is trained (IVF);
//! a `Flat` primary has no lists to probe.

use std::time::{Duration, Instant};

use codeintel_config::Config;
use codeintel_index::catalog::Catalog;
use codeintel_models::embed::{Embedder, Role};
use serde::Serialize;
use vector_svc::store::RepoVectors;

use super::Latency;

#[derive(Debug, Serialize)]
pub struct NprobeRow {
    pub nprobe: usize,
    /// Mean share of the exhaustive search's top k that this value finds.
    pub recall_at_k: f64,
    /// The same for the top 10.
    pub recall_at_10: f64,
    pub search: Latency,
}

#[derive(Debug, Serialize)]
pub struct NprobeFigures {
    pub repo: String,
    pub vectors: u64,
    pub primary: String,
    pub nlist: usize,
    pub refine: usize,
    pub k: usize,
    pub queries: usize,
    pub rows: Vec<NprobeRow>,
}

fn open(
    cfg: &Config,
    repo: &str,
    nprobe: usize,
) -> anyhow::Result<std::sync::Arc<codeintel_index::catalog::Loaded<RepoVectors>>> {
    let mut params = cfg.vector.clone();
    params.nprobe = nprobe;
    params.device = "cpu".into();
    let catalog: Catalog<RepoVectors> = Catalog::new(&cfg.data.root);
    catalog.refresh(|dir, m| RepoVectors::open(dir, m, &params).map_err(|e| e.to_string()));
    catalog
        .snapshot()
        .into_iter()
        .find(|l| l.manifest.repo == repo)
        .ok_or_else(|| anyhow::anyhow!("repo {repo} is not served from {}", cfg.data.root.display()))
}

/// The top `k` of every query at each of `nprobes`, against the top `k` with every list probed.
pub async fn nprobe(
    cfg: &Config,
    queries: &[String],
    repo: &str,
    nprobes: &[usize],
    k: usize,
) -> anyhow::Result<NprobeFigures> {
    anyhow::ensure!(!queries.is_empty(), "no queries");
    anyhow::ensure!(k > 0, "k must be at least 1");
    let exhaustive = open(cfg, repo, usize::MAX)?;
    let kind = codeintel_index::vector::IndexKind::parse(&exhaustive.manifest.primary_kind)
        .unwrap_or(codeintel_index::vector::IndexKind::Flat);
    let nlist = kind.nlist();
    anyhow::ensure!(
        nlist > 0,
        "repo {repo}'s primary is {}: there are no lists to probe",
        exhaustive.manifest.primary_kind
    );
    let embedder = Embedder::from_config(cfg, cfg.embed.query_threads, Role::Queries).await?;
    let mut embedded = Vec::with_capacity(queries.len());
    for q in queries {
        embedded.push(embedder.embed(vec![q.clone()]).await?.pop().unwrap_or_default());
    }
    let top = |r: &RepoVectors, q: &[f32]| -> anyhow::Result<Vec<u64>> {
        Ok(r.search(q, k, |_, _| true, false)?.into_iter().map(|(id, _)| id).collect())
    };
    let truth: Vec<Vec<u64>> = embedded.iter().map(|q| top(&exhaustive.value, q)).collect::<anyhow::Result<_>>()?;
    let vectors = exhaustive.value.primary.len() + exhaustive.value.secondary.as_ref().map_or(0, |s| s.len());
    drop(exhaustive);
    let share = |got: &[u64], want: &[u64]| -> f64 {
        if want.is_empty() {
            return 1.0;
        }
        want.iter().filter(|id| got.contains(id)).count() as f64 / want.len() as f64
    };
    let mut rows = Vec::new();
    for &p in nprobes {
        let loaded = open(cfg, repo, p)?;
        let (mut at_k, mut at_10) = (0.0, 0.0);
        let mut samples: Vec<Duration> = Vec::with_capacity(embedded.len());
        for (q, want) in embedded.iter().zip(&truth) {
            let start = Instant::now();
            let got = top(&loaded.value, q)?;
            samples.push(start.elapsed());
            at_k += share(&got, want);
            at_10 += share(&got[..got.len().min(10)], &want[..want.len().min(10)]);
        }
        let n = embedded.len() as f64;
        rows.push(NprobeRow {
            nprobe: p.min(nlist),
            recall_at_k: at_k / n,
            recall_at_10: at_10 / n,
            search: Latency::of(&mut samples),
        });
    }
    Ok(NprobeFigures {
        repo: repo.to_string(),
        vectors,
        primary: format!("{kind:?}"),
        nlist,
        refine: cfg.vector.refine,
        k,
        queries: queries.len(),
        rows,
    })
}
