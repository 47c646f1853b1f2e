//! Which commit an indexed folder is at, read with `gix`: HEAD's commit and branch, and whether
//! the files indexed differ from HEAD's (a file changed, or not in HEAD at all). Recorded in the
//! manifest, so citations and `read_code` can say which commit their lines are from. And a
//! commit's tree read straight from the object database (`codeintel index --rev`), without a
//! checkout.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use codeintel_chunk::secrets::SecretPolicy;
use codeintel_chunk::walk::{self, WalkStats};
use codeintel_core::chunk::sha256_hex;
use codeintel_index::build::SourceFile;
use codeintel_index::manifest::GitInfo;
use gix::bstr::ByteSlice;

/// Symlinks followed in a row inside a commit's tree before the chain counts as broken.
const MAX_LINK_HOPS: usize = 8;

/// The git state of `root` for the indexed `files` (repo-relative path, content), or `None`
/// when `root` is not inside a git work tree (or HEAD is unborn). What cannot be read is
/// logged and left out, never an indexing failure.
pub fn inspect<'a>(root: &Path, files: impl Iterator<Item = (&'a str, &'a [u8])>) -> Option<GitInfo> {
    let repo = gix::discover(root).ok()?;
    let workdir = repo.workdir()?.canonicalize().ok()?;
    let commit = match repo.head_commit() {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(error = %e, "git HEAD has no commit; not recorded");
            return None;
        }
    };
    let branch = repo.head_name().ok().flatten().map(|n| n.shorten().to_string()).unwrap_or_default();
    let tree = match commit.tree() {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read HEAD's tree; the commit is recorded without a dirty check");
            return Some(GitInfo { commit: commit.id.to_string(), branch, dirty: false, changed_files: 0 });
        }
    };
    // The indexed folder may be a subfolder of the work tree.
    let prefix = root.canonicalize().ok()?.strip_prefix(&workdir).ok()?.to_path_buf();
    let kind = repo.object_hash();
    let mut changed = 0u64;
    for (path, bytes) in files {
        let in_head = tree.lookup_entry_by_path(prefix.join(path)).ok().flatten().map(|e| e.object_id());
        let same = in_head
            .is_some_and(|id| gix::objs::compute_hash(kind, gix::objs::Kind::Blob, bytes).is_ok_and(|here| here == id));
        changed += !same as u64;
    }
    Some(GitInfo { commit: commit.id.to_string(), branch, dirty: changed > 0, changed_files: changed })
}

/// A commit's tree as `codeintel index --rev` reads it.
pub struct RevTree {
    pub files: Vec<SourceFile>,
    pub stats: WalkStats,
    pub git: GitInfo,
}

/// Reads the tree of `rev` (a commit, branch, tag or any `git rev-parse` spelling) of the
/// repository that holds `root`, limited to `root`'s folder when it is a subfolder of the work
/// tree, or of a bare repository at `root`. The walk's rules apply as on disk (hidden and
/// dependency folders, languages, lock and minified files, size, secrets by name and content);
/// submodules are left out; a symlink is followed inside the tree, under its own path, like on
/// disk. Nothing is checked out and the work tree is never read.
pub fn read_rev(root: &Path, rev: &str, max_file_bytes: u64, secrets: &SecretPolicy) -> anyhow::Result<RevTree> {
    let repo = gix::discover(root)
        .with_context(|| format!("--rev needs a git repository; {} is not in one", root.display()))?;
    let commit = repo
        .rev_parse_single(rev)
        .with_context(|| format!("`{rev}` names no revision of this repository (try a branch, a tag or a commit id)"))?
        .object()?
        .peel_to_commit()
        .with_context(|| format!("`{rev}` does not name a commit"))?;
    // The branch or tag `rev` names (HEAD: its branch); empty for a commit id or an expression.
    let branch = match repo.find_reference(rev) {
        Ok(r) if r.name().as_bstr() == "HEAD" => {
            repo.head_name().ok().flatten().map(|n| n.shorten().to_string()).unwrap_or_default()
        }
        Ok(r) => r.name().shorten().to_string(),
        Err(_) => String::new(),
    };
    let mut tree = commit.tree().with_context(|| format!("cannot read the tree of {}", commit.id))?;
    // The indexed folder may be a subfolder of the work tree.
    if let Some(workdir) = repo.workdir().and_then(|w| w.canonicalize().ok()) {
        let prefix = root.canonicalize()?.strip_prefix(&workdir).map(Path::to_path_buf).unwrap_or_default();
        if !prefix.as_os_str().is_empty() {
            let entry = tree
                .lookup_entry_by_path(&prefix)?
                .with_context(|| format!("{} is not in {rev}'s tree", prefix.display()))?;
            tree = entry
                .object()?
                .peel_to_tree()
                .with_context(|| format!("{} is not a folder in {rev}", prefix.display()))?;
        }
    }
    let entries = tree.traverse().breadthfirst.files().context("cannot walk the commit's tree")?;
    let by_path: HashMap<String, (gix::objs::tree::EntryMode, gix::ObjectId)> =
        entries.iter().filter_map(|e| Some((e.filepath.to_str().ok()?.to_string(), (e.mode, e.oid)))).collect();
    let mut stats = WalkStats::default();
    let mut files = Vec::new();
    for e in entries.iter().filter(|e| e.mode.is_blob_or_symlink()) {
        let Ok(path) = e.filepath.to_str() else {
            stats.skipped_bad_path += 1;
            continue;
        };
        if !walk::listed(path) {
            continue;
        }
        if walk::bad_path(path) {
            stats.skipped_bad_path += 1;
            continue;
        }
        let (oid, link_target) = if e.mode.is_link() {
            match resolve_link(&repo, &by_path, path) {
                Some(Ok((target, oid))) => (oid, Some(target)),
                Some(Err(())) => {
                    stats.skipped_symlink_outside += 1;
                    continue;
                }
                // A link to a folder: its files are listed where they are.
                None => continue,
            }
        } else {
            (e.oid, None)
        };
        let bytes = repo.find_header(oid)?.size();
        let Some(language) = walk::admit(path, link_target.as_deref(), bytes, max_file_bytes, secrets, &mut stats)
        else {
            continue;
        };
        let data = repo.find_blob(oid)?.take_data();
        match walk::check_source(path, language, data, secrets) {
            Ok(text) => {
                stats.symlinks_inside += usize::from(link_target.is_some());
                files.push(SourceFile { path: path.to_string(), language, hash: sha256_hex(text.as_bytes()), text });
            }
            Err(skip) => stats.record(path, &skip),
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    stats.skipped_secrets.sort();
    Ok(RevTree { files, stats, git: GitInfo { commit: commit.id.to_string(), branch, dirty: false, changed_files: 0 } })
}

/// Where the symlink at `path` leads inside the tree: the target's path and blob, `Err` when it
/// leaves the tree, is missing or loops, `None` when it is a folder (or a submodule).
#[allow(clippy::type_complexity)]
fn resolve_link(
    repo: &gix::Repository,
    by_path: &HashMap<String, (gix::objs::tree::EntryMode, gix::ObjectId)>,
    path: &str,
) -> Option<Result<(String, gix::ObjectId), ()>> {
    let mut at = path.to_string();
    for _ in 0..MAX_LINK_HOPS {
        let (mode, oid) = *by_path.get(&at)?;
        if !mode.is_link() {
            // Through a link, only what the walk lists at its own path (as on disk).
            return match mode.is_blob() && walk::listed(&at) {
                true => Some(Ok((at, oid))),
                false => None,
            };
        }
        let Ok(mut blob) = repo.find_blob(oid) else { return Some(Err(())) };
        let Ok(target) = String::from_utf8(blob.take_data()) else { return Some(Err(())) };
        if target.starts_with('/') {
            return Some(Err(()));
        }
        // The target is relative to the link's folder; `..` may not climb out of the tree.
        let mut parts: Vec<&str> = at.split('/').collect();
        parts.pop();
        for c in target.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Some(Err(()));
                    }
                }
                c => parts.push(c),
            }
        }
        let next = parts.join("/");
        if !by_path.contains_key(&next) {
            return Some(Err(()));
        }
        at = next;
    }
    Some(Err(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn a_work_tree_records_its_commit_branch_and_changed_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        assert!(inspect(dir, std::iter::empty()).is_none(), "not a git work tree");
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/a.py"), "def a():\n    pass\n").unwrap();
        git(dir, &["init", "-q"]);
        git(dir, &["add", "."]);
        git(dir, &["commit", "-q", "-m", "one"]);
        let head = String::from_utf8(
            std::process::Command::new("git").args(["rev-parse", "HEAD"]).current_dir(dir).output().unwrap().stdout,
        )
        .unwrap();
        let clean = inspect(dir, [("src/a.py", &b"def a():\n    pass\n"[..])].into_iter()).unwrap();
        assert_eq!(clean.commit, head.trim());
        assert_eq!((clean.branch.as_str(), clean.dirty, clean.changed_files), ("main", false, 0));
        // An edited file and a file HEAD does not have.
        let dirty =
            inspect(dir, [("src/a.py", &b"def a():\n    return 1\n"[..]), ("src/new.py", &b"x = 1\n"[..])].into_iter())
                .unwrap();
        assert_eq!((dirty.dirty, dirty.changed_files), (true, 2));
        // A subfolder of the work tree: paths are relative to it.
        let sub = inspect(&dir.join("src"), [("a.py", &b"def a():\n    pass\n"[..])].into_iter()).unwrap();
        assert!(!sub.dirty, "{sub:?}");
    }

    fn rev_parse(dir: &Path, rev: &str) -> String {
        let out = std::process::Command::new("git").args(["rev-parse", rev]).current_dir(dir).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    #[test]
    fn a_commit_is_read_from_the_object_database_with_the_walk_rules() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let put = |rel: &str, text: &str| {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        put("src/a.py", "def a():\n    return 1\n");
        put("src/b.rs", "fn b() {}\n");
        put(".hidden/h.py", "x = 1\n");
        put("node_modules/m/i.js", "x");
        put("Cargo.lock", "# lock\n");
        put("big.py", &"x = 1\n".repeat(400));
        symlink("a.py", dir.join("src/link.py")).unwrap();
        symlink("../../outside.py", dir.join("src/out.py")).unwrap();
        git(dir, &["init", "-q"]);
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", "one"]);
        let one = rev_parse(dir, "HEAD");
        // The work tree moves on; the commit does not.
        put("src/a.py", "def a():\n    return 2\n");
        put("src/new.py", "y = 2\n");
        let secrets = SecretPolicy::default();
        let t = read_rev(dir, &one, 1000, &secrets).unwrap();
        let paths: Vec<&str> = t.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["src/a.py", "src/b.rs", "src/link.py"]);
        assert_eq!(t.files[0].text, "def a():\n    return 1\n", "the committed content, not the work tree's");
        assert_eq!(t.files[2].text, t.files[0].text, "a link inside the tree is read from its target");
        assert_eq!(t.files[0].hash, sha256_hex(b"def a():\n    return 1\n"));
        assert_eq!((t.git.commit.as_str(), t.git.branch.as_str(), t.git.dirty), (one.as_str(), "", false));
        assert_eq!((t.stats.skipped_large, t.stats.skipped_symlink_outside, t.stats.symlinks_inside), (1, 1, 1));
        assert_eq!(t.stats.skipped_unknown, 1, "the lock file: {:?}", t.stats);
        // A branch name is recorded as the branch; a subfolder limits the tree.
        git(dir, &["commit", "-q", "-am", "two"]);
        let main = read_rev(&dir.join("src"), "main", 1000, &secrets).unwrap();
        assert_eq!(main.git.branch, "main");
        assert_eq!(main.git.commit, rev_parse(dir, "HEAD"));
        let paths: Vec<&str> = main.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.py", "b.rs", "link.py"], "new.py was never committed");
        assert_eq!(main.files[0].text, "def a():\n    return 2\n");
        // What to fix, in the error.
        let e = read_rev(dir, "no-such-branch", 1000, &secrets).err().unwrap();
        assert!(format!("{e:#}").contains("names no revision"), "{e:#}");
        let plain = tempfile::tempdir().unwrap();
        let e = read_rev(plain.path(), "HEAD", 1000, &secrets).err().unwrap();
        assert!(format!("{e:#}").contains("needs a git repository"), "{e:#}");
    }
}
