//! The embedded default: scopes in this process only.

use std::collections::HashMap;

use codeintel_core::proto::v1::Scope;
use parking_lot::RwLock;

#[derive(Default)]
pub struct LocalStore {
    scopes: RwLock<HashMap<String, Scope>>,
}

impl LocalStore {
    pub fn set(&self, session: &str, scope: Scope) {
        self.scopes.write().insert(session.to_string(), scope);
    }

    pub fn get(&self, session: &str) -> Option<Scope> {
        self.scopes.read().get(session).cloned()
    }

    pub fn clear(&self, session: &str) {
        self.scopes.write().remove(session);
    }
}
