//! Code navigation over the served versions, through DuckDB: definitions by name, references
//! (the `refs` column the chunker fills at index time), a file's outline, an indexed file's
//! lines, and what each repo holds. The requests and answers are `codeintel.v1` navigation
//! messages; [`crate::flight`] carries them as Flight actions.
//!
//! Name resolution is by name plus scope hints, not by type checking: a use is `qualified`
//! when it is written with the symbol's parent (`Command::new`, `parser.Parser.parse`) or
//! through `self`/`this` inside that parent, `same_file` when the file defines the symbol,
//! `imported` when the file imports the name or its parent, and `name_only` otherwise. A use
//! written with another type-like qualifier (`Other::new` for `Command::new`) is left out.
//! Not resolved: receivers' types (`x.parse()` where `x: Parser`), aliases, re-exports, and
//! dynamic dispatch.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, UInt32Type, UInt64Type};
use codeintel_core::proto::v1::{
    Caller, CallersResponse, Definition, DefinitionsResponse, FileRequest, FileResponse, LanguageCount,
    ListReposResponse, Reference, ReferencesResponse, RepoSummary, Scope, SymbolRequest,
};
use codeintel_core::scope::ScopeFilter;
use codeintel_index::catalog::Loaded;
use duckdb::types::Value as DbValue;

use crate::error::HydrateError;
use crate::store::{ChunkStore, RepoSegments};

/// Results per call when the request says 0, and the most it may ask for.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 1000;
/// Lines one `ReadFile` returns at most.
pub const MAX_FILE_LINES: u32 = 2000;
/// Longest symbol name accepted.
pub const MAX_SYMBOL_CHARS: usize = 512;

/// The actions hydrate-svc answers, with what each does (Flight `ListActions`).
pub const ACTIONS: [(&str, &str); 6] = [
    ("FindDefinitions", "codeintel.v1.SymbolRequest -> DefinitionsResponse: definitions of a name"),
    ("FindReferences", "codeintel.v1.SymbolRequest -> ReferencesResponse: uses of a name, surest first"),
    ("FindCallers", "codeintel.v1.SymbolRequest -> CallersResponse: the definitions that call a name"),
    ("Outline", "codeintel.v1.FileRequest -> DefinitionsResponse: a file's definitions in line order"),
    ("ReadFile", "codeintel.v1.FileRequest -> FileResponse: an indexed file's lines"),
    ("ListRepos", "codeintel.v1.ListReposRequest -> ListReposResponse: what each repo holds"),
];

/// Runs one Flight action (blocking): decodes its protobuf body, answers, encodes the answer.
pub fn run_action(store: &ChunkStore, kind: &str, body: &[u8]) -> Result<Vec<u8>, HydrateError> {
    use codeintel_core::proto::v1::ListReposRequest;
    use prost::Message;
    fn decode<M: Message + Default>(kind: &str, body: &[u8]) -> Result<M, HydrateError> {
        M::decode(body).map_err(|e| {
            HydrateError::InvalidArgument(format!("the body of action {kind} is not its request message: {e}"))
        })
    }
    Ok(match kind {
        "FindDefinitions" => store.find_definitions(&decode::<SymbolRequest>(kind, body)?)?.encode_to_vec(),
        "FindReferences" => store.find_references(&decode::<SymbolRequest>(kind, body)?)?.encode_to_vec(),
        "FindCallers" => store.find_callers(&decode::<SymbolRequest>(kind, body)?)?.encode_to_vec(),
        "Outline" => store.outline(&decode::<FileRequest>(kind, body)?)?.encode_to_vec(),
        "ReadFile" => store.read_file(&decode::<FileRequest>(kind, body)?)?.encode_to_vec(),
        "ListRepos" => {
            decode::<ListReposRequest>(kind, body)?;
            store.list_repos()?.encode_to_vec()
        }
        other => {
            let known: Vec<&str> = ACTIONS.iter().map(|(k, _)| *k).collect();
            return Err(HydrateError::InvalidArgument(format!(
                "unknown action {}; hydrate-svc answers {}",
                codeintel_core::scope::excerpt(other, 60),
                known.join(", ")
            )));
        }
    })
}

/// The call and macro uses among `refs` (surest first) grouped by `(repo, path, enclosing)`, in
/// the order of each group's surest use; a group's resolution is its surest use's.
pub fn group_callers(refs: &[Reference]) -> Vec<Caller> {
    let mut at: HashMap<(&str, &str, &str), usize> = HashMap::new();
    let mut out: Vec<Caller> = Vec::new();
    for r in refs.iter().filter(|r| r.kind == "call" || r.kind == "macro") {
        let i = *at.entry((&r.repo, &r.path, &r.enclosing)).or_insert_with(|| {
            out.push(Caller {
                repo: r.repo.clone(),
                path: r.path.clone(),
                symbol: r.enclosing.clone(),
                resolution: r.resolution.clone(),
                text: r.text.clone(),
                ..Default::default()
            });
            out.len() - 1
        });
        out[i].lines.push(r.line);
    }
    for c in &mut out {
        c.lines.sort_unstable();
        c.lines.dedup();
    }
    out
}

/// A symbol as asked: its parent (`Parser`, `a.b.Parser`; `::` read as `.`) and its last name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolName {
    pub qualified: String,
    pub parent: String,
    pub name: String,
}

impl SymbolName {
    pub fn parse(s: &str) -> Result<Self, HydrateError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(HydrateError::InvalidArgument(
                "name a symbol (`parse`, `Parser.parse`, `Command::new`)".into(),
            ));
        }
        if s.chars().count() > MAX_SYMBOL_CHARS {
            return Err(HydrateError::InvalidArgument(format!(
                "the symbol is {} characters long; at most {MAX_SYMBOL_CHARS}",
                s.chars().count()
            )));
        }
        let qualified = s.replace("::", ".").trim_matches('.').to_string();
        let (parent, name) = match qualified.rsplit_once('.') {
            Some((p, n)) => (p.to_string(), n.to_string()),
            None => (String::new(), qualified.clone()),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            return Err(HydrateError::InvalidArgument(format!(
                "{} is not a name: use letters, digits and `_`, qualified with `.` or `::`",
                codeintel_core::scope::excerpt(s, 80)
            )));
        }
        Ok(Self { qualified, parent, name })
    }

    /// The last segment of the parent (`Parser` of `a.b.Parser`).
    fn parent_last(&self) -> &str {
        self.parent.rsplit('.').next().unwrap_or("")
    }
}

fn limit_of(limit: u32) -> Result<usize, HydrateError> {
    match limit {
        0 => Ok(DEFAULT_LIMIT as usize),
        l if l <= MAX_LIMIT => Ok(l as usize),
        l => Err(HydrateError::InvalidArgument(format!("limit is {l}; at most {MAX_LIMIT}"))),
    }
}

/// Rejects absolute paths and `..`: paths are repo-relative, as search hits show them.
pub fn check_relative(path: &str) -> Result<(), HydrateError> {
    let p = Path::new(path);
    let escapes = p.is_absolute()
        || path.starts_with('/')
        || path.contains('\\')
        || p.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if path.is_empty() || escapes {
        return Err(HydrateError::InvalidArgument(format!(
            "path {} must be relative to the repository, without `..` (as search hits show paths)",
            codeintel_core::scope::excerpt(path, 120)
        )));
    }
    Ok(())
}

/// The first line of a definition that is not a decorator, attribute or comment.
fn signature(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| {
            !l.is_empty() && !l.starts_with('@') && !l.starts_with("#[") && !l.starts_with("//") && !l.starts_with('#')
        })
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

fn strings(b: &RecordBatch, name: &str) -> Result<Vec<String>, HydrateError> {
    let a = b.column_by_name(name).ok_or_else(|| HydrateError::Internal(format!("no column {name}")))?;
    let a = arrow::compute::cast(a, &DataType::Utf8)?;
    let s = a.as_string::<i32>();
    Ok((0..s.len()).map(|i| if s.is_null(i) { String::new() } else { s.value(i).to_string() }).collect())
}

fn u32s(b: &RecordBatch, name: &str) -> Result<Vec<u32>, HydrateError> {
    let a = b.column_by_name(name).ok_or_else(|| HydrateError::Internal(format!("no column {name}")))?;
    Ok(arrow::compute::cast(a, &DataType::UInt32)?.as_primitive::<UInt32Type>().values().to_vec())
}

fn u64s(b: &RecordBatch, name: &str) -> Result<Vec<u64>, HydrateError> {
    let a = b.column_by_name(name).ok_or_else(|| HydrateError::Internal(format!("no column {name}")))?;
    Ok(arrow::compute::cast(a, &DataType::UInt64)?.as_primitive::<UInt64Type>().values().to_vec())
}

/// One definition row before split pieces are merged.
#[derive(Debug, Clone)]
struct DefRow {
    chunk_id: u64,
    def: Definition,
}

/// Pieces of one long definition (split at statements) are one definition: rows of the same
/// repo, path and symbol whose spans touch or overlap merge.
fn merge_pieces(mut rows: Vec<DefRow>) -> Vec<Definition> {
    rows.sort_by(|a, b| {
        (&a.def.repo, &a.def.path, &a.def.symbol, a.def.start_line).cmp(&(
            &b.def.repo,
            &b.def.path,
            &b.def.symbol,
            b.def.start_line,
        ))
    });
    let mut out: Vec<Definition> = Vec::new();
    for r in rows {
        if let Some(last) = out.last_mut() {
            if last.repo == r.def.repo
                && last.path == r.def.path
                && last.symbol == r.def.symbol
                && last.kind == r.def.kind
                && r.def.start_line <= last.end_line + 1
            {
                last.end_line = last.end_line.max(r.def.end_line);
                continue;
            }
        }
        out.push(r.def);
    }
    out
}

/// How surely a definition is the one asked for: 0 the exact qualified name, 1 the same name
/// under the same parent, 2 the same last name.
fn definition_rank(d: &Definition, q: &SymbolName) -> u8 {
    let norm = d.symbol.replace("::", ".");
    if norm == q.qualified {
        0
    } else if !q.parent.is_empty() && norm.ends_with(&format!(".{}", q.qualified)) {
        1
    } else {
        2
    }
}

impl ChunkStore {
    /// The loaded versions of `repos` (all when empty), refusing unknown repos by name.
    fn loaded_in(&self, repos: &[String]) -> Result<Vec<Arc<Loaded<RepoSegments>>>, HydrateError> {
        let scope = ScopeFilter::new(Some(&Scope { repos: repos.to_vec(), ..Default::default() }))?;
        Ok(self.catalog.in_scope(&scope)?.into_iter().filter(|l| scope.allows_repo(&l.manifest.repo)).collect())
    }

    fn query(&self, sql: &str, params: Vec<DbValue>) -> Result<Vec<RecordBatch>, HydrateError> {
        let conn = self.db.lock().try_clone()?;
        let mut stmt = conn.prepare(sql)?;
        Ok(stmt.query_arrow(duckdb::params_from_iter(params))?.collect())
    }

    fn files_param(repo: &RepoSegments) -> (String, Vec<DbValue>) {
        let marks = vec!["?"; repo.files.len()].join(", ");
        (marks, repo.files.iter().map(|f| DbValue::Text(f.display().to_string())).collect())
    }

    /// Live definition rows of one repo version that `filter` (SQL over the segment's columns,
    /// its `?` bound to `params`) selects.
    fn def_rows(
        &self,
        l: &Loaded<RepoSegments>,
        filter: &str,
        extra: Vec<DbValue>,
    ) -> Result<Vec<DefRow>, HydrateError> {
        let (marks, mut params) = Self::files_param(&l.value);
        let sql = format!(
            "SELECT DISTINCT chunk_id, repo, path, language, start_line, end_line, symbol, kind, text \
             FROM read_parquet([{marks}]) WHERE kind <> 'window' AND ({filter}) LIMIT 20000"
        );
        params.extend(extra);
        let mut out = Vec::new();
        for b in self.query(&sql, params)? {
            let (ids, repo, path, lang) =
                (u64s(&b, "chunk_id")?, strings(&b, "repo")?, strings(&b, "path")?, strings(&b, "language")?);
            let (start, end, symbol, kind, text) = (
                u32s(&b, "start_line")?,
                u32s(&b, "end_line")?,
                strings(&b, "symbol")?,
                strings(&b, "kind")?,
                strings(&b, "text")?,
            );
            for i in 0..b.num_rows() {
                if l.value.tombstones.contains(&ids[i]) {
                    continue;
                }
                out.push(DefRow {
                    chunk_id: ids[i],
                    def: Definition {
                        repo: repo[i].clone(),
                        path: path[i].clone(),
                        language: lang[i].clone(),
                        start_line: start[i],
                        end_line: end[i],
                        symbol: symbol[i].clone(),
                        kind: kind[i].clone(),
                        signature: signature(&text[i]),
                        version: l.manifest.version,
                    },
                });
            }
        }
        Ok(out)
    }

    /// Definition rows of `q` in one repo version (live chunks only).
    fn definition_rows(&self, l: &Loaded<RepoSegments>, q: &SymbolName) -> Result<Vec<DefRow>, HydrateError> {
        let wanted = if q.parent.is_empty() { q.name.clone() } else { q.qualified.clone() };
        let filter = "replace(symbol, '::', '.') = ? OR ends_with(replace(symbol, '::', '.'), ?)";
        self.def_rows(l, filter, vec![DbValue::Text(wanted.clone()), DbValue::Text(format!(".{wanted}"))])
    }

    fn all_definitions(&self, repos: &[String], q: &SymbolName) -> Result<Vec<Definition>, HydrateError> {
        let mut rows = Vec::new();
        for l in self.loaded_in(repos)? {
            rows.extend(self.definition_rows(&l, q)?);
        }
        rows.sort_by_key(|r| r.chunk_id);
        rows.dedup_by_key(|r| r.chunk_id);
        let mut defs = merge_pieces(rows);
        defs.sort_by(|a, b| {
            (definition_rank(a, q), a.kind == "impl", &a.repo, &a.path, a.start_line).cmp(&(
                definition_rank(b, q),
                b.kind == "impl",
                &b.repo,
                &b.path,
                b.start_line,
            ))
        });
        Ok(defs)
    }

    /// `FindDefinitions` (blocking).
    pub fn find_definitions(&self, req: &SymbolRequest) -> Result<DefinitionsResponse, HydrateError> {
        let q = SymbolName::parse(&req.symbol)?;
        let limit = limit_of(req.limit)?;
        let mut defs = self.all_definitions(&req.repos, &q)?;
        let total = defs.len() as u32;
        defs.truncate(limit);
        Ok(DefinitionsResponse { definitions: defs, total })
    }

    /// `FindReferences` (blocking).
    pub fn find_references(&self, req: &SymbolRequest) -> Result<ReferencesResponse, HydrateError> {
        let q = SymbolName::parse(&req.symbol)?;
        let limit = limit_of(req.limit)?;
        let definitions = self.all_definitions(&req.repos, &q)?;
        // The files defining the symbol, and the parents it is defined under.
        let def_files: HashSet<(String, String)> =
            definitions.iter().map(|d| (d.repo.clone(), d.path.clone())).collect();
        let mut found: Vec<(u8, Reference)> = Vec::new();
        for l in self.loaded_in(&req.repos)? {
            if !has_refs(&l) {
                continue;
            }
            let importers = self.importing_files(&l, &q)?;
            let (marks, mut params) = Self::files_param(&l.value);
            let sql = format!(
                "SELECT chunk_id, repo, path, symbol, start_line, text, \
                 list_filter(refs, lambda x: x.name = ?) AS hits \
                 FROM read_parquet([{marks}]) \
                 WHERE list_contains(list_transform(refs, lambda x: x.name), ?)"
            );
            params.insert(0, DbValue::Text(q.name.clone()));
            params.push(DbValue::Text(q.name.clone()));
            let mut seen: HashSet<(u64, u32, String, String)> = HashSet::new();
            for b in self.query(&sql, params)? {
                let (ids, repo, path, symbol, start, text) = (
                    u64s(&b, "chunk_id")?,
                    strings(&b, "repo")?,
                    strings(&b, "path")?,
                    strings(&b, "symbol")?,
                    u32s(&b, "start_line")?,
                    strings(&b, "text")?,
                );
                let hits = b.column_by_name("hits").ok_or_else(|| HydrateError::Internal("no column hits".into()))?;
                let hits = hits.as_list::<i32>();
                for i in 0..b.num_rows() {
                    if l.value.tombstones.contains(&ids[i]) {
                        continue;
                    }
                    let entries = hits.value(i);
                    let entries = entries.as_struct();
                    let (names, kinds, lines, quals) = (
                        strings_of(entries, "name")?,
                        strings_of(entries, "kind")?,
                        u32s_of(entries, "line")?,
                        strings_of(entries, "qualifier")?,
                    );
                    for j in 0..names.len() {
                        if !seen.insert((ids[i], lines[j], kinds[j].clone(), quals[j].clone())) {
                            continue;
                        }
                        let r = Reference {
                            repo: repo[i].clone(),
                            path: path[i].clone(),
                            line: lines[j],
                            name: names[j].clone(),
                            qualifier: quals[j].clone(),
                            kind: kinds[j].clone(),
                            enclosing: symbol[i].clone(),
                            text: line_of(&text[i], start[i], lines[j]),
                            resolution: String::new(),
                            version: l.manifest.version,
                        };
                        let file = (r.repo.clone(), r.path.clone());
                        if let Some(rank) = resolve(&r, &q, def_files.contains(&file), importers.contains(&r.path)) {
                            found.push((rank, r));
                        }
                    }
                }
            }
        }
        found.sort_by(|(ra, a), (rb, b)| (ra, &a.repo, &a.path, a.line).cmp(&(rb, &b.repo, &b.path, b.line)));
        let total = found.len() as u32;
        let references = found
            .into_iter()
            .take(limit)
            .map(|(rank, mut r)| {
                r.resolution = RESOLUTIONS[rank as usize].to_string();
                r
            })
            .collect();
        Ok(ReferencesResponse { references, definitions: definitions.into_iter().take(limit).collect(), total })
    }

    /// `FindCallers` (blocking): the call and macro uses of [`Self::find_references`] grouped
    /// by the definition they sit in, each with its span from the file's outline.
    pub fn find_callers(&self, req: &SymbolRequest) -> Result<CallersResponse, HydrateError> {
        let limit = limit_of(req.limit)?;
        let refs = self.find_references(&SymbolRequest { limit: MAX_LIMIT, ..req.clone() })?;
        let mut callers = group_callers(&refs.references);
        let total = callers.len() as u32;
        callers.truncate(limit);
        // Spans from each file's outline, once per file.
        let mut outlines: HashMap<(String, String), Vec<Definition>> = HashMap::new();
        for c in callers.iter_mut().filter(|c| !c.symbol.is_empty()) {
            let key = (c.repo.clone(), c.path.clone());
            if !outlines.contains_key(&key) {
                let req = FileRequest { repo: c.repo.clone(), path: c.path.clone(), ..Default::default() };
                outlines.insert(key.clone(), self.outline(&req)?.definitions);
            }
            // The innermost definition of that name holding the first call.
            let first = c.lines[0];
            if let Some(d) = outlines[&key]
                .iter()
                .filter(|d| d.symbol == c.symbol && d.start_line <= first && first <= d.end_line)
                .min_by_key(|d| d.end_line - d.start_line)
            {
                (c.start_line, c.end_line) = (d.start_line, d.end_line);
            }
        }
        Ok(CallersResponse { callers, definitions: refs.definitions, total })
    }

    /// Paths of one version whose files import the symbol's name or its parent's.
    fn importing_files(&self, l: &Loaded<RepoSegments>, q: &SymbolName) -> Result<HashSet<String>, HydrateError> {
        let (marks, mut params) = Self::files_param(&l.value);
        let sql = format!(
            "SELECT DISTINCT path FROM read_parquet([{marks}]) \
             WHERE len(list_filter(refs, lambda x: x.kind = 'import' AND (x.name = ? OR x.name = ?))) > 0"
        );
        params.push(DbValue::Text(q.name.clone()));
        params.push(DbValue::Text(q.parent_last().to_string()));
        let mut out = HashSet::new();
        for b in self.query(&sql, params)? {
            out.extend(strings(&b, "path")?);
        }
        Ok(out)
    }

    /// `Outline` (blocking): the definitions of one file in line order.
    pub fn outline(&self, req: &FileRequest) -> Result<DefinitionsResponse, HydrateError> {
        check_relative(&req.path)?;
        let l = self.one_repo(&req.repo)?;
        if !l.manifest.file_hashes.contains_key(&req.path) {
            return Err(not_indexed(&req.repo, &req.path));
        }
        let rows = self.def_rows(&l, "path = ?", vec![DbValue::Text(req.path.clone())])?;
        let mut defs = merge_pieces(rows);
        defs.sort_by_key(|d| (d.start_line, std::cmp::Reverse(d.end_line)));
        let total = defs.len() as u32;
        Ok(DefinitionsResponse { definitions: defs, total })
    }

    fn one_repo(&self, repo: &str) -> Result<Arc<Loaded<RepoSegments>>, HydrateError> {
        if repo.is_empty() {
            return Err(HydrateError::InvalidArgument("name the repo (`list_repos` shows them)".into()));
        }
        let mut v = self.loaded_in(&[repo.to_string()])?;
        v.pop().ok_or_else(|| HydrateError::InvalidArgument(format!("repo {repo} is not served")))
    }

    /// `ReadFile` (blocking): the file from the indexed source folder when it still has the
    /// indexed content, else rebuilt from its chunks; flagged stale when the file on disk
    /// changed or is gone.
    pub fn read_file(&self, req: &FileRequest) -> Result<FileResponse, HydrateError> {
        check_relative(&req.path)?;
        let l = self.one_repo(&req.repo)?;
        let m = &l.manifest;
        let indexed_hash = m.file_hashes.get(&req.path).cloned().ok_or_else(|| not_indexed(&req.repo, &req.path))?;
        let (disk, stale_reason) = match source_file(&m.source, &req.path) {
            None => (None, format!("cannot check the file on disk: the indexed source folder `{}` is not readable here", m.source)),
            Some(Err(e)) => (None, format!("the file is no longer readable on disk ({e}); showing it as indexed in v{:06}", m.version)),
            Some(Ok(text)) if codeintel_core::chunk::sha256_hex(text.as_bytes()) == indexed_hash => (Some(text), String::new()),
            Some(Ok(_)) => (
                None,
                format!(
                    "the file on disk changed since v{:06} was indexed: line numbers may have moved; showing it as indexed (reindex before editing from these lines)",
                    m.version
                ),
            ),
        };
        let stale = disk.is_none() && !stale_reason.starts_with("cannot check");
        let (lines, origin, language): (Vec<String>, &str, String) = match disk {
            Some(text) => (
                text.lines().map(str::to_string).collect(),
                "disk",
                codeintel_core::chunk::language_for_path(&req.path).unwrap_or("text").to_string(),
            ),
            None => {
                let (lines, language) = self.lines_from_chunks(&l, &req.path)?;
                (lines, "chunks", language)
            }
        };
        let total = lines.len() as u32;
        let start = req.start_line.max(1);
        let end = if req.end_line == 0 { total } else { req.end_line.min(total) };
        if total > 0 && start > total {
            return Err(HydrateError::InvalidArgument(format!(
                "start_line {start} is past the end of {} ({total} lines)",
                req.path
            )));
        }
        if end < start && total > 0 {
            return Err(HydrateError::InvalidArgument(format!("end_line {end} is before start_line {start}")));
        }
        let end = end.min(start.saturating_add(MAX_FILE_LINES - 1));
        let text = if total == 0 { String::new() } else { lines[start as usize - 1..end as usize].join("\n") };
        Ok(FileResponse {
            repo: req.repo.clone(),
            path: req.path.clone(),
            language,
            version: m.version,
            text,
            start_line: start,
            end_line: end,
            total_lines: total,
            indexed_hash,
            origin: origin.to_string(),
            stale,
            stale_reason,
            commit: m.git.as_ref().map(|g| g.commit.clone()).unwrap_or_default(),
            dirty: m.git.as_ref().is_some_and(|g| g.dirty),
        })
    }

    /// A file's lines as its live chunks hold them; lines no chunk holds are empty.
    fn lines_from_chunks(&self, l: &Loaded<RepoSegments>, path: &str) -> Result<(Vec<String>, String), HydrateError> {
        let (marks, mut params) = Self::files_param(&l.value);
        let sql =
            format!("SELECT DISTINCT chunk_id, start_line, language, text FROM read_parquet([{marks}]) WHERE path = ?");
        params.push(DbValue::Text(path.to_string()));
        let mut lines: Vec<String> = Vec::new();
        let mut language = String::new();
        for b in self.query(&sql, params)? {
            let (ids, start, lang, text) =
                (u64s(&b, "chunk_id")?, u32s(&b, "start_line")?, strings(&b, "language")?, strings(&b, "text")?);
            for i in 0..b.num_rows() {
                if l.value.tombstones.contains(&ids[i]) {
                    continue;
                }
                language = lang[i].clone();
                for (k, line) in text[i].lines().enumerate() {
                    let at = start[i] as usize - 1 + k;
                    if lines.len() <= at {
                        lines.resize(at + 1, String::new());
                    }
                    lines[at] = line.to_string();
                }
            }
        }
        Ok((lines, language))
    }

    /// `ListRepos` (blocking).
    pub fn list_repos(&self) -> Result<ListReposResponse, HydrateError> {
        let mut repos = Vec::new();
        for l in self.catalog.snapshot() {
            let (marks, params) = Self::files_param(&l.value);
            let refs = if has_refs(&l) { "len(refs)" } else { "0" };
            let sql = format!("SELECT DISTINCT chunk_id, language, kind, {refs} AS refs FROM read_parquet([{marks}])");
            let mut langs: HashMap<String, u64> = HashMap::new();
            let (mut definitions, mut references) = (0u64, 0u64);
            for b in self.query(&sql, params)? {
                let (ids, lang, kind, n) =
                    (u64s(&b, "chunk_id")?, strings(&b, "language")?, strings(&b, "kind")?, u64s(&b, "refs")?);
                for i in 0..b.num_rows() {
                    if l.value.tombstones.contains(&ids[i]) {
                        continue;
                    }
                    *langs.entry(lang[i].clone()).or_default() += 1;
                    definitions += (kind[i] != "window") as u64;
                    references += n[i];
                }
            }
            let mut languages: Vec<LanguageCount> =
                langs.into_iter().map(|(language, chunks)| LanguageCount { language, chunks }).collect();
            languages.sort_by(|a, b| b.chunks.cmp(&a.chunks).then(a.language.cmp(&b.language)));
            let m = &l.manifest;
            repos.push(RepoSummary {
                repo: m.repo.clone(),
                version: m.version,
                chunks: m.chunks,
                files: m.files,
                languages,
                source: m.source.clone(),
                created_unix_ms: m.created_unix_ms,
                definitions,
                references,
                commit: m.git.as_ref().map(|g| g.commit.clone()).unwrap_or_default(),
                branch: m.git.as_ref().map(|g| g.branch.clone()).unwrap_or_default(),
                dirty: m.git.as_ref().is_some_and(|g| g.dirty),
            });
        }
        Ok(ListReposResponse { repos })
    }
}

/// Whether a version's segments have the `refs` column (chunk format 3 and later).
fn has_refs(l: &Loaded<RepoSegments>) -> bool {
    l.value.has_refs
}

fn not_indexed(repo: &str, path: &str) -> HydrateError {
    HydrateError::NotFound(format!(
        "repo {repo} has no indexed file {path} (paths are repo-relative, as search hits and list_symbols show them)"
    ))
}

/// The file under the indexed source folder: `None` when that folder is not readable here.
fn source_file(source: &str, path: &str) -> Option<std::io::Result<String>> {
    let root = Path::new(source);
    if source.is_empty() || !root.is_dir() {
        return None;
    }
    Some(std::fs::read(root.join(path)).and_then(|b| {
        String::from_utf8(b).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 any more"))
    }))
}

/// The trimmed line `line` of a chunk starting at `start`, at most 200 characters.
fn line_of(text: &str, start: u32, line: u32) -> String {
    let at = line.saturating_sub(start) as usize;
    text.lines().nth(at).unwrap_or("").trim().chars().take(200).collect()
}

fn strings_of(s: &arrow::array::StructArray, name: &str) -> Result<Vec<String>, HydrateError> {
    let a = s.column_by_name(name).ok_or_else(|| HydrateError::Internal(format!("refs have no field {name}")))?;
    let a = arrow::compute::cast(a, &DataType::Utf8)?;
    let a = a.as_string::<i32>();
    Ok((0..a.len()).map(|i| a.value(i).to_string()).collect())
}

fn u32s_of(s: &arrow::array::StructArray, name: &str) -> Result<Vec<u32>, HydrateError> {
    let a = s.column_by_name(name).ok_or_else(|| HydrateError::Internal(format!("refs have no field {name}")))?;
    Ok(arrow::compute::cast(a, &DataType::UInt32)?.as_primitive::<UInt32Type>().values().to_vec())
}

/// Resolution names by rank.
pub const RESOLUTIONS: [&str; 4] = ["qualified", "same_file", "imported", "name_only"];

/// How surely a use of the name means the symbol asked for (an index into [`RESOLUTIONS`]), or
/// `None` when it is written with another type-like qualifier.
pub fn resolve(r: &Reference, q: &SymbolName, same_file: bool, imported: bool) -> Option<u8> {
    let qual_last = r.qualifier.rsplit(['.', ':']).find(|s| !s.is_empty()).unwrap_or("");
    let self_like = matches!(qual_last, "self" | "this" | "Self" | "cls");
    if !q.parent.is_empty() {
        let parent = q.parent_last();
        if qual_last == parent {
            return Some(0);
        }
        let enclosing_parent = r.enclosing.replace("::", ".");
        let inside = enclosing_parent.rsplit_once('.').is_some_and(|(p, _)| p.rsplit('.').next() == Some(parent));
        if self_like && inside {
            return Some(0);
        }
        // Written with another type (`Other::new`, `Other.create`): not this symbol.
        if qual_last.chars().next().is_some_and(char::is_uppercase) && !self_like {
            return None;
        }
    }
    Some(if same_file {
        1
    } else if imported {
        2
    } else {
        3
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(qualifier: &str, enclosing: &str) -> Reference {
        Reference {
            name: "new".into(),
            qualifier: qualifier.into(),
            kind: "call".into(),
            enclosing: enclosing.into(),
            ..Default::default()
        }
    }

    #[test]
    fn symbols_parse_with_either_separator_and_refuse_what_is_not_a_name() {
        let s = SymbolName::parse("clap::Command::new").unwrap();
        assert_eq!(
            (s.qualified.as_str(), s.parent.as_str(), s.name.as_str()),
            ("clap.Command.new", "clap.Command", "new")
        );
        assert_eq!(s.parent_last(), "Command");
        let bare = SymbolName::parse(" parse ").unwrap();
        assert_eq!((bare.parent.as_str(), bare.name.as_str()), ("", "parse"));
        assert!(SymbolName::parse("").unwrap_err().to_string().contains("name a symbol"));
        assert!(SymbolName::parse("a b(").unwrap_err().to_string().contains("is not a name"));
        assert!(SymbolName::parse(&"x".repeat(600)).unwrap_err().to_string().contains("at most 512"));
    }

    #[test]
    fn a_use_resolves_by_its_qualifier_its_file_and_its_imports() {
        let q = SymbolName::parse("Command::new").unwrap();
        assert_eq!(resolve(&r("Command", "main"), &q, false, false), Some(0));
        assert_eq!(resolve(&r("clap::Command", "main"), &q, false, false), Some(0));
        assert_eq!(resolve(&r("Self", "Command::build"), &q, false, false), Some(0));
        // `Self` inside another type is not this one; nor is another type's `new`.
        assert_eq!(resolve(&r("Self", "Arg::build"), &q, true, false), Some(1));
        assert_eq!(resolve(&r("Arg", "main"), &q, true, true), None);
        assert_eq!(resolve(&r("builder", "main"), &q, false, true), Some(2));
        assert_eq!(resolve(&r("", "main"), &q, false, false), Some(3));
        let bare = SymbolName::parse("parse").unwrap();
        assert_eq!(resolve(&r("Other", "main"), &bare, false, false), Some(3), "a bare name keeps every use");
        assert_eq!(resolve(&r("", "main"), &bare, true, false), Some(1));
    }

    #[test]
    fn paths_must_stay_inside_the_repository() {
        for bad in ["../etc/passwd", "/etc/passwd", "src/../../x", "", "a\\..\\b"] {
            assert!(check_relative(bad).is_err(), "{bad}");
        }
        for ok in ["src/lib.rs", "./src/lib.rs", "a/b/c.py"] {
            assert!(check_relative(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn pieces_of_a_split_definition_merge_and_separate_ones_stay_apart() {
        let d = |s: u32, e: u32, sym: &str| DefRow {
            chunk_id: s as u64,
            def: Definition {
                repo: "r".into(),
                path: "p".into(),
                symbol: sym.into(),
                kind: "function".into(),
                start_line: s,
                end_line: e,
                ..Default::default()
            },
        };
        let merged = merge_pieces(vec![d(31, 60, "f"), d(1, 30, "f"), d(80, 90, "f"), d(10, 12, "g")]);
        let spans: Vec<_> = merged.iter().map(|d| (d.symbol.as_str(), d.start_line, d.end_line)).collect();
        assert_eq!(spans, vec![("f", 1, 60), ("f", 80, 90), ("g", 10, 12)]);
    }

    #[test]
    fn a_line_of_a_chunk_is_found_by_its_file_line() {
        assert_eq!(line_of("fn a() {\n    b();\n}", 10, 11), "b();");
        assert_eq!(line_of("x", 10, 99), "");
    }
}
