//! What a chunk is: its fields, the texts it is embedded and indexed as, its stable id, and the
//! languages by path. Cutting files into chunks (tree-sitter) is `codeintel-chunk`'s.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub chunk_id: u64,
    pub repo: String,
    pub path: String,
    pub language: String,
    pub start_line: u32,
    pub end_line: u32,
    /// Qualified name (`Parser.parse`, `Command::flatten_help`); empty for windows.
    pub symbol: String,
    /// `function`, `method`, `class`, `struct`, `impl`, ..., or `window`.
    pub kind: String,
    /// Qualified name of the enclosing class/impl/module, empty at top level.
    pub parent: String,
    /// First line of the definition, trimmed.
    pub signature: String,
    /// For a type (class, struct, enum, trait, interface, impl): the names of its members,
    /// methods of its `impl` blocks in the same file included, comma-separated; empty
    /// otherwise. Indexed with the chunk (a type is findable by what it can do), not stored
    /// as its code.
    #[serde(default)]
    pub members: String,
    /// Hash of what the chunk indexes: its text and, when present, its members.
    pub content_hash: String,
    pub text: String,
    /// The names this chunk uses (calls, type uses, imports, macro invocations), in source
    /// order, each once per line. A line belongs to the innermost chunk that holds it, so a
    /// use is recorded once however chunks nest. Stored in the segment's `refs` column.
    #[serde(default)]
    pub refs: Vec<Reference>,
    /// Set by hydration only, never stored: the git commit of the version that served it
    /// (empty when the indexed folder was not a git work tree).
    #[serde(default)]
    pub commit: String,
    /// Set by hydration only, never stored: its file on disk no longer has the indexed content
    /// (edited or gone), so its line numbers may have moved.
    #[serde(default)]
    pub stale: bool,
}

/// One use of a name inside a chunk, as tree-sitter saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// The name used, its last path segment: `parse` for `self.parse(..)`, `HashMap` for
    /// `std::collections::HashMap`.
    pub name: String,
    /// `call`, `type`, `import` or `macro`.
    pub kind: String,
    /// 1-based line in the file.
    pub line: u32,
    /// What qualifies the name as written, without the name: `self`, `Command`, `os.path`,
    /// `std::collections`; empty when the name stands alone. At most 120 characters.
    pub qualifier: String,
}

/// Bumped whenever [`Chunk::embedding_text`] or [`Chunk::name_text`] changes, so stored
/// vectors are not reused (2: the symbol as words, a type's members, the name view; 3: common
/// abbreviations and primitive types spelled out in those words).
pub const EMBED_TEXT_FORMAT: u32 = 3;

impl Chunk {
    /// The text given to the embedder: a short header naming where the code lives (the
    /// symbol also as plain words), a type's members, then the code.
    pub fn embedding_text(&self) -> String {
        let mut s = format!("{} {}", self.language, self.path);
        if !self.symbol.is_empty() {
            s.push_str(&format!("\n{} {} ({})", self.kind, self.symbol, words_of(&self.symbol)));
        }
        if !self.members.is_empty() {
            s.push_str("\nmembers: ");
            s.push_str(&self.members);
        }
        s.push('\n');
        s.push_str(&self.text);
        s
    }

    /// What a second-stage reranker reads of a chunk: where it lives, what it defines (the
    /// name also as plain words), then the code, at most 4,000 characters. The local
    /// cross-encoder is trained on exactly this text (`codeintel train pairs`): change the two
    /// together.
    pub fn rerank_text(&self) -> String {
        let mut s = self.path.clone();
        if !self.symbol.is_empty() {
            s.push_str(&format!("\n{} {} ({})", self.kind, self.symbol, words_of(&self.symbol)));
        }
        s.push('\n');
        s.extend(self.text.chars().take(4000));
        s
    }

    /// The definition's name view: where it lives, its name (also as plain words) and its
    /// signature, without the body. Short texts like this sit closer to a one-sentence
    /// question than a whole body does; embedded besides [`Chunk::embedding_text`] when
    /// `embed.name_view` is on. `None` for line windows, which have no name.
    pub fn name_text(&self) -> Option<String> {
        (!self.symbol.is_empty()).then(|| {
            format!(
                "{} {}\n{} {} ({})\n{}",
                self.language,
                self.path,
                self.kind,
                self.symbol,
                words_of(&self.symbol),
                self.signature
            )
        })
    }
}

/// An identifier as lower-case words, common programming abbreviations and primitive type names
/// spelled out: `Command::flatten_help` -> `command flatten help`, `parseHTTPHeader2` -> `parse
/// http header2`, `get_i64_ne` -> `get signed 64 bit integer native endian`, `cmd_args` ->
/// `command arguments`.
pub fn words_of(symbol: &str) -> String {
    symbol
        .split(|c: char| !c.is_alphanumeric())
        .flat_map(|part| crate::query::split_identifier(part, false))
        .map(|w| spelled_out(&w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Abbreviations that programmers write and questions spell out (short, long).
pub const ABBREVIATIONS: &[(&str, &str)] = &[
    ("arg", "argument"),
    ("args", "arguments"),
    ("attr", "attribute"),
    ("attrs", "attributes"),
    ("buf", "buffer"),
    ("cfg", "config"),
    ("cmd", "command"),
    ("ctx", "context"),
    ("cur", "current"),
    ("del", "delete"),
    ("dir", "directory"),
    ("dst", "destination"),
    ("env", "environment"),
    ("err", "error"),
    ("fmt", "format"),
    ("idx", "index"),
    ("init", "initialize"),
    ("iter", "iterator"),
    ("len", "length"),
    ("msg", "message"),
    ("mut", "mutable"),
    ("ne", "native endian"),
    ("le", "little endian"),
    ("be", "big endian"),
    ("num", "number"),
    ("opt", "option"),
    ("opts", "options"),
    ("param", "parameter"),
    ("params", "parameters"),
    ("prev", "previous"),
    ("ptr", "pointer"),
    ("req", "request"),
    ("res", "result"),
    ("resp", "response"),
    ("src", "source"),
    ("str", "string"),
    ("tmp", "temporary"),
    ("val", "value"),
    ("vals", "values"),
];

fn spelled_out(word: &str) -> String {
    if let Some((_, long)) = ABBREVIATIONS.iter().find(|(short, _)| *short == word) {
        return (*long).to_string();
    }
    // Primitive numeric types: i64, u8, usize, f32.
    let int = |bits: &str| match bits {
        "8" | "16" | "32" | "64" | "128" => Some(format!("{bits} bit integer")),
        "size" => Some("pointer sized integer".to_string()),
        _ => None,
    };
    if let Some(int) = word.strip_prefix('i').and_then(int) {
        return format!("signed {int}");
    }
    if let Some(int) = word.strip_prefix('u').and_then(int) {
        return format!("unsigned {int}");
    }
    match word.strip_prefix('f') {
        Some(bits @ ("32" | "64")) => format!("{bits} bit float"),
        _ => word.to_string(),
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ChunkOptions {
    pub max_chunk_lines: usize,
    pub window_lines: usize,
}

/// Bumped whenever [`chunk_file`] cuts or describes chunks differently (2: small classes are
/// whole chunks, types carry their members; 3: chunks carry the names they use, segments a
/// `refs` column; 4: Python and JS class uses in `Class.method()` calls, Python `isinstance`,
/// `except` and string forward references), so an index is rebuilt rather than updated.
pub const CHUNK_FORMAT: u32 = 4;

impl ChunkOptions {
    /// What a manifest records of how its chunks were cut.
    pub fn key(&self) -> String {
        format!("{CHUNK_FORMAT}/{}/{}", self.max_chunk_lines, self.window_lines)
    }
}

impl Default for ChunkOptions {
    fn default() -> Self {
        Self { max_chunk_lines: 120, window_lines: 40 }
    }
}

/// Stable chunk id: derived from where the chunk is and what it holds; fits FAISS's i64 ids.
pub fn chunk_id(repo: &str, path: &str, start: u32, end: u32, content_hash: &str) -> u64 {
    let mut h = Sha256::new();
    for part in [repo, path, &start.to_string(), &end.to_string(), content_hash] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes")) & 0x7FFF_FFFF_FFFF_FFFF
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Language name for a path, by extension; `None` for files we do not index as code or text.
pub fn language_for_path(path: &str) -> Option<&'static str> {
    let file = path.rsplit('/').next().unwrap_or(path);
    let lower = file.to_ascii_lowercase();
    if lower.starts_with("license") || lower.starts_with("copying") {
        return Some("text");
    }
    let ext = lower.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    Some(match ext {
        "py" | "pyi" => "python",
        "rs" => "rust",
        "js" | "mjs" | "cjs" | "jsx" => "javascript",
        "ts" | "mts" | "cts" => "typescript",
        "tsx" => "tsx",
        "go" => "go",
        "java" => "java",
        "c" | "h" => "c",
        "cc" | "cpp" | "cxx" | "hpp" | "hh" => "cpp",
        "rb" => "ruby",
        "kt" | "kts" => "kotlin",
        "swift" => "swift",
        "scala" => "scala",
        "cs" => "csharp",
        "php" => "php",
        "sh" | "bash" => "shell",
        "md" | "rst" | "txt" => "text",
        "toml" | "yaml" | "yml" | "json" | "ini" | "cfg" => "config",
        "proto" => "protobuf",
        "sql" => "sql",
        "html" | "css" | "scss" | "vue" | "svelte" => "web",
        _ if file == "Makefile" || file == "Dockerfile" => "config",
        _ => return None,
    })
}
