//! A bounded LRU of query encodings (dense vectors, SPLADE terms) keyed by the normalised query:
//! an agent or a user that asks again (a retry, the next page, the same question in another
//! tool) skips the encoder's forward pass. One cache per encoder instance, so the model is part
//! of the key by construction.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

pub struct QueryCache<V> {
    /// `None`: caching is off (`embed.query_cache_entries = 0`).
    inner: Option<Mutex<LruCache<String, V>>>,
}

/// The key of a query: trimmed, runs of whitespace as one space. Case is kept (identifiers are
/// case-sensitive; an uncased model folds case itself).
pub fn normalise(query: &str) -> String {
    query.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl<V: Clone> QueryCache<V> {
    /// At most `entries` queries; 0 turns the cache off.
    pub fn new(entries: usize) -> Self {
        Self { inner: NonZeroUsize::new(entries).map(|n| Mutex::new(LruCache::new(n))) }
    }

    /// The encoding of `query`, from the cache or computed by `encode` (and then kept). A failed
    /// encoding is not kept.
    pub async fn get_or_encode<E, F>(&self, query: &str, encode: F) -> Result<(V, bool), E>
    where
        F: std::future::Future<Output = Result<V, E>>,
    {
        let Some(inner) = &self.inner else { return encode.await.map(|v| (v, false)) };
        let key = normalise(query);
        if let Some(v) = inner.lock().expect("query cache lock").get(&key) {
            return Ok((v.clone(), true));
        }
        let v = encode.await?;
        inner.lock().expect("query cache lock").put(key, v.clone());
        Ok((v, false))
    }

    /// As [`Self::get_or_encode`], for an encoder that blocks.
    pub fn get_or_encode_sync<E>(&self, query: &str, encode: impl FnOnce() -> Result<V, E>) -> Result<(V, bool), E> {
        let Some(inner) = &self.inner else { return encode().map(|v| (v, false)) };
        let key = normalise(query);
        if let Some(v) = inner.lock().expect("query cache lock").get(&key) {
            return Ok((v.clone(), true));
        }
        let v = encode()?;
        inner.lock().expect("query cache lock").put(key, v.clone());
        Ok((v, false))
    }

    /// Queries held.
    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |m| m.lock().expect("query cache lock").len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_repeated_query_is_encoded_once_and_the_oldest_is_dropped_first() {
        let calls = AtomicUsize::new(0);
        let enc = |q: &str| {
            let (v, calls) = (q.len(), &calls);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(v)
            }
        };
        let c = QueryCache::new(2);
        assert_eq!(c.get_or_encode("parse  url", enc("parse url")).await.unwrap(), (9, false));
        assert_eq!(c.get_or_encode(" parse url\n", enc("x")).await.unwrap(), (9, true), "same after normalising");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a hit runs no encoder");
        c.get_or_encode("b", enc("b")).await.unwrap();
        c.get_or_encode("c", enc("c")).await.unwrap();
        assert_eq!(c.len(), 2);
        assert!(!c.get_or_encode("parse url", enc("parse url")).await.unwrap().1, "evicted");
        assert!(c.get_or_encode("Parse url", enc("Parse url")).await.is_ok_and(|(_, hit)| !hit), "case is kept");
        // Errors are passed on and not kept; size 0 is off.
        let e = c.get_or_encode("boom", async { Err::<usize, _>("no model".to_string()) }).await;
        assert_eq!(e.unwrap_err(), "no model");
        assert!(!c.get_or_encode("boom", enc("boom")).await.unwrap().1);
        let off = QueryCache::new(0);
        off.get_or_encode("a", enc("a")).await.unwrap();
        assert!(!off.get_or_encode("a", enc("a")).await.unwrap().1);
        assert!(off.is_empty());
        // The blocking form, as lexical-svc's SPLADE encoder uses it.
        let s = QueryCache::new(4);
        assert_eq!(s.get_or_encode_sync("q", || Ok::<_, String>(1)).unwrap(), (1, false));
        assert_eq!(s.get_or_encode_sync("q", || Err::<usize, _>("not called".to_string())).unwrap(), (1, true));
    }
}
