//! The names a file uses, read off its tree-sitter tree: calls (constructors included), type
//! uses, imports and macro invocations, each with the line it is on and what qualifies it as
//! written. [`crate::chunk_file`] hands each one to the innermost chunk holding its line.

use codeintel_core::chunk::Reference;
use std::collections::HashSet;
use tree_sitter::Node;

/// At most this many references are kept per file.
pub(crate) const MAX_REFS: usize = 4_000;
/// Longer names are not identifiers anyone searches for.
const MAX_NAME: usize = 100;
/// Qualifiers are cut to this many bytes (at a char boundary).
const MAX_QUALIFIER: usize = 120;

const CALL: &str = "call";
const TYPE: &str = "type";
const IMPORT: &str = "import";
const MACRO: &str = "macro";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lang {
    Python,
    Rust,
    Js,
    Go,
    Java,
}

impl Lang {
    fn of(language: &str) -> Option<Self> {
        Some(match language {
            "python" => Lang::Python,
            "rust" => Lang::Rust,
            "javascript" | "typescript" | "tsx" => Lang::Js,
            "go" => Lang::Go,
            "java" => Lang::Java,
            _ => return None,
        })
    }

    /// Names that are keywords standing for a value or a path, never a use of a name.
    fn reserved(self, name: &str) -> bool {
        match self {
            Lang::Python => matches!(name, "self" | "cls"),
            Lang::Rust => matches!(name, "self" | "Self" | "super" | "crate"),
            _ => false,
        }
    }
}

/// Every use of a name in the tree under `root`, as `(0-based row, reference)` (the reference's
/// `line` is the row + 1), in walk order, each (row, name, kind, qualifier) once, at most
/// [`MAX_REFS`]. Empty for a language without rules here.
pub(crate) fn references(root: Node, src: &[u8], language: &str) -> Vec<(usize, Reference)> {
    let Some(lang) = Lang::of(language) else {
        return Vec::new();
    };
    let mut c = Collector { src, lang, out: Vec::new(), seen: HashSet::new(), consumed: HashSet::new() };
    walk(root, |node, field, parent| {
        if c.full() {
            return Walk::Stop;
        }
        c.visit(node, field, parent)
    });
    c.out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    Descend,
    Skip,
    Stop,
}

/// Pre-order walk of the tree under `root` with a cursor (no recursion), telling the visitor
/// each node's field name in its parent and its parent.
fn walk<'t>(root: Node<'t>, mut visit: impl FnMut(Node<'t>, Option<&'static str>, Option<Node<'t>>) -> Walk) {
    let mut cursor = root.walk();
    let mut ancestors: Vec<Node<'t>> = Vec::new();
    loop {
        let node = cursor.node();
        match visit(node, cursor.field_name(), ancestors.last().copied()) {
            Walk::Stop => return,
            Walk::Descend if cursor.goto_first_child() => {
                ancestors.push(node);
                continue;
            }
            _ => {}
        }
        loop {
            if ancestors.is_empty() {
                return;
            }
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return;
            }
            ancestors.pop();
        }
    }
}

struct Collector<'s> {
    src: &'s [u8],
    lang: Lang,
    out: Vec<(usize, Reference)>,
    seen: HashSet<(usize, String, &'static str, String)>,
    /// Nodes already accounted for as part of a qualified name (Java's `java.util.List`).
    consumed: HashSet<usize>,
}

impl Collector<'_> {
    fn full(&self) -> bool {
        self.out.len() >= MAX_REFS
    }

    fn text(&self, n: Node) -> &str {
        n.utf8_text(self.src).unwrap_or("")
    }

    /// Records a use of `name` at `at`'s row, if the name is one.
    fn push(&mut self, at: Node, name: &str, kind: &'static str, qualifier: &str) {
        self.push_name(at.start_position().row, name, kind, qualifier, false);
    }

    fn push_name(&mut self, row: usize, name: &str, kind: &'static str, qualifier: &str, path_like: bool) {
        if self.full() {
            return;
        }
        let name = name.trim();
        let name = if self.lang == Lang::Rust { name.strip_prefix("r#").unwrap_or(name) } else { name };
        if !is_name(name, path_like) || self.lang.reserved(name) {
            return;
        }
        let qualifier = qualifier_of(qualifier);
        if self.seen.insert((row, name.to_string(), kind, qualifier.clone())) {
            let line = row as u32 + 1;
            self.out.push((row, Reference { name: name.to_string(), kind: kind.to_string(), line, qualifier }));
        }
    }

    fn visit(&mut self, node: Node, field: Option<&'static str>, parent: Option<Node>) -> Walk {
        if !node.is_named() {
            return Walk::Skip;
        }
        match self.lang {
            Lang::Rust => self.rust(node, field, parent),
            Lang::Python => self.python(node, field, parent),
            Lang::Js => self.js(node, field, parent),
            Lang::Go => self.go(node, field, parent),
            Lang::Java => self.java(node, parent),
        }
    }

    /// A `type_identifier` that names a type being used rather than one being defined (a
    /// definition's own `name`, or the `name` of a qualified type, which is recorded whole).
    fn type_identifier(&mut self, node: Node, field: Option<&'static str>, parent: Option<Node>) {
        let used =
            field != Some("name") || parent.is_some_and(|p| matches!(p.kind(), "generic_type" | "struct_expression"));
        if used {
            let name = self.text(node).to_string();
            self.push(node, &name, TYPE, "");
        }
    }

    /// `path`/`name`-style qualified names: the name's text, and the path's.
    fn qualified(&mut self, node: Node, path_field: &str, kind: &'static str) {
        if let Some(name) = node.child_by_field_name("name") {
            let path = node.child_by_field_name(path_field).map(|p| self.text(p).to_string()).unwrap_or_default();
            let n = self.text(name).to_string();
            self.push(name, &n, kind, &path);
        }
    }

    /// A call's callee: a bare name, `value.name`, or `path::name`.
    fn callee(&mut self, f: Node, kind: &'static str) {
        let (name_field, qual_field) = match f.kind() {
            "identifier" => {
                let n = self.text(f).to_string();
                self.push(f, &n, kind, "");
                return;
            }
            "field_expression" => ("field", "value"),
            "scoped_identifier" => ("name", "path"),
            "attribute" => ("attribute", "object"),
            "member_expression" => ("property", "object"),
            "selector_expression" => ("field", "operand"),
            _ => return,
        };
        if let Some(name) = f.child_by_field_name(name_field) {
            let qual = f.child_by_field_name(qual_field).map(|q| self.text(q).to_string()).unwrap_or_default();
            let n = self.text(name).to_string();
            self.push(name, &n, kind, &qual);
            // `Type::f(..)`, `Type.f(..)`, `module.Type.f(..)` also use `Type` (an associated
            // function, a class method, a constructor). Capitalised: a type by convention.
            let sep = match f.kind() {
                "scoped_identifier" => Some("::"),
                "attribute" | "member_expression" => Some("."),
                _ => None,
            };
            if let Some(sep) = sep {
                let (outer, last) = match qual.rsplit_once(sep) {
                    Some((o, l)) => (o.to_string(), l.to_string()),
                    None => (String::new(), qual.clone()),
                };
                let last = last.split('<').next().unwrap_or("").trim().to_string();
                if last.chars().next().is_some_and(char::is_uppercase) {
                    self.push(name, &last, TYPE, &outer);
                }
            }
        }
    }

    fn rust(&mut self, node: Node, field: Option<&'static str>, parent: Option<Node>) -> Walk {
        match node.kind() {
            "call_expression" => {
                if let Some(mut f) = node.child_by_field_name("function") {
                    if f.kind() == "generic_function" {
                        match f.child_by_field_name("function") {
                            Some(inner) => f = inner,
                            None => return Walk::Descend,
                        }
                    }
                    self.callee(f, CALL);
                }
            }
            "macro_invocation" => {
                if let Some(m) = node.child_by_field_name("macro") {
                    self.callee(m, MACRO);
                }
            }
            "type_identifier" => self.type_identifier(node, field, parent),
            "scoped_type_identifier" => self.qualified(node, "path", TYPE),
            "use_declaration" => {
                if let Some(arg) = node.child_by_field_name("argument") {
                    self.rust_use(arg);
                }
                return Walk::Skip;
            }
            _ => {}
        }
        Walk::Descend
    }

    /// The leaf names of a `use` tree, each qualified by the path leading to it.
    fn rust_use(&mut self, arg: Node) {
        let mut stack = vec![(arg, String::new())];
        while let Some((n, prefix)) = stack.pop() {
            match n.kind() {
                "identifier" => {
                    let name = self.text(n).to_string();
                    self.push(n, &name, IMPORT, &prefix);
                }
                "scoped_identifier" => {
                    if let Some(name) = n.child_by_field_name("name") {
                        let path = n.child_by_field_name("path").map(|p| self.text(p)).unwrap_or("");
                        let qual = join_path(&prefix, path);
                        let name_text = self.text(name).to_string();
                        self.push(name, &name_text, IMPORT, &qual);
                    }
                }
                "use_as_clause" => {
                    if let Some(path) = n.child_by_field_name("path") {
                        stack.push((path, prefix));
                    }
                }
                "scoped_use_list" => {
                    let path = n.child_by_field_name("path").map(|p| self.text(p)).unwrap_or("");
                    let qual = join_path(&prefix, path);
                    if let Some(list) = n.child_by_field_name("list") {
                        stack.push((list, qual));
                    }
                }
                "use_list" => {
                    let mut c = n.walk();
                    let items: Vec<Node> = n.named_children(&mut c).collect();
                    stack.extend(items.into_iter().rev().map(|i| (i, prefix.clone())));
                }
                // `self`, `super`, `crate` as leaves, `*`, metavariables: no name imported.
                _ => {}
            }
        }
    }

    fn python(&mut self, node: Node, field: Option<&'static str>, parent: Option<Node>) -> Walk {
        match node.kind() {
            "call" => {
                if let Some(f) = node.child_by_field_name("function") {
                    self.callee(f, CALL);
                    // `isinstance(x, Cls)`, `issubclass(C, (A, b.B))`: the classes are types.
                    let check = matches!(self.text(f), "isinstance" | "issubclass");
                    let classes = node.child_by_field_name("arguments").and_then(|a| a.named_child(1));
                    if let (true, Some(classes)) = (check, classes) {
                        self.python_types(classes);
                    }
                }
            }
            // `except Error:`, `except (A, b.B) as e:`
            "except_clause" => {
                if let Some(first) = node.named_child(0).filter(|n| n.kind() != "block") {
                    let classes = match first.kind() {
                        "as_pattern" => first.named_child(0),
                        _ => Some(first),
                    };
                    if let Some(c) = classes {
                        self.python_types(c);
                    }
                }
            }
            // A type alias's own name (`type Alias = ...`) is not a use.
            "type" if field == Some("left") && parent.is_some_and(|p| p.kind() == "type_alias_statement") => {}
            "type" => self.python_types(node),
            "class_definition" => {
                if let Some(supers) = node.child_by_field_name("superclasses") {
                    self.python_types(supers);
                }
            }
            "import_statement" => {
                let mut c = node.walk();
                let names: Vec<Node> = node.children_by_field_name("name", &mut c).collect();
                for n in names {
                    let dotted = match n.kind() {
                        "aliased_import" => n.child_by_field_name("name"),
                        _ => Some(n),
                    };
                    if let Some(d) = dotted {
                        let text = self.text(d).to_string();
                        let (qual, name) = text.rsplit_once('.').unwrap_or(("", &text));
                        self.push(d, name, IMPORT, qual);
                    }
                }
                return Walk::Skip;
            }
            "import_from_statement" | "future_import_statement" => {
                let module = match node.child_by_field_name("module_name") {
                    Some(m) => self.text(m).to_string(),
                    None => "__future__".to_string(),
                };
                let mut c = node.walk();
                let names: Vec<Node> = node.children_by_field_name("name", &mut c).collect();
                for n in names {
                    let dotted = match n.kind() {
                        "aliased_import" => n.child_by_field_name("name"),
                        _ => Some(n),
                    };
                    if let Some(d) = dotted {
                        let text = self.text(d).to_string();
                        let (qual, name) = match text.rsplit_once('.') {
                            Some((rest, name)) => (join_dotted(&module, rest), name),
                            None => (module.clone(), text.as_str()),
                        };
                        self.push(d, name, IMPORT, &qual);
                    }
                }
                return Walk::Skip;
            }
            _ => {}
        }
        Walk::Descend
    }

    /// The names used as types under a Python annotation, a class's superclass list, an
    /// `isinstance` check or an `except` clause: bare names, `module.Name` attributes and
    /// forward references written as a string holding one dotted name (`"Version"`); calls
    /// (recorded as calls by the main walk), keyword arguments (`metaclass=`) and other strings
    /// are not looked into.
    fn python_types(&mut self, root: Node) {
        let mut found: Vec<(Node, String, String)> = Vec::new();
        walk(root, |n, _, _| {
            if !n.is_named() {
                return Walk::Skip;
            }
            match n.kind() {
                "identifier" => {
                    found.push((n, self.text(n).to_string(), String::new()));
                    Walk::Skip
                }
                "attribute" => {
                    if let (Some(a), Some(o)) = (n.child_by_field_name("attribute"), n.child_by_field_name("object")) {
                        found.push((a, self.text(a).to_string(), self.text(o).to_string()));
                    }
                    Walk::Skip
                }
                "member_type" => {
                    let mut c = n.walk();
                    let last = n.named_children(&mut c).filter(|x| x.kind() == "identifier").last();
                    if let Some(id) = last {
                        let qual = self.src.get(n.start_byte()..id.start_byte()).unwrap_or(&[]);
                        let qual = String::from_utf8_lossy(qual).trim_end().trim_end_matches('.').to_string();
                        found.push((id, self.text(id).to_string(), qual));
                    }
                    Walk::Skip
                }
                "string" => {
                    let text = self.text(n);
                    let inner = text.trim_matches(|c| c == '"' || c == '\'');
                    let dotted = !inner.is_empty()
                        && inner.split('.').all(|p| {
                            p.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
                                && p.chars().all(|c| c.is_alphanumeric() || c == '_')
                        });
                    if dotted && inner.len() + 2 == text.len() {
                        let (qual, name) = inner.rsplit_once('.').unwrap_or(("", inner));
                        found.push((n, name.to_string(), qual.to_string()));
                    }
                    Walk::Skip
                }
                "call" | "keyword_argument" | "lambda" => Walk::Skip,
                _ => Walk::Descend,
            }
        });
        for (n, name, qual) in found {
            self.push(n, &name, TYPE, &qual);
        }
    }

    fn js(&mut self, node: Node, field: Option<&'static str>, parent: Option<Node>) -> Walk {
        match node.kind() {
            "call_expression" => {
                if let Some(f) = node.child_by_field_name("function") {
                    self.callee(f, CALL);
                }
            }
            "new_expression" => {
                if let Some(f) = node.child_by_field_name("constructor") {
                    self.callee(f, CALL);
                }
            }
            "type_identifier" => self.type_identifier(node, field, parent),
            "nested_type_identifier" => self.qualified(node, "module", TYPE),
            // `class A extends B`: JavaScript's heritage holds the expression, TypeScript's an
            // `extends_clause` with it as `value`.
            "class_heritage" => {
                let mut c = node.walk();
                let supers: Vec<Node> = node.named_children(&mut c).collect();
                for s in supers {
                    self.callee(s, TYPE);
                }
            }
            "extends_clause" => {
                if let Some(v) = node.child_by_field_name("value") {
                    self.callee(v, TYPE);
                }
            }
            "import_statement" => {
                let module = node.child_by_field_name("source").map(|s| unquote(self.text(s)).to_string());
                let mut c = node.walk();
                let children: Vec<Node> = node.named_children(&mut c).collect();
                for child in children {
                    match child.kind() {
                        "import_clause" => self.js_import_clause(child, module.as_deref().unwrap_or("")),
                        "import_require_clause" => {
                            let m = child.child_by_field_name("source").map(|s| unquote(self.text(s)).to_string());
                            let mut c2 = child.walk();
                            let id = child.named_children(&mut c2).find(|x| x.kind() == "identifier");
                            if let Some(id) = id {
                                let name = self.text(id).to_string();
                                self.push(id, &name, IMPORT, m.as_deref().unwrap_or(""));
                            }
                        }
                        _ => {}
                    }
                }
                return Walk::Skip;
            }
            _ => {}
        }
        Walk::Descend
    }

    /// `import D, { a, b as c } from 'm'` -> D, a, b; `import * as ns from 'm'` -> ns.
    fn js_import_clause(&mut self, clause: Node, module: &str) {
        let mut c = clause.walk();
        let parts: Vec<Node> = clause.named_children(&mut c).collect();
        for part in parts {
            match part.kind() {
                "identifier" => {
                    let name = self.text(part).to_string();
                    self.push(part, &name, IMPORT, module);
                }
                "named_imports" => {
                    let mut c2 = part.walk();
                    let specs: Vec<Node> =
                        part.named_children(&mut c2).filter(|s| s.kind() == "import_specifier").collect();
                    for s in specs {
                        if let Some(n) = s.child_by_field_name("name") {
                            let name = unquote(self.text(n)).to_string();
                            self.push(n, &name, IMPORT, module);
                        }
                    }
                }
                "namespace_import" => {
                    let mut c2 = part.walk();
                    let id = part.named_children(&mut c2).find(|x| x.kind() == "identifier");
                    if let Some(id) = id {
                        let name = self.text(id).to_string();
                        self.push(id, &name, IMPORT, module);
                    }
                }
                _ => {}
            }
        }
    }

    fn go(&mut self, node: Node, field: Option<&'static str>, parent: Option<Node>) -> Walk {
        match node.kind() {
            "call_expression" => {
                if let Some(f) = node.child_by_field_name("function") {
                    self.callee(f, CALL);
                }
            }
            "type_identifier" => self.type_identifier(node, field, parent),
            "qualified_type" => self.qualified(node, "package", TYPE),
            "import_spec" => {
                if let Some(p) = node.child_by_field_name("path") {
                    let path = unquote(self.text(p)).to_string();
                    let (qual, name) = path.rsplit_once('/').unwrap_or(("", &path));
                    self.push_name(p.start_position().row, name, IMPORT, qual, true);
                }
                return Walk::Skip;
            }
            _ => {}
        }
        Walk::Descend
    }

    fn java(&mut self, node: Node, parent: Option<Node>) -> Walk {
        match node.kind() {
            "method_invocation" => {
                if let Some(n) = node.child_by_field_name("name") {
                    let qual = node.child_by_field_name("object").map(|o| self.text(o).to_string()).unwrap_or_default();
                    let name = self.text(n).to_string();
                    self.push(n, &name, CALL, &qual);
                }
            }
            "object_creation_expression" => {
                let mut ty = node.child_by_field_name("type");
                if let Some(g) = ty.filter(|t| t.kind() == "generic_type") {
                    ty = g.named_child(0);
                }
                if let Some(t) = ty {
                    match t.kind() {
                        "type_identifier" => {
                            let name = self.text(t).to_string();
                            self.push(t, &name, CALL, "");
                            self.consumed.insert(t.id());
                        }
                        "scoped_type_identifier" => {
                            if let Some((id, name, qual)) = self.java_scoped(t) {
                                self.push(id, &name, CALL, &qual);
                            }
                            self.consumed.insert(t.id());
                        }
                        _ => {}
                    }
                }
            }
            "type_identifier" if self.consumed.contains(&node.id()) => {}
            // `class Box<T>`: T is defined here, not used.
            "type_identifier" if parent.is_some_and(|p| p.kind() == "type_parameter") => {}
            "type_identifier" => {
                let name = self.text(node).to_string();
                if name != "var" {
                    self.push(node, &name, TYPE, "");
                }
            }
            "scoped_type_identifier" if self.consumed.contains(&node.id()) => {}
            "scoped_type_identifier" => {
                if let Some((id, name, qual)) = self.java_scoped(node) {
                    self.push(id, &name, TYPE, &qual);
                }
            }
            "import_declaration" => {
                let mut c = node.walk();
                let target =
                    node.named_children(&mut c).find(|x| matches!(x.kind(), "scoped_identifier" | "identifier"));
                let wildcard = {
                    let mut c2 = node.walk();
                    let w = node.named_children(&mut c2).any(|x| x.kind() == "asterisk");
                    w
                };
                match target {
                    Some(t) if !wildcard && t.kind() == "scoped_identifier" => self.qualified(t, "scope", IMPORT),
                    Some(t) if !wildcard => {
                        let name = self.text(t).to_string();
                        self.push(t, &name, IMPORT, "");
                    }
                    _ => {}
                }
                return Walk::Skip;
            }
            _ => {}
        }
        Walk::Descend
    }

    /// Java's `a.b.C` (no fields): its last type identifier, the text before it, and every
    /// type identifier of the path marked consumed so it is not recorded again on its own
    /// (those inside type arguments, `Outer<Arg>.Inner`, are uses and stay).
    fn java_scoped<'t>(&mut self, node: Node<'t>) -> Option<(Node<'t>, String, String)> {
        let mut c = node.walk();
        let id = node.named_children(&mut c).filter(|x| x.kind() == "type_identifier").last()?;
        let qual = self.src.get(node.start_byte()..id.start_byte()).unwrap_or(&[]);
        let qual = String::from_utf8_lossy(qual).trim_end().trim_end_matches('.').to_string();
        let mut path = Vec::new();
        walk(node, |n, _, _| match n.kind() {
            "type_arguments" => Walk::Skip,
            "type_identifier" | "scoped_type_identifier" => {
                path.push(n.id());
                Walk::Descend
            }
            _ => Walk::Descend,
        });
        self.consumed.extend(path);
        Some((id, self.text(id).to_string(), qual))
    }
}

/// Whether `name` is a name worth recording: an identifier of at most [`MAX_NAME`] bytes (a Go
/// import's last path segment, `path_like`, may also hold `.` and `-`: `yaml.v3`, `go-cmp`).
fn is_name(name: &str, path_like: bool) -> bool {
    if name.is_empty() || name.len() > MAX_NAME || name.starts_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '$' || (path_like && (c == '.' || c == '-')))
}

/// A qualifier as one line: whitespace runs dropped (kept as one space only between two word
/// characters, `new Foo().bar`), so a chain split over lines reads `a.b().c`; cut to
/// [`MAX_QUALIFIER`] bytes at a char boundary.
pub(crate) fn qualifier_of(text: &str) -> String {
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    let mut out = String::with_capacity(text.len().min(MAX_QUALIFIER + 4));
    let mut pending_space = false;
    for ch in text.trim().chars() {
        if ch.is_whitespace() {
            pending_space = true;
            continue;
        }
        let space = pending_space && out.chars().next_back().is_some_and(word) && word(ch);
        pending_space = false;
        if out.len() + usize::from(space) + ch.len_utf8() > MAX_QUALIFIER {
            break;
        }
        if space {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}

fn join_path(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}::{path}"),
    }
}

fn join_dotted(module: &str, rest: &str) -> String {
    if module.is_empty() || module.ends_with('.') {
        format!("{module}{rest}")
    } else {
        format!("{module}.{rest}")
    }
}

fn unquote(s: &str) -> &str {
    s.trim().trim_matches(|c| c == '"' || c == '\'' || c == '`')
}
