//! Search over the vector artifacts of a version (their format is `codeintel_index::vector`). A repo version has a *primary* index (exact `Flat`
//! below `vector.flat_threshold` vectors, a trained IVF index above it) and optionally a
//! *secondary* `Flat` index holding what incremental indexing added since; both are wrapped in
//! `IDMap2`, so FAISS returns chunk ids directly. Each index has two sidecars: the chunk id,
//! path and language of every vector (for scope filters), and the raw f32 vectors (so that
//! compaction retrains from exact vectors instead of quantized ones). Chunk ids listed in the
//! version's tombstones are excluded inside FAISS by an id selector.
//!
//! With the `gpu` feature and a usable GPU, a version's live vectors are also held on the GPU
//! ([`RepoVectors::load_on_gpu`]) and searched there exactly; the FAISS indexes stay loaded for
//! what the GPU does not take (searches deeper than [`crate::gpu::MAX_K`]).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use codeintel_config::VectorConfig;
use codeintel_index::manifest::Manifest;
use codeintel_index::vector::read_meta;
pub use codeintel_index::vector::{ChunkMeta, IndexKind};
use faiss::Index;

use crate::error::VectorError;
use crate::faiss_ext::{self, Exclusion};

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> VectorError {
    move |e| VectorError::Io(format!("{what}: {e}"))
}

/// Exact vectors of a quantized index, read on demand from its raw sidecar (the page cache
/// keeps hot rows in memory; the process does not hold them).
struct RawRows {
    file: std::fs::File,
    dim: usize,
    row_of: HashMap<u64, u32>,
    /// Candidates fetched per wanted result before exact re-scoring.
    factor: usize,
}

impl RawRows {
    fn score(&self, query: &[f32], id: u64, buf: &mut [u8]) -> Result<Option<f32>, VectorError> {
        use std::os::unix::fs::FileExt;
        let Some(&row) = self.row_of.get(&id) else { return Ok(None) };
        self.file
            .read_exact_at(buf, row as u64 * (self.dim as u64 * 4))
            .map_err(|e| VectorError::Io(format!("raw vectors: {e}")))?;
        let dot =
            buf.chunks_exact(4).zip(query).map(|(b, q)| f32::from_le_bytes(b.try_into().expect("4 bytes")) * q).sum();
        Ok(Some(dot))
    }
}

/// One loaded FAISS index and where each of its chunks lives.
pub struct Part {
    index: faiss::index::IndexImpl,
    pub kind: IndexKind,
    nprobe: usize,
    /// chunk id -> index into `files`.
    meta: HashMap<u64, u32>,
    files: Vec<(String, String)>,
    raw: Option<RawRows>,
}

impl Part {
    pub fn new(index: faiss::index::IndexImpl, kind: IndexKind, nprobe: usize, metas: Vec<ChunkMeta>) -> Self {
        let mut files: Vec<(String, String)> = Vec::new();
        let mut file_ix: HashMap<(String, String), u32> = HashMap::new();
        let mut meta = HashMap::with_capacity(metas.len());
        for m in metas {
            let key = (m.path, m.language);
            let ix = *file_ix.entry(key.clone()).or_insert_with(|| {
                files.push(key);
                (files.len() - 1) as u32
            });
            meta.insert(m.id, ix);
        }
        Self { index, kind, nprobe, meta, files, raw: None }
    }

    /// Re-score the `refine` x depth best candidates of this (quantized) index exactly, from
    /// the raw vectors in `vectors_path` (rows in `ids` order).
    pub fn with_refinement(mut self, vectors_path: &Path, ids: &[u64], refine: usize) -> Result<Self, VectorError> {
        if refine <= 1 || self.kind == IndexKind::Flat {
            return Ok(self);
        }
        let file = std::fs::File::open(vectors_path).map_err(io(vectors_path.display()))?;
        let dim = self.dim() as usize;
        let len = file.metadata().map_err(io(vectors_path.display()))?.len();
        if len != (ids.len() * dim * 4) as u64 {
            return Err(VectorError::Io(format!("{}: {len} bytes for {} vectors", vectors_path.display(), ids.len())));
        }
        let row_of = ids.iter().enumerate().map(|(r, &id)| (id, r as u32)).collect();
        self.raw = Some(RawRows { file, dim, row_of, factor: refine });
        Ok(self)
    }

    fn open(
        repo_dir: &Path,
        faiss_rel: &str,
        meta_rel: &str,
        vectors_rel: Option<&str>,
        kind: &str,
        cfg: &VectorConfig,
    ) -> Result<Self, VectorError> {
        let p = repo_dir.join(faiss_rel);
        let index = faiss::read_index(p.to_str().ok_or_else(|| VectorError::Io("non-utf8 path".into()))?)?;
        let kind = IndexKind::parse(kind).unwrap_or(IndexKind::Flat);
        let metas = read_meta(repo_dir, meta_rel)?;
        if metas.len() as u64 != index.ntotal() {
            return Err(VectorError::Io(format!(
                "{faiss_rel} holds {} vectors but {meta_rel} lists {}",
                index.ntotal(),
                metas.len()
            )));
        }
        let ids: Vec<u64> = metas.iter().map(|m| m.id).collect();
        let part = Self::new(index, kind, kind.nprobe(cfg), metas);
        match vectors_rel {
            Some(rel) => part.with_refinement(&repo_dir.join(rel), &ids, cfg.refine),
            None => Ok(part),
        }
    }

    pub fn len(&self) -> u64 {
        self.index.ntotal()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn set_nprobe(&mut self, nprobe: usize) {
        self.nprobe = nprobe.max(1);
    }

    pub fn dim(&self) -> u32 {
        self.index.d()
    }

    /// (chunk id, score) of the top `depth`, best first.
    pub fn search(
        &self,
        query: &[f32],
        depth: usize,
        exclude: Option<&Exclusion>,
    ) -> Result<Vec<(u64, f32)>, VectorError> {
        let n = self.len() as usize;
        if n == 0 || depth == 0 {
            return Ok(Vec::new());
        }
        let fetch = self.raw.as_ref().map_or(depth, |r| depth * r.factor);
        let (scores, ids) = faiss_ext::search(&self.index, query, fetch.min(n), self.nprobe, exclude)?;
        let mut hits: Vec<(u64, f32)> =
            ids.into_iter().zip(scores).filter(|(id, _)| *id >= 0).map(|(id, s)| (id as u64, s)).collect();
        if let Some(raw) = &self.raw {
            let mut buf = vec![0u8; raw.dim * 4];
            for h in hits.iter_mut() {
                if let Some(exact) = raw.score(query, h.0, &mut buf)? {
                    h.1 = exact;
                }
            }
            hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            hits.truncate(depth);
        }
        Ok(hits)
    }

    fn location(&self, id: u64) -> Option<(&str, &str)> {
        self.meta.get(&id).map(|&i| {
            let (p, l) = &self.files[i as usize];
            (p.as_str(), l.as_str())
        })
    }
}

/// A version's live vectors on the GPU, row `r` holding chunk `ids[r]`.
#[cfg(feature = "gpu")]
struct GpuCopy {
    resident: crate::gpu::Resident,
    ids: Vec<u64>,
}

/// A loaded, searchable version of one repo's vectors.
pub struct RepoVectors {
    pub repo: String,
    pub version: u64,
    pub dim: u32,
    pub primary: Part,
    pub secondary: Option<Part>,
    tombstones: HashSet<u64>,
    exclusion: Option<Exclusion>,
    #[cfg(feature = "gpu")]
    gpu: Option<GpuCopy>,
    /// Why this version is searched on the CPU although the service runs on a GPU.
    pub placement_note: Option<String>,
}

impl RepoVectors {
    pub fn open(dir: &Path, m: &Manifest, cfg: &VectorConfig) -> Result<Self, VectorError> {
        let primary =
            Part::open(dir, &m.faiss_index, &m.chunk_meta, m.primary_vectors.as_deref(), &m.primary_kind, cfg)?;
        let secondary = match &m.secondary {
            Some(s) => Some(Part::open(dir, &s.faiss_index, &s.chunk_meta, Some(&s.vectors), &s.kind, cfg)?),
            None => None,
        };
        if let Some(s) = &secondary {
            if s.dim() != primary.dim() {
                return Err(VectorError::Io(format!(
                    "dimension mismatch: primary={}, secondary={}",
                    primary.dim(),
                    s.dim()
                )));
            }
        }
        let tombstones = codeintel_index::manifest::tombstones(dir, m).map_err(|e| VectorError::Io(e.to_string()))?;
        Self::from_parts(&m.repo, m.version, primary, secondary, tombstones)
    }

    pub fn from_parts(
        repo: &str,
        version: u64,
        primary: Part,
        secondary: Option<Part>,
        tombstones: HashSet<u64>,
    ) -> Result<Self, VectorError> {
        let exclusion = if tombstones.is_empty() {
            None
        } else {
            Some(Exclusion::new(&tombstones.iter().copied().collect::<Vec<_>>())?)
        };
        Ok(Self {
            repo: repo.to_string(),
            version,
            dim: primary.dim(),
            primary,
            secondary,
            tombstones,
            exclusion,
            #[cfg(feature = "gpu")]
            gpu: None,
            placement_note: None,
        })
    }

    /// Holds this version's live vectors on `gpu` for exact search, when they take at most
    /// `fraction` of its free memory; otherwise says why not (the CPU indexes serve it).
    #[cfg(feature = "gpu")]
    pub fn load_on_gpu(
        &mut self,
        gpu: &std::sync::Arc<crate::gpu::Gpu>,
        dir: &Path,
        m: &Manifest,
        fraction: f64,
    ) -> Result<(), String> {
        let bytes = self.len() as usize * self.dim as usize * 4;
        let (free, _) = gpu.memory()?;
        if bytes as f64 > free as f64 * fraction {
            return Err(format!(
                "{}: {} vectors ({} MiB) exceed {}% of the GPU's {} MiB free (vector.gpu_memory_fraction); \
                 searched on the CPU",
                self.repo,
                self.len(),
                bytes >> 20,
                (fraction * 100.0).round(),
                free >> 20
            ));
        }
        let (metas, vectors) = codeintel_index::vector::live_vectors(dir, m).map_err(|e| e.to_string())?;
        self.put_on_gpu(gpu, metas.iter().map(|c| c.id).collect(), &vectors)
    }

    /// Holds `vectors` (row-major, chunk `ids[r]` in row `r`: this version's live vectors) on
    /// `gpu`; searches then run there.
    #[cfg(feature = "gpu")]
    pub fn put_on_gpu(
        &mut self,
        gpu: &std::sync::Arc<crate::gpu::Gpu>,
        ids: Vec<u64>,
        vectors: &[f32],
    ) -> Result<(), String> {
        let resident = crate::gpu::Resident::upload(gpu, vectors, self.dim as usize)?;
        if resident.len() != ids.len() {
            return Err(format!("{} vectors for {} chunk ids", resident.len(), ids.len()));
        }
        self.gpu = Some(GpuCopy { resident, ids });
        Ok(())
    }

    /// Whether searches run on the GPU.
    pub fn on_gpu(&self) -> bool {
        #[cfg(feature = "gpu")]
        return self.gpu.is_some();
        #[cfg(not(feature = "gpu"))]
        false
    }

    #[cfg(feature = "gpu")]
    fn location(&self, id: u64) -> Option<(&str, &str)> {
        self.primary.location(id).or_else(|| self.secondary.as_ref().and_then(|s| s.location(id)))
    }

    /// Live vectors (tombstoned ones excluded).
    pub fn len(&self) -> u64 {
        let all = self.primary.len() + self.secondary.as_ref().map_or(0, |s| s.len());
        all.saturating_sub(self.tombstones.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Top `k` (chunk id, score) for a normalised query over primary and secondary, each chunk
    /// once, tombstones excluded, keeping only chunks `keep(path, language)` accepts.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        keep: impl Fn(&str, &str) -> bool,
        filtered: bool,
    ) -> Result<Vec<(u64, f32)>, VectorError> {
        if k == 0 {
            return Ok(Vec::new());
        }
        // With path/language filters, look deeper so that k survive them.
        let depth = if filtered { (k * 20).max(200) } else { k };
        #[cfg(feature = "gpu")]
        if let Some(g) = self.gpu.as_ref().filter(|_| depth <= crate::gpu::MAX_K) {
            let found = g.resident.search_one(query, depth).map_err(VectorError::Gpu)?;
            let mut out: Vec<(u64, f32)> = found
                .into_iter()
                .map(|(row, score)| (g.ids[row as usize], score))
                .filter(|(id, _)| self.location(*id).is_some_and(|(p, l)| keep(p, l)))
                .collect();
            out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            out.truncate(k);
            return Ok(out);
        }
        let mut best: HashMap<u64, (f32, &str, &str)> = HashMap::new();
        let parts = std::iter::once((&self.primary, self.exclusion.as_ref()))
            .chain(self.secondary.iter().map(|s| (s, self.exclusion.as_ref())));
        for (part, exclude) in parts {
            for (id, score) in part.search(query, depth, exclude)? {
                if self.tombstones.contains(&id) {
                    continue;
                }
                let Some((path, lang)) = part.location(id) else { continue };
                let e = best.entry(id).or_insert((score, path, lang));
                if score > e.0 {
                    e.0 = score;
                }
            }
        }
        let mut out: Vec<(u64, f32)> =
            best.into_iter().filter(|(_, (_, p, l))| keep(p, l)).map(|(id, (s, _, _))| (id, s)).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out.truncate(k);
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
