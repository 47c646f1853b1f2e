//! Repository walk: honours `.gitignore` (and `.ignore`), skips hidden, vendored, generated,
//! binary, oversized, minified and undecodable files, files that hold secrets ([`crate::secrets`]),
//! symlinks that leave the repository and paths that would break citations, counting each
//! ([`WalkStats`]), and returns repo-relative `/`-separated paths in a stable order.

use std::path::{Path, PathBuf};

use codeintel_core::chunk::language_for_path;

use crate::secrets::SecretPolicy;

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

/// A line longer than this (bytes) marks a file as minified or generated.
pub const MINIFIED_MAX_LINE: usize = 5_000;
/// ... as does an average line longer than this (bytes), in a file of at least
/// [`MINIFIED_MIN_BYTES`].
pub const MINIFIED_AVG_LINE: usize = 300;
pub const MINIFIED_MIN_BYTES: usize = 1_024;

#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Where to read it: the file, or the target inside the repo of a symlink.
    pub abs: PathBuf,
    /// Repo-relative path with `/` separators (a symlink's own path).
    pub path: String,
    pub language: &'static str,
    pub bytes: u64,
}

/// What the walk and the read of a tree left out, by reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WalkStats {
    /// NUL bytes in the first 8 KiB.
    pub skipped_binary: usize,
    /// Over `index.max_file_bytes`.
    pub skipped_large: usize,
    /// No known language, or a lock file.
    pub skipped_unknown: usize,
    /// Not valid UTF-8 (and no NUL bytes).
    pub skipped_undecodable: usize,
    /// Minified or generated ([`is_minified`], `*.min.js`, `*.min.css`).
    pub skipped_minified: usize,
    /// Symlinks whose target is outside the repository, or missing.
    pub skipped_symlink_outside: usize,
    /// Paths that are not UTF-8 or hold a control character (a newline would break
    /// `path:start-end` citations).
    pub skipped_bad_path: usize,
    /// Listed but could not be read.
    pub skipped_unreadable: usize,
    /// Files named like or holding a secret: `(path, rule)`, the rule's name only.
    pub skipped_secrets: Vec<(String, String)>,
    /// Symlinks to a file inside the repository, indexed under the link's path.
    pub symlinks_inside: usize,
}

/// Why a file the walk listed was left out once read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    Binary,
    Undecodable,
    Minified,
    /// The secret rule that matched.
    Secret(String),
}

impl WalkStats {
    /// Counts `path`, left out after reading for `skip`.
    pub fn record(&mut self, path: &str, skip: &Skip) {
        match skip {
            Skip::Binary => self.skipped_binary += 1,
            Skip::Undecodable => self.skipped_undecodable += 1,
            Skip::Minified => self.skipped_minified += 1,
            Skip::Secret(rule) => self.skipped_secrets.push((path.to_string(), rule.clone())),
        }
    }

    /// `(reason, files)` of every reason that left a file out, most important first.
    pub fn skipped(&self) -> Vec<(&'static str, usize)> {
        [
            ("secret", self.skipped_secrets.len()),
            ("symlink outside the repo", self.skipped_symlink_outside),
            ("bad path", self.skipped_bad_path),
            ("large", self.skipped_large),
            ("binary", self.skipped_binary),
            ("undecodable", self.skipped_undecodable),
            ("minified", self.skipped_minified),
            ("unreadable", self.skipped_unreadable),
            ("non-source", self.skipped_unknown),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }
}

/// The repo-relative `/`-separated form of `rel`; `None` when a component is not UTF-8 or holds
/// a control character.
fn repo_path(rel: &Path) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in rel.components() {
        let s = c.as_os_str().to_str()?;
        if bad_path(s) {
            return None;
        }
        parts.push(s);
    }
    Some(parts.join("/"))
}

/// Lists the indexable files under `root`. Symlinks are not followed as folders; a symlink to a
/// file inside `root` is listed under its own path (read from its target), one to anything
/// outside `root` (or to nothing) is left out. Files whose name matches a secret rule of
/// `secrets` are left out here, those whose text does by [`read_source`].
pub fn walk(root: &Path, max_file_bytes: u64, secrets: &SecretPolicy) -> std::io::Result<(Vec<SourceFile>, WalkStats)> {
    if !root.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is not a directory", root.display()),
        ));
    }
    // Symlink targets are compared with the root as the file system resolves it.
    let real_root = root.canonicalize()?;
    let mut stats = WalkStats::default();
    let mut out = Vec::new();
    let walker = ignore::WalkBuilder::new(root)
        .hidden(true)
        .git_ignore(true)
        .git_exclude(true)
        .require_git(false)
        // The default, made explicit: a symlinked folder is one entry, never descended into.
        .follow_links(false)
        .filter_entry(|e| {
            !(e.file_type().is_some_and(|t| t.is_dir()) && SKIP_DIRS.contains(&e.file_name().to_str().unwrap_or("")))
        })
        .build();
    for entry in walker {
        let Ok(entry) = entry else { continue };
        // Links are not followed, so a link's file type is its own, not its target's.
        let Some(file_type) = entry.file_type() else { continue };
        let abs = entry.path().to_path_buf();
        let (read_from, bytes, link_target) = if file_type.is_symlink() {
            let target = match abs.canonicalize() {
                Ok(target) if target.starts_with(&real_root) => target,
                _ => {
                    stats.skipped_symlink_outside += 1;
                    continue;
                }
            };
            // Through a link, only what the walk lists at its own path: a file (a folder's files
            // are listed where they are), not hidden, not in a skipped folder.
            let Some(target_path) = target.strip_prefix(&real_root).ok().and_then(repo_path) else { continue };
            match std::fs::metadata(&target) {
                Ok(m) if m.is_file() && listed(&target_path) => (target, m.len(), Some(target_path)),
                _ => continue,
            }
        } else if file_type.is_file() {
            let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
            (abs.clone(), bytes, None)
        } else {
            continue;
        };
        let Ok(rel) = abs.strip_prefix(root) else { continue };
        let Some(path) = repo_path(rel) else {
            stats.skipped_bad_path += 1;
            continue;
        };
        let Some(language) = admit(&path, link_target.as_deref(), bytes, max_file_bytes, secrets, &mut stats) else {
            continue;
        };
        stats.symlinks_inside += usize::from(link_target.is_some());
        out.push(SourceFile { abs: read_from, path, language, bytes });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    stats.skipped_secrets.sort();
    Ok((out, stats))
}

/// Whether the walk lists a repo-relative path at all: no hidden component (`.git`, `.env/`,
/// `.cache`) and no dependency, build or cache folder ([`SKIP_DIRS`]). Used where the tree is not
/// on disk (a git commit's tree), where the ignore walker cannot judge it.
pub fn listed(path: &str) -> bool {
    path.split('/').all(|c| !c.is_empty() && !c.starts_with('.') && !SKIP_DIRS.contains(&c))
}

/// Whether a path holds a character that would break `path:start-end` citations.
pub fn bad_path(path: &str) -> bool {
    path.chars().any(char::is_control)
}

/// The walk's checks of one listed file by its path and size, in order: a secret's name (its
/// own or, for a link, its target's), a known language, not minified by name, not a lock file,
/// at most `max_file_bytes`. The language it is indexed as, or `None` with the reason counted in
/// `stats`.
pub fn admit(
    path: &str,
    link_target: Option<&str>,
    bytes: u64,
    max_file_bytes: u64,
    secrets: &SecretPolicy,
    stats: &mut WalkStats,
) -> Option<&'static str> {
    // A link is judged by its target's name too (`notes.txt -> deploy.pem`).
    if let Some(rule) = secrets.check_name(path).or_else(|| link_target.and_then(|t| secrets.check_name(t))) {
        stats.skipped_secrets.push((path.to_string(), rule));
        return None;
    }
    let Some(language) = language_for_path(path) else {
        stats.skipped_unknown += 1;
        return None;
    };
    if path.ends_with(".min.js") || path.ends_with(".min.css") {
        stats.skipped_minified += 1;
        return None;
    }
    if path.ends_with(".lock") || path.ends_with("-lock.json") {
        stats.skipped_unknown += 1;
        return None;
    }
    if bytes > max_file_bytes {
        stats.skipped_large += 1;
        return None;
    }
    Some(language)
}

/// Whether `text` looks minified or generated: a line over [`MINIFIED_MAX_LINE`] bytes, or, in
/// a file of at least [`MINIFIED_MIN_BYTES`], lines over [`MINIFIED_AVG_LINE`] bytes on average.
/// Not applied to prose (`text`: Markdown, reStructuredText, plain text), where a paragraph is
/// often one long line.
pub fn is_minified(text: &str) -> bool {
    let (mut lines, mut longest) = (0usize, 0usize);
    for line in text.lines() {
        lines += 1;
        longest = longest.max(line.len());
    }
    longest > MINIFIED_MAX_LINE || (text.len() >= MINIFIED_MIN_BYTES && text.len() / lines.max(1) > MINIFIED_AVG_LINE)
}

/// UTF-8 text, or why not: NUL bytes in the first 8 KiB are binary, other invalid UTF-8 is
/// undecodable.
fn decode(bytes: Vec<u8>) -> Result<String, Skip> {
    if bytes.iter().take(8192).any(|&b| b == 0) {
        return Err(Skip::Binary);
    }
    String::from_utf8(bytes).map_err(|_| Skip::Undecodable)
}

/// Reads a file as UTF-8 text; `None` for binary content (NUL bytes or invalid UTF-8).
pub fn read_text(path: &Path) -> std::io::Result<Option<String>> {
    Ok(decode(std::fs::read(path)?).ok())
}

/// Reads a listed file for indexing: its text, or why it is left out (binary, undecodable, a
/// secret in its text, minified; in that order).
pub fn read_source(file: &SourceFile, secrets: &SecretPolicy) -> std::io::Result<Result<String, Skip>> {
    Ok(check_source(&file.path, file.language, std::fs::read(&file.abs)?, secrets))
}

/// [`read_source`]'s checks of a file's content, wherever it was read from: its text, or why it
/// is left out (binary, undecodable, a secret in its text, minified; in that order).
pub fn check_source(path: &str, language: &str, bytes: Vec<u8>, secrets: &SecretPolicy) -> Result<String, Skip> {
    let text = decode(bytes)?;
    if let Some(rule) = secrets.check_text(path, &text) {
        return Err(Skip::Secret(rule));
    }
    if language != "text" && is_minified(&text) {
        return Err(Skip::Minified);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::tests::{deploy_key, settings_py};

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
        let (files, stats) = walk(r, 1000, &SecretPolicy::default()).unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, vec!["src/a.py", "src/b.rs"]);
        assert_eq!(stats.skipped_large, 1);
        assert_eq!(files[0].language, "python");
        std::fs::write(r.join("src/nul.py"), b"a\0b").unwrap();
        assert!(read_text(&r.join("src/nul.py")).unwrap().is_none());
    }

    /// Walks and reads `root` as the indexer does: the paths kept, and every skip counted.
    fn read_all(root: &Path, secrets: &SecretPolicy) -> (Vec<String>, WalkStats) {
        let (files, mut stats) = walk(root, 1 << 20, secrets).unwrap();
        let mut kept = Vec::new();
        for f in &files {
            match read_source(f, secrets).unwrap() {
                Ok(_) => kept.push(f.path.clone()),
                Err(skip) => stats.record(&f.path, &skip),
            }
        }
        stats.skipped_secrets.sort();
        (kept, stats)
    }

    fn write(root: &Path, rel: &str, bytes: impl AsRef<[u8]>) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    #[test]
    fn secrets_minified_undecodable_binary_and_bad_paths_are_left_out_and_counted() {
        use std::os::unix::ffi::OsStrExt;
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(r, "src/ok.py", "def ok():\n    return 1\n");
        // The two files, and a key file known by its name.
        write(r, "keys/deploy_key.txt", deploy_key());
        write(r, "config/settings.py", settings_py());
        write(r, "certs/server.pem", "not even a key");
        // One 6,000-byte line; ten 400-byte lines; the same as prose, which is kept.
        write(r, "src/bundle.js", format!("var a={};\n", "1,".repeat(3000)));
        let long_lines = format!("{}\n", "x".repeat(400)).repeat(10);
        write(r, "src/data.json", &long_lines);
        write(r, "docs/long.md", &long_lines);
        write(r, "src/app.min.js", "var a=1;\n");
        write(r, "src/latin1.py", b"name = '\xe9t\xe9'\n");
        write(r, "src/nul.py", b"a\0b");
        write(r, "src/new\nline.py", "x = 1\n");
        std::fs::write(r.join(std::ffi::OsStr::from_bytes(b"src/\xfe.py")), "x = 1\n").unwrap();

        let (kept, stats) = read_all(r, &SecretPolicy::default());
        assert_eq!(kept, ["docs/long.md", "src/ok.py"]);
        let secrets: Vec<(&str, &str)> =
            stats.skipped_secrets.iter().map(|(p, rule)| (p.as_str(), rule.as_str())).collect();
        assert_eq!(
            secrets,
            [
                ("certs/server.pem", "private key file"),
                ("config/settings.py", "AWS access key id"),
                ("keys/deploy_key.txt", "private key block"),
            ]
        );
        assert_eq!(stats.skipped_minified, 3, "{stats:?}");
        assert_eq!((stats.skipped_undecodable, stats.skipped_binary), (1, 1), "{stats:?}");
        assert_eq!(stats.skipped_bad_path, 2, "a newline and a non-UTF-8 name: {stats:?}");
        let summary = stats.skipped();
        assert_eq!(summary[0], ("secret", 3));
        assert!(summary.contains(&("minified", 3)) && summary.contains(&("undecodable", 1)), "{summary:?}");

        // Rules off: the two files are read like any other (the `.pem` has no language).
        let (kept, stats) = read_all(r, &SecretPolicy::off());
        assert!(kept.contains(&"keys/deploy_key.txt".to_string()) && kept.contains(&"config/settings.py".to_string()));
        assert!(stats.skipped_secrets.is_empty());
        // An exempt path.
        let allow = SecretPolicy::new(true, &[], &["keys/**".into()]).unwrap();
        let (kept, stats) = read_all(r, &allow);
        assert!(kept.contains(&"keys/deploy_key.txt".to_string()));
        assert_eq!(stats.skipped_secrets.len(), 2);
    }

    #[test]
    fn symlinks_inside_the_repo_are_indexed_and_those_leaving_it_are_not() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let (repo, outside) = (d.path().join("repo"), d.path().join("outside"));
        write(&repo, "src/a.py", "def a():\n    pass\n");
        write(&outside, "stolen.py", "PASSWORD_FILE = '/etc/shadow'\n");
        symlink(outside.join("stolen.py"), repo.join("src/out.py")).unwrap();
        symlink("../../outside/stolen.py", repo.join("src/out_relative.py")).unwrap();
        symlink(&outside, repo.join("outside_dir")).unwrap();
        symlink("missing.py", repo.join("src/dangling.py")).unwrap();
        symlink("a.py", repo.join("src/alias.py")).unwrap();
        symlink("src", repo.join("src_again")).unwrap();
        // Links inside the repo to what the walk leaves out at its own path.
        write(&repo, ".env", "DB_PASSWORD=hunter2\n");
        symlink(".env", repo.join("settings.txt")).unwrap();
        write(&repo, "node_modules/m/index.js", "module.exports = 1;\n");
        symlink("node_modules/m/index.js", repo.join("m.js")).unwrap();
        write(&repo, "certs/server.pem", "not even a key");
        symlink("certs/server.pem", repo.join("notes.txt")).unwrap();
        let (files, stats) = walk(&repo, 1 << 20, &SecretPolicy::default()).unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["src/a.py", "src/alias.py"], "{stats:?}");
        assert_eq!(stats.skipped_symlink_outside, 4, "{stats:?}");
        assert_eq!(stats.symlinks_inside, 1);
        // The link is read from its target, inside the repo.
        assert_eq!(files[1].abs, repo.canonicalize().unwrap().join("src/a.py"));
        assert_eq!(read_source(&files[1], &SecretPolicy::default()).unwrap().unwrap(), "def a():\n    pass\n");
        let secrets: Vec<&str> = stats.skipped_secrets.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(secrets, ["certs/server.pem", "notes.txt"]);
        assert_eq!(stats.skipped(), [("secret", 2), ("symlink outside the repo", 4)]);
    }
}
