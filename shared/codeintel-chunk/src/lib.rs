//! Code-aware chunking with tree-sitter: one chunk per function, method and class/struct/impl
//! header (with its decorators, attributes and leading comments), long definitions split at
//! statement boundaries, and a line-window fallback for the remaining lines and for languages
//! without a grammar. Line numbers are 1-based and inclusive. Also the walk of a source tree
//! ([`walk`]) and the rules that keep secrets out of the index ([`secrets`]).

mod refs;
pub mod secrets;
pub mod walk;

use codeintel_core::chunk::{chunk_id, sha256_hex, Chunk, ChunkOptions, Reference};
use tree_sitter::{Language, Node, Parser};

/// Chunk kinds that define a type and so carry `Chunk::members`.
const TYPE_KINDS: &[&str] = &["class", "struct", "enum", "union", "trait", "interface", "impl"];

/// At most this many member names are indexed with a type.
const MAX_MEMBERS: usize = 48;

struct Spec {
    language: fn() -> Language,
    /// Class-like nodes: a header chunk, then their members.
    containers: &'static [&'static str],
    /// Leaf definitions: one chunk each.
    functions: &'static [&'static str],
    /// Nodes wrapping a definition that belong to its span (decorators, `export`).
    wrappers: &'static [&'static str],
    /// Preceding siblings that belong to the next definition (attributes, comments).
    leading: &'static [&'static str],
    sep: &'static str,
}

fn spec(language: &str) -> Option<Spec> {
    Some(match language {
        "python" => Spec {
            language: || tree_sitter_python::LANGUAGE.into(),
            containers: &["class_definition"],
            functions: &["function_definition"],
            wrappers: &["decorated_definition"],
            leading: &["comment"],
            sep: ".",
        },
        "rust" => Spec {
            language: || tree_sitter_rust::LANGUAGE.into(),
            containers: &["impl_item", "trait_item", "mod_item"],
            functions: &[
                "function_item",
                "function_signature_item",
                "struct_item",
                "enum_item",
                "union_item",
                "macro_definition",
                "type_item",
                "const_item",
                "static_item",
            ],
            wrappers: &[],
            leading: &["attribute_item", "line_comment", "block_comment"],
            sep: "::",
        },
        "javascript" | "typescript" | "tsx" => Spec {
            language: match language {
                "javascript" => || tree_sitter_javascript::LANGUAGE.into(),
                "typescript" => || tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
                _ => || tree_sitter_typescript::LANGUAGE_TSX.into(),
            },
            containers: &[
                "class_declaration",
                "abstract_class_declaration",
                "class",
                "interface_declaration",
                "internal_module",
            ],
            functions: &[
                "function_declaration",
                "generator_function_declaration",
                "method_definition",
                "lexical_declaration",
                "variable_declaration",
                "expression_statement",
                "pair",
                "type_alias_declaration",
                "enum_declaration",
                "abstract_method_signature",
            ],
            wrappers: &["export_statement"],
            leading: &["comment", "decorator"],
            sep: ".",
        },
        "go" => Spec {
            language: || tree_sitter_go::LANGUAGE.into(),
            containers: &[],
            functions: &["function_declaration", "method_declaration", "type_declaration"],
            wrappers: &[],
            leading: &["comment"],
            sep: ".",
        },
        "java" => Spec {
            language: || tree_sitter_java::LANGUAGE.into(),
            containers: &["class_declaration", "interface_declaration", "enum_declaration", "record_declaration"],
            functions: &["method_declaration", "constructor_declaration", "annotation_type_declaration"],
            wrappers: &[],
            leading: &["line_comment", "block_comment"],
            sep: ".",
        },
        _ => return None,
    })
}

/// A definition found in the tree, before it is turned into chunks.
struct Def {
    start: usize,
    end: usize,
    /// Line of the definition's own node (after decorators/comments).
    body_split_from: Option<(usize, Vec<usize>)>,
    /// For a class-like container, the last line of the whole definition (`end` is its header's).
    full_end: Option<usize>,
    symbol: String,
    kind: String,
    parent: String,
}

struct Walker<'a> {
    src: &'a [u8],
    spec: &'a Spec,
    defs: Vec<Def>,
}

fn end_row(n: Node) -> usize {
    let e = n.end_position();
    if e.column == 0 && e.row > n.start_position().row {
        e.row - 1
    } else {
        e.row
    }
}

fn text_of<'s>(n: Node, src: &'s [u8]) -> &'s str {
    n.utf8_text(src).unwrap_or("")
}

fn is_function_value(kind: &str) -> bool {
    matches!(
        kind,
        "arrow_function" | "function_expression" | "function" | "generator_function" | "class" | "class_expression"
    )
}

impl<'a> Walker<'a> {
    fn visit(&mut self, node: Node, parent: &str) {
        let mut cursor = node.walk();
        let children: Vec<Node> = node.named_children(&mut cursor).collect();
        for (i, &child) in children.iter().enumerate() {
            let (outer, def) = self.unwrap_def(child);
            let Some(def) = def else {
                if child.named_child_count() > 0 && !self.spec.leading.contains(&child.kind()) {
                    self.visit(child, parent);
                }
                continue;
            };
            let kind = def.kind();
            let Some((name, label)) = self.name_and_kind(def) else {
                if child.named_child_count() > 0 {
                    self.visit(child, parent);
                }
                continue;
            };
            // Leading attributes/comments directly above (no blank line between).
            let mut start = outer.start_position().row;
            let mut j = i;
            while j > 0 {
                let prev = children[j - 1];
                if self.spec.leading.contains(&prev.kind()) && end_row(prev) + 1 >= start && end_row(prev) < start {
                    start = prev.start_position().row;
                    j -= 1;
                } else {
                    break;
                }
            }
            let end = end_row(outer);
            let symbol = if parent.is_empty() { name.clone() } else { format!("{parent}{}{name}", self.spec.sep) };
            if self.spec.containers.contains(&kind) {
                let body = def.child_by_field_name("body");
                let header_len = self.defs.len();
                self.defs.push(Def {
                    start,
                    end,
                    body_split_from: None,
                    full_end: Some(end),
                    symbol: symbol.clone(),
                    kind: label,
                    parent: parent.to_string(),
                });
                let qualified = if kind == "impl_item" { name.clone() } else { symbol.clone() };
                if let Some(body) = body {
                    self.visit(body, &qualified);
                }
                // Header: up to the first member definition found inside.
                if let Some(first) = self.defs[header_len + 1..].iter().map(|d| d.start).min() {
                    let header_end = first.saturating_sub(1).max(def.start_position().row);
                    self.defs[header_len].end = header_end.min(end);
                }
                continue;
            }
            let label = if label == "function" && !parent.is_empty() { "method".to_string() } else { label };
            let statements = def
                .child_by_field_name("body")
                .or_else(|| def.child_by_field_name("value").and_then(|v| v.child_by_field_name("body")))
                .map(|b| {
                    let mut c = b.walk();
                    b.named_children(&mut c).map(|s| s.start_position().row).collect::<Vec<_>>()
                })
                .unwrap_or_default();
            self.defs.push(Def {
                start,
                end,
                body_split_from: Some((def.start_position().row, statements)),
                full_end: None,
                symbol,
                kind: label,
                parent: parent.to_string(),
            });
        }
    }

    /// Returns (node giving the span, definition node) for a definition or a wrapper of one.
    fn unwrap_def<'t>(&self, n: Node<'t>) -> (Node<'t>, Option<Node<'t>>) {
        if self.spec.wrappers.contains(&n.kind()) {
            let inner =
                n.child_by_field_name("definition").or_else(|| n.child_by_field_name("declaration")).or_else(|| {
                    let mut c = n.walk();
                    let found = n.named_children(&mut c).find(|x| self.is_def_kind(x.kind()));
                    found
                });
            return match inner {
                Some(d) if self.is_def_kind(d.kind()) => (n, Some(d)),
                _ => (n, None),
            };
        }
        if self.is_def_kind(n.kind()) {
            (n, Some(n))
        } else {
            (n, None)
        }
    }

    fn is_def_kind(&self, k: &str) -> bool {
        self.spec.containers.contains(&k) || self.spec.functions.contains(&k)
    }

    fn name_and_kind(&self, def: Node) -> Option<(String, String)> {
        let src = self.src;
        let field = |n: Node, f: &str| n.child_by_field_name(f).map(|x| text_of(x, src).to_string());
        let kind = def.kind();
        let label = |s: &str| s.to_string();
        Some(match kind {
            "impl_item" => {
                let ty = field(def, "type")?;
                let ty = ty.split('<').next().unwrap_or(&ty).trim().to_string();
                (ty, label("impl"))
            }
            "lexical_declaration" | "variable_declaration" => {
                let mut c = def.walk();
                let decl = def.named_children(&mut c).find(|x| x.kind() == "variable_declarator")?;
                let value = decl.child_by_field_name("value")?;
                if !is_function_value(value.kind()) {
                    return None;
                }
                let k = if value.kind().starts_with("class") { "class" } else { "function" };
                (field(decl, "name")?, label(k))
            }
            "expression_statement" => {
                let a = def.named_child(0).filter(|x| x.kind() == "assignment_expression")?;
                let value = a.child_by_field_name("right")?;
                if !is_function_value(value.kind()) {
                    return None;
                }
                let left = field(a, "left")?;
                let name = left.rsplit('.').next().unwrap_or(&left).to_string();
                (name, label("function"))
            }
            "pair" => {
                let value = def.child_by_field_name("value")?;
                if !is_function_value(value.kind()) {
                    return None;
                }
                let key = field(def, "key")?;
                (key.trim_matches(|c| c == '"' || c == '\'').to_string(), label("function"))
            }
            "method_declaration" if def.child_by_field_name("receiver").is_some() => {
                // Go method: qualify by the receiver type.
                let recv = field(def, "receiver").unwrap_or_default();
                let ty = recv
                    .trim_matches(|c| c == '(' || c == ')')
                    .split_whitespace()
                    .last()
                    .unwrap_or("")
                    .trim_start_matches('*')
                    .split('[')
                    .next()
                    .unwrap_or("")
                    .to_string();
                let name = field(def, "name")?;
                (if ty.is_empty() { name } else { format!("{ty}.{name}") }, label("method"))
            }
            "type_declaration" => {
                let mut c = def.walk();
                let spec = def.named_children(&mut c).find(|x| x.kind() == "type_spec" || x.kind() == "type_alias")?;
                (field(spec, "name")?, label("type"))
            }
            _ => {
                let name = field(def, "name")?;
                let k = match kind {
                    "class_definition" | "class_declaration" | "abstract_class_declaration" | "class" => "class",
                    "struct_item" => "struct",
                    "enum_item" | "enum_declaration" => "enum",
                    "union_item" => "union",
                    "trait_item" => "trait",
                    "interface_declaration" | "annotation_type_declaration" => "interface",
                    "mod_item" | "internal_module" => "module",
                    "macro_definition" => "macro",
                    "type_item" | "type_alias_declaration" => "type",
                    "const_item" | "static_item" => "const",
                    "record_declaration" => "class",
                    "method_definition" | "abstract_method_signature" | "constructor_declaration" => "method",
                    _ => "function",
                };
                (name, label(k))
            }
        })
    }
}

/// Chunks one file. `path` is repo-relative with `/` separators.
pub fn chunk_file(repo: &str, path: &str, language: &str, source: &str, opts: ChunkOptions) -> Vec<Chunk> {
    let lines: Vec<&str> = source.lines().collect();
    if lines.is_empty() {
        return Vec::new();
    }
    let mut defs = Vec::new();
    let mut file_refs = Vec::new();
    if let Some(spec) = spec(language) {
        let mut parser = Parser::new();
        if parser.set_language(&(spec.language)()).is_ok() {
            if let Some(tree) = parser.parse(source, None) {
                let mut w = Walker { src: source.as_bytes(), spec: &spec, defs: Vec::new() };
                w.visit(tree.root_node(), "");
                defs = w.defs;
                file_refs = refs::references(tree.root_node(), source.as_bytes(), language);
            }
        }
    }
    let last = lines.len() - 1;
    let mut covered = vec![false; lines.len()];
    let mut spans: Vec<(usize, usize, String, String, String)> = Vec::new();
    for d in &defs {
        // A class-like definition that fits one chunk is one chunk, its members included (its
        // methods still get their own); a longer one keeps only its header.
        let end = match d.full_end {
            Some(full) if full + 1 - d.start <= opts.max_chunk_lines => full,
            _ => d.end,
        }
        .min(last);
        if d.start > end {
            continue;
        }
        for c in &mut covered[d.start..=end] {
            *c = true;
        }
        match &d.body_split_from {
            Some((_, stmts)) if end - d.start + 1 > opts.max_chunk_lines => {
                for (s, e) in split_at_statements(d.start, end, stmts, opts.max_chunk_lines) {
                    spans.push((s, e, d.symbol.clone(), d.kind.clone(), d.parent.clone()));
                }
            }
            _ => spans.push((d.start, end, d.symbol.clone(), d.kind.clone(), d.parent.clone())),
        }
    }
    // Fallback windows over the lines no definition covers.
    let mut i = 0;
    while i < lines.len() {
        if covered[i] {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < lines.len() && !covered[j] && j - i < opts.window_lines {
            j += 1;
        }
        let window = &lines[i..j];
        let substantive = window.iter().filter(|l| l.trim().chars().any(|c| c.is_alphanumeric())).count();
        if substantive > 0 {
            // Trim blank lines at both ends so spans are tight.
            let s = i + window.iter().position(|l| !l.trim().is_empty()).unwrap_or(0);
            let e = i + window.iter().rposition(|l| !l.trim().is_empty()).unwrap_or(window.len() - 1);
            spans.push((s, e, String::new(), "window".into(), String::new()));
        }
        i = j;
    }
    spans.sort_by_key(|s| (s.0, s.1));
    let mut chunk_refs = refs_by_span(&spans.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(), lines.len(), file_refs);
    let mut members = members_by_parent(&defs);
    spans
        .into_iter()
        .zip(chunk_refs.iter_mut())
        .map(|((s, e, symbol, kind, parent), refs)| {
            let text = lines[s..=e].join("\n");
            // The first chunk of a type carries its members.
            let members = if TYPE_KINDS.contains(&kind.as_str()) {
                let last = symbol.rsplit(['.', ':']).next().unwrap_or(&symbol);
                members.remove(&symbol).or_else(|| members.remove(last)).unwrap_or_default()
            } else {
                String::new()
            };
            let content_hash = if members.is_empty() {
                sha256_hex(text.as_bytes())
            } else {
                sha256_hex(format!("{text}\0{members}").as_bytes())
            };
            let (start_line, end_line) = (s as u32 + 1, e as u32 + 1);
            let signature = if symbol.is_empty() {
                String::new()
            } else {
                lines[s..=e]
                    .iter()
                    .map(|l| l.trim())
                    .find(|l| {
                        !l.is_empty()
                            && !l.starts_with('@')
                            && !l.starts_with("#[")
                            && !l.starts_with("//")
                            && !l.starts_with('#')
                    })
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect()
            };
            Chunk {
                chunk_id: chunk_id(repo, path, start_line, end_line, &content_hash),
                repo: repo.to_string(),
                path: path.to_string(),
                language: language.to_string(),
                start_line,
                end_line,
                symbol,
                kind,
                parent,
                signature,
                members,
                content_hash,
                text,
                refs: std::mem::take(refs),
                ..Chunk::default()
            }
        })
        .collect()
}

/// Hands each reference (0-based row) to the innermost span (0-based, inclusive) holding its
/// row: the shortest, of equally long ones the later-starting. A reference on a row no span
/// holds is dropped. Each span's references come sorted by (line, name).
fn refs_by_span(spans: &[(usize, usize)], rows: usize, refs: Vec<(usize, Reference)>) -> Vec<Vec<Reference>> {
    let mut out: Vec<Vec<Reference>> = vec![Vec::new(); spans.len()];
    if refs.is_empty() {
        return out;
    }
    // Paint rows with their owner, outermost first, so inner spans overwrite.
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(spans[i].1 - spans[i].0), spans[i].0));
    let mut owner: Vec<Option<usize>> = vec![None; rows];
    for i in order {
        let (s, e) = spans[i];
        for o in owner.iter_mut().take(e + 1).skip(s) {
            *o = Some(i);
        }
    }
    for (row, r) in refs {
        if let Some(Some(i)) = owner.get(row) {
            out[*i].push(r);
        }
    }
    for v in &mut out {
        v.sort_by(|a, b| (a.line, &a.name, &a.kind, &a.qualifier).cmp(&(b.line, &b.name, &b.kind, &b.qualifier)));
    }
    out
}

/// Member names per enclosing type (qualified as the members' `parent`), in source order,
/// without repeats, at most [`MAX_MEMBERS`] each, comma-separated.
fn members_by_parent(defs: &[Def]) -> std::collections::HashMap<String, String> {
    let mut names: std::collections::HashMap<&str, Vec<&str>> = std::collections::HashMap::new();
    let mut sorted: Vec<&Def> = defs.iter().filter(|d| !d.parent.is_empty()).collect();
    sorted.sort_by_key(|d| d.start);
    for d in sorted {
        let name = d.symbol.rsplit(['.', ':']).next().unwrap_or(&d.symbol);
        let v = names.entry(d.parent.as_str()).or_default();
        if !name.is_empty() && v.len() < MAX_MEMBERS && !v.contains(&name) {
            v.push(name);
        }
    }
    names.into_iter().map(|(p, v)| (p.to_string(), v.join(", "))).collect()
}

/// Splits `[start, end]` into pieces of at most `max` lines, cutting only where a statement of
/// the body begins (falling back to fixed windows for a single over-long statement).
fn split_at_statements(start: usize, end: usize, stmts: &[usize], max: usize) -> Vec<(usize, usize)> {
    let mut bounds: Vec<usize> = stmts.iter().copied().filter(|&b| b > start && b <= end).collect();
    bounds.sort_unstable();
    bounds.dedup();
    let mut pieces = Vec::new();
    let mut cur = start;
    let mut last_ok: Option<usize> = None;
    for &b in &bounds {
        if b - cur > max {
            let cut = last_ok.filter(|&l| l > cur).unwrap_or(b);
            pieces.push((cur, cut - 1));
            cur = cut;
        }
        last_ok = Some(b);
    }
    pieces.push((cur, end));
    // A single statement longer than the limit: fixed windows.
    let mut out = Vec::new();
    for (s, e) in pieces {
        let mut s2 = s;
        while e + 1 - s2 > max * 2 {
            out.push((s2, s2 + max - 1));
            s2 += max;
        }
        out.push((s2, e));
    }
    out
}

#[cfg(test)]
mod tests;
