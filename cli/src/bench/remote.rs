//! `codeintel bench remote`: a synthetic vector-only version of N vectors (the primary a real
//! build of that size would get, and its raw vectors) published into the object-store data root
//! of `data.root`, then pulled into an empty mirror as a service does on a new `CURRENT`.

use std::path::Path;
use std::time::Instant;

use codeintel_config::Config;
use codeintel_index::manifest::{self, EmbeddingContract};
use codeintel_index::remote::{self, Pulled, Remote};
use serde::Serialize;
use vector_svc::store::{ChunkMeta, IndexKind};
use vector_svc::synthetic;

#[derive(Debug, Serialize)]
pub struct RemoteFigures {
    pub store: String,
    pub vectors: usize,
    pub dim: usize,
    pub primary_kind: String,
    /// Files and bytes of the version (manifest aside).
    pub files: usize,
    pub version_mb: f64,
    /// `codeintel index`'s upload: checksums, every file, manifest, `CURRENT`.
    pub upload_s: f64,
    /// A service's pull into an empty mirror: download, sha256 check, rename, `CURRENT` swap.
    pub download_and_swap_s: f64,
    pub download_mb_per_s: f64,
}

pub async fn remote(cfg: &Config, n: usize, dim: usize, workdir: &Path) -> anyhow::Result<RemoteFigures> {
    anyhow::ensure!(
        remote::is_url(&cfg.data.root),
        "bench remote needs an object-store data root: --data-root s3://bucket/prefix (and AWS_* variables)"
    );
    let repo = "bench-remote";
    let mut indexer = cfg.clone();
    indexer.data.mirror = workdir.join("mirror-indexer");
    let store = Remote::attach(&mut indexer)?.expect("a URL data root");
    eprintln!("[{n} x {dim}] generating clustered vectors");
    let (data, _) = synthetic::clustered_split(n, 1, dim, (n / 100).max(16), 1.0, n as u64);
    let metas: Vec<ChunkMeta> = (0..n as u64)
        .map(|id| ChunkMeta { id, path: format!("src/f{}.py", id / 10), language: "python".into() })
        .collect();
    let kind = IndexKind::choose(n, dim as u32, &cfg.vector);
    let repo_dir = indexer.data.root.join(repo);
    let _ = std::fs::remove_dir_all(&repo_dir);
    eprintln!("[{n} x {dim}] building the {kind:?} primary");
    let primary = codeintel_index::vector::write_artifact(&repo_dir, "v000001", dim as u32, &data, &metas, kind)?;
    drop((data, metas));
    let contract = EmbeddingContract {
        model_id: cfg.embed.model_id.clone(),
        dim: dim as u32,
        metric: "inner_product".into(),
        normalized: true,
        weights_sha256: codeintel_models::embed::weights_sha256(&cfg.model_dir()).unwrap_or_default(),
    };
    let m = super::vectors::bench_manifest(repo, &contract, &primary);
    manifest::publish(&indexer.data.root, &m)?;
    let files = manifest::version_files(&repo_dir, &m)?;
    let bytes: u64 = files.iter().map(|f| std::fs::metadata(repo_dir.join(f)).map_or(0, |m| m.len())).sum();

    eprintln!("[{n} x {dim}] uploading {:.0} MB to {}", bytes as f64 / 1e6, store.url());
    let t = Instant::now();
    store.push(repo).await?;
    let upload_s = t.elapsed().as_secs_f64();

    let mut service = cfg.clone();
    service.data.mirror = workdir.join("mirror-service");
    let _ = std::fs::remove_dir_all(&service.data.mirror);
    let follower = Remote::attach(&mut service)?.expect("a URL data root");
    eprintln!("[{n} x {dim}] pulling it into an empty mirror");
    let t = Instant::now();
    let pulled = follower.pull_repo(repo).await?;
    let download_and_swap_s = t.elapsed().as_secs_f64();
    let Pulled::Swapped { bytes: got, .. } = pulled else { anyhow::bail!("the empty mirror was already up to date") };
    Ok(RemoteFigures {
        store: store.url().to_string(),
        vectors: n,
        dim,
        primary_kind: format!("{kind:?}"),
        files: files.len(),
        version_mb: bytes as f64 / 1e6,
        upload_s,
        download_and_swap_s,
        download_mb_per_s: got as f64 / 1e6 / download_and_swap_s,
    })
}
