//! The embedded default: scopes in this process only, each expiring `answer.session_ttl_s`
//! after its last `SetScope`, bounded in count and bytes (the oldest set goes first).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use codeintel_core::proto::v1::Scope;
use parking_lot::Mutex;
use prost::Message;

struct Entry {
    scope: Scope,
    bytes: usize,
    expires: Instant,
    seq: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Entry>,
    bytes: usize,
    seq: u64,
}

impl Inner {
    fn remove(&mut self, session: &str) {
        if let Some(e) = self.map.remove(session) {
            self.bytes -= e.bytes;
        }
    }
}

pub struct LocalStore {
    inner: Mutex<Inner>,
    ttl: Duration,
    max_entries: usize,
    max_bytes: usize,
}

impl Default for LocalStore {
    fn default() -> Self {
        Self::new(Duration::from_secs(3600), 10_000, 64 << 20)
    }
}

impl LocalStore {
    pub fn new(ttl: Duration, max_entries: usize, max_bytes: usize) -> Self {
        Self { inner: Mutex::default(), ttl, max_entries: max_entries.max(1), max_bytes }
    }

    pub fn set(&self, session: &str, scope: Scope) {
        let bytes = session.len() + scope.encoded_len() + 64;
        let mut g = self.inner.lock();
        g.remove(session);
        g.seq += 1;
        let seq = g.seq;
        g.map.insert(session.to_string(), Entry { scope, bytes, expires: Instant::now() + self.ttl, seq });
        g.bytes += bytes;
        // Over a bound: expired entries go first, then the oldest set.
        if g.map.len() > self.max_entries || g.bytes > self.max_bytes {
            let now = Instant::now();
            let expired: Vec<String> = g.map.iter().filter(|(_, e)| e.expires <= now).map(|(k, _)| k.clone()).collect();
            for k in expired {
                g.remove(&k);
            }
        }
        while (g.map.len() > self.max_entries || g.bytes > self.max_bytes) && g.map.len() > 1 {
            let Some(oldest) = g.map.iter().min_by_key(|(_, e)| e.seq).map(|(k, _)| k.clone()) else { break };
            g.remove(&oldest);
        }
        if g.map.capacity() > 4 * g.map.len().max(64) {
            g.map.shrink_to_fit();
        }
    }

    pub fn get(&self, session: &str) -> Option<Scope> {
        let mut g = self.inner.lock();
        match g.map.get(session) {
            Some(e) if e.expires > Instant::now() => Some(e.scope.clone()),
            Some(_) => {
                g.remove(session);
                None
            }
            None => None,
        }
    }

    pub fn clear(&self, session: &str) {
        let mut g = self.inner.lock();
        g.remove(session);
        if g.map.capacity() > 4 * g.map.len().max(64) {
            g.map.shrink_to_fit();
        }
    }

    /// Sessions held and their approximate bytes.
    pub fn usage(&self) -> (usize, usize) {
        let g = self.inner.lock();
        (g.map.len(), g.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(n: usize) -> Scope {
        Scope { include_globs: vec![format!("src/{}/**", "d".repeat(n))], ..Default::default() }
    }

    #[test]
    fn a_scope_expires_after_the_ttl() {
        let s = LocalStore::new(Duration::from_millis(50), 10, 1 << 20);
        s.set("a", scope(1));
        assert!(s.get("a").is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(s.get("a"), None, "a scope past its TTL must be gone");
        assert_eq!(s.usage(), (0, 0), "and its memory accounted free");
    }

    #[test]
    fn the_store_is_bounded_in_count_and_bytes_and_clear_frees() {
        let s = LocalStore::new(Duration::from_secs(60), 3, 1 << 20);
        for i in 0..5 {
            s.set(&format!("s{i}"), scope(1));
        }
        assert_eq!(s.usage().0, 3);
        assert!(s.get("s0").is_none() && s.get("s1").is_none(), "the oldest go first");
        assert!(s.get("s4").is_some());
        let s = LocalStore::new(Duration::from_secs(60), 1000, 10_000);
        for i in 0..50 {
            s.set(&format!("s{i}"), scope(400));
        }
        let (n, bytes) = s.usage();
        assert!(bytes <= 10_000 && n < 50, "{n} sessions, {bytes} bytes");
        for i in 0..50 {
            s.clear(&format!("s{i}"));
        }
        assert_eq!(s.usage(), (0, 0));
    }
}
