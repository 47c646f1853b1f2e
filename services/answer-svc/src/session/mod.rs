//! Session scope keyed by the `x-session-id` request metadata: in this process ([`local`], the
//! embedded default) or in Redis shared by every answer-svc process ([`redis`], with the
//! in-process LRU of [`l1`] in front, kept coherent across processes by [`invalidation`]).

mod invalidation;
mod l1;
mod local;
mod redis;

pub use local::LocalStore;
pub use redis::{RedisOptions, RedisStore};

use std::sync::Arc;

use codeintel_core::proto::v1::{Limit, Scope};

use crate::error::AnswerError;

pub const SESSION_HEADER: &str = "x-session-id";
pub const MAX_SESSION_ID: usize = 256;
/// A key in the store: the session id, namespaced by the caller's token name when tokens are
/// configured (`name/id`).
const MAX_SESSION_KEY: usize = MAX_SESSION_ID + 1 + codeintel_config::MAX_TOKEN_NAME;

/// A store key: a session id (see [`validate_session_id`]), or `name/id` namespaced by the
/// caller's token name (names hold no `/`), whose id part is checked.
fn validate_key(key: &str) -> Result<(), AnswerError> {
    match key.split_once('/') {
        Some((name, id)) if key.len() > MAX_SESSION_ID && key.len() <= MAX_SESSION_KEY && !name.is_empty() => {
            validate_session_id(id)
        }
        _ => validate_session_id(key),
    }
}

pub fn validate_session_id(id: &str) -> Result<(), AnswerError> {
    if id.is_empty() {
        return Err(AnswerError::InvalidArgument(format!(
            "set the {SESSION_HEADER} request metadata to name the session"
        )));
    }
    if id.len() > MAX_SESSION_ID {
        return Err(AnswerError::InvalidArgument(format!(
            "{SESSION_HEADER} is {} bytes; at most {MAX_SESSION_ID} are allowed",
            id.len()
        )));
    }
    if id.chars().any(|c| c.is_control()) {
        return Err(AnswerError::InvalidArgument(format!("{SESSION_HEADER} must not contain control characters")));
    }
    Ok(())
}

/// A session's scope as looked up, with what limited the lookup (the store unreachable, or
/// the scope lost by the store and served from this process's copy).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionScope {
    pub scope: Option<Scope>,
    pub limits: Vec<Limit>,
}

/// Where session scopes live: this process, or Redis shared by every answer-svc process.
pub enum SessionStore {
    Local(LocalStore),
    Redis(Arc<RedisStore>),
}

impl Default for SessionStore {
    fn default() -> Self {
        SessionStore::Local(LocalStore::default())
    }
}

fn check_scope(scope: &Scope) -> Result<(), AnswerError> {
    codeintel_core::scope::ScopeFilter::new(Some(scope))?;
    Ok(())
}

impl SessionStore {
    /// Scopes in this process, with `answer.session_ttl_s` and the store's bounds.
    pub fn local(a: &codeintel_config::AnswerConfig) -> Self {
        SessionStore::Local(LocalStore::new(
            std::time::Duration::from_secs(a.session_ttl_s.max(1)),
            a.session_max_entries,
            a.session_max_bytes,
        ))
    }

    pub async fn set(&self, session: &str, scope: Scope) -> Result<(), AnswerError> {
        validate_key(session)?;
        check_scope(&scope)?;
        match self {
            SessionStore::Local(l) => {
                l.set(session, scope);
                Ok(())
            }
            SessionStore::Redis(r) => r.write(session, Some(scope)).await,
        }
    }

    pub async fn get(&self, session: &str) -> Result<SessionScope, AnswerError> {
        validate_key(session)?;
        match self {
            SessionStore::Local(l) => Ok(SessionScope { scope: l.get(session), limits: Vec::new() }),
            SessionStore::Redis(r) => r.get(session).await,
        }
    }

    pub async fn clear(&self, session: &str) -> Result<(), AnswerError> {
        validate_key(session)?;
        match self {
            SessionStore::Local(l) => {
                l.clear(session);
                Ok(())
            }
            SessionStore::Redis(r) => r.write(session, None).await,
        }
    }

    /// `None` when healthy; otherwise why session scopes are degraded.
    pub fn degraded(&self) -> Option<String> {
        match self {
            SessionStore::Local(_) => None,
            SessionStore::Redis(r) => r.degraded(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn set_get_clear_and_bad_ids() {
        let s = SessionStore::default();
        let scope = Scope { repos: vec!["a".into()], ..Default::default() };
        s.set("u1", scope.clone()).await.unwrap();
        assert_eq!(s.get("u1").await.unwrap().scope, Some(scope));
        assert_eq!(s.get("u2").await.unwrap().scope, None);
        s.clear("u1").await.unwrap();
        assert_eq!(s.get("u1").await.unwrap().scope, None);
        assert!(s.get(&"x".repeat(257)).await.is_err());
        assert!(s.get("a\nb").await.is_err());
        assert!(s.get("").await.is_err());
        let many = Scope { include_globs: vec!["*.rs".into(); 65], ..Default::default() };
        let e = s.set("u1", many).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    }
}
