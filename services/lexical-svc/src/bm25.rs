//! A term query scored by BM25 with configurable `k1` and `b` (`lexical.bm25_k1`, `.bm25_b`).
//! tantivy's own `TermQuery` fixes them at 1.2 / 0.75; this one reads the same postings and
//! field norms and computes the same formula,
//! `idf * (k1 + 1) * tf / (tf + k1 * (1 - b + b * len / avg_len))`, with the caller's values.

use tantivy::fieldnorm::FieldNormReader;
use tantivy::postings::{Postings, SegmentPostings};
use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocId, DocSet, Score, SegmentReader, Term, TERMINATED};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bm25Params {
    pub k1: f32,
    pub b: f32,
}

impl Default for Bm25Params {
    /// tantivy's and Lucene's defaults.
    fn default() -> Self {
        Self { k1: 1.2, b: 0.75 }
    }
}

#[derive(Debug, Clone)]
pub struct Bm25TermQuery {
    term: Term,
    params: Bm25Params,
}

impl Bm25TermQuery {
    pub fn new(term: Term, params: Bm25Params) -> Self {
        Self { term, params }
    }
}

fn idf(doc_freq: u64, doc_count: u64) -> f32 {
    let x = ((doc_count.saturating_sub(doc_freq)) as f32 + 0.5) / (doc_freq as f32 + 0.5);
    (1.0 + x).ln()
}

impl Query for Bm25TermQuery {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let (weight, cache) = match scoring.searcher() {
            Some(searcher) => {
                let field = self.term.field();
                let docs: u64 = searcher.segment_readers().iter().map(|r| u64::from(r.max_doc())).sum();
                let tokens: u64 = searcher
                    .segment_readers()
                    .iter()
                    .map(|r| r.inverted_index(field).map(|i| i.total_num_tokens()))
                    .sum::<tantivy::Result<u64>>()?;
                let avg = if docs == 0 { 1.0 } else { (tokens as f32 / docs as f32).max(1e-6) };
                let df = searcher.doc_freq(&self.term)?;
                let Bm25Params { k1, b } = self.params;
                let mut cache = [0f32; 256];
                for (id, c) in cache.iter_mut().enumerate() {
                    let len = FieldNormReader::id_to_fieldnorm(id as u8) as f32;
                    *c = k1 * (1.0 - b + b * len / avg);
                }
                (idf(df, docs.max(df)) * (1.0 + k1), cache)
            }
            None => (1.0, [1.0; 256]),
        };
        Ok(Box::new(Bm25TermWeight { term: self.term.clone(), weight, cache }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        visitor(&self.term, false);
    }
}

struct Bm25TermWeight {
    term: Term,
    weight: f32,
    /// `k1 * (1 - b + b * len / avg_len)` per field-norm id.
    cache: [f32; 256],
}

impl Weight for Bm25TermWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let field = self.term.field();
        let postings = reader
            .inverted_index(field)?
            .read_postings(&self.term, IndexRecordOption::WithFreqs)?
            .unwrap_or_else(SegmentPostings::empty);
        let norms = reader
            .fieldnorms_readers()
            .get_field(field)?
            .unwrap_or_else(|| FieldNormReader::constant(reader.max_doc(), 1));
        Ok(Box::new(Bm25TermScorer { postings, norms, weight: self.weight * boost, cache: self.cache }))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut s = self.scorer(reader, 1.0)?;
        if s.doc() > doc || s.seek(doc) != doc {
            return Err(tantivy::TantivyError::InvalidArgument(format!("document #{doc} does not match")));
        }
        Ok(Explanation::new("bm25 (configured k1, b)", s.score()))
    }
}

struct Bm25TermScorer {
    postings: SegmentPostings,
    norms: FieldNormReader,
    weight: f32,
    cache: [f32; 256],
}

impl DocSet for Bm25TermScorer {
    fn advance(&mut self) -> DocId {
        self.postings.advance()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        self.postings.seek(target)
    }

    fn doc(&self) -> DocId {
        self.postings.doc()
    }

    fn size_hint(&self) -> u32 {
        self.postings.size_hint()
    }
}

impl Scorer for Bm25TermScorer {
    fn score(&mut self) -> Score {
        let doc = self.postings.doc();
        if doc == TERMINATED {
            return 0.0;
        }
        let tf = self.postings.term_freq() as f32;
        let norm = self.cache[self.norms.fieldnorm_id(doc) as usize];
        self.weight * tf / (tf + norm)
    }
}
