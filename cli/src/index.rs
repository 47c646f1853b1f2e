//! `codeintel index PATH --repo NAME`: walk, chunk, embed, write the three stores, publish.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use codeintel_core::chunk::{chunk_file, sha256_hex, Chunk, ChunkOptions, EMBED_TEXT_FORMAT};
use codeintel_core::config::Config;
use codeintel_core::embed::Embedder;
use codeintel_core::manifest::{self, Manifest, MANIFEST_FORMAT};
use codeintel_core::walk;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

#[derive(Debug, Default)]
pub struct IndexReport {
    pub version: u64,
    pub files: usize,
    pub chunks: usize,
    /// Chunks embedded in this run (the others reused the previous version's vectors).
    pub embedded: usize,
    pub chunk_time: Duration,
    pub embed_time: Duration,
    pub write_time: Duration,
}

fn bar(len: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what:<9} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}} {{msg}}"
        ))
        .expect("template")
        .progress_chars("=> "),
    );
    pb
}

pub async fn run(cfg: &Config, path: &Path, repo: &str, quiet: bool) -> anyhow::Result<IndexReport> {
    manifest::validate_repo_name(repo)?;
    let root = path.canonicalize().with_context(|| format!("cannot read {}", path.display()))?;
    let mut report = IndexReport::default();

    // 1. Walk and chunk (all cores).
    let t = Instant::now();
    let (files, stats) = walk::walk(&root, cfg.index.max_file_bytes)?;
    let opts = ChunkOptions { max_chunk_lines: cfg.index.max_chunk_lines, window_lines: cfg.index.window_lines };
    let pb = bar(files.len() as u64, "chunking", quiet);
    let per_file: Vec<(String, String, Vec<Chunk>)> = files
        .par_iter()
        .filter_map(|f| {
            let text = walk::read_text(&f.abs).ok().flatten();
            pb.inc(1);
            let text = text?;
            let hash = sha256_hex(text.as_bytes());
            Some((f.path.clone(), hash, chunk_file(repo, &f.path, f.language, &text, opts)))
        })
        .collect();
    pb.finish_and_clear();
    let file_hashes = per_file.iter().map(|(p, h, _)| (p.clone(), h.clone())).collect();
    let mut chunks: Vec<Chunk> = per_file.into_iter().flat_map(|(_, _, c)| c).collect();
    chunks.sort_by_key(|c| c.chunk_id);
    chunks.dedup_by_key(|c| c.chunk_id);
    report.files = files.len();
    report.chunks = chunks.len();
    report.chunk_time = t.elapsed();
    if !quiet {
        eprintln!(
            "chunked {} files into {} chunks in {:.1}s (skipped {} large, {} non-source)",
            files.len(),
            chunks.len(),
            report.chunk_time.as_secs_f64(),
            stats.skipped_large,
            stats.skipped_unknown
        );
    }

    // 2. Embed, with throughput.
    let t = Instant::now();
    let embedder = Embedder::from_config(cfg).await?;
    let contract = embedder.contract(&cfg.embed.model_id).await?;
    // Chunks unchanged since the published version keep their vectors (same chunk id means same
    // repo, path, lines and content; same contract and text format means the same embedding).
    let mut reused: std::collections::HashMap<u64, Vec<f32>> = std::collections::HashMap::new();
    if let Ok(prev) = manifest::load_current(&cfg.data.root, repo) {
        if prev.embedding == contract
            && prev.embed_text_format == EMBED_TEXT_FORMAT
            && prev.embed_max_tokens as usize == cfg.embed.max_tokens
        {
            let ids: Vec<u64> = chunks.iter().map(|c| c.chunk_id).collect();
            let dir = manifest::repo_dir(&cfg.data.root, repo)?;
            match vector_svc::store::read_vectors(&dir, &prev.faiss_index, &ids) {
                Ok(v) => reused = v,
                Err(e) => tracing::warn!(error = %e, "cannot reuse vectors of the previous version"),
            }
        }
    }
    let todo: Vec<usize> = (0..chunks.len()).filter(|i| !reused.contains_key(&chunks[*i].chunk_id)).collect();
    let pb = bar(todo.len() as u64, "embedding", quiet);
    let mut fresh: Vec<Vec<f32>> = Vec::with_capacity(todo.len());
    // Large steps let the embedder sort by length across many texts (less padding).
    let step = (cfg.embed.batch_size * 32).max(64);
    for part in todo.chunks(step) {
        let texts: Vec<String> = part.iter().map(|&i| chunks[i].embedding_text()).collect();
        fresh.extend(embedder.embed(texts).await?);
        pb.inc(part.len() as u64);
    }
    pb.finish_and_clear();
    let mut fresh = fresh.into_iter();
    let vectors: Vec<Vec<f32>> = chunks
        .iter()
        .map(|c| reused.remove(&c.chunk_id).unwrap_or_else(|| fresh.next().expect("one vector per embedded chunk")))
        .collect();
    report.embed_time = t.elapsed();
    report.embedded = todo.len();
    if !quiet {
        eprintln!(
            "embedded {} chunks in {:.1}s ({:.1} chunks/s, {} dim); reused {} unchanged",
            todo.len(),
            report.embed_time.as_secs_f64(),
            todo.len() as f64 / report.embed_time.as_secs_f64().max(1e-9),
            contract.dim,
            chunks.len() - todo.len()
        );
    }

    // 3. Write every store under the new version's names, then publish.
    let t = Instant::now();
    let data_root = &cfg.data.root;
    std::fs::create_dir_all(data_root).with_context(|| format!("cannot create {}", data_root.display()))?;
    let version = manifest::next_version(data_root, repo)?;
    let vname = manifest::version_name(version);
    let repo_dir = manifest::repo_dir(data_root, repo)?;
    let segment = hydrate_svc::segment::write_segment(&repo_dir, &vname, &chunks)?;
    let metas: Vec<vector_svc::store::ChunkMeta> = chunks
        .iter()
        .map(|c| vector_svc::store::ChunkMeta { id: c.chunk_id, path: c.path.clone(), language: c.language.clone() })
        .collect();
    let (faiss_index, chunk_meta) = vector_svc::store::write_index(&repo_dir, &vname, contract.dim, &vectors, &metas)?;
    let tantivy_dir = lexical_svc::store::write_index(&repo_dir, &vname, &chunks)?;
    let m = Manifest {
        format: MANIFEST_FORMAT,
        repo: repo.to_string(),
        version,
        created_unix_ms: manifest::now_unix_ms(),
        source: root.display().to_string(),
        embedding: contract,
        embed_text_format: EMBED_TEXT_FORMAT,
        embed_max_tokens: cfg.embed.max_tokens as u32,
        segments: vec![segment],
        faiss_index,
        chunk_meta,
        tantivy_dir,
        chunks: chunks.len() as u64,
        files: files.len() as u64,
        file_hashes,
    };
    let mpath = manifest::publish(data_root, &m)?;
    report.write_time = t.elapsed();
    report.version = version;
    match manifest::collect_garbage(data_root, repo, cfg.index.keep_versions, cfg.index.gc_grace_ms) {
        Ok(gone) if !gone.is_empty() && !quiet => eprintln!("removed old versions {gone:?}"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "old versions could not be removed"),
    }
    if !quiet {
        eprintln!(
            "published {repo} {vname} ({} chunks) in {:.1}s: {}",
            chunks.len(),
            report.write_time.as_secs_f64(),
            mpath.display()
        );
    }
    Ok(report)
}
