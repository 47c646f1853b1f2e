//! The vector artifacts of a version: a FAISS index (`IDMap2`, so searches return chunk ids)
//! with two sidecars, the chunk id, path and language of every vector (for scope filters) and
//! the raw f32 vectors (so compaction retrains from exact vectors, not quantized ones). A
//! version has a *primary* (exact `Flat` below `vector.flat_threshold` vectors, trained IVF
//! above) and optionally a *secondary* `Flat` index of what incremental runs added. Written by
//! the indexer, read by vector-svc.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use codeintel_config::VectorConfig;
use faiss::{Idx, Index, MetricType};
use serde::{Deserialize, Serialize};

use crate::error::IndexError;
use crate::manifest::{Manifest, VectorFiles};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChunkMeta {
    pub id: u64,
    pub path: String,
    pub language: String,
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> IndexError {
    move |e| IndexError::Io(format!("{what}: {e}"))
}

/// The structure of one FAISS index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    Flat,
    IvfSq8 { nlist: usize },
    IvfPq { nlist: usize, m: usize },
}

impl IndexKind {
    /// Exact below the threshold; above it, IVF with about sqrt(n) lists (a power of two, at
    /// least 39 training vectors per list) and the configured codes.
    pub fn choose(n: usize, dim: u32, cfg: &VectorConfig) -> Self {
        if n < cfg.flat_threshold {
            return IndexKind::Flat;
        }
        let nlist = if cfg.nlist > 0 {
            cfg.nlist
        } else {
            ((n as f64).sqrt() as usize).next_power_of_two().min((n / 39).max(1)).max(1)
        };
        if cfg.quantizer == "pq" && dim.is_multiple_of(8) {
            IndexKind::IvfPq { nlist, m: dim as usize / 8 }
        } else {
            IndexKind::IvfSq8 { nlist }
        }
    }

    pub fn name(&self) -> String {
        match self {
            IndexKind::Flat => "flat".into(),
            IndexKind::IvfSq8 { nlist } => format!("ivf{nlist}_sq8"),
            IndexKind::IvfPq { nlist, m } => format!("ivf{nlist}_pq{m}"),
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        if name == "flat" || name.is_empty() {
            return Some(IndexKind::Flat);
        }
        let rest = name.strip_prefix("ivf")?;
        let (nlist, codes) = rest.split_once('_')?;
        let nlist = nlist.parse().ok()?;
        if codes == "sq8" {
            return Some(IndexKind::IvfSq8 { nlist });
        }
        Some(IndexKind::IvfPq { nlist, m: codes.strip_prefix("pq")?.parse().ok()? })
    }

    /// The FAISS index factory string of this kind.
    pub fn factory(&self) -> String {
        match self {
            IndexKind::Flat => "IDMap2,Flat".into(),
            IndexKind::IvfSq8 { nlist } => format!("IDMap2,IVF{nlist},SQ8"),
            // `np`: no polysemous training (slow, and only useful for Hamming pre-filtering).
            IndexKind::IvfPq { nlist, m } => format!("IDMap2,IVF{nlist},PQ{m}np"),
        }
    }

    pub fn nlist(&self) -> usize {
        match self {
            IndexKind::Flat => 0,
            IndexKind::IvfSq8 { nlist } | IndexKind::IvfPq { nlist, .. } => *nlist,
        }
    }

    /// Lists probed per query: the configured value, else nlist/8 (at least 8).
    pub fn nprobe(&self, cfg: &VectorConfig) -> usize {
        let nlist = self.nlist();
        if nlist == 0 {
            return 1;
        }
        let p = if cfg.nprobe > 0 { cfg.nprobe } else { (nlist / 8).max(8) };
        p.min(nlist)
    }
}

/// Builds (and for IVF, trains) an index over row-major `vectors` with chunk ids `ids`.
pub fn build_index(
    dim: u32,
    vectors: &[f32],
    ids: &[u64],
    kind: IndexKind,
) -> Result<faiss::index::IndexImpl, IndexError> {
    let d = dim as usize;
    if vectors.len() != ids.len() * d {
        return Err(IndexError::InvalidArgument(format!(
            "{} floats for {} vectors of dimension {dim}",
            vectors.len(),
            ids.len()
        )));
    }
    let mut index = faiss::index_factory(dim, kind.factory(), MetricType::InnerProduct)?;
    if kind != IndexKind::Flat {
        let n = ids.len();
        if n < kind.nlist() {
            return Err(IndexError::InvalidArgument(format!("{n} vectors cannot train {} lists", kind.nlist())));
        }
        // Train on an evenly strided sample: 64 per list, and enough for 256 PQ centroids.
        let want = (64 * kind.nlist()).max(256 * 40).min(n);
        let step = n as f64 / want as f64;
        let mut sample = Vec::with_capacity(want * d);
        for i in 0..want {
            let r = ((i as f64) * step) as usize;
            sample.extend_from_slice(&vectors[r * d..(r + 1) * d]);
        }
        index.train(&sample)?;
    }
    for (vs, is) in vectors.chunks(65_536 * d).zip(ids.chunks(65_536)) {
        let is: Vec<Idx> = is.iter().map(|&i| Idx::new(i)).collect();
        index.add_with_ids(vs, &is)?;
    }
    Ok(index)
}

/// Writes `vector/<stem>.faiss`, `.meta.json` and `.f32` (all fsynced) under `repo_dir`.
pub fn write_artifact(
    repo_dir: &Path,
    stem: &str,
    dim: u32,
    vectors: &[f32],
    metas: &[ChunkMeta],
    kind: IndexKind,
) -> Result<VectorFiles, IndexError> {
    let ids: Vec<u64> = metas.iter().map(|m| m.id).collect();
    let index = build_index(dim, vectors, &ids, kind)?;
    let dir = repo_dir.join("vector");
    crate::manifest::create_private_dir_all(&dir).map_err(io(dir.display()))?;
    let files = VectorFiles {
        faiss_index: format!("vector/{stem}.faiss"),
        chunk_meta: format!("vector/{stem}.meta.json"),
        vectors: format!("vector/{stem}.f32"),
        kind: kind.name(),
        count: metas.len() as u64,
    };
    let faiss_path = repo_dir.join(&files.faiss_index);
    faiss::write_index(&index, faiss_path.to_str().ok_or_else(|| IndexError::Io("non-utf8 path".into()))?)?;
    let meta = serde_json::to_vec(metas).map_err(|e| IndexError::Io(e.to_string()))?;
    crate::manifest::create_private_file(&repo_dir.join(&files.chunk_meta))
        .and_then(|mut f| f.write_all(&meta))
        .map_err(io(&files.chunk_meta))?;
    {
        let p = repo_dir.join(&files.vectors);
        let mut f = std::io::BufWriter::new(crate::manifest::create_private_file(&p).map_err(io(&files.vectors))?);
        for x in vectors {
            f.write_all(&x.to_le_bytes()).map_err(io(&files.vectors))?;
        }
        f.flush().map_err(io(&files.vectors))?;
    }
    for rel in [&files.faiss_index, &files.chunk_meta, &files.vectors] {
        crate::manifest::fsync_file(&repo_dir.join(rel))?;
    }
    Ok(files)
}

pub fn read_meta(repo_dir: &Path, rel: &str) -> Result<Vec<ChunkMeta>, IndexError> {
    let text = std::fs::read(repo_dir.join(rel)).map_err(io(rel))?;
    serde_json::from_slice(&text).map_err(|e| IndexError::Io(format!("{rel}: {e}")))
}

pub fn read_f32(repo_dir: &Path, rel: &str, expect: usize) -> Result<Vec<f32>, IndexError> {
    let bytes = std::fs::read(repo_dir.join(rel)).map_err(io(rel))?;
    if bytes.len() != expect * 4 {
        return Err(IndexError::Io(format!("{rel}: {} bytes, expected {}", bytes.len(), expect * 4)));
    }
    Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect())
}

/// Vectors of one artifact in `meta` order. Primaries written before raw sidecars existed are
/// exact (`Flat`) and are read back from FAISS itself.
fn read_artifact_vectors(
    repo_dir: &Path,
    faiss_rel: &str,
    meta_rel: &str,
    vectors_rel: Option<&str>,
    dim: usize,
) -> Result<(Vec<ChunkMeta>, Vec<f32>), IndexError> {
    let metas = read_meta(repo_dir, meta_rel)?;
    let vectors = match vectors_rel {
        Some(rel) => read_f32(repo_dir, rel, metas.len() * dim)?,
        None => {
            let ids: Vec<u64> = metas.iter().map(|m| m.id).collect();
            let mut by_id = read_vectors(repo_dir, faiss_rel, &ids)?;
            let mut out = Vec::with_capacity(ids.len() * dim);
            for id in &ids {
                let v = by_id.remove(id).ok_or_else(|| IndexError::Io(format!("{faiss_rel}: chunk {id} missing")))?;
                out.extend(v);
            }
            out
        }
    };
    Ok((metas, vectors))
}

/// Every live vector of a version (primary and secondary, tombstones dropped, each chunk id
/// once), in a stable order: what compaction retrains on and incremental indexing carries.
pub fn live_vectors(repo_dir: &Path, m: &Manifest) -> Result<(Vec<ChunkMeta>, Vec<f32>), IndexError> {
    let dim = m.embedding().dim as usize;
    let dead = crate::manifest::tombstones(repo_dir, m)?;
    let mut parts =
        vec![read_artifact_vectors(repo_dir, &m.faiss_index, &m.chunk_meta, m.primary_vectors.as_deref(), dim)?];
    if let Some(s) = &m.secondary {
        parts.push(read_artifact_vectors(repo_dir, &s.faiss_index, &s.chunk_meta, Some(&s.vectors), dim)?);
    }
    let mut seen = HashSet::new();
    let (mut metas, mut vectors) = (Vec::new(), Vec::new());
    for (ms, vs) in parts {
        for (meta, v) in ms.into_iter().zip(vs.chunks_exact(dim)) {
            if !dead.contains(&meta.id) && seen.insert(meta.id) {
                metas.push(meta);
                vectors.extend_from_slice(v);
            }
        }
    }
    Ok((metas, vectors))
}

/// Chunk id, path and language of every live chunk of a version (no vectors read).
pub fn live_metas(repo_dir: &Path, m: &Manifest) -> Result<Vec<ChunkMeta>, IndexError> {
    let dead = crate::manifest::tombstones(repo_dir, m)?;
    let mut all = read_meta(repo_dir, &m.chunk_meta)?;
    if let Some(s) = &m.secondary {
        all.extend(read_meta(repo_dir, &s.chunk_meta)?);
    }
    let mut seen = HashSet::new();
    all.retain(|c| !dead.contains(&c.id) && seen.insert(c.id));
    Ok(all)
}

/// The secondary's chunks and exact vectors (empty when the version has none).
pub fn secondary_vectors(repo_dir: &Path, m: &Manifest) -> Result<(Vec<ChunkMeta>, Vec<f32>), IndexError> {
    match &m.secondary {
        Some(s) => {
            read_artifact_vectors(repo_dir, &s.faiss_index, &s.chunk_meta, Some(&s.vectors), m.embedding().dim as usize)
        }
        None => Ok((Vec::new(), Vec::new())),
    }
}

/// Reads back the vectors of `ids` from an exact index (absent ids are skipped).
pub fn read_vectors(repo_dir: &Path, faiss_rel: &str, ids: &[u64]) -> Result<HashMap<u64, Vec<f32>>, IndexError> {
    let p = repo_dir.join(faiss_rel);
    let index = faiss::read_index(p.to_str().ok_or_else(|| IndexError::Io("non-utf8 path".into()))?)?;
    let d = index.d() as usize;
    let mut out = HashMap::with_capacity(ids.len());
    for &id in ids {
        let mut v = vec![0f32; d];
        if index.reconstruct(Idx::new(id), &mut v).is_ok() {
            out.insert(id, v);
        }
    }
    Ok(out)
}
