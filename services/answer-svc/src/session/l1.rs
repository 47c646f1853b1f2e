//! The in-process L1 in front of Redis: a small LRU of session scopes with their fetch time.

use std::collections::HashMap;
use std::time::Instant;

use codeintel_core::proto::v1::Scope;

pub(super) struct Cached {
    scope: Option<Scope>,
    at: Instant,
    used: u64,
}

/// A small LRU of session scopes with their fetch time, and the last scope this process saw
/// for each session that had one (`known`, kept across [`L1::forget_all`]): when the store
/// loses a session's scope (Redis restarted without its data), that copy is served instead of
/// widening the session to every repo.
pub(super) struct L1 {
    map: HashMap<String, Cached>,
    capacity: usize,
    clock: u64,
    known: HashMap<String, (Scope, u64)>,
    known_capacity: usize,
}

impl L1 {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            capacity,
            clock: 0,
            known: HashMap::new(),
            known_capacity: (capacity * 10).max(1000),
        }
    }

    /// Forgets one session's scope (it changed elsewhere), the known copy too.
    pub(super) fn forget(&mut self, k: &str) {
        self.map.remove(k);
        self.known.remove(k);
    }

    /// Forgets every cached scope (invalidations may have been missed); known copies stay.
    pub(super) fn forget_all(&mut self) {
        self.map.clear();
    }

    /// The last scope this process saw for `k`, if it had one and it was not cleared since.
    pub(super) fn known(&self, k: &str) -> Option<Scope> {
        self.known.get(k).map(|(s, _)| s.clone())
    }

    /// Every known copy (session, scope), to give back to a store that lost them.
    pub(super) fn known_all(&self) -> Vec<(String, Scope)> {
        self.known.iter().map(|(k, (s, _))| (k.clone(), s.clone())).collect()
    }

    fn remember(&mut self, k: &str, scope: &Option<Scope>) {
        match scope {
            Some(s) => {
                if self.known.len() >= self.known_capacity && !self.known.contains_key(k) {
                    if let Some(old) = self.known.iter().min_by_key(|(_, (_, u))| *u).map(|(k, _)| k.clone()) {
                        self.known.remove(&old);
                    }
                }
                self.known.insert(k.to_string(), (s.clone(), self.clock));
            }
            None => {
                self.known.remove(k);
            }
        }
    }

    pub(super) fn get(&mut self, k: &str) -> Option<(Option<Scope>, Instant)> {
        self.clock += 1;
        let c = self.map.get_mut(k)?;
        c.used = self.clock;
        Some((c.scope.clone(), c.at))
    }

    /// Caches `scope` for `k` (`None`: the session has none, which also drops the known copy).
    pub(super) fn put(&mut self, k: &str, scope: Option<Scope>) {
        self.clock += 1;
        self.remember(k, &scope);
        if self.capacity == 0 {
            return;
        }
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
        let mut l1 = L1::new(2);
        l1.put("a", None);
        l1.put("b", None);
        assert!(l1.get("a").is_some());
        l1.put("c", None);
        assert!(l1.get("b").is_none(), "b was least recently used");
        assert!(l1.get("a").is_some() && l1.get("c").is_some());
    }

    #[test]
    fn known_scopes_survive_forget_all_but_not_a_change() {
        let mut l1 = L1::new(2);
        let sc = Scope { repos: vec!["a".into()], ..Default::default() };
        l1.put("s", Some(sc.clone()));
        l1.forget_all();
        assert!(l1.get("s").is_none());
        assert_eq!(l1.known("s"), Some(sc.clone()));
        l1.forget("s");
        assert_eq!(l1.known("s"), None, "a scope changed elsewhere is not known any more");
        l1.put("s", Some(sc));
        l1.put("s", None);
        assert_eq!(l1.known("s"), None, "a cleared scope is not known any more");
    }
}
