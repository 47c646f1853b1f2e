//! The in-process L1 in front of Redis: a small LRU of session scopes with their fetch time.

use std::collections::HashMap;
use std::time::Instant;

use codeintel_core::proto::v1::Scope;

pub(super) struct Cached {
    scope: Option<Scope>,
    at: Instant,
    used: u64,
}

/// A small LRU of session scopes with their fetch time.
pub(super) struct L1 {
    map: HashMap<String, Cached>,
    capacity: usize,
    clock: u64,
}

impl L1 {
    pub(super) fn new(capacity: usize) -> Self {
        Self { map: HashMap::new(), capacity, clock: 0 }
    }

    /// Forgets one session's scope (it changed elsewhere).
    pub(super) fn forget(&mut self, k: &str) {
        self.map.remove(k);
    }

    /// Forgets everything (invalidations may have been missed).
    pub(super) fn forget_all(&mut self) {
        self.map.clear();
    }

    pub(super) fn get(&mut self, k: &str) -> Option<(Option<Scope>, Instant)> {
        self.clock += 1;
        let c = self.map.get_mut(k)?;
        c.used = self.clock;
        Some((c.scope.clone(), c.at))
    }

    pub(super) fn put(&mut self, k: &str, scope: Option<Scope>) {
        if self.capacity == 0 {
            return;
        }
        self.clock += 1;
        if self.map.len() >= self.capacity && !self.map.contains_key(k) {
            if let Some(old) = self.map.iter().min_by_key(|(_, c)| c.used).map(|(k, _)| k.clone()) {
                self.map.remove(&old);
            }
        }
        self.map.insert(k.to_string(), Cached { scope, at: Instant::now(), used: self.clock });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l1_evicts_the_least_recently_used() {
        let mut l1 = L1 { map: HashMap::new(), capacity: 2, clock: 0 };
        l1.put("a", None);
        l1.put("b", None);
        assert!(l1.get("a").is_some());
        l1.put("c", None);
        assert!(l1.get("b").is_none(), "b was least recently used");
        assert!(l1.get("a").is_some() && l1.get("c").is_some());
    }
}
