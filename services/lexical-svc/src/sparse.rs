//! The learned sparse (SPLADE) retriever of one repo version: an in-memory inverted index over
//! the version's sparse documents (term -> documents with weights), scored by dot product with
//! the query's term weights. Built when a version is loaded from the files the indexer wrote.

use std::collections::HashSet;
use std::path::Path;

use codeintel_index::manifest::{self, Manifest};
use codeintel_index::sparse::{self, SparseDoc};

use crate::error::LexicalError;

struct DocMeta {
    chunk_id: u64,
    path: String,
    language: String,
}

pub struct SparseIndex {
    docs: Vec<DocMeta>,
    /// term id -> (document, weight), document ascending.
    postings: Vec<Vec<(u32, f32)>>,
    /// Stored (term, weight) pairs, for sizing.
    pub nnz: usize,
}

pub struct SparseHit {
    pub chunk_id: u64,
    pub score: f32,
}

impl SparseIndex {
    /// The version's sparse index, or `None` when it was indexed without one.
    pub fn open(repo_dir: &Path, m: &Manifest) -> Result<Option<Self>, LexicalError> {
        if m.sparse.is_empty() {
            return Ok(None);
        }
        let dead: HashSet<u64> = manifest::tombstones(repo_dir, m).map_err(|e| LexicalError::Index(e.to_string()))?;
        let docs = sparse::live_docs(repo_dir, &m.sparse, &dead).map_err(|e| LexicalError::Index(e.to_string()))?;
        Ok(Some(Self::from_docs(docs)))
    }

    pub fn from_docs(docs: Vec<SparseDoc>) -> Self {
        let vocab = docs.iter().flat_map(|d| d.terms.iter().map(|(t, _)| *t as usize + 1)).max().unwrap_or(0);
        let mut postings: Vec<Vec<(u32, f32)>> = vec![Vec::new(); vocab];
        let mut metas = Vec::with_capacity(docs.len());
        let mut nnz = 0;
        for (i, d) in docs.into_iter().enumerate() {
            for (t, w) in &d.terms {
                postings[*t as usize].push((i as u32, *w));
            }
            nnz += d.terms.len();
            metas.push(DocMeta { chunk_id: d.chunk_id, path: d.path, language: d.language });
        }
        postings.iter_mut().for_each(|p| p.shrink_to_fit());
        Self { docs: metas, postings, nnz }
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// The `k` documents with the largest dot product with `query` that `keep(path, language)`
    /// accepts; ties by chunk id.
    pub fn search(&self, query: &[(u32, f32)], k: usize, keep: impl Fn(&str, &str) -> bool) -> Vec<SparseHit> {
        let mut scores = vec![0f32; self.docs.len()];
        for (t, qw) in query {
            if let Some(list) = self.postings.get(*t as usize) {
                for (d, w) in list {
                    scores[*d as usize] += qw * w;
                }
            }
        }
        let mut ranked: Vec<(u32, f32)> =
            scores.iter().enumerate().filter(|(_, s)| **s > 0.0).map(|(i, s)| (i as u32, *s)).collect();
        let by_score = |a: &(u32, f32), b: &(u32, f32)| {
            b.1.total_cmp(&a.1).then(self.docs[a.0 as usize].chunk_id.cmp(&self.docs[b.0 as usize].chunk_id))
        };
        ranked.sort_unstable_by(by_score);
        ranked
            .into_iter()
            .filter(|(d, _)| {
                let m = &self.docs[*d as usize];
                keep(&m.path, &m.language)
            })
            .take(k)
            .map(|(d, s)| SparseHit { chunk_id: self.docs[d as usize].chunk_id, score: s })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: u64, path: &str, terms: &[(u32, f32)]) -> SparseDoc {
        SparseDoc { chunk_id: id, path: path.into(), language: "rust".into(), terms: terms.to_vec() }
    }

    #[test]
    fn ranks_by_dot_product_and_filters() {
        let idx = SparseIndex::from_docs(vec![
            doc(10, "a.rs", &[(1, 1.0), (5, 2.0)]),
            doc(11, "b.rs", &[(1, 0.5), (7, 3.0)]),
            doc(12, "c.rs", &[(9, 1.0)]),
        ]);
        assert_eq!(idx.nnz, 5);
        let hits = idx.search(&[(1, 1.0), (7, 1.0)], 10, |_, _| true);
        // 11: 0.5 + 3.0 = 3.5; 10: 1.0; 12 shares nothing and is not returned.
        assert_eq!(hits.iter().map(|h| h.chunk_id).collect::<Vec<_>>(), vec![11, 10]);
        assert!((hits[0].score - 3.5).abs() < 1e-6);
        let hits = idx.search(&[(1, 1.0), (7, 1.0)], 10, |p, _| p != "b.rs");
        assert_eq!(hits.iter().map(|h| h.chunk_id).collect::<Vec<_>>(), vec![10]);
        assert!(idx.search(&[(30_000, 1.0)], 10, |_, _| true).is_empty(), "unknown term");
        assert_eq!(idx.search(&[(1, 1.0)], 1, |_, _| true).len(), 1);
    }
}
