//! Scope filters: which repos, paths and languages a request may touch.

use globset::{Glob, GlobSet, GlobSetBuilder};

use codeintel_proto::v1::{RetrieveRequest, Scope};

pub const MAX_GLOBS: usize = 1000;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ScopeError {
    #[error("bad glob {glob:?}: {message}; use patterns like `src/**/*.rs`")]
    BadGlob { glob: String, message: String },
    #[error("scope has {0} globs; at most {MAX_GLOBS} are allowed")]
    TooManyGlobs(usize),
    #[error("unknown repo {repo:?}; indexed repos: {known}")]
    UnknownRepo { repo: String, known: String },
    #[error(
        "repo {repo:?} is indexed but this service could not load it ({reason}); \
         re-index it with `codeintel index` or fix the files named, and it is loaded on the next refresh"
    )]
    RepoNotLoaded { repo: String, reason: String },
}

impl ScopeError {
    /// Whether the fault is the server's (a repo it failed to load) rather than the request's:
    /// such errors map to UNAVAILABLE, the others to INVALID_ARGUMENT.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ScopeError::RepoNotLoaded { .. })
    }
}

/// Why a retriever request (vector-svc, lexical-svc) is refused: its query and limits, or its
/// scope.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RetrieveError {
    #[error("{0}")]
    BadQuery(String),
    #[error(transparent)]
    Scope(#[from] ScopeError),
}

impl RetrieveError {
    /// See [`ScopeError::is_unavailable`].
    pub fn is_unavailable(&self) -> bool {
        matches!(self, RetrieveError::Scope(e) if e.is_unavailable())
    }
}

/// Validates a retriever request (query, top_k, scope); the error says what to fix.
pub fn validate_retrieve(req: &RetrieveRequest) -> Result<ScopeFilter, RetrieveError> {
    if req.query.trim().is_empty() {
        return Err(RetrieveError::BadQuery("query is empty: send the text to search for".into()));
    }
    if req.top_k == 0 || req.top_k > 1000 {
        return Err(RetrieveError::BadQuery(format!("top_k must be between 1 and 1000, got {}", req.top_k)));
    }
    Ok(ScopeFilter::new(req.scope.as_ref())?)
}

/// A compiled scope. An empty list in any field means "no restriction" on it.
#[derive(Debug, Clone, Default)]
pub struct ScopeFilter {
    pub repos: Vec<String>,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    pub languages: Vec<String>,
    pub scope: Scope,
}

/// The compiled set of `globs`; `None` when there are none. A bad glob is named in the error.
pub fn glob_set(globs: &[String]) -> Result<Option<GlobSet>, ScopeError> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let glob = Glob::new(g).map_err(|e| ScopeError::BadGlob { glob: g.clone(), message: e.kind().to_string() })?;
        b.add(glob);
    }
    b.build().map(Some).map_err(|e| ScopeError::BadGlob { glob: globs.join(","), message: e.to_string() })
}

impl ScopeFilter {
    pub fn new(scope: Option<&Scope>) -> Result<Self, ScopeError> {
        let Some(scope) = scope else { return Ok(Self::default()) };
        let n = scope.include_globs.len() + scope.exclude_globs.len();
        if n > MAX_GLOBS {
            return Err(ScopeError::TooManyGlobs(n));
        }
        Ok(Self {
            repos: scope.repos.clone(),
            include: glob_set(&scope.include_globs)?,
            exclude: glob_set(&scope.exclude_globs)?,
            languages: scope.languages.iter().map(|l| l.to_ascii_lowercase()).collect(),
            scope: scope.clone(),
        })
    }

    /// Checks that every repo named exists among `known`. A named repo that is not served but
    /// appears in `failed` (repo, why it failed to load) is reported with its load error.
    pub fn check_repos(&self, known: &[String], failed: &[(String, String)]) -> Result<(), ScopeError> {
        for r in &self.repos {
            if !known.contains(r) {
                if let Some((_, reason)) = failed.iter().find(|(repo, _)| repo == r) {
                    return Err(ScopeError::RepoNotLoaded { repo: r.clone(), reason: reason.clone() });
                }
                return Err(ScopeError::UnknownRepo {
                    repo: r.clone(),
                    known: if known.is_empty() { "none".into() } else { known.join(", ") },
                });
            }
        }
        Ok(())
    }

    pub fn allows_repo(&self, repo: &str) -> bool {
        self.repos.is_empty() || self.repos.iter().any(|r| r == repo)
    }

    /// Whether anything beyond the repo list restricts results (callers over-fetch then).
    pub fn filters_chunks(&self) -> bool {
        self.include.is_some() || self.exclude.is_some() || !self.languages.is_empty()
    }

    pub fn allows(&self, repo: &str, path: &str, language: &str) -> bool {
        self.allows_repo(repo)
            && self.include.as_ref().is_none_or(|g| g.is_match(path))
            && self.exclude.as_ref().is_none_or(|g| !g.is_match(path))
            && (self.languages.is_empty() || self.languages.iter().any(|l| l == language))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_repo_glob_and_language() {
        let s = Scope {
            repos: vec!["a".into()],
            include_globs: vec!["src/**".into()],
            exclude_globs: vec!["**/test_*".into()],
            languages: vec!["Python".into()],
        };
        let f = ScopeFilter::new(Some(&s)).unwrap();
        assert!(f.allows("a", "src/x/y.py", "python"));
        assert!(!f.allows("b", "src/x/y.py", "python"));
        assert!(!f.allows("a", "lib/y.py", "python"));
        assert!(!f.allows("a", "src/test_y.py", "python"));
        assert!(!f.allows("a", "src/y.rs", "rust"));
        assert!(ScopeFilter::new(None).unwrap().allows("z", "q", "c"));
    }

    #[test]
    fn bad_and_too_many_globs_are_errors() {
        let s = Scope { include_globs: vec!["src/[".into()], ..Default::default() };
        assert!(matches!(ScopeFilter::new(Some(&s)), Err(ScopeError::BadGlob { .. })));
        let s = Scope { include_globs: vec!["*".into(); 1001], ..Default::default() };
        assert_eq!(ScopeFilter::new(Some(&s)).unwrap_err(), ScopeError::TooManyGlobs(1001));
        let req =
            |q: &str, k: u32| RetrieveRequest { query: q.into(), scope: None, top_k: k, exact_symbol: String::new() };
        assert!(validate_retrieve(&req(" ", 5)).unwrap_err().to_string().contains("query is empty"));
        assert!(validate_retrieve(&req("x", 0)).unwrap_err().to_string().contains("top_k"));
        assert!(validate_retrieve(&req("x", 1001)).unwrap_err().to_string().contains("top_k"));
        assert!(validate_retrieve(&req("x", 1000)).is_ok());
        let f = ScopeFilter::new(Some(&Scope { repos: vec!["nope".into()], ..Default::default() })).unwrap();
        let e = f.check_repos(&["a".into()], &[]).unwrap_err();
        assert!(matches!(&e, ScopeError::UnknownRepo { repo, known } if repo == "nope" && known == "a"), "{e}");
        assert!(!e.is_unavailable());
        let failed = [("nope".to_string(), "manifest.json: expected value at line 1".to_string())];
        let e = f.check_repos(&["a".into()], &failed).unwrap_err();
        assert!(e.is_unavailable());
        assert!(e.to_string().contains("\"nope\" is indexed but this service could not load it"), "{e}");
        assert!(e.to_string().contains("manifest.json: expected value"), "{e}");
        assert!(f.check_repos(&["a".into(), "nope".into()], &failed).is_ok());
    }
}
