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
