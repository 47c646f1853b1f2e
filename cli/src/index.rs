//! `codeintel index` and `codeintel compact`: reads the tree, loads the models and hands both
//! to the lifecycle drivers of `codeintel_index::build`, which own the on-disk format.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use anyhow::Context;
use codeintel_chunk::secrets::SecretPolicy;
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
        let runtime = codeintel_models::embed::Runtime::from_config(
            self.cfg,
            "sparse",
            index_threads(self.cfg),
            codeintel_models::embed::Role::Documents,
        )?;
        let e = SpladeEncoder::load(&self.cfg.sparse_model_dir(), s.max_tokens, s.batch_size, s.workers, &runtime)
            .context("sparse (SPLADE) model; run `make deps`, or set CODEINTEL__SPARSE__ENABLED=false")?;
        Ok(Some(self.splade.get_or_init(|| Arc::new(Splade(e))).clone()))
    }

    fn chunk(&self, repo: &str, path: &str, language: &str, text: &str, opts: ChunkOptions) -> Vec<Chunk> {
        chunk_file(repo, path, language, text, opts)
    }
}

/// The secret rules of `cfg` (`index.skip_secrets`, `index.secret_patterns_extra`,
/// `index.allow_secret_paths`).
pub fn secret_policy(cfg: &Config) -> anyhow::Result<SecretPolicy> {
    let ix = &cfg.index;
    SecretPolicy::new(ix.skip_secrets, &ix.secret_patterns_extra, &ix.allow_secret_paths).map_err(anyhow::Error::msg)
}

/// Walks, reads and hashes every indexable file under `root`; what the walk or the read leaves
/// out (secrets, symlinks leaving the tree, bad paths, large, binary, undecodable, minified) is
/// counted in the stats, and each secret logged with its rule.
fn read_tree(cfg: &Config, root: &Path, quiet: bool) -> anyhow::Result<(Vec<SourceFile>, walk::WalkStats)> {
    let secrets = secret_policy(cfg)?;
    let (files, mut stats) = walk::walk(root, cfg.index.max_file_bytes, &secrets)?;
    let pb = codeintel_index::build::bar(files.len() as u64, "reading", quiet);
    // In walk order (rayon keeps it), each file read or why not; `None`: an I/O error.
    let read: Vec<Result<SourceFile, Option<walk::Skip>>> = files
        .par_iter()
        .map(|f| {
            let r = walk::read_source(f, &secrets);
            pb.inc(1);
            match r {
                Ok(Ok(text)) => Ok(SourceFile {
                    path: f.path.clone(),
                    language: f.language,
                    hash: sha256_hex(text.as_bytes()),
                    text,
                }),
                Ok(Err(skip)) => Err(Some(skip)),
                Err(e) => {
                    tracing::warn!(path = %f.path, error = %e, "cannot read the file; not indexed");
                    Err(None)
                }
            }
        })
        .collect();
    pb.finish_and_clear();
    let mut out = Vec::with_capacity(read.len());
    for (f, r) in files.iter().zip(read) {
        match r {
            Ok(file) => out.push(file),
            Err(Some(skip)) => stats.record(&f.path, &skip),
            Err(None) => stats.skipped_unreadable += 1,
        }
    }
    stats.skipped_secrets.sort();
    for (path, rule) in &stats.skipped_secrets {
        tracing::info!(path = %path, rule = %rule, "not indexed: looks like a secret");
    }
    if stats.skipped_bad_path > 0 {
        tracing::info!(files = stats.skipped_bad_path, "not indexed: paths with control characters or not UTF-8");
    }
    Ok((out, stats))
}

/// The run's indexing rate: chunks embedded per second of the whole run (reading, chunking,
/// embedding and sparse encoding, writing).
pub fn throughput(r: &IndexReport) -> String {
    let total = (r.read_time + r.chunk_time + r.embed_time + r.write_time).as_secs_f64();
    match r.embedded {
        0 => "nothing embedded".to_string(),
        n => format!("{:.1} chunks/s", n as f64 / total.max(1e-9)),
    }
}

/// Secrets listed by [`skipped_lines`]; the others are counted.
pub const LISTED_SECRETS: usize = 20;

/// What `codeintel index` prints about the files it left out: one line of counts by reason,
/// then `skipped <path>: <rule>` for each secret (at most `listed`, then `and N more`).
pub fn skipped_lines(r: &IndexReport, listed: usize) -> Vec<String> {
    if r.skipped.is_empty() {
        return Vec::new();
    }
    let total: usize = r.skipped.iter().map(|(_, n)| n).sum();
    let counts: Vec<String> = r.skipped.iter().map(|(why, n)| format!("{n} {why}")).collect();
    let mut lines = vec![format!("skipped {total} files: {}", counts.join(", "))];
    lines.extend(r.skipped_secrets.iter().take(listed).map(|(path, rule)| format!("skipped {path}: {rule}")));
    if r.skipped_secrets.len() > listed {
        lines.push(format!("and {} more", r.skipped_secrets.len() - listed));
    }
    lines
}

/// What `codeintel index` reads.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// The files of a folder as they are on disk (its git commit recorded when it has one).
    Folder(&'a Path),
    /// The tree of a commit of the git repository holding `folder` (`--rev`), read from the object
    /// database; the work tree is not read.
    Rev { folder: &'a Path, rev: &'a str },
}

/// Indexes the tree at `path` as `repo` (see `codeintel_index::build::run`).
pub async fn run(cfg: &Config, path: &Path, repo: &str, opts: &IndexOptions) -> anyhow::Result<IndexReport> {
    run_from(cfg, Source::Folder(path), repo, opts).await
}

/// Indexes `source` as `repo` (see `codeintel_index::build::run`).
pub async fn run_from(
    cfg: &Config,
    source: Source<'_>,
    repo: &str,
    opts: &IndexOptions,
) -> anyhow::Result<IndexReport> {
    codeintel_index::manifest::validate_repo_name(repo)?;
    let path = match source {
        Source::Folder(p) | Source::Rev { folder: p, .. } => p,
    };
    let root = path.canonicalize().with_context(|| format!("cannot read {}", path.display()))?;
    let t = Instant::now();
    let (files, stats, git) = match source {
        Source::Folder(_) => {
            let (files, stats) = read_tree(cfg, &root, opts.quiet)?;
            let git = crate::git::inspect(&root, files.iter().map(|f| (f.path.as_str(), f.text.as_bytes())));
            (files, stats, git)
        }
        Source::Rev { rev, .. } => {
            let t = crate::git::read_rev(&root, rev, cfg.index.max_file_bytes, &secret_policy(cfg)?)?;
            (t.files, t.stats, Some(t.git))
        }
    };
    let read_time = t.elapsed();
    if !opts.quiet {
        let at = git.as_ref().map(|g| format!(" at {}", &g.commit[..g.commit.len().min(12)])).unwrap_or_default();
        eprintln!("read {} files{at} in {:.1}s", files.len(), read_time.as_secs_f64());
    }
    if stats.skipped_symlink_outside > 0 {
        tracing::info!(files = stats.skipped_symlink_outside, "not indexed: symlinks leaving the repository");
    }
    let embedder = Embedder::from_config(cfg, index_threads(cfg), codeintel_models::embed::Role::Documents).await?;
    let contract = embedder.contract(&cfg.embed.model_id).await?;
    let models = Models { cfg, embedder, splade: OnceLock::new() };
    let tree = Tree { source: root.display().to_string(), git, files };
    let mut report = codeintel_index::build::run(cfg, &tree, repo, contract, &models, opts).await?;
    report.read_time = read_time;
    report.skipped = stats.skipped().into_iter().map(|(why, n)| (why.to_string(), n)).collect();
    report.skipped_secrets = stats.skipped_secrets;
    Ok(report)
}

/// Threads per forward pass of the local encoders when indexing: one when several workers run
/// passes side by side (the parallelism is theirs), else every core.
fn index_threads(cfg: &Config) -> usize {
    if cfg.embed.workers > 1 {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn throughput_counts_the_whole_run() {
        let r = IndexReport {
            embedded: 100,
            read_time: Duration::from_secs(1),
            chunk_time: Duration::from_secs(1),
            embed_time: Duration::from_secs(2),
            write_time: Duration::from_secs(1),
            ..Default::default()
        };
        assert_eq!(throughput(&r), "20.0 chunks/s");
        assert_eq!(throughput(&IndexReport::default()), "nothing embedded");
    }
}
