//! Session scope keyed by the `x-session-id` request metadata. This in-process store is the
//! embedded default; it serves one answer-svc process.

use std::collections::HashMap;

use codeintel_core::proto::v1::Scope;
use parking_lot::RwLock;

use crate::error::AnswerError;

pub const SESSION_HEADER: &str = "x-session-id";
pub const MAX_SESSION_ID: usize = 256;

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

#[derive(Default)]
pub struct SessionStore {
    scopes: RwLock<HashMap<String, Scope>>,
}

impl SessionStore {
    pub fn set(&self, session: &str, scope: Scope) -> Result<(), AnswerError> {
        validate_session_id(session)?;
        self.scopes.write().insert(session.to_string(), scope);
        Ok(())
    }

    pub fn get(&self, session: &str) -> Result<Option<Scope>, AnswerError> {
        validate_session_id(session)?;
        Ok(self.scopes.read().get(session).cloned())
    }

    pub fn clear(&self, session: &str) -> Result<(), AnswerError> {
        validate_session_id(session)?;
        self.scopes.write().remove(session);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.scopes.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_clear_and_bad_ids() {
        let s = SessionStore::default();
        let scope = Scope { repos: vec!["a".into()], ..Default::default() };
        s.set("u1", scope.clone()).unwrap();
        assert_eq!(s.get("u1").unwrap(), Some(scope));
        assert_eq!(s.get("u2").unwrap(), None);
        s.clear("u1").unwrap();
        assert_eq!(s.get("u1").unwrap(), None);
        assert!(s.get(&"x".repeat(257)).is_err());
        assert!(s.get("a\nb").is_err());
        assert!(s.get("").is_err());
    }
}
