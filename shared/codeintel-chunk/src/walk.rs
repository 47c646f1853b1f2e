//! Repository walk: honours `.gitignore` (and `.ignore`), skips hidden, vendored, generated,
//! binary and oversized files, and returns repo-relative `/`-separated paths in a stable order.

use std::path::{Path, PathBuf};

use codeintel_core::chunk::language_for_path;

/// Directory names never indexed: dependencies, build output, caches.
const SKIP_DIRS: &[&str] = &[
    "node_modules",
    "vendor",
    "third_party",
    "target",
    "dist",
    "build",
    "__pycache__",
    ".venv",
    "venv",
    ".tox",
    ".mypy_cache",
    ".pytest_cache",
    ".git",
    ".hg",
    ".svn",
    "bower_components",
    ".next",
    "coverage",
];

#[derive(Debug, Clone)]
pub struct SourceFile {
    pub abs: PathBuf,
    /// Repo-relative path with `/` separators.
    pub path: String,
    pub language: &'static str,
    pub bytes: u64,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct WalkStats {
    pub skipped_binary: usize,
    pub skipped_large: usize,
    pub skipped_unknown: usize,
}

/// Lists the indexable files under `root`.
pub fn walk(root: &Path, max_file_bytes: u64) -> std::io::Result<(Vec<SourceFile>, WalkStats)> {
    if !root.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is not a directory", root.display()),
        ));
    }
    let mut stats = WalkStats::default();
    let mut out = Vec::new();
    let walker = ignore::WalkBuilder::new(root)
        .hidden(true)
        .git_ignore(true)
        .git_exclude(true)
        .require_git(false)
        .filter_entry(|e| {
            !(e.file_type().is_some_and(|t| t.is_dir()) && SKIP_DIRS.contains(&e.file_name().to_str().unwrap_or("")))
        })
        .build();
    for entry in walker {
        let Ok(entry) = entry else { continue };
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let abs = entry.path().to_path_buf();
        let Ok(rel) = abs.strip_prefix(root) else { continue };
        let path = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
        let Some(language) = language_for_path(&path) else {
            stats.skipped_unknown += 1;
            continue;
        };
        if path.ends_with(".min.js") || path.ends_with(".lock") || path.ends_with("-lock.json") {
            stats.skipped_unknown += 1;
            continue;
        }
        let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
        if bytes > max_file_bytes {
            stats.skipped_large += 1;
            continue;
        }
        out.push(SourceFile { abs, path, language, bytes });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((out, stats))
}

/// Reads a file as UTF-8 text; `None` for binary content (NUL bytes or invalid UTF-8).
pub fn read_text(path: &Path) -> std::io::Result<Option<String>> {
    let bytes = std::fs::read(path)?;
    if bytes.iter().take(8192).any(|&b| b == 0) {
        return Ok(None);
    }
    Ok(String::from_utf8(bytes).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_respects_gitignore_and_skips_vendored_binary_and_large() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("src")).unwrap();
        std::fs::create_dir_all(r.join("node_modules/x")).unwrap();
        std::fs::create_dir_all(r.join("gen")).unwrap();
        std::fs::write(r.join(".gitignore"), "gen/\n").unwrap();
        std::fs::write(r.join("src/a.py"), "def a():\n    pass\n").unwrap();
        std::fs::write(r.join("src/b.rs"), "fn b() {}\n").unwrap();
        std::fs::write(r.join("node_modules/x/i.js"), "x").unwrap();
        std::fs::write(r.join("gen/g.py"), "x = 1\n").unwrap();
        std::fs::write(r.join("src/big.py"), "x = 1\n".repeat(1000)).unwrap();
        std::fs::write(r.join("src/blob.bin"), [0u8, 1, 2]).unwrap();
        let (files, stats) = walk(r, 1000).unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, vec!["src/a.py", "src/b.rs"]);
        assert_eq!(stats.skipped_large, 1);
        assert_eq!(files[0].language, "python");
        std::fs::write(r.join("src/nul.py"), b"a\0b").unwrap();
        assert!(read_text(&r.join("src/nul.py")).unwrap().is_none());
    }
}
