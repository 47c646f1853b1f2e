//! Word forms: which terms of an index are inflections of a query word (`requires` ->
//! `require`, `required`; `commands` -> `command`; `formats` -> `format`, `formatting`).
//!
//! Code names the same idea with different inflections than the prose that asks for it: a doc
//! sentence says "Requires that ...", the method is `require_equals`. Stemming the index itself
//! merges distinct identifiers and changes every term's statistics (measured: lexical better,
//! hybrid worse, docs/benchmarks.md), so the index keeps words as written and the query is
//! expanded instead: each query word also matches the index terms that share its English
//! (Snowball) stem, scored as the best of its forms, with the other forms weighted below the
//! word as typed (`lexical.word_forms_weight`).

use std::collections::HashMap;

use codeintel_core::chunk::ABBREVIATIONS;
use rust_stemmers::{Algorithm, Stemmer};
use tantivy::schema::Field;
use tantivy::Searcher;

/// Most forms one query word expands to (besides itself).
pub const MAX_FORMS: usize = 8;

/// Stem -> the index's terms with that stem (one term is enough: the query's own form may not
/// be in the index at all).
#[derive(Default)]
pub struct WordForms {
    by_stem: HashMap<String, Vec<String>>,
}

/// Only plain words are inflected: letters, at least three of them, not too long to be a word.
fn inflectable(t: &str) -> bool {
    (3..=24).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_lowercase())
}

impl WordForms {
    /// Groups the terms of `fields` in every segment of `searcher` by stem.
    pub fn build(searcher: &Searcher, fields: &[Field]) -> tantivy::Result<Self> {
        let stemmer = Stemmer::create(Algorithm::English);
        let mut terms: std::collections::BTreeSet<String> = Default::default();
        for seg in searcher.segment_readers() {
            for &field in fields {
                let inv = seg.inverted_index(field)?;
                let mut stream = inv.terms().stream()?;
                while stream.advance() {
                    if let Ok(t) = std::str::from_utf8(stream.key()) {
                        if inflectable(t) && !terms.contains(t) {
                            terms.insert(t.to_string());
                        }
                    }
                }
            }
        }
        let mut by_stem: HashMap<String, Vec<String>> = HashMap::new();
        for t in terms {
            by_stem.entry(stemmer.stem(&t).into_owned()).or_default().push(t);
        }
        Ok(Self { by_stem })
    }

    /// The other forms of `word` in the index (not `word` itself), shortest first, at most
    /// [`MAX_FORMS`]: its inflections, and the usual code abbreviations of any of them
    /// (`arguments` -> `args`, `arg`; `message` -> `msg`; see `chunk::ABBREVIATIONS`).
    pub fn of(&self, word: &str) -> Vec<&str> {
        if !inflectable(word) {
            return Vec::new();
        }
        let stemmer = Stemmer::create(Algorithm::English);
        let stem = stemmer.stem(word);
        let mut forms: Vec<&str> =
            self.by_stem.get(stem.as_ref()).map(|v| v.iter().map(String::as_str).collect()).unwrap_or_default();
        for (short, long) in ABBREVIATIONS {
            if !long.contains(' ') && stemmer.stem(long) == stem {
                let known = self.by_stem.get(stemmer.stem(short).as_ref()).and_then(|v| v.iter().find(|t| t == short));
                forms.extend(known.map(String::as_str));
            }
        }
        forms.retain(|t| *t != word);
        forms.sort_by_key(|t| (t.len(), *t));
        forms.dedup();
        forms.truncate(MAX_FORMS);
        forms
    }

    /// Number of stems with more than one form in the index.
    pub fn groups(&self) -> usize {
        self.by_stem.values().filter(|v| v.len() > 1).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::schema::{Schema, TEXT};
    use tantivy::{doc, Index};

    fn forms_of(words: &str) -> WordForms {
        let mut b = Schema::builder();
        let body = b.add_text_field("body", TEXT);
        let index = Index::create_in_ram(b.build());
        let mut w = index.writer_with_num_threads(1, 15_000_000).unwrap();
        w.add_document(doc!(body => words)).unwrap();
        w.commit().unwrap();
        let reader = index.reader().unwrap();
        WordForms::build(&reader.searcher(), &[body]).unwrap()
    }

    #[test]
    fn groups_inflections_present_in_the_index_and_leaves_other_words_alone() {
        let f = forms_of("format formats formatting command commands parse parses parsed x2 ab required");
        assert_eq!(f.of("formatted"), vec!["format", "formats", "formatting"]);
        assert_eq!(f.of("formats"), vec!["format", "formatting"]);
        assert_eq!(f.of("commands"), vec!["command"]);
        assert_eq!(f.of("parsing"), vec!["parse", "parsed", "parses"]);
        assert_eq!(f.of("requires"), vec!["required"]);
        // A word with no other form in the index, digits and short words are not expanded.
        assert!(f.of("header").is_empty() && f.of("required").is_empty());
        assert!(f.of("x2").is_empty() && f.of("ab").is_empty());
        assert_eq!(f.groups(), 3);
        // Abbreviations of any form, where the index has them.
        let f = forms_of("cmd args arg msg");
        assert_eq!(f.of("commands"), vec!["cmd"]);
        assert_eq!(f.of("argument"), vec!["arg", "args"]);
        assert_eq!(f.of("messages"), vec!["msg"]);
        assert!(f.of("buffer").is_empty());
    }
}
