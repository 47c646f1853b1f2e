//! The index lifecycle drivers (`codeintel index` and `codeintel compact`, DESIGN section 3).
//!
//! A first index (or `--full`) chunks and embeds everything and writes a primary vector index
//! (exact or trained by size), one Parquet segment and one tantivy index. Later runs are
//! incremental: only files whose content hash changed are re-chunked and re-embedded; their new
//! chunks go to a new segment, into the Flat secondary vector index and into a copy of the
//! tantivy index, and the chunks they replace are tombstoned. When the secondary passes
//! `index.compact_ratio` of the primary, compaction retrains the primary from every live vector
//! and folds segments and tombstones away. Every run writes new files only and publishes them
//! with one manifest rename, so a crash at any step leaves the last published version intact.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use std::sync::Arc;

use codeintel_config::Config;
use codeintel_core::chunk::{Chunk, ChunkOptions, EMBED_TEXT_FORMAT};
use codeintel_core::{EmbeddingContract, SparseVec};
use futures::future::BoxFuture;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::lock::{RepoLock, Wait};
use crate::manifest::{self, BuildSettings, FirstArtifacts, Manifest};
use crate::sparse::{self, SparseDoc};
use crate::vector::{ChunkMeta, IndexKind};
use crate::{lexical, segment, vector};

/// What the drivers need of the models and the chunker, supplied by the caller (the CLI uses
/// candle or a remote embedder, and tree-sitter), so this crate links neither.
pub trait Encoders: Sync {
    /// One vector per text (the embedding contract's dimension, normalised).
    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, anyhow::Result<Vec<Vec<f32>>>>;
    /// The SPLADE encoder, loaded on first use; `None` when sparse indexing is off.
    fn sparse(&self) -> anyhow::Result<Option<Arc<dyn SparseEncoder>>>;
    /// The chunks of one file.
    fn chunk(&self, repo: &str, path: &str, language: &str, text: &str, opts: ChunkOptions) -> Vec<Chunk>;
}

/// Learned sparse document encoding (SPLADE).
pub trait SparseEncoder: Send + Sync {
    fn encode(&self, texts: &[String], max_terms: usize) -> anyhow::Result<Vec<SparseVec>>;
}

#[derive(Debug, Clone, Default)]
pub struct IndexOptions {
    /// Rebuild from scratch even when a compatible version exists.
    pub full: bool,
    pub quiet: bool,
    /// Refuse at once, instead of waiting, when another indexer holds the repo's writer lock.
    pub no_wait: bool,
    /// Fault injection for tests: fail right after this many artifact writes (0 = before the
    /// first), as a crash there would.
    pub fail_after_writes: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Full,
    Incremental,
    /// No file changed; no version was published unless only the git commit moved
    /// ([`IndexReport::recorded_commit`]).
    UpToDate,
}

#[derive(Debug, Default)]
pub struct IndexReport {
    pub version: u64,
    pub mode: Mode,
    pub files: usize,
    pub changed_files: usize,
    pub deleted_files: usize,
    /// Live chunks in the published version.
    pub chunks: usize,
    /// Chunks embedded in this run (the others kept their vectors).
    pub embedded: usize,
    /// Chunks this run tombstoned.
    pub removed: usize,
    /// Walking and hashing the tree.
    pub read_time: Duration,
    /// Chunking the files that changed.
    pub chunk_time: Duration,
    pub embed_time: Duration,
    /// SPLADE encoding of the chunks that needed it (part of `embed_time`).
    pub sparse_time: Duration,
    /// Writing artifacts and publishing (everything after embedding).
    pub write_time: Duration,
    /// The version compaction published after this run, if it ran.
    pub compacted: Option<u64>,
    /// Up to date, but at another git commit: a version that records the commit (and shares
    /// every artifact) was published.
    pub recorded_commit: bool,
    /// Files of the tree the caller left out, `(reason, files)` (secret, binary, minified, ...).
    pub skipped: Vec<(String, usize)>,
    /// Files left out as secrets: `(repo-relative path, rule)`, the rule's name only.
    pub skipped_secrets: Vec<(String, String)>,
}

/// Progress of one stage of a run: a bar on a terminal; when stderr is not a terminal (a log
/// file, CI, a container) a plain line each tenth of the way, so a long run still says how far
/// it is and how fast it goes; nothing when quiet.
pub struct Progress {
    pb: ProgressBar,
    /// Plain lines instead of a bar: `(stage name, total, position of the next line, start)`.
    lines: Option<(String, u64, u64, Instant)>,
    pos: u64,
}

impl Progress {
    pub fn inc(&mut self, n: u64) {
        self.pb.inc(n);
        self.pos += n;
        if let Some((what, len, next, start)) = &mut self.lines {
            if self.pos >= *next && self.pos < *len {
                eprintln!("{}", progress_line(what, self.pos, *len, start.elapsed().as_secs_f64()));
                *next = self.pos + (*len / 10).max(1);
            }
        }
    }

    pub fn finish(self) {
        self.pb.finish_and_clear();
    }

    pub fn new(len: u64, what: &str, quiet: bool) -> Self {
        use std::io::IsTerminal;
        let lines = (!quiet && !std::io::stderr().is_terminal())
            .then(|| (what.to_string(), len, (len / 10).max(1), Instant::now()));
        Self { pb: bar(len, what, quiet), lines, pos: 0 }
    }
}

/// `embedding: 300/1000 (30%) in 10s, 30.0/s, eta 23s`
fn progress_line(what: &str, pos: u64, len: u64, secs: f64) -> String {
    let rate = pos as f64 / secs.max(1e-9);
    let eta = len.saturating_sub(pos) as f64 / rate.max(1e-9);
    let pct = 100.0 * pos as f64 / len.max(1) as f64;
    format!("{what}: {pos}/{len} ({pct:.0}%) in {secs:.0}s, {rate:.1}/s, eta {eta:.0}s")
}

/// A progress bar on a terminal; hidden when quiet or when stderr is not a terminal.
pub fn bar(len: u64, what: &str, quiet: bool) -> ProgressBar {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() {
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

/// Counts artifact writes so that tests can stop the indexer between any two of them.
struct Steps {
    done: usize,
    fail_after: Option<usize>,
}

impl Steps {
    fn new(fail_after: Option<usize>) -> Self {
        Self { done: 0, fail_after }
    }

    fn check(&self, next: &str) -> anyhow::Result<()> {
        if self.fail_after == Some(self.done) {
            anyhow::bail!("injected failure after {} writes, before {next}", self.done);
        }
        Ok(())
    }

    fn wrote(&mut self) {
        self.done += 1;
    }
}

/// One file of the tree being indexed: its repo-relative path, language, content hash and text.
pub struct SourceFile {
    pub path: String,
    pub language: &'static str,
    pub hash: String,
    pub text: String,
}

/// A whole tree to index, read by the caller.
pub struct Tree {
    /// Where it was read from (recorded in the manifest).
    pub source: String,
    /// Its git commit, when it is a git work tree (recorded in the manifest).
    pub git: Option<manifest::GitInfo>,
    pub files: Vec<SourceFile>,
}

fn chunk_all(cfg: &Config, enc: &dyn Encoders, repo: &str, files: &[&SourceFile]) -> Vec<Chunk> {
    let opts = chunk_options(cfg);
    let mut chunks: Vec<Chunk> =
        files.par_iter().flat_map_iter(|f| enc.chunk(repo, &f.path, f.language, &f.text, opts)).collect();
    chunks.sort_by_key(|c| c.chunk_id);
    chunks.dedup_by_key(|c| c.chunk_id);
    chunks
}

async fn embed_chunks(
    embedder: &dyn Encoders,
    cfg: &Config,
    chunks: &[&Chunk],
    quiet: bool,
) -> anyhow::Result<Vec<f32>> {
    let mut pb = Progress::new(chunks.len() as u64, "embedding", quiet);
    let mut out = Vec::new();
    // Large steps let the embedder sort by length across many texts (less padding).
    let step = (cfg.embed.batch_size * 32).max(64);
    for part in chunks.chunks(step) {
        // The code of every chunk first, then the name view of those that have one.
        let mut texts: Vec<String> = part.iter().map(|c| c.embedding_text()).collect();
        let named: Vec<bool> = part
            .iter()
            .map(|c| match c.name_text().filter(|_| cfg.embed.name_view) {
                Some(t) => {
                    texts.push(t);
                    true
                }
                None => false,
            })
            .collect();
        let vectors = embedder.embed(texts).await?;
        let (code, mut names) = (&vectors[..part.len()], vectors[part.len()..].iter());
        for (v, has_name) in code.iter().zip(named) {
            match has_name {
                true => {
                    out.extend(codeintel_core::combine_views(&[v, names.next().expect("one vector per name view")]))
                }
                false => out.extend_from_slice(v),
            }
        }
        pb.inc(part.len() as u64);
    }
    pb.finish();
    Ok(out)
}

/// Texts embedded per chunk (recorded in the manifest as `embed_views`).
fn embed_views(cfg: &Config) -> u32 {
    1 + u32::from(cfg.embed.name_view)
}

fn meta(c: &Chunk) -> ChunkMeta {
    ChunkMeta { id: c.chunk_id, path: c.path.clone(), language: c.language.clone() }
}

pub fn chunk_options(cfg: &Config) -> ChunkOptions {
    ChunkOptions { max_chunk_lines: cfg.index.max_chunk_lines, window_lines: cfg.index.window_lines }
}

/// The settings a run under `cfg` builds with, for vectors of `contract`.
pub fn settings(cfg: &Config, contract: EmbeddingContract) -> BuildSettings {
    BuildSettings {
        embedding: contract,
        embed_text_format: EMBED_TEXT_FORMAT,
        embed_max_tokens: cfg.embed.max_tokens as u32,
        embed_views: embed_views(cfg),
        lexical_format: lexical::LEXICAL_FORMAT,
        chunking: chunk_options(cfg).key(),
        sparse_model: sparse_key(cfg),
    }
}

/// What sparse documents are encoded with (`sparse.*` and the text format), recorded in the
/// manifest; empty when sparse indexing is off.
pub fn sparse_key(cfg: &Config) -> String {
    let s = &cfg.sparse;
    if s.enabled {
        // The encoded text is the embedding text, so its format is part of the key.
        format!("{}/{}/{}/t{EMBED_TEXT_FORMAT}", s.model_id, s.max_tokens, s.doc_max_terms)
    } else {
        String::new()
    }
}

/// SPLADE documents of `chunks`, encoded from the same contextual text as the dense vectors.
async fn encode_sparse(
    encoder: &Arc<dyn SparseEncoder>,
    cfg: &Config,
    chunks: &[&Chunk],
    quiet: bool,
) -> anyhow::Result<Vec<SparseDoc>> {
    let mut pb = Progress::new(chunks.len() as u64, "sparse", quiet);
    let mut out = Vec::with_capacity(chunks.len());
    let step = (cfg.sparse.batch_size * 32).max(64);
    for part in chunks.chunks(step) {
        let texts: Vec<String> = part.iter().map(|c| c.embedding_text()).collect();
        let (e, max) = (encoder.clone(), cfg.sparse.doc_max_terms);
        let terms = tokio::task::spawn_blocking(move || e.encode(&texts, max)).await??;
        out.extend(part.iter().zip(terms).map(|(c, terms)| SparseDoc {
            chunk_id: c.chunk_id,
            path: c.path.clone(),
            language: c.language.clone(),
            terms,
        }));
        pb.inc(part.len() as u64);
    }
    pb.finish();
    Ok(out)
}

fn write_sparse(repo_dir: &Path, vname: &str, docs: &[SparseDoc]) -> anyhow::Result<String> {
    let rel = format!("sparse/{vname}.bin");
    sparse::write_docs(&repo_dir.join(&rel), docs).map_err(|e| anyhow::anyhow!("writing {rel}: {e}"))?;
    Ok(rel)
}

/// Indexes `tree` as a new version of `repo`: incremental when the current version was built
/// with the same settings (and not `opts.full`), else a full build reusing what vectors and
/// sparse documents of the previous version are still valid; then compaction when the
/// secondary has grown past `index.compact_ratio`, and collection of old versions.
pub async fn run(
    cfg: &Config,
    tree: &Tree,
    repo: &str,
    contract: EmbeddingContract,
    enc: &dyn Encoders,
    opts: &IndexOptions,
) -> anyhow::Result<IndexReport> {
    manifest::validate_repo_name(repo)?;
    let quiet = opts.quiet;
    let data_root = &cfg.data.root;
    // A new data root is private to its owner; an existing one keeps its mode (a volume's root,
    // shared by the pods of a chart through its group), and `publish` tightens the repo folders.
    manifest::create_private_dir_all(data_root)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", data_root.display()))?;
    // Taken on a blocking thread: waiting for another indexer must not stall the runtime.
    let _lock = {
        let (cfg, repo, no_wait) = (cfg.clone(), repo.to_string(), opts.no_wait);
        tokio::task::spawn_blocking(move || writer_lock(&cfg, &repo, no_wait, quiet)).await??
    };
    let files = &tree.files;
    let mut prev = manifest::load_current(data_root, repo).ok();
    // A new version shares its predecessor's files: a damaged predecessor is not built upon
    // (nor are its vectors reused), the repo is rebuilt from scratch.
    if let Some(p) = &prev {
        let dir = data_root.join(repo);
        let damaged = [manifest::Reader::Vector, manifest::Reader::Lexical, manifest::Reader::Hydrate]
            .into_iter()
            .find_map(|r| manifest::verify(&dir, p, r).err());
        if let Some(e) = damaged {
            eprintln!("version {} is damaged ({e}); rebuilding {repo} from scratch", p.version);
            prev = None;
        }
    }
    let mut report = IndexReport { files: files.len(), ..Default::default() };
    let mut steps = Steps::new(opts.fail_after_writes);
    let settings = settings(cfg, contract);
    match prev {
        Some(prev) if !opts.full && prev.settings.updatable(&settings) => {
            incremental(cfg, tree, repo, enc, prev, &mut steps, &mut report, quiet).await?;
        }
        prev => {
            if let Some(p) = &prev {
                if !opts.full && !quiet {
                    eprintln!(
                        "version {} was embedded or indexed differently; rebuilding (vectors reused where valid)",
                        p.version
                    );
                }
            }
            full(cfg, tree, repo, enc, settings, prev, &mut steps, &mut report, quiet).await?;
        }
    }
    if report.mode == Mode::UpToDate {
        return Ok(report);
    }
    let current = manifest::load_current(data_root, repo)?;
    if let Some(s) = &current.secondary {
        let primary = current.chunks.saturating_sub(s.count).max(1);
        if s.count as f64 > cfg.index.compact_ratio * primary as f64 && s.count > cfg.index.compact_min_vectors {
            if !quiet {
                eprintln!(
                    "secondary holds {} vectors (> {:.0}% of {primary}); compacting",
                    s.count,
                    cfg.index.compact_ratio * 100.0
                );
            }
            report.compacted = Some(compact_held(cfg, repo, quiet, None)?.version);
        }
    }
    match manifest::collect_garbage(data_root, repo, cfg.index.keep_versions, cfg.index.gc_grace_ms) {
        Ok(gone) if !gone.is_empty() && !quiet => eprintln!("removed old versions {gone:?}"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "old versions could not be removed"),
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn full(
    cfg: &Config,
    tree: &Tree,
    repo: &str,
    embedder: &dyn Encoders,
    settings: BuildSettings,
    prev: Option<Manifest>,
    steps: &mut Steps,
    report: &mut IndexReport,
    quiet: bool,
) -> anyhow::Result<()> {
    let data_root = &cfg.data.root;
    let repo_dir = manifest::repo_dir(data_root, repo)?;
    let files = &tree.files;
    let t = Instant::now();
    let chunks = chunk_all(cfg, embedder, repo, &files.iter().collect::<Vec<_>>());
    report.chunk_time = t.elapsed();

    // Chunks that a compatible previous version already embedded keep their vectors.
    let t = Instant::now();
    // chunk id -> row of `prev_vectors`: no per-vector copies of the previous version.
    let mut reused: HashMap<u64, usize> = HashMap::new();
    let mut prev_vectors: Vec<f32> = Vec::new();
    let dim = settings.embedding.dim as usize;
    if let Some(prev) = prev.as_ref().filter(|p| p.settings.vectors_compatible(&settings)) {
        match vector::live_vectors(&repo_dir, prev) {
            Ok((metas, vs)) => {
                let want: HashSet<u64> = chunks.iter().map(|c| c.chunk_id).collect();
                reused =
                    metas.iter().enumerate().filter(|(_, m)| want.contains(&m.id)).map(|(r, m)| (m.id, r)).collect();
                prev_vectors = vs;
            }
            Err(e) => tracing::warn!(error = %e, "cannot reuse vectors of the previous version"),
        }
    }
    let todo: Vec<&Chunk> = chunks.iter().filter(|c| !reused.contains_key(&c.chunk_id)).collect();
    if !quiet {
        eprintln!(
            "chunked {} files into {} chunks in {:.1}s; {} to embed, {} reused",
            files.len(),
            chunks.len(),
            report.chunk_time.as_secs_f64(),
            todo.len(),
            reused.len()
        );
    }
    let fresh = embed_chunks(embedder, cfg, &todo, quiet).await?;
    let mut fresh = fresh.chunks_exact(dim);
    let mut vectors = Vec::with_capacity(chunks.len() * dim);
    for c in &chunks {
        match reused.get(&c.chunk_id) {
            Some(&r) => vectors.extend_from_slice(&prev_vectors[r * dim..(r + 1) * dim]),
            None => vectors.extend_from_slice(fresh.next().expect("one vector per embedded chunk")),
        }
    }
    drop(prev_vectors);
    let ts = Instant::now();
    let sparse_docs = match embedder.sparse()? {
        Some(enc) => {
            let mut old: HashMap<u64, SparseDoc> = HashMap::new();
            if let Some(p) =
                prev.as_ref().filter(|p| !p.sparse.is_empty() && p.settings.sparse_model == sparse_key(cfg))
            {
                match manifest::tombstones(&repo_dir, p)
                    .map_err(anyhow::Error::from)
                    .and_then(|dead| Ok(sparse::live_docs(&repo_dir, &p.sparse, &dead)?))
                {
                    Ok(docs) => old = docs.into_iter().map(|d| (d.chunk_id, d)).collect(),
                    Err(e) => tracing::warn!(error = %e, "cannot reuse sparse documents of the previous version"),
                }
            }
            let todo: Vec<&Chunk> = chunks.iter().filter(|c| !old.contains_key(&c.chunk_id)).collect();
            let mut fresh = encode_sparse(&enc, cfg, &todo, quiet).await?.into_iter();
            Some(
                chunks
                    .iter()
                    .map(|c| old.remove(&c.chunk_id).unwrap_or_else(|| fresh.next().expect("one per encoded chunk")))
                    .collect::<Vec<_>>(),
            )
        }
        None => None,
    };
    report.sparse_time = ts.elapsed();
    report.embed_time = t.elapsed();
    report.embedded = todo.len();

    let t = Instant::now();
    let version = manifest::next_version(data_root, repo)?;
    let vname = manifest::version_name(version);
    steps.check("the segment")?;
    let segment = segment::write_segment(&repo_dir, &vname, &chunks)?;
    steps.wrote();
    steps.check("the primary vector index")?;
    let metas: Vec<ChunkMeta> = chunks.iter().map(meta).collect();
    let kind = IndexKind::choose(chunks.len(), settings.embedding.dim, &cfg.vector);
    let primary = vector::write_artifact(&repo_dir, &vname, settings.embedding.dim, &vectors, &metas, kind)?;
    steps.wrote();
    steps.check("the lexical index")?;
    let tantivy_dir = lexical::write_index(&repo_dir, &vname, &chunks)?;
    steps.wrote();
    let mut sparse_file = None;
    if let Some(docs) = &sparse_docs {
        steps.check("the sparse documents")?;
        sparse_file = Some(write_sparse(&repo_dir, &vname, docs)?);
        steps.wrote();
    }
    steps.check("the manifest")?;
    let m = Manifest {
        git: tree.git.clone(),
        ..Manifest::new(
            repo,
            version,
            tree.source.clone(),
            settings,
            FirstArtifacts { segments: vec![segment], primary, tantivy_dir, sparse: sparse_file },
            files.iter().map(|f| (f.path.clone(), f.hash.clone())).collect(),
        )
    };
    let mpath = manifest::publish(data_root, &m)?;
    report.write_time = t.elapsed();
    report.version = version;
    report.mode = Mode::Full;
    report.chunks = chunks.len();
    report.changed_files = files.len();
    if !quiet {
        eprintln!("published {repo} {vname} ({} chunks, primary {kind:?}): {}", chunks.len(), mpath.display());
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn incremental(
    cfg: &Config,
    tree: &Tree,
    repo: &str,
    embedder: &dyn Encoders,
    prev: Manifest,
    steps: &mut Steps,
    report: &mut IndexReport,
    quiet: bool,
) -> anyhow::Result<()> {
    let data_root = &cfg.data.root;
    let repo_dir = manifest::repo_dir(data_root, repo)?;
    let files = &tree.files;
    let t = Instant::now();
    let changed: Vec<&SourceFile> = files.iter().filter(|f| prev.file_hashes.get(&f.path) != Some(&f.hash)).collect();
    let present: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let deleted: Vec<&String> = prev.file_hashes.keys().filter(|p| !present.contains(p.as_str())).collect();
    report.changed_files = changed.len();
    report.deleted_files = deleted.len();
    report.version = prev.version;
    report.chunks = prev.chunks as usize;
    if changed.is_empty() && deleted.is_empty() {
        report.mode = Mode::UpToDate;
        report.chunk_time = t.elapsed();
        // The same content at another commit (or no longer dirty): a version that records the
        // commit and shares every artifact of the previous one, so citations name the commit
        // the files are at now.
        let at = |g: &Option<manifest::GitInfo>| g.as_ref().map(|g| (g.commit.clone(), g.dirty));
        if tree.git.is_some() && at(&tree.git) != at(&prev.git) {
            steps.check("the manifest")?;
            let version = manifest::next_version(data_root, repo)?;
            let m = Manifest {
                version,
                created_unix_ms: manifest::now_unix_ms(),
                source: tree.source.clone(),
                git: tree.git.clone(),
                ..prev
            };
            let mpath = manifest::publish(data_root, &m)?;
            report.version = version;
            report.recorded_commit = true;
            if !quiet {
                eprintln!(
                    "published {repo} {}: no file changed, commit recorded: {}",
                    manifest::version_name(version),
                    mpath.display()
                );
            }
        }
        return Ok(());
    }
    let new_chunks = chunk_all(cfg, embedder, repo, &changed);

    // What the touched files held before: the live chunks of the previous version there.
    let dim = prev.embedding().dim as usize;
    let live_metas = vector::live_metas(&repo_dir, &prev)?;
    let touched: HashSet<&str> =
        changed.iter().map(|f| f.path.as_str()).chain(deleted.iter().map(|p| p.as_str())).collect();
    let old: HashSet<u64> = live_metas.iter().filter(|m| touched.contains(m.path.as_str())).map(|m| m.id).collect();
    let new_ids: HashSet<u64> = new_chunks.iter().map(|c| c.chunk_id).collect();
    let dead: Vec<u64> = old.iter().copied().filter(|id| !new_ids.contains(id)).collect();
    let added: Vec<&Chunk> = new_chunks.iter().filter(|c| !old.contains(&c.chunk_id)).collect();
    report.chunk_time = t.elapsed();

    let t = Instant::now();
    let fresh = embed_chunks(embedder, cfg, &added, quiet).await?;
    let ts = Instant::now();
    let sparse_added = match added.is_empty() {
        false => match embedder.sparse()? {
            Some(enc) => Some(encode_sparse(&enc, cfg, &added, quiet).await?),
            None => None,
        },
        true => None,
    };
    report.sparse_time = ts.elapsed();
    report.embed_time = t.elapsed();
    report.embedded = added.len();
    report.removed = dead.len();

    let t = Instant::now();
    let version = manifest::next_version(data_root, repo)?;
    let vname = manifest::version_name(version);
    let dead_set: HashSet<u64> = dead.iter().copied().collect();
    let added_ids: HashSet<u64> = added.iter().map(|c| c.chunk_id).collect();
    let mut segments = prev.segments.clone();
    if !added.is_empty() {
        steps.check("the segment")?;
        let owned: Vec<Chunk> = added.iter().map(|c| (*c).clone()).collect();
        segments.push(segment::write_segment(&repo_dir, &vname, &owned)?);
        steps.wrote();
    }
    // The secondary: the previous one's live vectors plus the new ones, rewritten as one Flat
    // index (small by construction: compaction empties it).
    let prev_tomb = manifest::tombstones(&repo_dir, &prev)?;
    let (prev_sec_metas, prev_sec_vecs) = vector::secondary_vectors(&repo_dir, &prev)?;
    let mut sec_metas: Vec<ChunkMeta> = Vec::new();
    let mut sec_vecs: Vec<f32> = Vec::new();
    for (m, v) in prev_sec_metas.into_iter().zip(prev_sec_vecs.chunks_exact(dim)) {
        if !dead_set.contains(&m.id) && !added_ids.contains(&m.id) && !prev_tomb.contains(&m.id) {
            sec_metas.push(m);
            sec_vecs.extend_from_slice(v);
        }
    }
    sec_metas.extend(added.iter().map(|c| meta(c)));
    sec_vecs.extend_from_slice(&fresh);
    let secondary = if sec_metas.is_empty() {
        None
    } else {
        steps.check("the secondary vector index")?;
        let f = vector::write_artifact(
            &repo_dir,
            &format!("{vname}.secondary"),
            prev.embedding().dim,
            &sec_vecs,
            &sec_metas,
            IndexKind::Flat,
        )?;
        steps.wrote();
        Some(f)
    };
    // Tombstones: every id still physically present in the primary or a segment but not live.
    let mut tomb = prev_tomb;
    tomb.extend(dead.iter().copied());
    tomb.retain(|id| !added_ids.contains(id));
    let tombstones = if tomb.is_empty() {
        None
    } else {
        steps.check("the tombstones")?;
        let rel = format!("tombstones/{vname}.ids");
        manifest::write_ids(&repo_dir.join(&rel), &tomb.iter().copied().collect::<Vec<_>>())?;
        steps.wrote();
        Some(rel)
    };
    steps.check("the lexical index")?;
    let owned: Vec<Chunk> = added.iter().map(|c| (*c).clone()).collect();
    let tantivy_dir = lexical::update_index(&repo_dir, &prev.tantivy_dir, &vname, &dead, &owned)?;
    steps.wrote();
    // Sparse documents follow the segments: the new ones in a file of their own, the dead ones
    // dropped through the tombstones.
    let mut sparse_files = prev.sparse.clone();
    if let Some(docs) = &sparse_added {
        steps.check("the sparse documents")?;
        sparse_files.push(write_sparse(&repo_dir, &vname, docs)?);
        steps.wrote();
    }
    steps.check("the manifest")?;
    let mut file_hashes: BTreeMap<String, String> = prev.file_hashes.clone();
    for p in &deleted {
        file_hashes.remove(*p);
    }
    for f in &changed {
        file_hashes.insert(f.path.clone(), f.hash.clone());
    }
    let chunks = (live_metas.len() - dead.len() + added.len()) as u64;
    let m = Manifest {
        version,
        created_unix_ms: manifest::now_unix_ms(),
        source: tree.source.clone(),
        git: tree.git.clone(),
        segments,
        secondary,
        tombstoned: tomb.len() as u64,
        tombstones,
        tantivy_dir,
        sparse: sparse_files,
        chunks,
        files: files.len() as u64,
        file_hashes,
        ..prev
    };
    let mpath = manifest::publish(data_root, &m)?;
    report.write_time = t.elapsed();
    report.version = version;
    report.mode = Mode::Incremental;
    report.chunks = chunks as usize;
    if !quiet {
        eprintln!(
            "published {repo} {vname}: {} files changed, {} deleted; {} chunks added, {} removed: {}",
            report.changed_files,
            report.deleted_files,
            added.len(),
            dead.len(),
            mpath.display()
        );
    }
    Ok(())
}

/// Folds the secondary and the tombstones of `repo`'s current version into a new primary
/// (retrained from the exact vectors), one segment and a merged tantivy index, published as a
/// new version. Serving processes keep the old version until they have loaded the new one.
/// `fail_after` injects a failure after that many artifact writes (tests). Waits for the
/// repo's writer lock if an indexer holds it.
pub fn compact(cfg: &Config, repo: &str, quiet: bool, fail_after: Option<usize>) -> anyhow::Result<Manifest> {
    let _lock = writer_lock(cfg, repo, false, quiet)?;
    compact_held(cfg, repo, quiet, fail_after)
}

/// The repo's writer lock (see [`crate::lock`]), waiting for it unless `no_wait`.
fn writer_lock(cfg: &Config, repo: &str, no_wait: bool, quiet: bool) -> anyhow::Result<RepoLock> {
    let wait = if no_wait { Wait::Refuse } else { Wait::Block };
    Ok(RepoLock::acquire(&cfg.data.root, repo, wait, |holder| {
        if !quiet {
            eprintln!("repo {repo} is being written by another indexer ({holder}); waiting for it to finish");
        }
        tracing::info!(repo, holder, "waiting for the repo's writer lock");
    })?)
}

/// [`compact`] with the writer lock already held.
fn compact_held(cfg: &Config, repo: &str, quiet: bool, fail_after: Option<usize>) -> anyhow::Result<Manifest> {
    let data_root = &cfg.data.root;
    let repo_dir = manifest::repo_dir(data_root, repo)?;
    let prev = manifest::load_current(data_root, repo)?;
    let t = Instant::now();
    let mut steps = Steps::new(fail_after);
    let (metas, vectors) = vector::live_vectors(&repo_dir, &prev)?;
    let version = manifest::next_version(data_root, repo)?;
    let vname = manifest::version_name(version);
    let dead = manifest::tombstones(&repo_dir, &prev)?;
    steps.check("the segment")?;
    let (segment, rows) = segment::compact_segments(&repo_dir, &prev.segments, &dead, &vname)?;
    steps.wrote();
    anyhow::ensure!(
        rows as usize == metas.len(),
        "compaction found {rows} live chunk rows but {} live vectors; the version is inconsistent",
        metas.len()
    );
    steps.check("the primary vector index")?;
    let dim = prev.embedding().dim;
    let kind = IndexKind::choose(metas.len(), dim, &cfg.vector);
    let primary = vector::write_artifact(&repo_dir, &vname, dim, &vectors, &metas, kind)?;
    steps.wrote();
    steps.check("the lexical index")?;
    let tantivy_dir = lexical::compact_index(&repo_dir, &prev.tantivy_dir, &vname)?;
    steps.wrote();
    let mut sparse_files = Vec::new();
    if !prev.sparse.is_empty() {
        steps.check("the sparse documents")?;
        let docs = sparse::live_docs(&repo_dir, &prev.sparse, &dead)?;
        anyhow::ensure!(
            docs.len() == metas.len(),
            "compaction found {} live sparse documents but {} live vectors; the version is inconsistent",
            docs.len(),
            metas.len()
        );
        sparse_files.push(write_sparse(&repo_dir, &vname, &docs)?);
        steps.wrote();
    }
    steps.check("the manifest")?;
    let m = Manifest {
        version,
        created_unix_ms: manifest::now_unix_ms(),
        segments: vec![segment],
        faiss_index: primary.faiss_index,
        chunk_meta: primary.chunk_meta,
        primary_vectors: Some(primary.vectors),
        primary_kind: primary.kind,
        secondary: None,
        tombstones: None,
        tombstoned: 0,
        tantivy_dir,
        sparse: sparse_files,
        chunks: metas.len() as u64,
        ..prev
    };
    manifest::publish(data_root, &m)?;
    if !quiet {
        eprintln!(
            "compacted {repo} into {vname}: {} live chunks, primary {kind:?}, in {:.1}s",
            metas.len(),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progress_line_says_how_far_how_fast_and_how_long_to_go() {
        assert_eq!(progress_line("embedding", 300, 1000, 10.0), "embedding: 300/1000 (30%) in 10s, 30.0/s, eta 23s");
        assert_eq!(progress_line("sparse", 0, 0, 0.0), "sparse: 0/0 (0%) in 0s, 0.0/s, eta 0s");
    }

    #[test]
    fn quiet_progress_prints_no_lines() {
        let mut p = Progress::new(10, "embedding", true);
        assert!(p.lines.is_none());
        p.inc(5);
        assert_eq!(p.pos, 5);
    }
}
