//! `codeintel bench lifecycle`: an incremental run and a compaction over a generated tree.

use std::path::Path;
use std::time::Instant;

use codeintel_chunk::chunk_file;
use codeintel_config::Config;
use codeintel_core::chunk::{sha256_hex, Chunk, ChunkOptions};
use codeintel_index::build;
use codeintel_index::manifest::{self, FirstArtifacts, Manifest};
use serde::Serialize;
use vector_svc::store::{self, ChunkMeta, IndexKind};
use vector_svc::synthetic;

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
    let embedder =
        codeintel_models::embed::Embedder::from_config(&cfg, 0, codeintel_models::embed::Role::Documents).await?;
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
    let vectors = synthetic::clustered(all.len(), dim, (all.len() / 1000).max(16), 1.0, 42);
    let metas: Vec<ChunkMeta> =
        all.iter().map(|c| ChunkMeta { id: c.chunk_id, path: c.path.clone(), language: c.language.clone() }).collect();
    let segment = codeintel_index::segment::write_segment(&repo_dir, "v000001", &all)?;
    let kind = IndexKind::choose(all.len(), contract.dim, &cfg.vector);
    let primary = codeintel_index::vector::write_artifact(&repo_dir, "v000001", contract.dim, &vectors, &metas, kind)?;
    let tantivy_dir = codeintel_index::lexical::write_index(&repo_dir, "v000001", &all)?;
    let artifacts = FirstArtifacts { segments: vec![segment], primary: primary.clone(), tantivy_dir, sparse: None };
    let settings = build::settings(&cfg, contract);
    let m = Manifest::new(repo, 1, src.display().to_string(), settings, artifacts, hashes);
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
