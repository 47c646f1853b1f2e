use super::*;
use codeintel_core::chunk::words_of;

fn spans(lang: &str, src: &str) -> Vec<(u32, u32, String, String)> {
    let opts = ChunkOptions { max_chunk_lines: 30, window_lines: 40 };
    chunk_file("r", "f", lang, src, opts).into_iter().map(|c| (c.start_line, c.end_line, c.symbol, c.kind)).collect()
}

fn t(s: u32, e: u32, sym: &str, kind: &str) -> (u32, u32, String, String) {
    (s, e, sym.to_string(), kind.to_string())
}

#[test]
fn python_functions_classes_methods_and_decorators() {
    let src = "\
import os

@decorator
def top(a, b):
    return a + b

class Greeter(Base):
    greeting = 'hi'

    def __init__(self, name):
        self.name = name

    @property
    def loud(self):
        return self.name.upper()
";
    assert_eq!(
        spans("python", src),
        vec![
            t(1, 1, "", "window"),
            t(3, 5, "top", "function"),
            t(7, 15, "Greeter", "class"),
            t(10, 11, "Greeter.__init__", "method"),
            t(13, 15, "Greeter.loud", "method"),
        ]
    );
}

#[test]
fn rust_items_impls_and_attributes() {
    let src = "\
use std::fmt;

#[derive(Debug)]
pub struct Point {
    x: i32,
}

impl Point {
    pub fn new(x: i32) -> Self {
        Self { x }
    }
}

// Adds one.
fn add_one(v: i32) -> i32 {
    v + 1
}

macro_rules! square {
    ($x:expr) => { $x * $x };
}
";
    assert_eq!(
        spans("rust", src),
        vec![
            t(1, 1, "", "window"),
            t(3, 6, "Point", "struct"),
            t(8, 12, "Point", "impl"),
            t(9, 11, "Point::new", "method"),
            t(14, 17, "add_one", "function"),
            t(19, 21, "square", "macro"),
        ]
    );
}

#[test]
fn javascript_classes_methods_exports_and_function_values() {
    let src = "\
const helper = (x) => x * 2;

export class Command extends EventEmitter {
  constructor(name) {
    super();
  }

  option(flags) {
    return this;
  }
}

function plain() {
  return 1;
}

Command.prototype.extra = function () {
  return 2;
};
";
    assert_eq!(
        spans("javascript", src),
        vec![
            t(1, 1, "helper", "function"),
            t(3, 11, "Command", "class"),
            t(4, 6, "Command.constructor", "method"),
            t(8, 10, "Command.option", "method"),
            t(13, 15, "plain", "function"),
            t(17, 19, "extra", "function"),
        ]
    );
}

#[test]
fn typescript_interfaces_and_classes() {
    let src = "\
export interface Shape {
  area(): number;
}

export class Circle implements Shape {
  constructor(private r: number) {}
  area(): number {
    return Math.PI * this.r * this.r;
  }
}
";
    let s = spans("typescript", src);
    assert!(s.contains(&t(1, 3, "Shape", "interface")), "{s:?}");
    assert!(s.contains(&t(7, 9, "Circle.area", "method")), "{s:?}");
    assert!(s.iter().any(|x| x.2 == "Circle" && x.0 == 5), "{s:?}");
}

#[test]
fn go_functions_methods_and_types() {
    let src = "\
package main

// Server serves.
type Server struct {
	addr string
}

func (s *Server) Start() error {
	return nil
}

func main() {
}
";
    assert_eq!(
        spans("go", src),
        vec![
            t(1, 1, "", "window"),
            t(3, 6, "Server", "type"),
            t(8, 10, "Server.Start", "method"),
            t(12, 13, "main", "function"),
        ]
    );
}

#[test]
fn java_classes_and_methods() {
    let src = "\
package x;

public class Greeter {
    private String name;

    @Override
    public String toString() {
        return name;
    }
}
";
    assert_eq!(
        spans("java", src),
        vec![t(1, 1, "", "window"), t(3, 10, "Greeter", "class"), t(6, 9, "Greeter.toString", "method")]
    );
}

#[test]
fn long_functions_split_at_statements_and_unknown_text_falls_back_to_windows() {
    let body: String = (0..70).map(|i| format!("    x{i} = {i}\n")).collect();
    let src = format!("def long():\n{body}    return x0\n");
    let s = spans("python", &src);
    assert!(s.len() >= 3, "{s:?}");
    assert_eq!(s[0].0, 1);
    assert_eq!(s.last().unwrap().1, 72);
    for w in s.windows(2) {
        assert_eq!(w[0].1 + 1, w[1].0, "pieces are contiguous: {s:?}");
    }
    assert!(s.iter().all(|x| x.1 - x.0 < 30 && x.2 == "long"), "{s:?}");

    let text: String = (1..=90).map(|i| format!("line {i}\n")).collect();
    let w = spans("text", &text);
    assert_eq!(w, vec![t(1, 40, "", "window"), t(41, 80, "", "window"), t(81, 90, "", "window")]);
}

#[test]
fn chunk_ids_are_stable_and_text_matches_the_span() {
    let src = "def a():\n    return 1\n\n\ndef b():\n    return 2\n";
    let c1 = chunk_file("r", "m.py", "python", src, ChunkOptions::default());
    let c2 = chunk_file("r", "m.py", "python", src, ChunkOptions::default());
    assert_eq!(c1, c2);
    assert_eq!(c1[1].text, "def b():\n    return 2");
    assert_eq!(c1[1].signature, "def b():");
    assert_ne!(c1[0].chunk_id, c1[1].chunk_id);
    assert!(c1.iter().all(|c| c.chunk_id < (1 << 63)));
}

#[test]
fn a_long_class_keeps_only_its_header_and_types_carry_their_members() {
    let methods: String = (0..12).map(|i| format!("    def m{i}(self):\n        return {i}\n\n")).collect();
    let src = format!("class Big:\n    size = 1\n\n{methods}");
    let c = chunk_file("r", "big.py", "python", &src, ChunkOptions { max_chunk_lines: 30, window_lines: 40 });
    assert_eq!((c[0].start_line, c[0].end_line, c[0].symbol.as_str()), (1, 3, "Big"));
    let names: Vec<String> = (0..12).map(|i| format!("m{i}")).collect();
    assert_eq!(c[0].members, names.join(", "));
    assert!(c[0].embedding_text().contains("members: m0, m1, "), "{}", c[0].embedding_text());
    assert!(c[1..].iter().all(|m| m.members.is_empty() && m.kind == "method"));
    assert!(!c[0].text.contains("members"), "the stored text stays the code");

    // Rust: a struct gets the methods of its impl blocks in the same file, once.
    let src = "\
pub struct Queue {
    jobs: Vec<u32>,
}

impl Queue {
    pub fn push(&mut self, j: u32) {
        self.jobs.push(j);
    }
}

impl Default for Queue {
    fn default() -> Self {
        Queue { jobs: Vec::new() }
    }
}
";
    let c = chunk_file("r", "q.rs", "rust", src, ChunkOptions::default());
    let s = c.iter().find(|c| c.kind == "struct").unwrap();
    assert_eq!(s.members, "push, default");
    assert!(c.iter().filter(|c| c.kind == "impl").all(|c| c.members.is_empty()));
}

#[test]
fn members_are_part_of_the_chunk_id() {
    let one = "class A:\n    def x(self):\n        pass\n";
    let two = "class A:\n    def y(self):\n        pass\n";
    let opts = ChunkOptions { max_chunk_lines: 1, window_lines: 40 };
    let (a, b) = (chunk_file("r", "a.py", "python", one, opts), chunk_file("r", "a.py", "python", two, opts));
    assert_eq!(a[0].text, b[0].text, "same header");
    assert_ne!(a[0].chunk_id, b[0].chunk_id, "different members, different chunk");
}

#[test]
fn symbols_read_as_words_for_the_embedder() {
    assert_eq!(words_of("Command::flatten_help"), "command flatten help");
    assert_eq!(words_of("parseHTTPHeader2"), "parse http header2");
    assert_eq!(words_of("HTTPAdapter.send"), "http adapter send");
    assert_eq!(words_of("_SubclassOfValidator.__call__"), "subclass of validator call");
    assert_eq!(words_of("Limiter.[kRun]"), "limiter k run");
    assert_eq!(words_of("größe_berechnen"), "größe berechnen");
    // Abbreviations and primitive types spelled out.
    assert_eq!(words_of("Buf::get_i64_ne"), "buffer get signed 64 bit integer native endian");
    assert_eq!(words_of("parse_cmd_args"), "parse command arguments");
    assert_eq!(words_of("as_usize"), "as unsigned pointer sized integer");
    assert_eq!(words_of("put_f32_le"), "put 32 bit float little endian");
    assert_eq!(words_of("u2f"), "u2f", "not a type name");
    assert_eq!(words_of("école_len"), "école length", "a word starting with a multi-byte letter");
    assert_eq!(words_of(""), "");
}

#[test]
fn definitions_have_a_name_view_and_windows_do_not() {
    let src = "import os\n\n\ndef requireEquals(flag, yes=True):\n    table = {}\n    return table.get(flag, yes)\n";
    let c = chunk_file("r", "opts.py", "python", src, ChunkOptions::default());
    assert_eq!(c[0].kind, "window");
    assert_eq!(c[0].name_text(), None);
    let f = &c[1];
    assert_eq!(
        f.name_text().as_deref(),
        Some("python opts.py\nfunction requireEquals (require equals)\ndef requireEquals(flag, yes=True):")
    );
    let full = f.embedding_text();
    assert!(full.starts_with("python opts.py\nfunction requireEquals (require equals)\n"), "{full}");
    assert!(full.ends_with(&f.text), "the code follows the header: {full}");
}

// ---- references -------------------------------------------------------------------------

type R = (String, String, u32, String);

fn r(name: &str, kind: &str, line: u32, qualifier: &str) -> R {
    (name.to_string(), kind.to_string(), line, qualifier.to_string())
}

/// (start_line, end_line, symbol, refs as (name, kind, line, qualifier)) per chunk.
fn refs_of(lang: &str, src: &str) -> Vec<(u32, u32, String, Vec<R>)> {
    chunk_file("r", "f", lang, src, ChunkOptions::default())
        .into_iter()
        .map(|c| {
            let refs = c.refs.into_iter().map(|x| (x.name, x.kind, x.line, x.qualifier)).collect();
            (c.start_line, c.end_line, c.symbol, refs)
        })
        .collect()
}

/// The refs of the chunk named `symbol`.
fn refs_in(chunks: &[(u32, u32, String, Vec<R>)], symbol: &str) -> Vec<R> {
    chunks.iter().find(|c| c.2 == symbol).unwrap_or_else(|| panic!("no chunk {symbol}: {chunks:?}")).3.clone()
}

#[test]
fn rust_references_land_on_the_method_and_definitions_are_not_uses() {
    let src = "\
use std::collections::HashMap;
use std::process::{Command, Stdio as Io, self};

pub struct Parser {
    tokens: Vec<Token>,
}

impl Parser {
    pub fn run(&self) -> HashMap<String, Token> {
        self.helper();
        let out = Command::new(\"x\");
        println!(\"{:?}\", out);
        let m: HashMap<String, Token> = HashMap::new();
        m
    }
}
";
    let chunks = refs_of("rust", src);
    let spans: Vec<_> = chunks.iter().map(|c| (c.0, c.1, c.2.as_str())).collect();
    assert_eq!(spans, vec![(1, 2, ""), (4, 6, "Parser"), (8, 16, "Parser"), (9, 15, "Parser::run")]);
    assert_eq!(
        chunks[0].3,
        vec![
            r("HashMap", "import", 1, "std::collections"),
            r("Command", "import", 2, "std::process"),
            r("Stdio", "import", 2, "std::process"),
        ],
        "`self` in a use list imports no name"
    );
    assert_eq!(
        chunks[1].3,
        vec![r("Token", "type", 5, ""), r("Vec", "type", 5, "")],
        "the struct's own name is no ref"
    );
    assert_eq!(chunks[2].3, vec![r("Parser", "type", 8, "")], "only the impl's own lines stay on the impl");
    assert_eq!(
        refs_in(&chunks, "Parser::run"),
        vec![
            r("HashMap", "type", 9, ""),
            r("String", "type", 9, ""),
            r("Token", "type", 9, ""),
            r("helper", "call", 10, "self"),
            r("Command", "type", 11, ""),
            r("new", "call", 11, "Command"),
            r("println", "macro", 12, ""),
            r("HashMap", "type", 13, ""),
            r("String", "type", 13, ""),
            r("Token", "type", 13, ""),
            r("new", "call", 13, "HashMap"),
        ]
    );
}

#[test]
fn rust_references_of_paths_generics_struct_literals_and_nested_uses() {
    let src = "\
use crate::a::{b::{C, d as e}, *};
use super::Thing;

fn f(x: std::fmt::Result) -> Self {
    let v = it.collect::<Vec<u8>>();
    let p = Point { x: 1 };
    let q = self.inner
        .get(1);
    std::fs::read(\"p\");
    tracing::info!(\"x\");
    drop(v);
}
";
    let chunks = refs_of("rust", src);
    assert_eq!(
        chunks[0].3,
        vec![r("C", "import", 1, "crate::a::b"), r("d", "import", 1, "crate::a::b"), r("Thing", "import", 2, "super")]
    );
    assert_eq!(
        refs_in(&chunks, "f"),
        vec![
            r("Result", "type", 4, "std::fmt"),
            r("Vec", "type", 5, ""),
            r("collect", "call", 5, "it"),
            r("Point", "type", 6, ""),
            r("get", "call", 8, "self.inner"),
            r("read", "call", 9, "std::fs"),
            r("info", "macro", 10, "tracing"),
            r("drop", "call", 11, ""),
        ],
        "`Self` is no name; a chain split over lines is one qualifier"
    );
}

#[test]
fn python_references_and_a_method_call_lands_on_the_method_not_its_class() {
    let src = "\
import os.path
from typing import List, Optional as Opt
from . import sibling

class Greeter(Base, mod.Mixin, metaclass=Meta):
    def greet(self, names: List[str]) -> Opt[str]:
        self.log(os.path.join(\"a\", \"b\"))
        return helper(names)
";
    let chunks = refs_of("python", src);
    let spans: Vec<_> = chunks.iter().map(|c| (c.0, c.1, c.2.as_str())).collect();
    assert_eq!(spans, vec![(1, 3, ""), (5, 8, "Greeter"), (6, 8, "Greeter.greet")], "the class chunk holds its method");
    assert_eq!(
        chunks[0].3,
        vec![
            r("path", "import", 1, "os"),
            r("List", "import", 2, "typing"),
            r("Optional", "import", 2, "typing"),
            r("sibling", "import", 3, "."),
        ]
    );
    assert_eq!(
        chunks[1].3,
        vec![r("Base", "type", 5, ""), r("Mixin", "type", 5, "mod")],
        "superclasses, not the keyword"
    );
    assert_eq!(
        chunks[2].3,
        vec![
            r("List", "type", 6, ""),
            r("Opt", "type", 6, ""),
            r("str", "type", 6, ""),
            r("join", "call", 7, "os.path"),
            r("log", "call", 7, "self"),
            r("helper", "call", 8, ""),
        ],
        "calls inside the method are the method's, not the class's"
    );
}

#[test]
fn python_class_uses_in_calls_checks_excepts_and_forward_references() {
    let src = "\
def check(other: \"_Base\", v: \"pkg.Version\", note: \"not a name\"):
    if isinstance(other, (Spec, mod.Set)):
        meta.Metadata.from_raw(other)
    try:
        Version.parse(v)
    except (InvalidVersion, errors.Bad) as e:
        raise ValueError(str(e))
    except KeyError:
        pass
";
    let chunks = refs_of("python", src);
    let got = refs_in(&chunks, "check");
    for want in [
        r("_Base", "type", 1, ""),
        r("Version", "type", 1, "pkg"),
        r("Spec", "type", 2, ""),
        r("Set", "type", 2, "mod"),
        r("from_raw", "call", 3, "meta.Metadata"),
        r("Metadata", "type", 3, "meta"),
        r("parse", "call", 5, "Version"),
        r("Version", "type", 5, ""),
        r("InvalidVersion", "type", 6, ""),
        r("Bad", "type", 6, "errors"),
        r("KeyError", "type", 8, ""),
    ] {
        assert!(got.contains(&want), "{want:?} in {got:?}");
    }
    assert!(!got.iter().any(|x| x.0.contains(' ') || x.0 == "e"), "a sentence is no forward reference: {got:?}");
    assert!(!got.iter().any(|x| x.0 == "other" && x.1 == "type"), "isinstance's first argument is a value: {got:?}");
}

#[test]
fn javascript_references() {
    let src = "\
import React, { useState as useS } from 'react';
import * as path from \"path\";

class App extends Component {
  render() {
    const x = new Map();
    return this.helper(path.join('a'), format(x));
  }
}
";
    let chunks = refs_of("javascript", src);
    assert_eq!(
        chunks[0].3,
        vec![r("React", "import", 1, "react"), r("useState", "import", 1, "react"), r("path", "import", 2, "path")]
    );
    assert_eq!(refs_in(&chunks, "App"), vec![r("Component", "type", 4, "")]);
    assert_eq!(
        refs_in(&chunks, "App.render"),
        vec![
            r("Map", "call", 6, ""),
            r("format", "call", 7, ""),
            r("helper", "call", 7, "this"),
            r("join", "call", 7, "path"),
        ]
    );
}

#[test]
fn typescript_references() {
    let src = "\
import { Foo } from './foo';

interface Shape extends Base {
  area(): number;
}

export function make<T>(s: Shape): ns.Circle<Foo> {
  return new Circle(s.size());
}
";
    for lang in ["typescript", "tsx"] {
        let chunks = refs_of(lang, src);
        assert_eq!(chunks[0].3, vec![r("Foo", "import", 1, "./foo")], "{lang}");
        assert_eq!(refs_in(&chunks, "Shape"), vec![r("Base", "type", 3, "")], "{lang}: not its own name");
        assert_eq!(
            refs_in(&chunks, "make"),
            vec![
                r("Circle", "type", 7, "ns"),
                r("Foo", "type", 7, ""),
                r("Shape", "type", 7, ""),
                r("Circle", "call", 8, ""),
                r("size", "call", 8, "s"),
            ],
            "{lang}: the type parameter is defined, not used"
        );
    }
}

#[test]
fn go_references() {
    let src = "\
package main

import (
\t\"fmt\"
\t\"net/http\"
)

type Server struct {
\th http.Handler
}

func (s *Server) Run(cfg Config) error {
\tfmt.Println(\"x\")
\treturn s.inner.start(&Server{})
}
";
    let chunks = refs_of("go", src);
    assert_eq!(chunks[0].3, vec![r("fmt", "import", 4, ""), r("http", "import", 5, "net")]);
    assert_eq!(refs_in(&chunks, "Server"), vec![r("Handler", "type", 9, "http")], "not its own name");
    assert_eq!(
        refs_in(&chunks, "Server.Run"),
        vec![
            r("Config", "type", 12, ""),
            r("Server", "type", 12, ""),
            r("error", "type", 12, ""),
            r("Println", "call", 13, "fmt"),
            r("Server", "type", 14, ""),
            r("start", "call", 14, "s.inner"),
        ]
    );
}

#[test]
fn java_references() {
    let src = "\
import java.util.List;
import java.util.*;

public class Repo<T> extends Base implements Store {
    private List<Item> items;

    public void save(Item item) {
        java.util.Map<String, Item> m = new java.util.HashMap<>();
        items.add(item);
        log(new Item());
    }
}
";
    let chunks = refs_of("java", src);
    assert_eq!(chunks[0].3, vec![r("List", "import", 1, "java.util")], "a wildcard import names nothing");
    assert_eq!(
        refs_in(&chunks, "Repo"),
        vec![r("Base", "type", 4, ""), r("Store", "type", 4, ""), r("Item", "type", 5, ""), r("List", "type", 5, "")],
        "the type parameter is defined, not used"
    );
    assert_eq!(
        refs_in(&chunks, "Repo.save"),
        vec![
            r("Item", "type", 7, ""),
            r("HashMap", "call", 8, "java.util"),
            r("Item", "type", 8, ""),
            r("Map", "type", 8, "java.util"),
            r("String", "type", 8, ""),
            r("add", "call", 9, "items"),
            r("Item", "call", 10, ""),
            r("log", "call", 10, ""),
        ]
    );
}

#[test]
fn refs_go_to_the_innermost_span_and_ties_to_the_later_one() {
    let refs: Vec<(usize, Reference)> = [0usize, 2, 3, 6, 9]
        .into_iter()
        .map(|row| {
            (
                row,
                Reference {
                    name: format!("n{row}"),
                    kind: "call".into(),
                    line: row as u32 + 1,
                    qualifier: String::new(),
                },
            )
        })
        .collect();
    // (0,6) holds (1,3) and (3,5), equally long, overlapping on row 3; row 9 is nobody's.
    let by = refs_by_span(&[(0, 6), (1, 3), (3, 5)], 10, refs);
    let names: Vec<Vec<&str>> = by.iter().map(|v| v.iter().map(|r| r.name.as_str()).collect()).collect();
    assert_eq!(names, vec![vec!["n0", "n6"], vec!["n2"], vec!["n3"]]);
}

#[test]
fn refs_are_deduplicated_per_line_sorted_and_capped() {
    let chunks = refs_of("python", "def f():\n    g(); g(); a.g(); b()\n    g()\n");
    assert_eq!(
        chunks[0].3,
        vec![r("b", "call", 2, ""), r("g", "call", 2, ""), r("g", "call", 2, "a"), r("g", "call", 3, "")]
    );
    let many: String = (0..5000).map(|i| format!("f{i}()\n")).collect();
    let total: usize =
        chunk_file("r", "f.py", "python", &many, ChunkOptions::default()).iter().map(|c| c.refs.len()).sum();
    assert_eq!(total, crate::refs::MAX_REFS);
}

#[test]
fn qualifiers_are_cut_at_a_char_boundary_and_names_must_be_identifiers() {
    let long = "é".repeat(100);
    let src = format!("x = {long}.run()\ny = (lambda: 1)()\nz = self.cls()\n");
    let chunks = refs_of("python", &src);
    let refs = &chunks[0].3;
    assert_eq!(refs.len(), 1, "a call of a lambda names nothing, `cls` is no name: {refs:?}");
    assert_eq!(refs[0].0, "run");
    assert_eq!(refs[0].3, "é".repeat(60), "120 bytes of two-byte chars");
    // A chain over lines reads as one line; a space kept between words counts towards the cut.
    assert_eq!(crate::refs::qualifier_of("self.items\n    .iter()\n    .map(f)"), "self.items.iter().map(f)");
    assert_eq!(crate::refs::qualifier_of("new Foo()"), "new Foo()");
    assert_eq!(crate::refs::qualifier_of(&format!("{} b", "a".repeat(119))), "a".repeat(119));
    let long_name = format!("def f():\n    {}()\n", "a".repeat(101));
    assert!(refs_of("python", &long_name)[0].3.is_empty());
}

#[test]
fn languages_without_a_grammar_get_no_refs_and_deep_trees_do_not_overflow() {
    assert!(chunk_file("r", "f.rb", "ruby", "foo(bar)\n", ChunkOptions::default()).iter().all(|c| c.refs.is_empty()));
    // A deeply nested expression: the reference walk keeps no recursion.
    let src = format!("{}1{}\n", "f(".repeat(3000), ")".repeat(3000));
    let mut parser = tree_sitter::Parser::new();
    parser.set_language(&tree_sitter_python::LANGUAGE.into()).unwrap();
    let tree = parser.parse(&src, None).unwrap();
    let refs = crate::refs::references(tree.root_node(), src.as_bytes(), "python");
    assert_eq!(refs.len(), 1, "one name, one line");
    assert_eq!(refs[0].1.name, "f");
}
