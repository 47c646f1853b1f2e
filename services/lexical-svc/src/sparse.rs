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
    /// accepts (asked only where `filtered`); ties by chunk id. Only the best `k` are sorted.
    pub fn search(
        &self,
        query: &[(u32, f32)],
        k: usize,
        filtered: bool,
        keep: impl Fn(&str, &str) -> bool,
    ) -> Vec<SparseHit> {
        if k == 0 {
            return Vec::new();
        }
        let mut scores = vec![0f32; self.docs.len()];
        for (t, qw) in query {
            if let Some(list) = self.postings.get(*t as usize) {
                for (d, w) in list {
                    scores[*d as usize] += qw * w;
                }
            }
        }
        let mut ranked: Vec<(u32, f32)> = scores
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                **s > 0.0
                    && (!filtered || {
                        let m = &self.docs[*i];
                        keep(&m.path, &m.language)
                    })
            })
            .map(|(i, s)| (i as u32, *s))
            .collect();
        let by_score = |a: &(u32, f32), b: &(u32, f32)| {
            b.1.total_cmp(&a.1).then(self.docs[a.0 as usize].chunk_id.cmp(&self.docs[b.0 as usize].chunk_id))
        };
        if ranked.len() > k {
            ranked.select_nth_unstable_by(k - 1, by_score);
            ranked.truncate(k);
        }
        ranked.sort_unstable_by(by_score);
        ranked.into_iter().map(|(d, s)| SparseHit { chunk_id: self.docs[d as usize].chunk_id, score: s }).collect()
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
        let hits = idx.search(&[(1, 1.0), (7, 1.0)], 10, false, |_, _| true);
        // 11: 0.5 + 3.0 = 3.5; 10: 1.0; 12 shares nothing and is not returned.
        assert_eq!(hits.iter().map(|h| h.chunk_id).collect::<Vec<_>>(), vec![11, 10]);
        assert!((hits[0].score - 3.5).abs() < 1e-6);
        let hits = idx.search(&[(1, 1.0), (7, 1.0)], 10, true, |p, _| p != "b.rs");
        assert_eq!(hits.iter().map(|h| h.chunk_id).collect::<Vec<_>>(), vec![10]);
        assert!(idx.search(&[(30_000, 1.0)], 10, false, |_, _| true).is_empty(), "unknown term");
        assert_eq!(idx.search(&[(1, 1.0)], 1, false, |_, _| true).len(), 1);
    }

    #[test]
    fn the_best_k_are_those_of_a_full_sort_ties_included() {
        // 600 documents over 40 terms with weights from a small set, so that many scores tie.
        let mut x: u64 = 19;
        let mut next = |m: u64| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) % m
        };
        let docs: Vec<SparseDoc> = (0..600u64)
            .map(|i| {
                let terms: Vec<(u32, f32)> =
                    (0..4).map(|_| (next(40) as u32, [0.5f32, 1.0, 2.0][next(3) as usize])).collect();
                let mut terms = terms;
                terms.sort_by_key(|t| t.0);
                terms.dedup_by_key(|t| t.0);
                doc(1000 - i, if i % 3 == 0 { "x/a.rs" } else { "y/b.rs" }, &terms)
            })
            .collect();
        let idx = SparseIndex::from_docs(docs.clone());
        let query = [(3u32, 1.0f32), (7, 0.5), (11, 2.0), (20, 1.0)];
        let full = |keep: &dyn Fn(&str) -> bool| -> Vec<(u64, u32)> {
            let mut all: Vec<(u64, f32)> = docs
                .iter()
                .filter(|d| keep(&d.path))
                .map(|d| {
                    let s: f32 =
                        d.terms.iter().map(|(t, w)| query.iter().find(|q| q.0 == *t).map_or(0.0, |q| q.1 * w)).sum();
                    (d.chunk_id, s)
                })
                .filter(|(_, s)| *s > 0.0)
                .collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            all.into_iter().map(|(id, s)| (id, s.to_bits())).collect()
        };
        let got = |k, filtered, keep: &dyn Fn(&str) -> bool| -> Vec<(u64, u32)> {
            idx.search(&query, k, filtered, |p, _| keep(p)).iter().map(|h| (h.chunk_id, h.score.to_bits())).collect()
        };
        let everything = full(&|_| true);
        assert!(everything.len() > 100, "the query matches many documents");
        for k in [1, 7, 10, 50, 100, everything.len() + 5] {
            assert_eq!(got(k, false, &|_| true), everything[..k.min(everything.len())], "k = {k}");
        }
        let only_x = full(&|p| p.starts_with("x/"));
        assert_eq!(got(20, true, &|p| p.starts_with("x/")), only_x[..20]);
        assert!(got(0, false, &|_| true).is_empty());
    }
}
