//! Which commit an indexed folder is at, read with `gix`: HEAD's commit and branch, and whether
//! the files indexed differ from HEAD's (a file changed, or not in HEAD at all). Recorded in the
//! manifest, so citations and `read_code` can say which commit their lines are from.

use std::path::Path;

use codeintel_index::manifest::GitInfo;

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
}
