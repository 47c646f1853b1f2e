//! One writer per repo. Every driver that publishes a version of a repo (`codeintel index`,
//! `codeintel compact`) holds `<root>/<repo>/.writer.lock` for its whole run: an advisory lock
//! (`flock`) on an open file, released by the kernel when the process exits, so a killed indexer
//! never leaves a stale lock behind. A second writer waits for the first, or refuses at once when
//! told not to wait, and says who holds the lock.
//!
//! Without it two runs read the same current version, pick the same next version number and
//! write into the same folders, and the hard-linked files that published versions share can be
//! overwritten.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::manifest;

pub const LOCK_FILE: &str = ".writer.lock";

/// What to do when another process holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Block until the other writer finishes (printing once who it is).
    Block,
    /// Fail at once with a message naming the holder.
    Refuse,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "repo {repo:?} is being written by another indexer ({holder}); wait for it to finish, or run this again without --no-wait to queue behind it"
    )]
    Busy { repo: String, holder: String },
    #[error("cannot open the writer lock {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Name(#[from] manifest::ManifestError),
}

/// Held while a driver writes `repo`; dropping it releases the lock.
#[derive(Debug)]
pub struct RepoLock {
    _file: File,
    path: PathBuf,
}

impl RepoLock {
    /// Takes the writer lock of `repo` under `root` (creating the repo folder if needed).
    /// `on_wait` is called once, with the holder's description, before blocking.
    pub fn acquire(root: &Path, repo: &str, wait: Wait, on_wait: impl FnOnce(&str)) -> Result<Self, LockError> {
        let dir = manifest::repo_dir(root, repo)?;
        std::fs::create_dir_all(&dir).map_err(|source| LockError::Io { path: dir.clone(), source })?;
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io { path: path.clone(), source };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = holder(&mut file);
                if wait == Wait::Refuse {
                    return Err(LockError::Busy { repo: repo.to_string(), holder });
                }
                on_wait(&holder);
                file.lock().map_err(io)?;
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        // The holder's identity, for whoever waits next (the lock itself is the flock).
        let me = format!("pid {} since unix ms {}", std::process::id(), manifest::now_unix_ms());
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(me.as_bytes()))
            .map_err(io)?;
        Ok(Self { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn holder(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.seek(SeekFrom::Start(0)).and_then(|_| file.take(200).read_to_string(&mut s));
    let s = s.trim();
    if s.is_empty() {
        "a process that has not written its pid yet".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_second_writer_is_refused_with_the_holder_named_and_admitted_once_the_first_is_done() {
        let tmp = tempfile::tempdir().unwrap();
        let first = RepoLock::acquire(tmp.path(), "r", Wait::Refuse, |_| {}).unwrap();
        let err = RepoLock::acquire(tmp.path(), "r", Wait::Refuse, |_| {}).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("being written by another indexer"), "{msg}");
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
        // Another repo is independent.
        RepoLock::acquire(tmp.path(), "other", Wait::Refuse, |_| {}).unwrap();
        drop(first);
        RepoLock::acquire(tmp.path(), "r", Wait::Refuse, |_| {}).unwrap();
    }

    #[test]
    fn a_waiting_writer_blocks_until_the_holder_releases() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let first = RepoLock::acquire(&root, "r", Wait::Refuse, |_| {}).unwrap();
        let (tx, rx) = mpsc::channel();
        let (waited_tx, waited_rx) = mpsc::channel();
        let t = std::thread::spawn(move || {
            let l = RepoLock::acquire(&root, "r", Wait::Block, |h| waited_tx.send(h.to_string()).unwrap()).unwrap();
            tx.send(()).unwrap();
            drop(l);
        });
        let holder = waited_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(holder.contains("pid"), "{holder}");
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "the waiter got the lock while it was held");
        drop(first);
        rx.recv_timeout(Duration::from_secs(10)).expect("the waiter never got the lock");
        t.join().unwrap();
    }

    #[test]
    fn an_invalid_repo_name_is_refused_before_anything_is_created() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(RepoLock::acquire(tmp.path(), "../x", Wait::Refuse, |_| {}).is_err());
        assert!(!tmp.path().join("x").exists());
    }
}
