//! `codeintel index` and `codeintel compact`: reads the tree, loads the models and hands both
//! to the lifecycle drivers of `codeintel_index::build`, which own the on-disk format.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use anyhow::Context;
use codeintel_chunk::{chunk_file, walk};
use codeintel_config::Config;
use codeintel_core::chunk::{sha256_hex, Chunk, ChunkOptions};
use codeintel_core::SparseVec;
pub use codeintel_index::build::{compact, sparse_key, IndexOptions, IndexReport, Mode};
use codeintel_index::build::{Encoders, SourceFile, SparseEncoder, Tree};
use codeintel_models::embed::Embedder;
use codeintel_models::sparse::SpladeEncoder;
use futures::future::BoxFuture;
use rayon::prelude::*;

/// The models and chunker of this process, as the drivers see them. The SPLADE encoder is
/// loaded on first use, so a run with nothing to encode does not load it.
struct Models<'a> {
    cfg: &'a Config,
    embedder: Embedder,
    splade: OnceLock<Arc<dyn SparseEncoder>>,
}

struct Splade(SpladeEncoder);

impl SparseEncoder for Splade {
    fn encode(&self, texts: &[String], max_terms: usize) -> anyhow::Result<Vec<SparseVec>> {
        Ok(self.0.encode(texts, max_terms)?)
    }
}

impl Encoders for Models<'_> {
    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, anyhow::Result<Vec<Vec<f32>>>> {
        Box::pin(async move { Ok(self.embedder.embed(texts).await?) })
    }

    fn sparse(&self) -> anyhow::Result<Option<Arc<dyn SparseEncoder>>> {
        let s = &self.cfg.sparse;
        if !s.enabled {
            return Ok(None);
        }
        if let Some(e) = self.splade.get() {
            return Ok(Some(e.clone()));
        }
        let e = SpladeEncoder::load(&self.cfg.sparse_model_dir(), s.max_tokens, s.batch_size, s.workers)
            .context("sparse (SPLADE) model; run `make deps`, or set CODEINTEL__SPARSE__ENABLED=false")?;
        Ok(Some(self.splade.get_or_init(|| Arc::new(Splade(e))).clone()))
    }

    fn chunk(&self, repo: &str, path: &str, language: &str, text: &str, opts: ChunkOptions) -> Vec<Chunk> {
        chunk_file(repo, path, language, text, opts)
    }
}

/// Walks and hashes every indexable file under `root`.
fn read_tree(cfg: &Config, root: &Path, quiet: bool) -> anyhow::Result<(Vec<SourceFile>, walk::WalkStats)> {
    let (files, stats) = walk::walk(root, cfg.index.max_file_bytes)?;
    let pb = codeintel_index::build::bar(files.len() as u64, "reading", quiet);
    let out: Vec<SourceFile> = files
        .par_iter()
        .filter_map(|f| {
            let text = walk::read_text(&f.abs).ok().flatten();
            pb.inc(1);
            let text = text?;
            Some(SourceFile { path: f.path.clone(), language: f.language, hash: sha256_hex(text.as_bytes()), text })
        })
        .collect();
    pb.finish_and_clear();
    Ok((out, stats))
}

/// Indexes the tree at `path` as `repo` (see `codeintel_index::build::run`).
pub async fn run(cfg: &Config, path: &Path, repo: &str, opts: &IndexOptions) -> anyhow::Result<IndexReport> {
    codeintel_index::manifest::validate_repo_name(repo)?;
    let root = path.canonicalize().with_context(|| format!("cannot read {}", path.display()))?;
    let t = Instant::now();
    let (files, stats) = read_tree(cfg, &root, opts.quiet)?;
    let read_time = t.elapsed();
    if !opts.quiet {
        eprintln!(
            "read {} files in {:.1}s (skipped {} large, {} non-source)",
            files.len(),
            read_time.as_secs_f64(),
            stats.skipped_large,
            stats.skipped_unknown
        );
    }
    let embedder = Embedder::from_config(cfg).await?;
    let contract = embedder.contract(&cfg.embed.model_id).await?;
    let models = Models { cfg, embedder, splade: OnceLock::new() };
    let tree = Tree { source: root.display().to_string(), files };
    let mut report = codeintel_index::build::run(cfg, &tree, repo, contract, &models, opts).await?;
    report.read_time = read_time;
    Ok(report)
}
