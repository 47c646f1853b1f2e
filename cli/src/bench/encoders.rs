//! `codeintel bench encoders`: the local encoders on each runtime (candle, ONNX Runtime in f32,
//! with int8 weights, and with int8 weights except the feed-forward output projections), same
//! texts: query latency one at a time on `embed.query_threads` threads (what vector-svc and lexical-svc do per query), document
//! throughput over an indexed repo's chunks the way `codeintel index` runs them (`embed.workers`
//! passes side by side, one thread each), and how far each runtime's outputs are from candle's.

use std::time::{Duration, Instant};

use codeintel_config::Config;
use codeintel_models::embed::{LocalEmbedder, Runtime};
use codeintel_models::sparse::SpladeEncoder;
use hydrate_svc::ChunkStore;
use serde::Serialize;

use super::Latency;

#[derive(Debug, Serialize)]
pub struct RuntimeFigures {
    pub runtime: String,
    /// One query at a time.
    pub embed_query: Latency,
    pub splade_query: Latency,
    /// Chunks per second over the document sample (code view, as indexing embeds it).
    pub embed_docs_per_s: f64,
    pub splade_docs_per_s: f64,
    /// Against candle's outputs, over every query and document: the largest absolute difference
    /// of an embedding component and of a SPLADE term weight, and the lowest cosine between
    /// two embeddings of the same text.
    pub max_abs_diff_embed: f32,
    pub max_abs_diff_splade: f32,
    pub min_cosine_embed: f32,
}

#[derive(Debug, Serialize)]
pub struct EncoderFigures {
    pub queries: usize,
    pub docs: usize,
    pub query_threads: usize,
    pub workers: usize,
    pub runtimes: Vec<RuntimeFigures>,
}

/// Every query through each runtime (after 10 warm-up calls), then `docs` chunk texts of `repo`.
pub fn encoders(cfg: &Config, queries: &[String], repo: &str, docs: usize) -> anyhow::Result<EncoderFigures> {
    anyhow::ensure!(!queries.is_empty(), "no queries");
    let store = ChunkStore::with_memory(cfg, true)?;
    let snapshot = store.catalog.snapshot();
    let rows = snapshot
        .iter()
        .find(|l| l.manifest.repo == repo)
        .and_then(|l| l.value.rows.as_ref())
        .ok_or_else(|| anyhow::anyhow!("repo {repo} is not served from {}", cfg.data.root.display()))?;
    let ids = rows.ids();
    let step = (ids.len() / docs.max(1)).max(1);
    let ticket = codeintel_core::ticket::HydrateTicket {
        chunk_ids: ids.iter().step_by(step).take(docs).copied().collect(),
        repos: vec![repo.to_string()],
        ..Default::default()
    };
    let mut texts = Vec::new();
    for b in store.fetch(&ticket)? {
        texts.extend(codeintel_core::wire::decode(&b).map_err(anyhow::Error::msg)?.iter().map(|c| c.embedding_text()));
    }
    drop(snapshot);
    drop(store);

    let library = cfg.onnx_runtime();
    let threads = cfg.embed.query_threads;
    let workers = cfg.embed.workers.max(1);
    let mut runtimes = Vec::new();
    let mut reference: Option<Outputs> = None;
    for name in ["candle", "onnx", "onnx-int8", "onnx-mixed"] {
        let query_rt = Runtime::new(name, library.clone(), threads)?;
        let doc_rt = Runtime::new(name, library.clone(), 1)?;
        let e = LocalEmbedder::load(&cfg.model_dir(), cfg.embed.max_tokens, 1, 1, &query_rt)?;
        let s = SpladeEncoder::load(&cfg.sparse_model_dir(), cfg.sparse.max_tokens, 1, 1, &query_rt)?;
        let one = |f: &dyn Fn(&[String]) -> anyhow::Result<()>| -> anyhow::Result<Latency> {
            for q in queries.iter().cycle().take(10) {
                f(std::slice::from_ref(q))?;
            }
            let mut samples: Vec<Duration> = Vec::with_capacity(queries.len());
            for q in queries {
                let t = Instant::now();
                f(std::slice::from_ref(q))?;
                samples.push(t.elapsed());
            }
            Ok(Latency::of(&mut samples))
        };
        let embed_query = one(&|q| e.embed(q).map(drop).map_err(Into::into))?;
        let splade_query = one(&|q| s.encode(q, cfg.sparse.query_max_terms).map(drop).map_err(Into::into))?;
        let (qe, qs) = (e.embed(queries)?, s.encode(queries, 0)?);
        drop((e, s));
        let e = LocalEmbedder::load(&cfg.model_dir(), cfg.embed.max_tokens, cfg.embed.batch_size, workers, &doc_rt)?;
        let s = SpladeEncoder::load(
            &cfg.sparse_model_dir(),
            cfg.sparse.max_tokens,
            cfg.sparse.batch_size,
            workers,
            &doc_rt,
        )?;
        let t = Instant::now();
        let de = e.embed(&texts)?;
        let embed_docs_per_s = texts.len() as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let ds = s.encode(&texts, 0)?;
        let splade_docs_per_s = texts.len() as f64 / t.elapsed().as_secs_f64();
        eprintln!("{name}: embed query p50 {:.2} ms, docs {embed_docs_per_s:.1}/s", embed_query.p50_ms);
        let embeddings: Vec<Vec<f32>> = qe.into_iter().chain(de).collect();
        let terms: Vec<Vec<(u32, f32)>> = qs.into_iter().chain(ds).collect();
        let (max_abs_diff_embed, max_abs_diff_splade, min_cosine_embed) = match &reference {
            None => (0.0, 0.0, 1.0),
            Some((re, rs)) => (
                re.iter()
                    .zip(&embeddings)
                    .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
                    .fold(0f32, f32::max),
                rs.iter().zip(&terms).map(|(x, y)| term_diff(x, y)).fold(0f32, f32::max),
                re.iter().zip(&embeddings).map(|(x, y)| cosine(x, y)).fold(1f32, f32::min),
            ),
        };
        runtimes.push(RuntimeFigures {
            runtime: name.into(),
            embed_query,
            splade_query,
            embed_docs_per_s,
            splade_docs_per_s,
            max_abs_diff_embed,
            max_abs_diff_splade,
            min_cosine_embed,
        });
        reference.get_or_insert((embeddings, terms));
    }
    Ok(EncoderFigures { queries: queries.len(), docs: texts.len(), query_threads: threads, workers, runtimes })
}

/// A runtime's embeddings and SPLADE terms of the queries then the documents.
type Outputs = (Vec<Vec<f32>>, Vec<Vec<(u32, f32)>>);

/// The largest difference of a term weight between two SPLADE encodings (a term one lacks
/// counts as weight 0 there).
fn term_diff(x: &[(u32, f32)], y: &[(u32, f32)]) -> f32 {
    let y: std::collections::HashMap<u32, f32> = y.iter().copied().collect();
    let x_ids: std::collections::HashSet<u32> = x.iter().map(|(t, _)| *t).collect();
    let missing = y.iter().filter(|(t, _)| !x_ids.contains(t)).map(|(_, w)| w.abs());
    x.iter().map(|(t, w)| (w - y.get(t).copied().unwrap_or(0.0)).abs()).chain(missing).fold(0f32, f32::max)
}

fn cosine(x: &[f32], y: &[f32]) -> f32 {
    let dot: f32 = x.iter().zip(y).map(|(a, b)| a * b).sum();
    let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
    dot / (norm(x) * norm(y)).max(f32::MIN_POSITIVE)
}
