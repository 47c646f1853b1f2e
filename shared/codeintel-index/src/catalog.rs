//! The set of published repo versions a serving process has loaded, refreshed by polling
//! `CURRENT`. A new version is loaded beside the old one and swapped in atomically; requests in
//! flight keep the `Arc` of the version they started with.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use codeintel_core::scope::{glob_set, ScopeError, ScopeFilter};
use parking_lot::RwLock;

use crate::manifest::{self, Manifest};

/// How many versions older than a refused current one a starting process tries, newest first.
pub const FALLBACK_VERSIONS: usize = 3;

pub struct Loaded<T> {
    pub manifest: Manifest,
    pub value: T,
}

pub struct Catalog<T> {
    root: PathBuf,
    /// The repos this process serves (a shard); `None` = every repo in the root.
    serves: Option<globset::GlobSet>,
    repos: RwLock<HashMap<String, Arc<Loaded<T>>>>,
    /// (repo, why its current version failed to load), from the last refresh.
    errors: RwLock<Vec<(String, String)>>,
}

impl<T> Catalog<T> {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            serves: None,
            repos: RwLock::new(HashMap::new()),
            errors: RwLock::new(Vec::new()),
        }
    }

    /// Serves only the repos whose names match one of `globs` (`team-*`); empty = every repo.
    pub fn serving(mut self, globs: &[String]) -> Result<Self, ScopeError> {
        self.serves = glob_set(globs)?;
        Ok(self)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Loads every repo whose `CURRENT` names a version other than the loaded one and drops
    /// repos that disappeared. Returns true when anything changed. A version that fails to load
    /// leaves the previous one in service; with none loaded yet (a start after the current
    /// version was damaged), the newest of the [`FALLBACK_VERSIONS`] older versions that loads is
    /// served. The failure, and the version served instead, is kept in [`Catalog::errors`].
    pub fn refresh(&self, load: impl Fn(&Path, &Manifest) -> Result<T, String>) -> bool {
        let mut changed = false;
        let mut errors = Vec::new();
        let mut present = manifest::list_repos(&self.root);
        present.retain(|r| self.serves.as_ref().is_none_or(|g| g.is_match(r)));
        for repo in &present {
            let want = manifest::current_version_name(&self.root, repo);
            let have = self.repos.read().get(repo).map(|l| manifest::version_name(l.manifest.version));
            if want.is_some() && want == have {
                continue;
            }
            let dir = self.root.join(repo);
            let attempt = |m: Result<Manifest, manifest::ManifestError>| {
                let m = m.map_err(|e| e.to_string())?;
                load(&dir, &m).map(|value| Loaded { manifest: m, value })
            };
            let refused = match attempt(manifest::load_current(&self.root, repo)) {
                Ok(l) => {
                    tracing::info!(repo = %repo, version = l.manifest.version, "loaded index version");
                    self.repos.write().insert(repo.clone(), Arc::new(l));
                    changed = true;
                    continue;
                }
                Err(e) => format!("{} refused: {e}", want.as_deref().unwrap_or("the current version")),
            };
            let why = match have {
                Some(have) => format!("{refused}; still serving {have}"),
                None => {
                    let want_n = want.as_deref().and_then(|w| w.strip_prefix('v')).and_then(|n| n.parse::<u64>().ok());
                    let older = manifest::list_versions(&self.root, repo)
                        .into_iter()
                        .filter(|v| want_n.is_none_or(|w| *v < w))
                        .take(FALLBACK_VERSIONS);
                    let mut served = None;
                    for v in older {
                        match attempt(manifest::load_version(&self.root, repo, v)) {
                            Ok(l) => {
                                served = Some(manifest::version_name(v));
                                self.repos.write().insert(repo.clone(), Arc::new(l));
                                changed = true;
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(repo = %repo, version = v, error = %e, "older version refused too")
                            }
                        }
                    }
                    match served {
                        Some(v) => format!("{refused}; serving {v} instead"),
                        None => refused,
                    }
                }
            };
            // Said once, not on every poll.
            if !self.errors.read().iter().any(|(r, w)| r == repo && *w == why) {
                tracing::warn!(repo = %repo, "{why}");
            }
            errors.push((repo.clone(), why));
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

    /// The load failures of the last refresh, one line per repo, for readiness.
    pub fn errors(&self) -> Vec<String> {
        self.errors.read().iter().map(|(repo, e)| format!("repo {repo}: {e}")).collect()
    }

    /// All loaded repos (as [`Catalog::snapshot`]), after checking that each repo `scope` names
    /// is among them; a named repo whose version failed to load is reported with its error.
    pub fn in_scope(&self, scope: &ScopeFilter) -> Result<Vec<Arc<Loaded<T>>>, ScopeError> {
        let loaded = self.snapshot();
        let names: Vec<String> = loaded.iter().map(|l| l.manifest.repo.clone()).collect();
        scope.check_repos(&names, &self.errors.read())?;
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use codeintel_core::proto::v1::Scope;

    use super::*;
    use crate::manifest::tests::{manifest, write_artifacts};

    fn scoped(repo: &str) -> ScopeFilter {
        ScopeFilter::new(Some(&Scope { repos: vec![repo.into()], ..Default::default() })).unwrap()
    }

    #[test]
    fn a_repo_that_failed_to_load_is_named_with_its_error_not_as_unknown() {
        let d = tempfile::tempdir().unwrap();
        for repo in ["bad", "good"] {
            let m = manifest(repo, 1);
            write_artifacts(d.path(), &m);
            manifest::publish(d.path(), &m).unwrap();
        }
        let catalog: Catalog<()> = Catalog::new(d.path());
        catalog.refresh(|_, m| if m.repo == "bad" { Err("vector/v1.faiss: not a FAISS index".into()) } else { Ok(()) });

        assert_eq!(catalog.errors(), vec!["repo bad: v000001 refused: vector/v1.faiss: not a FAISS index".to_string()]);
        let served = catalog.in_scope(&scoped("good")).unwrap();
        assert_eq!(served.iter().map(|l| l.manifest.repo.as_str()).collect::<Vec<_>>(), ["good"]);
        match catalog.in_scope(&scoped("bad")) {
            Err(e @ ScopeError::RepoNotLoaded { .. }) => {
                assert!(e.is_unavailable());
                assert!(e.to_string().contains("not a FAISS index"), "{e}");
            }
            other => panic!("want RepoNotLoaded, got {:?}", other.map(|v| v.len())),
        }
        match catalog.in_scope(&scoped("nope")) {
            Err(ScopeError::UnknownRepo { known, .. }) => assert_eq!(known, "good"),
            other => panic!("want UnknownRepo, got {:?}", other.map(|v| v.len())),
        }

        // A shard serves only the repos its globs name; the others are unknown to it.
        let shard: Catalog<()> = Catalog::new(d.path()).serving(&["g*".into()]).unwrap();
        shard.refresh(|_, _| Ok(()));
        assert_eq!(shard.in_scope(&ScopeFilter::default()).unwrap().len(), 1);
        assert!(matches!(shard.in_scope(&scoped("bad")), Err(ScopeError::UnknownRepo { .. })));
        assert!(Catalog::<()>::new(d.path()).serving(&["[".into()]).is_err());

        // Once it loads, the failure is forgotten and the repo is served.
        catalog.refresh(|_, _| Ok(()));
        assert!(catalog.errors().is_empty());
        assert_eq!(catalog.in_scope(&scoped("bad")).unwrap().len(), 2);
    }

    #[test]
    fn a_refused_current_version_falls_back_to_the_newest_older_one_that_loads() {
        let d = tempfile::tempdir().unwrap();
        for v in 1..=3 {
            let m = manifest("r", v);
            write_artifacts(d.path(), &m);
            manifest::publish(d.path(), &m).unwrap();
        }
        // v3 (current) and v2 refuse to load: a fresh process serves v1 and says why.
        let catalog: Catalog<u64> = Catalog::new(d.path());
        let load = |_: &Path, m: &Manifest| {
            if m.version >= 2 {
                Err(format!("v{} is damaged", m.version))
            } else {
                Ok(m.version)
            }
        };
        assert!(catalog.refresh(load));
        assert_eq!(catalog.get("r").unwrap().value, 1);
        assert_eq!(
            catalog.errors(),
            vec!["repo r: v000003 refused: v3 is damaged; serving v000001 instead".to_string()]
        );
        // A process that already serves a version keeps it.
        assert!(!catalog.refresh(load));
        assert_eq!(catalog.errors(), vec!["repo r: v000003 refused: v3 is damaged; still serving v000001".to_string()]);
        // Once the current version loads, it is served and the error goes.
        assert!(catalog.refresh(|_, m| Ok(m.version)));
        assert_eq!(catalog.get("r").unwrap().value, 3);
        assert!(catalog.errors().is_empty());
        // With nothing older that loads, the repo is not served.
        let none: Catalog<u64> = Catalog::new(d.path());
        none.refresh(|_, _| Err("damaged".into()));
        assert!(none.get("r").is_none());
        assert_eq!(none.errors(), vec!["repo r: v000003 refused: damaged".to_string()]);
    }
}
