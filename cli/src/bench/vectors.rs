//! `codeintel bench vectors`: exact against trained primaries on synthetic vectors.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use codeintel_config::{Config, VectorConfig};
use codeintel_index::build;
use codeintel_index::manifest::{self, EmbeddingContract, FirstArtifacts, Manifest};
use serde::Serialize;
use vector_svc::faiss_ext;
use vector_svc::store::{ChunkMeta, IndexKind, Part};
use vector_svc::synthetic;

use super::{mb, Latency};

#[derive(Debug, Serialize)]
pub struct IndexFigures {
    pub kind: String,
    pub nprobe: usize,
    /// Candidates per result re-scored exactly from the raw vectors (0: off).
    pub refine: usize,
    /// Train + add, seconds (for a trained kind, the vector part of compaction).
    pub build_s: f64,
    pub file_mb: f64,
    pub latency: Latency,
    pub recall_at_10: f64,
}

#[derive(Debug, Serialize)]
pub struct VectorFigures {
    pub n: usize,
    pub dim: usize,
    pub queries: usize,
    pub raw_mb: f64,
    pub indexes: Vec<IndexFigures>,
    /// Vector compaction through the store: read raw vectors of primary + secondary, drop
    /// tombstones, train and write the new primary.
    pub compaction_s: f64,
    /// (VmHWM, VmRSS) of a vector-svc process once it has loaded the compacted (trained) index ...
    pub vector_svc_peak_rss_mb: Option<(f64, f64)>,
    /// ... and of one with nothing to load (the embedding model and the runtime).
    pub vector_svc_empty_peak_rss_mb: Option<(f64, f64)>,
}

fn search_all(part: &Part, queries: &[f32], dim: usize) -> anyhow::Result<(Vec<Vec<i64>>, Vec<Duration>)> {
    let mut ids = Vec::new();
    let mut lat = Vec::new();
    for q in queries.chunks(dim) {
        let t = Instant::now();
        let found = part.search(q, 10, None)?;
        lat.push(t.elapsed());
        ids.push(found.into_iter().map(|h| h.0 as i64).collect());
    }
    Ok((ids, lat))
}

fn recall(found: &[Vec<i64>], truth: &[Vec<i64>]) -> f64 {
    let mut hit = 0usize;
    for (f, t) in found.iter().zip(truth) {
        let t: HashSet<i64> = t.iter().copied().filter(|i| *i >= 0).collect();
        hit += f.iter().filter(|i| t.contains(i)).count();
    }
    hit as f64 / (10 * truth.len()).max(1) as f64
}

/// `model_id` and `weights_sha256` go into the synthetic manifest so that a vector-svc running
/// the configured embedder (of dimension `dim`) accepts the index.
pub fn vectors(
    sizes: &[usize],
    dim: usize,
    queries: usize,
    quantizers: &[String],
    model_id: &str,
    weights_sha256: &str,
    workdir: &Path,
) -> anyhow::Result<Vec<VectorFigures>> {
    let mut out = Vec::new();
    for &n in sizes {
        eprintln!("[{n} x {dim}] generating clustered vectors");
        let clusters = (n / 100).max(16);
        let (data, qs) = synthetic::clustered_split(n, queries, dim, clusters, 1.0, n as u64);
        let ids: Vec<u64> = (0..n as u64).collect();
        let metas: Vec<ChunkMeta> = ids
            .iter()
            .map(|&id| ChunkMeta { id, path: format!("src/f{}.py", id / 10), language: "python".into() })
            .collect();
        let d = dim as u32;
        let dir = workdir.join(format!("vectors-{n}"));
        std::fs::create_dir_all(&dir)?;
        let raw_path = dir.join("raw.f32");
        std::fs::write(&raw_path, data.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())?;
        // Exact truth in one batched call (BLAS), then exact latency one query at a time.
        let t = Instant::now();
        let flat = codeintel_index::vector::build_index(d, &data, &ids, IndexKind::Flat)?;
        let flat_build = t.elapsed().as_secs_f64();
        let (_, all) = faiss_ext::search(&flat, &qs, 10, 1, None)?;
        let truth: Vec<Vec<i64>> = all.chunks(10).map(|c| c.to_vec()).collect();
        let flat = Part::new(flat, IndexKind::Flat, 1, metas.clone());
        let flat_q = if n > 200_000 { queries.min(200) } else { queries };
        let (_, mut lat) = search_all(&flat, &qs[..flat_q * dim], dim)?;
        let mut figs = vec![IndexFigures {
            kind: "flat".into(),
            nprobe: 0,
            refine: 0,
            build_s: flat_build,
            file_mb: mb((n * dim * 4) as u64),
            latency: Latency::of(&mut lat),
            recall_at_10: 1.0,
        }];
        drop(flat);
        for qz in quantizers {
            let cfg = VectorConfig { flat_threshold: 1, quantizer: qz.clone(), ..VectorConfig::default() };
            let kind = IndexKind::choose(n, d, &cfg);
            eprintln!("[{n} x {dim}] training {}", kind.name());
            let t = Instant::now();
            let index = codeintel_index::vector::build_index(d, &data, &ids, kind)?;
            let build = t.elapsed().as_secs_f64();
            let path = dir.join(format!("{}.faiss", kind.name()));
            faiss::write_index(&index, path.to_str().context("utf8 path")?)?;
            let file_mb = mb(std::fs::metadata(&path)?.len());
            let mut part = Part::new(index, kind, 1, metas.clone());
            for refine in [0, cfg.refine] {
                if refine > 1 {
                    part = part.with_refinement(&raw_path, &ids, refine)?;
                }
                let np = kind.nprobe(&cfg);
                for nprobe in [np / 2, np, np * 2] {
                    part.set_nprobe(nprobe);
                    let (found, mut lat) = search_all(&part, &qs, dim)?;
                    figs.push(IndexFigures {
                        kind: kind.name(),
                        nprobe,
                        refine,
                        build_s: build,
                        file_mb,
                        latency: Latency::of(&mut lat),
                        recall_at_10: recall(&found, &truth),
                    });
                    eprintln!("  {:?}", figs.last().expect("pushed"));
                }
            }
        }
        // Compaction of the vector store: primary (n - 1000) + secondary (1000) + 1000 tombstones.
        eprintln!("[{n} x {dim}] compaction");
        let repo_dir = dir.join("repo");
        std::fs::create_dir_all(&repo_dir)?;
        let metas: Vec<ChunkMeta> = ids
            .iter()
            .map(|&id| ChunkMeta { id, path: format!("src/f{}.py", id / 10), language: "python".into() })
            .collect();
        let split = n - 1000.min(n / 10);
        let primary = codeintel_index::vector::write_artifact(
            &repo_dir,
            "v000001",
            d,
            &data[..split * dim],
            &metas[..split],
            IndexKind::Flat,
        )?;
        let secondary = codeintel_index::vector::write_artifact(
            &repo_dir,
            "v000002.secondary",
            d,
            &data[split * dim..],
            &metas[split..],
            IndexKind::Flat,
        )?;
        let dead: Vec<u64> = (0..(n - split) as u64).map(|i| i * 7 % split as u64).collect();
        manifest::write_ids(&repo_dir.join("tombstones/v000002.ids"), &dead)?;
        let contract = EmbeddingContract {
            model_id: model_id.to_string(),
            dim: d,
            metric: "inner_product".into(),
            normalized: true,
            weights_sha256: weights_sha256.to_string(),
        };
        let mut m = bench_manifest("bench", &contract, &primary);
        m.secondary = Some(secondary);
        m.tombstones = Some("tombstones/v000002.ids".into());
        let kind = IndexKind::choose(n, d, &VectorConfig { flat_threshold: 1, ..VectorConfig::default() });
        let t = Instant::now();
        let (live_m, live_v) = codeintel_index::vector::live_vectors(&repo_dir, &m)?;
        let compacted = codeintel_index::vector::write_artifact(&repo_dir, "v000003", d, &live_v, &live_m, kind)?;
        let compaction_s = t.elapsed().as_secs_f64();
        drop((live_m, live_v));
        // Serve the compacted primary from a real vector-svc and read its peak memory.
        let data_root = dir.join("data");
        let _ = std::fs::remove_dir_all(&data_root);
        std::fs::create_dir_all(&data_root)?;
        std::fs::rename(&repo_dir, data_root.join("bench"))?;
        let mut m = bench_manifest("bench", &contract, &compacted);
        m.version = 3;
        manifest::publish(&data_root, &m)?;
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty)?;
        let measure = |root: &Path, expect_index: bool| {
            vector_svc_peak(root, expect_index).unwrap_or_else(|e| {
                eprintln!("vector-svc peak memory not measured: {e:#}");
                None
            })
        };
        let peak = measure(&data_root, true);
        let peak_empty = measure(&empty, false);
        out.push(VectorFigures {
            n,
            dim,
            queries,
            raw_mb: mb((n * dim * 4) as u64),
            indexes: figs,
            compaction_s,
            vector_svc_peak_rss_mb: peak,
            vector_svc_empty_peak_rss_mb: peak_empty,
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(out)
}

/// A published version holding only a primary vector index (synthetic vectors).
pub(super) fn bench_manifest(repo: &str, contract: &EmbeddingContract, primary: &manifest::VectorFiles) -> Manifest {
    let artifacts = FirstArtifacts {
        segments: Vec::new(),
        primary: primary.clone(),
        // vector-svc does not open it; the manifest only needs an existing path.
        tantivy_dir: primary.faiss_index.clone(),
        sparse: None,
    };
    Manifest::new(
        repo,
        1,
        "synthetic".into(),
        build::settings(&Config::default(), contract.clone()),
        artifacts,
        Default::default(),
    )
}

/// Starts the sibling `vector-svc` binary on `data_root`, waits until it serves (having loaded
/// the index when `expect_index`), and returns its peak resident memory.
fn vector_svc_peak(data_root: &Path, expect_index: bool) -> anyhow::Result<Option<(f64, f64)>> {
    let exe = std::env::current_exe()?.with_file_name("vector-svc");
    anyhow::ensure!(exe.is_file(), "{} not built", exe.display());
    let mut child = std::process::Command::new(&exe)
        .arg("--data-root")
        .arg(data_root)
        .args(["--addr", "127.0.0.1:0", "--metrics-addr", ""])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut ready = false;
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line?;
        if line.contains("loaded index version") {
            ready = true;
        }
        if line.contains("listening on grpc") {
            break;
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    let _ = child.kill();
    let _ = child.wait();
    anyhow::ensure!(ready == expect_index, "vector-svc loaded an index: {ready}, expected {expect_index}");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Ok(field("VmHWM:").zip(field("VmRSS:")))
}
