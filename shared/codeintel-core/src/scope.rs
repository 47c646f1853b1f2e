//! Scope filters: which repos, paths and languages a request may touch.

use globset::{Glob, GlobSet, GlobSetBuilder};

use codeintel_proto::v1::{RetrieveRequest, Scope};

/// Bounds on what one request may carry. Every service checks them itself (not only
/// answer-svc), before any work: a retriever reached directly gets the same answer.
pub const MAX_QUERY_BYTES: usize = 8192;
pub const MAX_TOP_K: u32 = 1000;
pub const MAX_EXACT_SYMBOL_BYTES: usize = 512;
/// Include and exclude globs together.
pub const MAX_GLOBS: usize = 64;
pub const MAX_GLOB_BYTES: usize = 512;
pub const MAX_SCOPE_REPOS: usize = 256;
pub const MAX_REPO_NAME_BYTES: usize = 128;
pub const MAX_LANGUAGES: usize = 32;
pub const MAX_LANGUAGE_BYTES: usize = 32;

/// At most `max` bytes of `s` (cut at a character boundary), with an ellipsis and the full
/// length when cut: errors quote what the client sent without echoing unbounded input.
pub fn excerpt(s: &str, max: usize) -> String {
    if s.len() <= max {
        return format!("{s:?}");
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &s[..end], s.len())
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ScopeError {
    #[error("bad glob {glob}: {message}; use patterns like `src/**/*.rs`")]
    BadGlob { glob: String, message: String },
    #[error("scope has {0} globs; at most {MAX_GLOBS} are allowed")]
    TooManyGlobs(usize),
    #[error("scope {what} {value} is {len} bytes; at most {max} are allowed")]
    TooLong { what: &'static str, value: String, len: usize, max: usize },
    #[error("scope names {count} {what}; at most {max} are allowed")]
    TooMany { what: &'static str, count: usize, max: usize },
    #[error("unknown repo {repo}; indexed repos: {known}")]
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

/// Validates query text against [`MAX_QUERY_BYTES`]; `what` says what it is for the message.
pub fn validate_query_text(query: &str, what: &str) -> Result<(), String> {
    if query.trim().is_empty() {
        return Err(format!("query is empty: {what}"));
    }
    if query.len() > MAX_QUERY_BYTES {
        return Err(format!("query is {} bytes; at most {MAX_QUERY_BYTES} are allowed", query.len()));
    }
    Ok(())
}

/// Validates `top_k` against 1..=[`MAX_TOP_K`].
pub fn validate_top_k(top_k: u32) -> Result<(), String> {
    if top_k == 0 || top_k > MAX_TOP_K {
        return Err(format!("top_k must be between 1 and {MAX_TOP_K}, got {top_k}"));
    }
    Ok(())
}

/// Validates a retriever request (query, top_k, scope); the error says what to fix.
pub fn validate_retrieve(req: &RetrieveRequest) -> Result<ScopeFilter, RetrieveError> {
    validate_query_text(&req.query, "send the text to search for").map_err(RetrieveError::BadQuery)?;
    validate_top_k(req.top_k).map_err(RetrieveError::BadQuery)?;
    if req.exact_symbol.len() > MAX_EXACT_SYMBOL_BYTES {
        return Err(RetrieveError::BadQuery(format!(
            "exact_symbol is {} bytes; at most {MAX_EXACT_SYMBOL_BYTES} are allowed",
            req.exact_symbol.len()
        )));
    }
    Ok(ScopeFilter::new(req.scope.as_ref())?)
}

/// Checks the sizes of a scope's fields (before anything is compiled).
pub fn check_bounds(scope: &Scope) -> Result<(), ScopeError> {
    let n = scope.include_globs.len() + scope.exclude_globs.len();
    if n > MAX_GLOBS {
        return Err(ScopeError::TooManyGlobs(n));
    }
    let too_long = |what, v: &String, max| ScopeError::TooLong { what, value: excerpt(v, 48), len: v.len(), max };
    if let Some(g) = scope.include_globs.iter().chain(&scope.exclude_globs).find(|g| g.len() > MAX_GLOB_BYTES) {
        return Err(too_long("glob", g, MAX_GLOB_BYTES));
    }
    if scope.repos.len() > MAX_SCOPE_REPOS {
        return Err(ScopeError::TooMany { what: "repos", count: scope.repos.len(), max: MAX_SCOPE_REPOS });
    }
    if let Some(r) = scope.repos.iter().find(|r| r.len() > MAX_REPO_NAME_BYTES) {
        return Err(too_long("repo", r, MAX_REPO_NAME_BYTES));
    }
    if scope.languages.len() > MAX_LANGUAGES {
        return Err(ScopeError::TooMany { what: "languages", count: scope.languages.len(), max: MAX_LANGUAGES });
    }
    if let Some(l) = scope.languages.iter().find(|l| l.len() > MAX_LANGUAGE_BYTES) {
        return Err(too_long("language", l, MAX_LANGUAGE_BYTES));
    }
    Ok(())
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
        let glob =
            Glob::new(g).map_err(|e| ScopeError::BadGlob { glob: excerpt(g, 80), message: e.kind().to_string() })?;
        b.add(glob);
    }
    b.build().map(Some).map_err(|e| {
        let mut message = e.to_string();
        message.truncate(message.floor_char_boundary(200));
        ScopeError::BadGlob { glob: format!("set of {} globs", globs.len()), message }
    })
}

impl ScopeFilter {
    pub fn new(scope: Option<&Scope>) -> Result<Self, ScopeError> {
        let Some(scope) = scope else { return Ok(Self::default()) };
        check_bounds(scope)?;
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
                    repo: excerpt(r, MAX_REPO_NAME_BYTES),
                    known: known_list(known),
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

/// The indexed repos for an error message: at most 20 named.
fn known_list(known: &[String]) -> String {
    match known.len() {
        0 => "none".into(),
        n if n > 20 => format!("{} and {} more", known[..20].join(", "), n - 20),
        _ => known.join(", "),
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
        let s = Scope { include_globs: vec!["*".into(); MAX_GLOBS], ..Default::default() };
        assert!(ScopeFilter::new(Some(&s)).is_ok());
        let req =
            |q: &str, k: u32| RetrieveRequest { query: q.into(), scope: None, top_k: k, exact_symbol: String::new() };
        assert!(validate_retrieve(&req(" ", 5)).unwrap_err().to_string().contains("query is empty"));
        assert!(validate_retrieve(&req("x", 0)).unwrap_err().to_string().contains("top_k"));
        assert!(validate_retrieve(&req("x", 1001)).unwrap_err().to_string().contains("top_k"));
        assert!(validate_retrieve(&req("x", 1000)).is_ok());
        let f = ScopeFilter::new(Some(&Scope { repos: vec!["nope".into()], ..Default::default() })).unwrap();
        let e = f.check_repos(&["a".into()], &[]).unwrap_err();
        assert!(matches!(&e, ScopeError::UnknownRepo { repo, known } if repo == "\"nope\"" && known == "a"), "{e}");
        assert!(!e.is_unavailable());
        let failed = [("nope".to_string(), "manifest.json: expected value at line 1".to_string())];
        let e = f.check_repos(&["a".into()], &failed).unwrap_err();
        assert!(e.is_unavailable());
        assert!(e.to_string().contains("\"nope\" is indexed but this service could not load it"), "{e}");
        assert!(e.to_string().contains("manifest.json: expected value"), "{e}");
        assert!(f.check_repos(&["a".into(), "nope".into()], &failed).is_ok());
    }

    #[test]
    fn oversized_scope_fields_are_refused_without_echoing_them() {
        let huge = "a/".repeat(1024) + "*.rs";
        let cases = [
            Scope { include_globs: vec![huge.clone()], ..Default::default() },
            Scope { exclude_globs: vec![huge.clone()], ..Default::default() },
            Scope { repos: vec![huge.clone()], ..Default::default() },
            Scope { languages: vec![huge.clone()], ..Default::default() },
            Scope { repos: vec!["r".into(); MAX_SCOPE_REPOS + 1], ..Default::default() },
            Scope { languages: vec!["rust".into(); MAX_LANGUAGES + 1], ..Default::default() },
            Scope { include_globs: vec![huge.clone(); 1000], ..Default::default() },
        ];
        for s in &cases {
            let e = ScopeFilter::new(Some(s)).unwrap_err().to_string();
            assert!(e.len() < 300, "the error echoes the input ({} bytes): {}", e.len(), &e[..200]);
            assert!(e.contains("at most"), "{e}");
        }
        // A bad glob near the bound is quoted in part only.
        let bad = format!("{}[", "x".repeat(MAX_GLOB_BYTES - 1));
        let e = ScopeFilter::new(Some(&Scope { include_globs: vec![bad], ..Default::default() })).unwrap_err();
        assert!(matches!(e, ScopeError::BadGlob { .. }));
        assert!(e.to_string().len() < 300, "{e}");
        // Unknown repos: the name quoted, the known list bounded.
        let f = ScopeFilter::new(Some(&Scope { repos: vec!["zz".into()], ..Default::default() })).unwrap();
        let known: Vec<String> = (0..500).map(|i| format!("repo{i}")).collect();
        let e = f.check_repos(&known, &[]).unwrap_err().to_string();
        assert!(e.contains("and 480 more") && e.len() < 400, "{e}");
    }

    #[test]
    fn retriever_requests_are_bounded_like_answer_requests() {
        let req = |q: String, sym: String| RetrieveRequest { query: q, scope: None, top_k: 5, exact_symbol: sym };
        let e = validate_retrieve(&req("x".repeat(3 << 20), String::new())).unwrap_err().to_string();
        assert!(e.contains("at most 8192") && e.len() < 200, "{e}");
        assert!(validate_retrieve(&req("x".repeat(MAX_QUERY_BYTES), String::new())).is_ok());
        let e = validate_retrieve(&req("x".into(), "y".repeat(4096))).unwrap_err().to_string();
        assert!(e.contains("exact_symbol"), "{e}");
        assert_eq!(excerpt("héllo", 2), "\"h\"... (6 bytes)");
    }
}
