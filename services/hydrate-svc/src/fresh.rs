//! Whether an indexed file still has its indexed content on disk, so that every hit and
//! citation can say when its line numbers may have moved. A file is hashed again only when its
//! size or modification time changed since it was last hashed; the common case (nothing
//! changed) costs one `stat` per distinct file of a response.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use codeintel_core::chunk::sha256_hex;
use parking_lot::Mutex;

/// Files whose hash is remembered before the cache starts over (about 100 bytes each).
const MAX_ENTRIES: usize = 200_000;

/// A file as it was last seen: size, modification time, content hash.
#[derive(Clone, PartialEq, Eq)]
struct Seen {
    len: u64,
    modified: Option<SystemTime>,
    hash: String,
}

#[derive(Default)]
pub struct Freshness {
    seen: Mutex<HashMap<PathBuf, Seen>>,
}

/// What the disk says about one indexed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDisk {
    /// It has the indexed content.
    Same,
    /// It was edited since it was indexed.
    Changed,
    /// It is gone (or no longer readable).
    Gone,
    /// The indexed source folder is not readable from here (another host, a pulled index):
    /// nothing can be said.
    Unknown,
}

impl OnDisk {
    /// Edited or gone: line numbers from the index may not match the file on disk.
    pub fn stale(self) -> bool {
        matches!(self, OnDisk::Changed | OnDisk::Gone)
    }
}

impl Freshness {
    /// `path` (repo-relative) of the folder `source` against its indexed `hash`.
    pub fn check(&self, source: &str, path: &str, hash: &str) -> OnDisk {
        let root = Path::new(source);
        if source.is_empty() || !root.is_dir() {
            return OnDisk::Unknown;
        }
        let file = root.join(path);
        let Ok(meta) = std::fs::metadata(&file) else { return OnDisk::Gone };
        let (len, modified) = (meta.len(), meta.modified().ok());
        if let Some(s) = self.seen.lock().get(&file) {
            if s.len == len && s.modified == modified && modified.is_some() {
                return if s.hash == hash { OnDisk::Same } else { OnDisk::Changed };
            }
        }
        let Ok(bytes) = std::fs::read(&file) else { return OnDisk::Gone };
        let now = sha256_hex(&bytes);
        let same = now == hash;
        let mut seen = self.seen.lock();
        if seen.len() >= MAX_ENTRIES {
            seen.clear();
        }
        seen.insert(file, Seen { len, modified, hash: now });
        if same {
            OnDisk::Same
        } else {
            OnDisk::Changed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_same_until_edited_or_removed_and_unknown_without_its_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().display().to_string();
        std::fs::write(tmp.path().join("a.py"), "x = 1\n").unwrap();
        let hash = sha256_hex(b"x = 1\n");
        let f = Freshness::default();
        assert_eq!(f.check(&root, "a.py", &hash), OnDisk::Same);
        assert_eq!(f.check(&root, "a.py", &hash), OnDisk::Same, "from the cache");
        // Another size: hashed again.
        std::fs::write(tmp.path().join("a.py"), "x = 12\n").unwrap();
        assert_eq!(f.check(&root, "a.py", &hash), OnDisk::Changed);
        assert!(OnDisk::Changed.stale());
        // The same size and an older modification time still counts as a change of stat.
        std::fs::write(tmp.path().join("a.py"), "x = 2\n").unwrap();
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options().write(true).open(tmp.path().join("a.py")).unwrap().set_modified(old).unwrap();
        assert_eq!(f.check(&root, "a.py", &hash), OnDisk::Changed);
        std::fs::write(tmp.path().join("a.py"), "x = 1\n").unwrap();
        assert_eq!(f.check(&root, "a.py", &hash), OnDisk::Same, "edited back");
        std::fs::remove_file(tmp.path().join("a.py")).unwrap();
        assert_eq!(f.check(&root, "a.py", &hash), OnDisk::Gone);
        assert_eq!(f.check("/no/such/folder", "a.py", &hash), OnDisk::Unknown);
        assert!(!OnDisk::Unknown.stale());
    }
}
