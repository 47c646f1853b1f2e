//! The set of published repo versions a serving process has loaded, refreshed by polling
//! `CURRENT`. A new version is loaded beside the old one and swapped in atomically; requests in
//! flight keep the `Arc` of the version they started with.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::manifest::{self, Manifest};

pub struct Loaded<T> {
    pub manifest: Manifest,
    pub value: T,
}

pub struct Catalog<T> {
    root: PathBuf,
    repos: RwLock<HashMap<String, Arc<Loaded<T>>>>,
    errors: RwLock<Vec<String>>,
}

impl<T> Catalog<T> {
    pub fn new(root: &Path) -> Self {
        Self { root: root.to_path_buf(), repos: RwLock::new(HashMap::new()), errors: RwLock::new(Vec::new()) }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Loads every repo whose `CURRENT` names a version other than the loaded one and drops
    /// repos that disappeared. Returns true when anything changed. A version that fails to load
    /// leaves the previous one in service; the failure is kept in [`Catalog::errors`].
    pub fn refresh(&self, load: impl Fn(&Path, &Manifest) -> Result<T, String>) -> bool {
        let mut changed = false;
        let mut errors = Vec::new();
        let present = manifest::list_repos(&self.root);
        for repo in &present {
            let want = manifest::current_version_name(&self.root, repo);
            let have = self.repos.read().get(repo).map(|l| manifest::version_name(l.manifest.version));
            if want.is_some() && want == have {
                continue;
            }
            match manifest::load_current(&self.root, repo) {
                Ok(m) => match load(&self.root.join(repo), &m) {
                    Ok(value) => {
                        tracing::info!(repo = %repo, version = m.version, "loaded index version");
                        self.repos.write().insert(repo.clone(), Arc::new(Loaded { manifest: m, value }));
                        changed = true;
                    }
                    Err(e) => errors.push(format!("repo {repo}: {e}")),
                },
                Err(e) => errors.push(e.to_string()),
            }
        }
        let mut repos = self.repos.write();
        let before = repos.len();
        repos.retain(|k, _| present.contains(k));
        changed |= repos.len() != before;
        *self.errors.write() = errors;
        changed
    }

    pub fn get(&self, repo: &str) -> Option<Arc<Loaded<T>>> {
        self.repos.read().get(repo).cloned()
    }

    /// All loaded repos, sorted by name.
    pub fn snapshot(&self) -> Vec<Arc<Loaded<T>>> {
        let mut v: Vec<_> = self.repos.read().values().cloned().collect();
        v.sort_by(|a, b| a.manifest.repo.cmp(&b.manifest.repo));
        v
    }

    pub fn repo_names(&self) -> Vec<String> {
        self.snapshot().iter().map(|l| l.manifest.repo.clone()).collect()
    }

    pub fn errors(&self) -> Vec<String> {
        self.errors.read().clone()
    }
}
