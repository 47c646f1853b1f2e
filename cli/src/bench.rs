//! `codeintel bench`: measurements of the index lifecycle, release build, one query at a time.
//!
//! * `vectors`: synthetic clustered vectors (see `vector_svc::synth`) at each size: exact
//!   (`Flat`) against trained primaries, latency p50/p95/p99 and recall@10 against exact search,
//!   build (= vector compaction) time, index size against raw size, and the peak memory of a real
//!   `vector-svc` process serving the trained index.
//! * `lifecycle`: a generated source tree of N chunks is published as a base version (its
//!   vectors synthetic, everything else real), then M chunks' files are edited and
//!   `codeintel index` runs incrementally with the real embedder: seconds until searchable,
//!   split into embedding and everything else; then a whole-repo compaction.
//! * `gpu` (feature `gpu`): exact search on the GPU against FAISS `Flat` on the CPU over the
//!   same synthetic vectors: agreement of the top k, batched queries per second, latency.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use codeintel_core::chunk::{chunk_file, sha256_hex, Chunk, ChunkOptions, EMBED_TEXT_FORMAT};
use codeintel_core::config::{Config, VectorConfig};
use codeintel_core::manifest::{self, EmbeddingContract, Manifest, MANIFEST_FORMAT};
use serde::Serialize;
use vector_svc::faiss_ext;
use vector_svc::store::{self, ChunkMeta, IndexKind, Part};
use vector_svc::synth;

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

impl Latency {
    pub fn of(samples: &mut [Duration]) -> Self {
        samples.sort();
        let p = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len().max(1)) - 1;
            samples.get(i).map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0)
        };
        Self { p50_ms: p(0.50), p95_ms: p(0.95), p99_ms: p(0.99) }
    }
}

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

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
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

/// `model_id` goes into the synthetic manifest so that a vector-svc running the configured
/// embedder (of dimension `dim`) accepts the index.
pub fn vectors(
    sizes: &[usize],
    dim: usize,
    queries: usize,
    quantizers: &[String],
    model_id: &str,
    workdir: &Path,
) -> anyhow::Result<Vec<VectorFigures>> {
    let mut out = Vec::new();
    for &n in sizes {
        eprintln!("[{n} x {dim}] generating clustered vectors");
        let clusters = (n / 100).max(16);
        let (data, qs) = synth::clustered_split(n, queries, dim, clusters, 1.0, n as u64);
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
        let flat = store::build_index(d, &data, &ids, IndexKind::Flat)?;
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
            let index = store::build_index(d, &data, &ids, kind)?;
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
        let primary =
            store::write_artifact(&repo_dir, "v000001", d, &data[..split * dim], &metas[..split], IndexKind::Flat)?;
        let secondary = store::write_artifact(
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
        };
        let mut m = bench_manifest("bench", &contract, &primary);
        m.secondary = Some(secondary);
        m.tombstones = Some("tombstones/v000002.ids".into());
        let kind = IndexKind::choose(n, d, &VectorConfig { flat_threshold: 1, ..VectorConfig::default() });
        let t = Instant::now();
        let (live_m, live_v) = store::live_vectors(&repo_dir, &m)?;
        let compacted = store::write_artifact(&repo_dir, "v000003", d, &live_v, &live_m, kind)?;
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

fn bench_manifest(repo: &str, contract: &EmbeddingContract, primary: &manifest::VectorFiles) -> Manifest {
    Manifest {
        format: MANIFEST_FORMAT,
        repo: repo.into(),
        version: 1,
        created_unix_ms: manifest::now_unix_ms(),
        source: "synthetic".into(),
        embedding: contract.clone(),
        embed_text_format: EMBED_TEXT_FORMAT,
        embed_max_tokens: 256,
        segments: vec![],
        faiss_index: primary.faiss_index.clone(),
        chunk_meta: primary.chunk_meta.clone(),
        primary_vectors: Some(primary.vectors.clone()),
        primary_kind: primary.kind.clone(),
        secondary: None,
        tombstones: None,
        tombstoned: 0,
        tantivy_dir: primary.faiss_index.clone(),
        lexical_format: lexical_svc::store::LEXICAL_FORMAT,
        chunking: String::new(),
        embed_views: 1,
        sparse: Vec::new(),
        sparse_model: String::new(),
        chunks: primary.count,
        files: 0,
        file_hashes: Default::default(),
    }
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

// ---------------------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct LifecycleFigures {
    pub base_chunks: usize,
    pub base_files: usize,
    pub base_primary: String,
    pub base_build_s: f64,
    pub changed_files: usize,
    pub changed_chunks: usize,
    /// Walk, hash and chunk of the whole tree.
    pub read_chunk_s: f64,
    pub embed_s: f64,
    /// Segment, secondary, tombstones, tantivy copy-and-update, manifest.
    pub write_publish_s: f64,
    /// Loading the new version as vector-svc and lexical-svc do on a swap.
    pub load_s: f64,
    pub searchable_excluding_embedding_s: f64,
    pub compaction_s: f64,
}

const VERBS: &[&str] = &["load", "parse", "render", "merge", "split", "encode", "decode", "fetch", "store", "check"];
const NOUNS: &[&str] =
    &["config", "header", "token", "session", "buffer", "record", "index", "payload", "schema", "cursor", "frame"];

/// A Python file of ten functions; `edit` changes every body (so every chunk id) but no lines.
fn source_file(file: usize, edit: u32) -> String {
    let mut s = String::new();
    for j in 0..10 {
        let (v, n) = (VERBS[(file + j) % VERBS.len()], NOUNS[(file * 7 + j) % NOUNS.len()]);
        let m = NOUNS[(file + 3 * j) % NOUNS.len()];
        s.push_str(&format!(
            "def {v}_{n}_{file}_{j}(source, limit={lim}):\n    \"\"\"{v} the {n} from source, at most limit items.\"\"\"\n    items = source.{m}_items()\n    out = [x for x in items if x.size < limit]\n    return out[:{cap}]\n\n\n",
            lim = 10 + j + edit as usize,
            cap = file % 97 + 1
        ));
    }
    s
}

pub async fn lifecycle(
    cfg: &Config,
    chunks: usize,
    changed: usize,
    workdir: &Path,
) -> anyhow::Result<LifecycleFigures> {
    let src = workdir.join("src");
    let _ = std::fs::remove_dir_all(workdir);
    let files = chunks.div_ceil(10);
    eprintln!("writing {files} source files");
    for f in 0..files {
        let p = src.join(format!("pkg{}/mod_{f}.py", f / 100));
        std::fs::create_dir_all(p.parent().expect("parent"))?;
        std::fs::write(p, source_file(f, 0))?;
    }
    let mut cfg = cfg.clone();
    cfg.data.root = workdir.join("data");
    cfg.index.gc_grace_ms = 0;
    let repo = "bench";
    let repo_dir = cfg.data.root.join(repo);
    std::fs::create_dir_all(&repo_dir)?;

    // Base version: real chunks, segment, lexical index and primary; synthetic vectors.
    eprintln!("building the base version");
    let t = Instant::now();
    let embedder = codeintel_core::embed::Embedder::from_config(&cfg).await?;
    let contract = embedder.contract(&cfg.embed.model_id).await?;
    drop(embedder);
    let mut all: Vec<Chunk> = Vec::new();
    let mut hashes = std::collections::BTreeMap::new();
    for f in 0..files {
        let rel = format!("pkg{}/mod_{f}.py", f / 100);
        let text = source_file(f, 0);
        hashes.insert(rel.clone(), sha256_hex(text.as_bytes()));
        all.extend(chunk_file(repo, &rel, "python", &text, ChunkOptions::default()));
    }
    all.sort_by_key(|c| c.chunk_id);
    all.dedup_by_key(|c| c.chunk_id);
    let dim = contract.dim as usize;
    let vectors = synth::clustered(all.len(), dim, (all.len() / 1000).max(16), 1.0, 42);
    let metas: Vec<ChunkMeta> =
        all.iter().map(|c| ChunkMeta { id: c.chunk_id, path: c.path.clone(), language: c.language.clone() }).collect();
    let segment = hydrate_svc::segment::write_segment(&repo_dir, "v000001", &all)?;
    let kind = IndexKind::choose(all.len(), contract.dim, &cfg.vector);
    let primary = store::write_artifact(&repo_dir, "v000001", contract.dim, &vectors, &metas, kind)?;
    let tantivy_dir = lexical_svc::store::write_index(&repo_dir, "v000001", &all)?;
    let m = Manifest {
        format: MANIFEST_FORMAT,
        repo: repo.into(),
        version: 1,
        created_unix_ms: manifest::now_unix_ms(),
        source: src.display().to_string(),
        embedding: contract,
        embed_text_format: EMBED_TEXT_FORMAT,
        embed_max_tokens: cfg.embed.max_tokens as u32,
        segments: vec![segment],
        faiss_index: primary.faiss_index,
        chunk_meta: primary.chunk_meta,
        primary_vectors: Some(primary.vectors),
        primary_kind: primary.kind.clone(),
        secondary: None,
        tombstones: None,
        tombstoned: 0,
        tantivy_dir,
        lexical_format: lexical_svc::store::LEXICAL_FORMAT,
        chunking: String::new(),
        embed_views: 1,
        sparse: Vec::new(),
        sparse_model: String::new(),
        chunks: all.len() as u64,
        files: files as u64,
        file_hashes: hashes,
    };
    manifest::publish(&cfg.data.root, &m)?;
    let base_build_s = t.elapsed().as_secs_f64();
    let base_chunks = all.len();
    drop((all, vectors, metas));

    // Edit the files holding `changed` chunks, then index incrementally with the real embedder.
    let changed_files = changed.div_ceil(10).min(files);
    for f in 0..changed_files {
        let f = f * (files / changed_files.max(1)).max(1);
        std::fs::write(src.join(format!("pkg{}/mod_{f}.py", f / 100)), source_file(f, 1))?;
    }
    eprintln!("incremental index of {changed_files} edited files");
    let opts = crate::index::IndexOptions { quiet: true, ..Default::default() };
    let r = crate::index::run(&cfg, &src, repo, &opts).await?;
    anyhow::ensure!(r.mode == crate::index::Mode::Incremental, "expected an incremental run, got {:?}", r.mode);
    let t = Instant::now();
    let m2 = manifest::load_current(&cfg.data.root, repo)?;
    let v = store::RepoVectors::open(&repo_dir, &m2, &cfg.vector)?;
    let l = lexical_svc::store::RepoLexical::open(&repo_dir.join(&m2.tantivy_dir))?;
    anyhow::ensure!(v.len() == m2.chunks && l.docs == m2.chunks, "loaded counts disagree with the manifest");
    let load_s = t.elapsed().as_secs_f64();
    drop((v, l));
    eprintln!("compacting");
    let t = Instant::now();
    crate::index::compact(&cfg, repo, true, None)?;
    let compaction_s = t.elapsed().as_secs_f64();
    let read_chunk_s = r.read_time.as_secs_f64() + r.chunk_time.as_secs_f64();
    let write_publish_s = r.write_time.as_secs_f64();
    Ok(LifecycleFigures {
        base_chunks,
        base_files: files,
        base_primary: primary.kind,
        base_build_s,
        changed_files: r.changed_files,
        changed_chunks: r.embedded,
        read_chunk_s,
        embed_s: r.embed_time.as_secs_f64(),
        write_publish_s,
        load_s,
        searchable_excluding_embedding_s: read_chunk_s + write_publish_s + load_s,
        compaction_s,
    })
}

pub fn default_workdir() -> PathBuf {
    std::env::temp_dir().join(format!("codeintel-bench-{}", std::process::id()))
}

// ---------------------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct ScopeFigures {
    pub sessions: usize,
    pub lookups: usize,
    pub concurrency: usize,
    pub with_l1: Latency,
    pub with_l1_hit_ratio: f64,
    pub without_l1: Latency,
}

/// Scope lookups against a real Redis (`redis_url`) from `concurrency` tasks, sessions chosen
/// with a skew (a few hot sessions, a long tail), through the store answer-svc uses: once with
/// its in-process cache and once without.
pub async fn scope(
    redis_url: &str,
    sessions: usize,
    lookups: usize,
    concurrency: usize,
) -> anyhow::Result<ScopeFigures> {
    use answer_svc::session::{RedisOptions, RedisStore, SessionStore};
    use codeintel_core::proto::v1::Scope;
    use std::sync::Arc;
    let opts = RedisOptions {
        url: redis_url.to_string(),
        ttl_s: 3600,
        cache_entries: 256,
        cache_ttl: Duration::from_millis(5000),
        invalidation_timeout: Duration::from_millis(250),
    };
    let writer = SessionStore::Redis(RedisStore::connect(opts.clone(), &prometheus::Registry::new()).await?);
    for i in 0..sessions {
        let s =
            Scope { languages: vec!["rust".into()], include_globs: vec![format!("src/m{i}/**")], ..Default::default() };
        writer.set(&format!("bench-{i}"), s).await?;
    }
    let run = |cache_entries: usize| {
        let opts = RedisOptions { cache_entries, ..opts.clone() };
        async move {
            let registry = prometheus::Registry::new();
            let store = Arc::new(SessionStore::Redis(RedisStore::connect(opts, &registry).await?));
            let per_task = lookups / concurrency.max(1);
            let mut tasks = Vec::new();
            for t in 0..concurrency {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let mut rng = synth::Rng::new(t as u64 + 1);
                    let mut lat = Vec::with_capacity(per_task);
                    for _ in 0..per_task {
                        let i = (sessions as f64 * rng.unit().powi(3)) as usize;
                        let started = Instant::now();
                        store.get(&format!("bench-{i}")).await?;
                        lat.push(started.elapsed());
                    }
                    Ok::<_, anyhow::Error>(lat)
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await??);
            }
            let count = |source: &str| {
                registry
                    .gather()
                    .iter()
                    .flat_map(|f| f.get_metric().to_vec())
                    .filter(|m| m.get_label().iter().any(|l| l.value() == source))
                    .map(|m| m.get_counter().get_value())
                    .sum::<f64>()
            };
            let ratio = count("l1") / (count("l1") + count("redis")).max(1.0);
            Ok::<_, anyhow::Error>((Latency::of(&mut all), ratio))
        }
    };
    let (with_l1, with_l1_hit_ratio) = run(256).await?;
    let (without_l1, _) = run(0).await?;
    Ok(ScopeFigures { sessions, lookups, concurrency, with_l1, with_l1_hit_ratio, without_l1 })
}

#[derive(Debug, Serialize)]
pub struct AnswerFigures {
    pub queries: usize,
    pub top_k: u32,
    pub rerank_top_n: u32,
    pub time_budget_ms: u32,
    /// Request sent -> the citations event.
    pub to_citations: Latency,
    /// Request sent -> the first answer token.
    pub to_first_token: Latency,
    /// Request sent -> the stream's end.
    pub total: Latency,
    /// Answers whose text came from a language model (the others were extractive).
    pub synthesized: usize,
    /// Limit codes reported, with how many answers had each.
    pub limits: std::collections::BTreeMap<String, usize>,
    pub mean_tokens_out: f64,
    /// Mean of the server-side `tokens_per_second` over synthesized answers.
    pub mean_tokens_per_second: f64,
    pub failed: usize,
}

/// `Answer` for each query (JSON lines with `query`), one at a time, against a running mesh.
pub async fn answers(
    client: &mut codeintel_core::proto::v1::answer_service_client::AnswerServiceClient<tonic::transport::Channel>,
    queries: &[String],
    top_k: u32,
    rerank_top_n: u32,
    time_budget_ms: u32,
) -> anyhow::Result<AnswerFigures> {
    use codeintel_core::proto::v1::answer_event::Event;
    use codeintel_core::proto::v1::AnswerRequest;
    let (mut cites, mut first, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut limits = std::collections::BTreeMap::new();
    let (mut synthesized, mut failed, mut tokens, mut tps) = (0usize, 0usize, 0u64, Vec::new());
    for q in queries {
        let t = Instant::now();
        let req = AnswerRequest { query: q.clone(), scope: None, top_k, rerank_top_n, time_budget_ms };
        let mut stream = match client.answer(req).await {
            Ok(s) => s.into_inner(),
            Err(e) => {
                eprintln!("{q}: {e}");
                failed += 1;
                continue;
            }
        };
        let (mut c, mut f) = (None, None);
        let mut seen = HashSet::new();
        loop {
            match stream.message().await {
                Ok(Some(ev)) => match ev.event {
                    Some(Event::Citations(_)) => c = c.or(Some(t.elapsed())),
                    Some(Event::Token(_)) => f = f.or(Some(t.elapsed())),
                    Some(Event::Limits(l)) => {
                        for l in l.limits {
                            if seen.insert(l.code.clone()) {
                                *limits.entry(l.code).or_insert(0) += 1;
                            }
                        }
                    }
                    Some(Event::Trace(tr)) if tr.synthesizer != "extractive" && tr.tokens_out > 0 => {
                        synthesized += 1;
                        tokens += tr.tokens_out as u64;
                        tps.push(tr.tokens_per_second);
                    }
                    _ => {}
                },
                Ok(None) => break,
                Err(e) => {
                    eprintln!("{q}: {e}");
                    failed += 1;
                    break;
                }
            }
        }
        total.push(t.elapsed());
        cites.extend(c);
        first.extend(f);
    }
    Ok(AnswerFigures {
        queries: queries.len(),
        top_k,
        rerank_top_n,
        time_budget_ms,
        to_citations: Latency::of(&mut cites),
        to_first_token: Latency::of(&mut first),
        total: Latency::of(&mut total),
        synthesized,
        limits,
        mean_tokens_out: if synthesized > 0 { tokens as f64 / synthesized as f64 } else { 0.0 },
        mean_tokens_per_second: if tps.is_empty() { 0.0 } else { tps.iter().sum::<f64>() / tps.len() as f64 },
        failed,
    })
}

#[derive(Debug, Serialize)]
pub struct BatchFigures {
    pub batch: usize,
    pub queries_per_s: f64,
}

#[derive(Debug, Serialize)]
pub struct ConcurrentFigures {
    pub threads: usize,
    pub queries_per_s: f64,
}

/// How the GPU's top k compares with FAISS `Flat` on the CPU, query by query.
#[derive(Debug, Serialize)]
pub struct Agreement {
    /// Queries whose k ids came back identical and in the same order.
    pub identical_lists: f64,
    /// Share of the CPU's top k that the GPU's top k holds.
    pub recall: f64,
    /// Largest difference between the scores at the same rank.
    pub max_abs_score_diff: f32,
}

#[derive(Debug, Serialize)]
pub struct GpuFigures {
    pub n: usize,
    pub dim: usize,
    pub k: usize,
    pub queries: usize,
    pub device: String,
    pub cpu_threads: usize,
    /// Copying the vectors to the GPU, seconds.
    pub upload_s: f64,
    /// FAISS `Flat` (BLAS, every core), all queries in one call.
    pub cpu_batched_queries_per_s: f64,
    /// FAISS `Flat`, one query at a time (the first 200 queries).
    pub cpu_single: Latency,
    /// GPU, one query at a time (the first 1,000 queries).
    pub gpu_single: Latency,
    pub gpu_batched: Vec<BatchFigures>,
    /// `threads` threads each searching one query at a time (vector-svc's path): the GPU
    /// batches the queries that wait while it is busy.
    pub gpu_concurrent: Vec<ConcurrentFigures>,
    pub agreement: Agreement,
}

#[cfg(feature = "gpu")]
fn agreement(gpu: &[Vec<(u32, f32)>], cpu_scores: &[f32], cpu_ids: &[i64], k: usize) -> Agreement {
    let (mut identical, mut hit, mut total, mut diff) = (0usize, 0usize, 0usize, 0f32);
    for (q, g) in gpu.iter().enumerate() {
        let ids = &cpu_ids[q * k..(q + 1) * k];
        let scores = &cpu_scores[q * k..(q + 1) * k];
        let truth: HashSet<i64> = ids.iter().copied().filter(|&i| i >= 0).collect();
        total += truth.len();
        hit += g.iter().filter(|h| truth.contains(&(h.0 as i64))).count();
        identical += usize::from(g.iter().map(|h| h.0 as i64).eq(ids.iter().copied().filter(|&i| i >= 0)));
        for (h, s) in g.iter().zip(scores) {
            diff = diff.max((h.1 - s).abs());
        }
    }
    Agreement {
        identical_lists: identical as f64 / gpu.len().max(1) as f64,
        recall: hit as f64 / total.max(1) as f64,
        max_abs_score_diff: diff,
    }
}

/// GPU exact search against FAISS `Flat` on the CPU, same vectors and queries.
#[cfg(feature = "gpu")]
pub fn gpu(
    sizes: &[usize],
    dim: usize,
    queries: usize,
    batches: &[usize],
    k: usize,
    ordinal: usize,
) -> anyhow::Result<Vec<GpuFigures>> {
    use vector_svc::gpu::{Gpu, Resident};
    let device = Gpu::open(ordinal).map_err(|e| anyhow::anyhow!("no usable GPU: {e}"))?;
    let cpu_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = Vec::new();
    for &n in sizes {
        eprintln!("[{n} x {dim}] generating clustered vectors");
        let (data, qs) = synth::clustered_split(n, queries, dim, (n / 100).max(16), 1.0, n as u64);
        let ids: Vec<u64> = (0..n as u64).collect();
        let flat = store::build_index(dim as u32, &data, &ids, IndexKind::Flat)?;
        eprintln!("[{n} x {dim}] CPU Flat, {queries} queries in one call");
        let t = Instant::now();
        let (cpu_scores, cpu_ids) = faiss_ext::search(&flat, &qs, k, 1, None)?;
        let cpu_batched_queries_per_s = queries as f64 / t.elapsed().as_secs_f64();
        let mut lat = Vec::new();
        for q in qs.chunks(dim).take(200) {
            let t = Instant::now();
            faiss_ext::search(&flat, q, k, 1, None)?;
            lat.push(t.elapsed());
        }
        let cpu_single = Latency::of(&mut lat);
        drop(flat);
        eprintln!("[{n} x {dim}] GPU");
        let t = Instant::now();
        let resident = Resident::upload(&device, &data, dim).map_err(anyhow::Error::msg)?;
        let upload_s = t.elapsed().as_secs_f64();
        resident.search(&qs[..dim], k).map_err(anyhow::Error::msg)?;
        let mut lat = Vec::new();
        for q in qs.chunks(dim).take(1000) {
            let t = Instant::now();
            resident.search(q, k).map_err(anyhow::Error::msg)?;
            lat.push(t.elapsed());
        }
        let gpu_single = Latency::of(&mut lat);
        let mut gpu_batched = Vec::new();
        let mut found = Vec::new();
        for &b in batches {
            found.clear();
            let t = Instant::now();
            for chunk in qs.chunks(b.max(1) * dim) {
                found.extend(resident.search(chunk, k).map_err(anyhow::Error::msg)?);
            }
            let qps = queries as f64 / t.elapsed().as_secs_f64();
            eprintln!("  batch {b}: {qps:.0} queries/s");
            gpu_batched.push(BatchFigures { batch: b, queries_per_s: qps });
        }
        let mut gpu_concurrent = Vec::new();
        for threads in [4usize, 16, 64] {
            let t = Instant::now();
            std::thread::scope(|s| -> anyhow::Result<()> {
                let workers: Vec<_> = (0..threads)
                    .map(|w| {
                        let (resident, qs) = (&resident, &qs);
                        s.spawn(move || -> Result<(), String> {
                            for q in qs.chunks(dim).skip(w).step_by(threads) {
                                resident.search_one(q, k)?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                for w in workers {
                    w.join().map_err(|_| anyhow::anyhow!("a search thread panicked"))?.map_err(anyhow::Error::msg)?;
                }
                Ok(())
            })?;
            let qps = queries as f64 / t.elapsed().as_secs_f64();
            eprintln!("  {threads} threads, one query each: {qps:.0} queries/s");
            gpu_concurrent.push(ConcurrentFigures { threads, queries_per_s: qps });
        }
        let agreement = agreement(&found, &cpu_scores, &cpu_ids, k);
        eprintln!("  {agreement:?}");
        out.push(GpuFigures {
            n,
            dim,
            k,
            queries,
            device: device.describe(),
            cpu_threads,
            upload_s,
            cpu_batched_queries_per_s,
            cpu_single,
            gpu_single,
            gpu_batched,
            gpu_concurrent,
            agreement,
        });
    }
    Ok(out)
}
