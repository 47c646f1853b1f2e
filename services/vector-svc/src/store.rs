//! On-disk vector artifacts of one repo version: a FAISS `IDMap2,Flat` inner-product index whose
//! ids are chunk ids, and a side file with each chunk's path and language for scope filters.

use std::collections::HashMap;
use std::path::Path;

use faiss::{Idx, Index, MetricType};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::VectorError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChunkMeta {
    pub id: u64,
    pub path: String,
    pub language: String,
}

/// Writes `<repo_dir>/vector/<version>.faiss` and `.meta.json`; returns their repo-relative paths.
pub fn write_index(
    repo_dir: &Path,
    version: &str,
    dim: u32,
    vectors: &[Vec<f32>],
    metas: &[ChunkMeta],
) -> Result<(String, String), VectorError> {
    if vectors.len() != metas.len() {
        return Err(VectorError::InvalidArgument(format!("{} vectors for {} chunks", vectors.len(), metas.len())));
    }
    if let Some(bad) = vectors.iter().find(|v| v.len() != dim as usize) {
        return Err(VectorError::InvalidArgument(format!("vector dimension {} does not match {dim}", bad.len())));
    }
    let mut index = faiss::index_factory(dim, "IDMap2,Flat", MetricType::InnerProduct)?;
    let flat: Vec<f32> = vectors.iter().flatten().copied().collect();
    let ids: Vec<Idx> = metas.iter().map(|m| Idx::new(m.id)).collect();
    if !ids.is_empty() {
        index.add_with_ids(&flat, &ids)?;
    }
    let dir = repo_dir.join("vector");
    std::fs::create_dir_all(&dir).map_err(|e| VectorError::Io(e.to_string()))?;
    let faiss_rel = format!("vector/{version}.faiss");
    let meta_rel = format!("vector/{version}.meta.json");
    let faiss_path = repo_dir.join(&faiss_rel);
    faiss::write_index(&index, faiss_path.to_str().ok_or_else(|| VectorError::Io("non-utf8 path".into()))?)?;
    std::fs::write(repo_dir.join(&meta_rel), serde_json::to_vec(metas).map_err(|e| VectorError::Io(e.to_string()))?)
        .map_err(|e| VectorError::Io(e.to_string()))?;
    for rel in [&faiss_rel, &meta_rel] {
        codeintel_core::manifest::fsync_file(&repo_dir.join(rel)).map_err(|e| VectorError::Io(e.to_string()))?;
    }
    Ok((faiss_rel, meta_rel))
}

/// Reads back the vectors of `ids` from a written index (absent ids are skipped), so that
/// re-indexing reuses the embeddings of chunks that did not change.
pub fn read_vectors(repo_dir: &Path, faiss_rel: &str, ids: &[u64]) -> Result<HashMap<u64, Vec<f32>>, VectorError> {
    let p = repo_dir.join(faiss_rel);
    let index = faiss::read_index(p.to_str().ok_or_else(|| VectorError::Io("non-utf8 path".into()))?)?;
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

/// A loaded, searchable version of one repo's vectors.
pub struct RepoVectors {
    pub repo: String,
    pub version: u64,
    pub version_name: String,
    pub dim: u32,
    index: Mutex<faiss::index::IndexImpl>,
    meta: HashMap<u64, (String, String)>,
}

impl RepoVectors {
    pub fn open(repo: &str, version: u64, dir: &Path, faiss_rel: &str, meta_rel: &str) -> Result<Self, VectorError> {
        let p = dir.join(faiss_rel);
        let index = faiss::read_index(p.to_str().ok_or_else(|| VectorError::Io("non-utf8 path".into()))?)?;
        let text = std::fs::read(dir.join(meta_rel)).map_err(|e| VectorError::Io(format!("{meta_rel}: {e}")))?;
        let metas: Vec<ChunkMeta> =
            serde_json::from_slice(&text).map_err(|e| VectorError::Io(format!("{meta_rel}: {e}")))?;
        let dim = index.d();
        Ok(Self {
            repo: repo.to_string(),
            version,
            version_name: codeintel_core::manifest::version_name(version),
            dim,
            index: Mutex::new(index),
            meta: metas.into_iter().map(|m| (m.id, (m.path, m.language))).collect(),
        })
    }

    pub fn len(&self) -> u64 {
        self.index.lock().ntotal()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Top `k` (chunk id, score) for a normalised query, keeping only chunks `keep` accepts.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        keep: impl Fn(&str, &str) -> bool,
        filtered: bool,
    ) -> Result<Vec<(u64, f32)>, VectorError> {
        let mut index = self.index.lock();
        let n = index.ntotal() as usize;
        if n == 0 || k == 0 {
            return Ok(Vec::new());
        }
        // With path/language filters, look deeper so k survive the filter.
        let depth = if filtered { (k * 20).max(200).min(n) } else { k.min(n) };
        let res = index.search(query, depth)?;
        drop(index);
        let mut out = Vec::with_capacity(k);
        for (label, score) in res.labels.iter().zip(res.distances.iter()) {
            let Some(id) = label.get() else { continue };
            if let Some((path, lang)) = self.meta.get(&id) {
                if keep(path, lang) {
                    out.push((id, *score));
                    if out.len() == k {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_index_searches_back_by_chunk_id() {
        let d = tempfile::tempdir().unwrap();
        let vecs = vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0], vec![0.6, 0.8, 0.0]];
        let metas: Vec<ChunkMeta> = [(11u64, "a.py", "python"), (22, "b.rs", "rust"), (33, "c.py", "python")]
            .iter()
            .map(|(id, p, l)| ChunkMeta { id: *id, path: p.to_string(), language: l.to_string() })
            .collect();
        let (f, m) = write_index(d.path(), "v000001", 3, &vecs, &metas).unwrap();
        let r = RepoVectors::open("r", 1, d.path(), &f, &m).unwrap();
        assert_eq!(r.len(), 3);
        let hits = r.search(&[0.0, 1.0, 0.0], 2, |_, _| true, false).unwrap();
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![22, 33]);
        let hits = r.search(&[0.0, 1.0, 0.0], 2, |_, l| l == "python", true).unwrap();
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![33, 11]);
        assert!(write_index(d.path(), "v2", 4, &vecs, &metas).is_err(), "wrong dimension must be refused");
        let back = read_vectors(d.path(), &f, &[33, 44]).unwrap();
        assert_eq!(back.len(), 1, "unknown ids are skipped");
        assert_eq!(back[&33], vec![0.6, 0.8, 0.0]);
    }
}
