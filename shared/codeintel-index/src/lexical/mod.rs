//! The lexical artifact of a version: one tantivy index (`lexical/<version>/`). Fields: the
//! qualified symbol name (with the words its abbreviations stand for), the path (split into
//! words), the chunk text with a short header (parent, signature) and its documentation, all
//! through the code-aware [`tokenizer`]; plus raw repo/path/language for filters and exact
//! symbol keys. Written by the indexer, opened and searched by lexical-svc.

pub mod tokenizer;

use std::path::Path;

use codeintel_core::chunk::Chunk;
use codeintel_core::query::symbol_keys;
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, STORED, STRING,
};
use tantivy::{Index, TantivyDocument, Term};

use crate::error::IndexError;
use tokenizer::{code_tokens, CodeTokenizer};

pub const TOKENIZER: &str = "code";

/// Bumped whenever the schema or what goes into a field changes (2: the `doc` field; 3: a
/// type's member names in `body`; 4: spelled-out abbreviations in `symbol`).
pub const LEXICAL_FORMAT: u32 = 4;

#[derive(Clone, Copy)]
pub struct Fields {
    pub chunk_id: Field,
    pub path_raw: Field,
    pub language: Field,
    /// Exact-lookup keys of the symbol (see `query::symbol_keys`), untokenized.
    pub symbol_key: Field,
    pub symbol: Field,
    pub path: Field,
    pub body: Field,
    /// Documentation of the definition: doc comments and docstrings, markers stripped.
    pub doc: Field,
}

pub fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let code = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default().set_tokenizer(TOKENIZER).set_index_option(IndexRecordOption::WithFreqs),
    );
    let chunk_id = b.add_u64_field("chunk_id", NumericOptions::default().set_stored().set_indexed().set_fast());
    let path_raw = b.add_text_field("path_raw", STRING | STORED);
    let language = b.add_text_field("language", STRING | STORED);
    let symbol_key = b.add_text_field("symbol_key", STRING);
    let symbol = b.add_text_field("symbol", code.clone());
    let path = b.add_text_field("path", code.clone());
    let body = b.add_text_field("body", code.clone());
    let doc = b.add_text_field("doc", code);
    (b.build(), Fields { chunk_id, path_raw, language, symbol_key, symbol, path, body, doc })
}

pub fn register(index: &Index) {
    index.tokenizers().register(TOKENIZER, CodeTokenizer);
}

fn tv(e: tantivy::TantivyError) -> IndexError {
    IndexError::Lexical(e.to_string())
}

/// Text indexed in the body field: where the chunk sits, its signature, a type's member
/// names, then the code.
fn body_text(c: &Chunk) -> String {
    format!("{}\n{}\n{}\n{}", c.parent, c.signature, c.members, c.text)
}

/// Text indexed in the symbol field: the qualified name, then the words its abbreviations and
/// primitive types stand for when they are not already there (`Buf::get_i64_le` -> `... buffer
/// signed bit integer little endian`), as in the embedding text (`chunk::words_of`).
pub fn symbol_text(symbol: &str) -> String {
    let have: std::collections::HashSet<String> = code_tokens(symbol).into_iter().map(|t| t.0).collect();
    let mut out = symbol.to_string();
    for w in codeintel_core::chunk::words_of(symbol).split(' ') {
        if !w.is_empty() && !have.contains(w) {
            out.push(' ');
            out.push_str(w);
        }
    }
    out
}

fn document(f: &Fields, c: &Chunk) -> TantivyDocument {
    let mut d = TantivyDocument::default();
    d.add_u64(f.chunk_id, c.chunk_id);
    d.add_text(f.path_raw, &c.path);
    d.add_text(f.language, &c.language);
    d.add_text(f.symbol, symbol_text(&c.symbol));
    for key in symbol_keys(&c.symbol) {
        d.add_text(f.symbol_key, key);
    }
    d.add_text(f.path, &c.path);
    d.add_text(f.body, body_text(c));
    d.add_text(f.doc, doc_text(&c.text));
    d
}

/// The natural-language part of a chunk: comment lines (`//`, `///`, `#`, `/* */`, `*`, `--`)
/// and string literals that stand alone as statements (Python docstrings), markers stripped.
/// Language-agnostic on purpose: it only has to find prose, not parse it.
pub fn doc_text(code: &str) -> String {
    let mut out = String::new();
    let mut in_block: Option<&str> = None;
    for line in code.lines() {
        let t = line.trim();
        if let Some(end) = in_block {
            let (content, closed) = match t.find(end) {
                Some(i) => (&t[..i], true),
                None => (t, false),
            };
            out.push_str(content.trim_start_matches('*').trim());
            out.push('\n');
            if closed {
                in_block = None;
            }
            continue;
        }
        let mut opened = None;
        for (open, close) in [("\"\"\"", "\"\"\""), ("'''", "'''"), ("/*", "*/")] {
            if let Some(rest) = t.strip_prefix(open) {
                let rest = rest.trim_start_matches(['*', '!']);
                match rest.find(close) {
                    Some(i) => out.push_str(&rest[..i]),
                    None => {
                        out.push_str(rest);
                        in_block = Some(close);
                    }
                }
                out.push('\n');
                opened = Some(());
                break;
            }
        }
        if opened.is_some() {
            continue;
        }
        let comment = ["///", "//!", "//", "--"]
            .iter()
            .find_map(|m| t.strip_prefix(m))
            .or_else(|| t.strip_prefix('#').filter(|r| !r.starts_with('[') && !r.starts_with('!')));
        if let Some(c) = comment {
            out.push_str(c.trim());
            out.push('\n');
        }
    }
    out
}

fn fresh_dir(repo_dir: &Path, version: &str) -> Result<(String, std::path::PathBuf), IndexError> {
    let rel = format!("lexical/{version}");
    let dir = repo_dir.join(&rel);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| IndexError::Lexical(e.to_string()))?;
    }
    crate::manifest::create_private_dir_all(&dir).map_err(|e| IndexError::Lexical(e.to_string()))?;
    Ok((rel, dir))
}

fn finish(mut w: tantivy::IndexWriter<TantivyDocument>, dir: &Path) -> Result<(), IndexError> {
    w.commit().map_err(tv)?;
    w.wait_merging_threads().map_err(tv)?;
    Ok(crate::manifest::fsync_tree(dir)?)
}

/// Builds `<repo_dir>/lexical/<version>/`; returns its repo-relative path.
pub fn write_index(repo_dir: &Path, version: &str, chunks: &[Chunk]) -> Result<String, IndexError> {
    let (rel, dir) = fresh_dir(repo_dir, version)?;
    let (schema, f) = schema();
    let index = Index::create_in_dir(&dir, schema).map_err(tv)?;
    register(&index);
    let w = index.writer_with_num_threads::<TantivyDocument>(1, 64 << 20).map_err(tv)?;
    for c in chunks {
        w.add_document(document(&f, c)).map_err(tv)?;
    }
    finish(w, &dir)?;
    Ok(rel)
}

/// A new version's folder as a copy of `prev_rel`: tantivy never modifies a file once written,
/// so the copy hard-links the files (falling back to copying across filesystems) and the
/// published folder of the previous version stays untouched. A file is never copied *onto* an
/// existing name: that name may be a hard link of a published file, which the copy would
/// truncate (the writer lock keeps a second writer out; this keeps the published files safe
/// even if something else created the name).
fn link_copy(repo_dir: &Path, prev_rel: &str, version: &str) -> Result<(String, std::path::PathBuf), IndexError> {
    let (rel, dir) = fresh_dir(repo_dir, version)?;
    let src = repo_dir.join(prev_rel);
    let rd = std::fs::read_dir(&src).map_err(|e| IndexError::Lexical(format!("{}: {e}", src.display())))?;
    for e in rd.flatten() {
        let name = e.file_name();
        // Lock files belong to the writer that held them, not to the index.
        if name.to_string_lossy().starts_with('.') && name.to_string_lossy().ends_with(".lock") {
            continue;
        }
        let to = dir.join(&name);
        let err = |e: std::io::Error| IndexError::Lexical(format!("{}: {e}", to.display()));
        match std::fs::hard_link(e.path(), &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(err(e)),
            Err(_) => {
                let mut from = std::fs::File::open(e.path()).map_err(err)?;
                let mut out = std::fs::OpenOptions::new().write(true).create_new(true).open(&to).map_err(err)?;
                std::io::copy(&mut from, &mut out).map_err(err)?;
            }
        }
    }
    Ok((rel, dir))
}

/// Incremental update: a new version of the index in `lexical/<version>/` with the documents of
/// `delete` chunk ids removed and `add` indexed; the previous version's folder is not modified.
pub fn update_index(
    repo_dir: &Path,
    prev_rel: &str,
    version: &str,
    delete: &[u64],
    add: &[Chunk],
) -> Result<String, IndexError> {
    let (rel, dir) = link_copy(repo_dir, prev_rel, version)?;
    let index = Index::open_in_dir(&dir).map_err(tv)?;
    register(&index);
    let (_, f) = schema();
    let w = index.writer_with_num_threads::<TantivyDocument>(1, 64 << 20).map_err(tv)?;
    // Deletes first: a chunk id deleted and added again in one update stays (deletes apply only
    // to documents added before them).
    for &id in delete {
        w.delete_term(Term::from_field_u64(f.chunk_id, id));
    }
    for c in add {
        w.add_document(document(&f, c)).map_err(tv)?;
    }
    finish(w, &dir)?;
    Ok(rel)
}

/// Compaction: a copy of `prev_rel` merged into one segment, deleted documents purged.
pub fn compact_index(repo_dir: &Path, prev_rel: &str, version: &str) -> Result<String, IndexError> {
    let (rel, dir) = link_copy(repo_dir, prev_rel, version)?;
    let index = Index::open_in_dir(&dir).map_err(tv)?;
    register(&index);
    let mut w = index.writer_with_num_threads::<TantivyDocument>(1, 64 << 20).map_err(tv)?;
    let ids = index.searchable_segment_ids().map_err(tv)?;
    if ids.len() > 1 || index.searchable_segment_metas().map_err(tv)?.iter().any(|m| m.has_deletes()) {
        w.merge(&ids).wait().map_err(tv)?;
    }
    w.garbage_collect_files().wait().map_err(tv)?;
    finish(w, &dir)?;
    Ok(rel)
}
