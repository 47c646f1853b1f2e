//! Search over one tantivy index per repo version (its format is `codeintel_index::lexical`). Fields: the qualified symbol name (with the words its
//! abbreviations stand for), the path (split into words), and the chunk text with a short header
//! (parent, signature), all through the code-aware tokenizer; plus raw repo/path/language for
//! filters.

use std::path::Path;

use tantivy::query::{BooleanQuery, BoostQuery, ConstScoreQuery, DisjunctionMaxQuery, Occur, Query, TermQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{collector::TopDocs, Index, IndexReader, TantivyDocument, Term};

use crate::bm25::{Bm25Params, Bm25TermQuery};
use crate::error::LexicalError;
use crate::forms::WordForms;
use codeintel_core::query::symbol_keys;
use codeintel_index::lexical::register;
use codeintel_index::lexical::tokenizer::code_tokens;
pub use codeintel_index::lexical::{
    compact_index, doc_text, schema, update_index, write_index, Fields, LEXICAL_FORMAT, TOKENIZER,
};

fn tv(e: tantivy::TantivyError) -> LexicalError {
    LexicalError::Index(e.to_string())
}

/// Score added to a definition whose name equals the requested symbol: above any BM25 score.
pub const EXACT_SCORE: f32 = 1000.0;

/// Field boosts used at query time (configured as `lexical.*_boost`).
#[derive(Debug, Clone, Copy)]
pub struct Boosts {
    pub symbol: f32,
    pub path: f32,
    pub body: f32,
    pub doc: f32,
    pub bm25: Bm25Params,
    /// Weight of a query word's other forms in the index (0 = the word as typed only).
    pub word_forms: f32,
}

pub struct RepoLexical {
    reader: IndexReader,
    fields: Fields,
    forms: WordForms,
    pub docs: u64,
}

pub struct LexHit {
    pub chunk_id: u64,
    pub score: f32,
    pub exact: bool,
}

impl RepoLexical {
    pub fn open(dir: &Path) -> Result<Self, LexicalError> {
        let index = Index::open_in_dir(dir).map_err(tv)?;
        register(&index);
        let (want, fields) = schema();
        if index.schema() != want {
            return Err(LexicalError::Index(format!(
                "{} was written with another schema; rebuild it with `codeintel index --full`",
                dir.display()
            )));
        }
        let reader = index.reader_builder().reload_policy(tantivy::ReloadPolicy::Manual).try_into().map_err(tv)?;
        let searcher = reader.searcher();
        let docs = searcher.num_docs();
        let forms = WordForms::build(&searcher, &[fields.symbol, fields.path, fields.body]).map_err(tv)?;
        Ok(Self { reader, fields, forms, docs })
    }

    /// BM25 over the code fields: each query token is a should-clause on each field, boosted;
    /// with `boosts.word_forms` > 0 a token scores as the best of itself and its other forms in
    /// the index (see [`WordForms`]), the other forms weighted by `word_forms`. `keep(path,
    /// language)` is asked only where `filtered` says the scope filters chunks; unfiltered hits
    /// take their chunk ids from the fast field without reading stored documents.
    #[allow(clippy::too_many_arguments)]
    pub fn search(
        &self,
        query: &str,
        exact_symbol: &str,
        k: usize,
        boosts: Boosts,
        languages: &[String],
        keep: impl Fn(&str, &str) -> bool,
        filtered: bool,
    ) -> Result<Vec<LexHit>, LexicalError> {
        let f = self.fields;
        let mut seen = std::collections::HashSet::new();
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (tok, _, _) in code_tokens(query) {
            if !seen.insert(tok.clone()) {
                continue;
            }
            let forms = if boosts.word_forms > 0.0 { self.forms.of(&tok) } else { Vec::new() };
            for (field, boost) in
                [(f.symbol, boosts.symbol), (f.path, boosts.path), (f.body, boosts.body), (f.doc, boosts.doc)]
            {
                if boost <= 0.0 {
                    continue;
                }
                let tq: Box<dyn Query> = Box::new(Bm25TermQuery::new(Term::from_field_text(field, &tok), boosts.bm25));
                let q: Box<dyn Query> = if forms.is_empty() {
                    tq
                } else {
                    let mut alts = vec![tq];
                    for form in &forms {
                        let fq = Bm25TermQuery::new(Term::from_field_text(field, form), boosts.bm25);
                        alts.push(Box::new(BoostQuery::new(Box::new(fq), boosts.word_forms)));
                    }
                    Box::new(DisjunctionMaxQuery::new(alts))
                };
                clauses.push((Occur::Should, Box::new(BoostQuery::new(q, boost))));
            }
        }
        if let Some(key) = symbol_keys(exact_symbol.trim()).into_iter().next().filter(|k| !k.is_empty()) {
            let tq = TermQuery::new(Term::from_field_text(f.symbol_key, &key), IndexRecordOption::Basic);
            clauses.push((Occur::Should, Box::new(ConstScoreQuery::new(Box::new(tq), EXACT_SCORE))));
        }
        if clauses.is_empty() {
            return Ok(Vec::new());
        }
        let mut q: Box<dyn Query> = Box::new(BooleanQuery::new(clauses));
        if !languages.is_empty() {
            let langs: Vec<(Occur, Box<dyn Query>)> = languages
                .iter()
                .map(|l| {
                    let t: Box<dyn Query> =
                        Box::new(TermQuery::new(Term::from_field_text(f.language, l), IndexRecordOption::Basic));
                    (Occur::Should, t)
                })
                .collect();
            q = Box::new(BooleanQuery::new(vec![(Occur::Must, q), (Occur::Must, Box::new(BooleanQuery::new(langs)))]));
        }
        let searcher = self.reader.searcher();
        let depth = if filtered { (k * 20).max(200) } else { k };
        let top = searcher.search(&q, &TopDocs::with_limit(depth)).map_err(tv)?;
        let mut out = Vec::with_capacity(k);
        if !filtered {
            // Nothing to filter on: the chunk ids come from the fast field, no stored document is
            // read (each read decompresses a doc-store block, which grows costly with the index).
            let mut columns: Vec<Option<tantivy::columnar::Column<u64>>> = vec![None; searcher.segment_readers().len()];
            for (score, addr) in top.into_iter().take(k) {
                let slot = &mut columns[addr.segment_ord as usize];
                if slot.is_none() {
                    *slot = Some(searcher.segment_reader(addr.segment_ord).fast_fields().u64("chunk_id").map_err(tv)?);
                }
                let id = slot.as_ref().and_then(|c| c.first(addr.doc_id)).unwrap_or(0);
                out.push(LexHit { chunk_id: id, score, exact: score >= EXACT_SCORE });
            }
            return Ok(out);
        }
        for (score, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr).map_err(tv)?;
            let id = doc.get_first(f.chunk_id).and_then(|v| v.as_u64()).unwrap_or(0);
            let path = doc.get_first(f.path_raw).and_then(|v| v.as_str()).unwrap_or("");
            let lang = doc.get_first(f.language).and_then(|v| v.as_str()).unwrap_or("");
            if keep(path, lang) {
                out.push(LexHit { chunk_id: id, score, exact: score >= EXACT_SCORE });
                if out.len() == k {
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codeintel_chunk::chunk_file;
    use codeintel_core::chunk::{Chunk, ChunkOptions};
    use codeintel_index::lexical::symbol_text;

    fn index(files: &[(&str, &str, &str)]) -> (tempfile::TempDir, RepoLexical, Vec<Chunk>) {
        let chunks: Vec<Chunk> =
            files.iter().flat_map(|(p, l, s)| chunk_file("r", p, l, s, ChunkOptions::default())).collect();
        let d = tempfile::tempdir().unwrap();
        let rel = write_index(d.path(), "v000001", &chunks).unwrap();
        let r = RepoLexical::open(&d.path().join(rel)).unwrap();
        (d, r, chunks)
    }

    fn id_of(chunks: &[Chunk], symbol: &str) -> u64 {
        chunks.iter().find(|c| c.symbol == symbol).unwrap().chunk_id
    }

    const BOOSTS: Boosts =
        Boosts { symbol: 1.0, path: 0.3, body: 1.0, doc: 1.0, bm25: Bm25Params { k1: 1.2, b: 0.75 }, word_forms: 0.0 };

    #[test]
    fn configured_bm25_equals_tantivy_at_its_defaults_and_b_controls_length_normalisation() {
        let long_body =
            format!("fn refresh_token() {{\n    refresh();\n{}}}\n", "    step_one(); step_two();\n".repeat(30));
        let (_d, r, chunks) = index(&[
            ("a/short.rs", "rust", "fn refresh() {\n    token();\n}\n"),
            ("b/long.rs", "rust", long_body.as_str()),
            ("c/other.rs", "rust", "fn unrelated() {\n    nothing();\n}\n"),
        ]);
        let searcher = r.reader.searcher();
        let term = Term::from_field_text(r.fields.body, "refresh");
        let top = |q: &dyn Query| -> Vec<(u64, f32)> {
            let mut v: Vec<(u64, f32)> = searcher
                .search(q, &TopDocs::with_limit(10))
                .unwrap()
                .into_iter()
                .map(|(score, addr)| {
                    let d: TantivyDocument = searcher.doc(addr).unwrap();
                    (d.get_first(r.fields.chunk_id).and_then(|v| v.as_u64()).unwrap(), score)
                })
                .collect();
            v.sort_by_key(|x| x.0);
            v
        };
        let theirs = top(&TermQuery::new(term.clone(), IndexRecordOption::WithFreqs));
        let ours = top(&Bm25TermQuery::new(term.clone(), Bm25Params::default()));
        assert_eq!(theirs.len(), 2);
        assert_eq!(theirs.iter().map(|x| x.0).collect::<Vec<_>>(), ours.iter().map(|x| x.0).collect::<Vec<_>>());
        for (a, b) in theirs.iter().zip(&ours) {
            assert!((a.1 - b.1).abs() < 1e-4, "tantivy {} vs ours {}", a.1, b.1);
        }
        // The long chunk says `refresh` twice, the short one once. Full length normalisation
        // (b = 1) favours the short one; none (b = 0) the long one.
        let short = id_of(&chunks, "refresh");
        let long = id_of(&chunks, "refresh_token");
        let score = |b: f32, id: u64| {
            top(&Bm25TermQuery::new(term.clone(), Bm25Params { k1: 1.2, b })).into_iter().find(|x| x.0 == id).unwrap().1
        };
        assert!(score(1.0, short) > score(1.0, long));
        assert!(score(0.0, long) > score(0.0, short));
    }

    #[test]
    fn a_query_word_matches_the_other_forms_of_it_in_the_index_only_when_word_forms_are_on() {
        let (_d, r, chunks) = index(&[
            (
                "src/arg.rs",
                "rust",
                "impl Arg {\n    pub fn require_equals(self, yes: bool) -> Self {\n        self.flag(yes)\n    }\n}\n",
            ),
            ("src/other.rs", "rust", "fn unrelated_thing() {\n    nothing_here();\n}\n"),
            ("src/more.rs", "rust", "fn request_list() {\n    list();\n}\n"),
        ]);
        let want = id_of(&chunks, "Arg::require_equals");
        let search = |w: f32| {
            r.search(
                "Requires that options use equals",
                "",
                10,
                Boosts { word_forms: w, ..BOOSTS },
                &[],
                |_, _| true,
                false,
            )
            .unwrap()
        };
        // As typed, only `equals` matches.
        let off = search(0.0);
        let on = search(0.5);
        assert_eq!(off.first().map(|h| h.chunk_id), Some(want));
        assert_eq!(on.first().map(|h| h.chunk_id), Some(want));
        // `requires` now also matches `require` (same stem), below the weight of the word itself.
        assert!(on[0].score > off[0].score, "forms on {} vs off {}", on[0].score, off[0].score);
        // `request` has another stem: no match for it either way.
        let other = id_of(&chunks, "request_list");
        assert!(!on.iter().chain(&off).any(|h| h.chunk_id == other));
        assert_eq!(r.forms.of("requires"), vec!["require"]);
        assert!(r.forms.of("equals").is_empty(), "{:?}", r.forms.of("equals"));
    }

    #[test]
    fn spelled_out_abbreviations_of_a_name_are_searchable() {
        assert_eq!(symbol_text("Buf::get_i64_le"), "Buf::get_i64_le buffer signed bit integer little endian");
        assert_eq!(symbol_text("Command::flatten_help"), "Command::flatten_help");
        let (_d, r, chunks) = index(&[
            (
                "src/buf.rs",
                "rust",
                "impl Buf {\n    fn get_u16_le(&mut self) -> u16 {\n        self.read(2)\n    }\n}\n",
            ),
            ("src/other.rs", "rust", "fn unrelated_thing() {\n    nothing_here();\n}\n"),
        ]);
        let hits = r.search("little endian unsigned integer", "", 5, BOOSTS, &[], |_, _| true, false).unwrap();
        assert_eq!(hits.first().map(|h| h.chunk_id), Some(id_of(&chunks, "Buf::get_u16_le")));
    }

    #[test]
    fn doc_text_keeps_comments_and_docstrings_only() {
        let py = "def f(x):\n    \"\"\"Return the parsed header.\n\n    More words.\n    \"\"\"\n    # strip it\n    return x  # inline\n";
        let d = doc_text(py);
        assert!(d.contains("Return the parsed header.") && d.contains("More words.") && d.contains("strip it"), "{d}");
        assert!(!d.contains("return x"), "{d}");
        let rs = "/// Splits the input.\n#[inline]\nfn split(s: &str) {\n    // one pass\n    panic!()\n}\n";
        let d = doc_text(rs);
        assert!(
            d.contains("Splits the input.") && d.contains("one pass") && !d.contains("inline") && !d.contains("panic"),
            "{d}"
        );
        let js = "/**\n * Gets the blob as binary data.\n * @param {Blob} b\n */\nfunction f(b) { return b; }\n";
        let d = doc_text(js);
        assert!(d.contains("Gets the blob as binary data.") && !d.contains("function"), "{d}");
        assert_eq!(doc_text("let x = 1;\n"), "");
    }

    #[test]
    fn exact_symbol_lookup_outranks_bm25_and_is_flagged() {
        let (_d, r, chunks) = index(&[
            (
                "src/noise.rs",
                "rust",
                "fn calls_it() {\n    render_arg_val(); render_arg_val(); render_arg_val();\n    arg(); arg();\n}\n",
            ),
            ("src/arg.rs", "rust", "struct Arg;\n\nimpl Arg {\n    fn render_arg_val(&self) -> String {\n        String::new()\n    }\n}\n"),
        ]);
        let target = id_of(&chunks, "Arg::render_arg_val");
        let hits =
            r.search("impl Arg fn render_arg_val", "Arg::render_arg_val", 5, BOOSTS, &[], |_, _| true, false).unwrap();
        assert_eq!(hits[0].chunk_id, target);
        assert!(hits[0].exact && hits.iter().skip(1).all(|h| !h.exact));
        // The unqualified name finds it too; a name nobody defines flags nothing.
        let hits = r.search("render_arg_val", "render_arg_val", 5, BOOSTS, &[], |_, _| true, false).unwrap();
        assert_eq!((hits[0].chunk_id, hits[0].exact), (target, true));
        let hits = r.search("render_arg_val", "nothing_here", 5, BOOSTS, &[], |_, _| true, false).unwrap();
        assert!(hits.iter().all(|h| !h.exact));
    }

    #[test]
    fn identifier_query_returns_its_definition_first_and_filters_apply() {
        let (_d, r, chunks) = index(&[
            (
                "a/session.py",
                "python",
                "def refresh_token(session):\n    session.token = new_token()\n    return session\n",
            ),
            ("b/other.py", "python", "def rotate(keys):\n    return [k for k in keys]\n"),
            ("c/web.js", "javascript", "function refreshToken(s) {\n  return s;\n}\n"),
        ]);
        let hits = r.search("refresh_token", "", 3, BOOSTS, &[], |_, _| true, false).unwrap();
        assert_eq!(hits[0].chunk_id, id_of(&chunks, "refresh_token"));
        let js = vec!["javascript".to_string()];
        let hits = r.search("refresh token", "", 3, BOOSTS, &js, |_, _| true, true).unwrap();
        assert_eq!(hits.iter().map(|h| h.chunk_id).collect::<Vec<_>>(), vec![id_of(&chunks, "refreshToken")]);
        let hits = r.search("refresh token", "", 3, BOOSTS, &[], |p, _| p.starts_with("a/"), true).unwrap();
        assert!(hits.iter().all(|h| h.chunk_id == id_of(&chunks, "refresh_token")));
        assert!(r.search("the of", "", 3, BOOSTS, &[], |_, _| true, false).unwrap().is_empty(), "stop words only");
        // The unfiltered path (chunk ids from the fast field) and the filtered one (stored
        // documents) agree hit for hit.
        let ids = |filtered| -> Vec<(u64, u32)> {
            r.search("refresh token keys", "", 3, BOOSTS, &[], |_, _| true, filtered)
                .unwrap()
                .iter()
                .map(|h| (h.chunk_id, h.score.to_bits()))
                .collect()
        };
        assert_eq!(ids(false).len(), 3);
        assert_eq!(ids(false), ids(true));
    }

    #[test]
    fn updates_delete_and_add_by_chunk_id_without_touching_the_previous_version() {
        let (d, _r, chunks) = index(&[
            ("a/session.py", "python", "def refresh_token(session):\n    return session\n"),
            ("b/other.py", "python", "def rotate_keys(keys):\n    return keys\n"),
        ]);
        let old = id_of(&chunks, "refresh_token");
        let added =
            chunk_file("r", "a/session.py", "python", "def renew_lease(s):\n    return s\n", ChunkOptions::default());
        let rel = update_index(d.path(), "lexical/v000001", "v000002", &[old], &added).unwrap();
        let v2 = RepoLexical::open(&d.path().join(&rel)).unwrap();
        assert!(v2.search("refresh_token", "", 5, BOOSTS, &[], |_, _| true, false).unwrap().is_empty());
        let hits = v2.search("renew_lease", "", 5, BOOSTS, &[], |_, _| true, false).unwrap();
        assert_eq!(hits[0].chunk_id, added[0].chunk_id);
        assert_eq!(v2.docs, 2);
        // The published previous version is unchanged.
        let v1 = RepoLexical::open(&d.path().join("lexical/v000001")).unwrap();
        assert_eq!(v1.search("refresh_token", "", 5, BOOSTS, &[], |_, _| true, false).unwrap()[0].chunk_id, old);
        // Compaction purges the deleted document and keeps the live ones.
        let rel = compact_index(d.path(), &rel, "v000003").unwrap();
        let v3 = RepoLexical::open(&d.path().join(&rel)).unwrap();
        assert_eq!(v3.docs, 2);
        assert!(v3.search("refresh_token", "", 5, BOOSTS, &[], |_, _| true, false).unwrap().is_empty());
        assert_eq!(v3.search("rotate_keys", "", 5, BOOSTS, &[], |_, _| true, false).unwrap().len(), 1);
    }
}
