//! Session scopes in Redis (L2) behind the in-process [`L1`], with invalidation across processes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use codeintel_core::proto::v1::Scope;
use parking_lot::{Mutex, RwLock};
use prost::Message;
use tokio::sync::mpsc;

use super::l1::L1;
use crate::error::AnswerError;

const KEY_PREFIX: &str = "codeintel:scope:";
const INVALIDATE: &str = "codeintel:scope-invalidate";
const ACK_PREFIX: &str = "codeintel:scope-ack:";

#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub url: String,
    pub ttl_s: u64,
    pub cache_entries: usize,
    pub cache_ttl: Duration,
    pub invalidation_timeout: Duration,
}

type Flight = Arc<tokio::sync::OnceCell<Result<Option<Scope>, String>>>;

/// Session scopes in Redis (L2) behind an in-process LRU (L1). Concurrent L1 misses for one
/// session share one Redis read. `SetScope`/`ClearScope` publish an invalidation that every
/// process applies to its L1 and acknowledges; the writer waits for the acknowledgements, so a
/// scope changed through one process is what the next request to any other process sees. While
/// the invalidation channel is down the L1 is bypassed; while Redis is down, cached scopes keep
/// being served and the store reports itself degraded.
pub struct RedisStore {
    opts: RedisOptions,
    conn: redis::aio::ConnectionManager,
    node: String,
    l1: Mutex<L1>,
    inflight: Mutex<HashMap<String, Flight>>,
    /// Bumped by every invalidation; a read caches its result only if none arrived meanwhile.
    invalidations: AtomicU64,
    subscribed: AtomicBool,
    redis_ok: AtomicBool,
    reason: RwLock<String>,
    acks: Mutex<HashMap<u64, mpsc::UnboundedSender<()>>>,
    nonce: AtomicU64,
    lookups: prometheus::IntCounterVec,
    /// 1 while Redis answers, 0 while it does not.
    up: prometheus::IntGauge,
}

fn redis_err(e: &redis::RedisError) -> String {
    e.to_string()
}

impl RedisStore {
    /// Connects (the first connection must succeed) and starts the invalidation subscriber and
    /// the health probe.
    pub async fn connect(opts: RedisOptions, registry: &prometheus::Registry) -> anyhow::Result<Arc<Self>> {
        let client = redis::Client::open(opts.url.as_str())?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_millis(500))
            .set_response_timeout(Duration::from_millis(500))
            .set_number_of_retries(1)
            .set_max_delay(500);
        let conn = tokio::time::timeout(Duration::from_secs(3), client.get_connection_manager_with_config(cfg))
            .await
            .map_err(|_| anyhow::anyhow!("redis at {} did not answer within 3 s", opts.url))??;
        let lookups = prometheus::IntCounterVec::new(
            prometheus::Opts::new("scope_lookups_total", "Session scope lookups by where they were answered"),
            &["source"],
        )?;
        registry.register(Box::new(lookups.clone()))?;
        let up = prometheus::IntGauge::new("scope_store_up", "1 while the session scope store (Redis) answers")?;
        registry.register(Box::new(up.clone()))?;
        up.set(1);
        let node = format!("{:x}-{}", codeintel_core::now_unix_ms(), std::process::id());
        let s = Arc::new(Self {
            l1: Mutex::new(L1::new(opts.cache_entries)),
            opts,
            conn,
            node,
            inflight: Mutex::new(HashMap::new()),
            invalidations: AtomicU64::new(0),
            subscribed: AtomicBool::new(false),
            redis_ok: AtomicBool::new(true),
            reason: RwLock::new(String::new()),
            acks: Mutex::new(HashMap::new()),
            nonce: AtomicU64::new(1),
            lookups,
            up,
        });
        tokio::spawn(Self::subscriber(Arc::downgrade(&s), client));
        tokio::spawn(Self::prober(Arc::downgrade(&s)));
        // Serve from L1 only once invalidations can reach us.
        let t = Instant::now();
        while !s.subscribed.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(s)
    }

    fn key(session: &str) -> String {
        format!("{KEY_PREFIX}{session}")
    }

    pub fn degraded(&self) -> Option<String> {
        if !self.redis_ok.load(Ordering::SeqCst) {
            return Some(format!(
                "redis at {} unreachable ({}); session scopes are served from this process's cache",
                self.opts.url,
                self.reason.read()
            ));
        }
        if !self.subscribed.load(Ordering::SeqCst) {
            return Some(format!(
                "scope invalidations from redis at {} are not arriving; every scope lookup reads redis",
                self.opts.url
            ));
        }
        None
    }

    fn mark(&self, ok: bool, why: &str) {
        if !ok {
            *self.reason.write() = why.to_string();
        }
        self.up.set(i64::from(ok));
        if self.redis_ok.swap(ok, Ordering::SeqCst) != ok {
            tracing::warn!(ok, why, "session scope store (redis) changed state");
        }
    }

    async fn prober(me: std::sync::Weak<Self>) {
        loop {
            let Some(s) = me.upgrade() else { return };
            let mut c = s.conn.clone();
            let r: redis::RedisResult<String> =
                match tokio::time::timeout(Duration::from_millis(800), redis::cmd("PING").query_async(&mut c)).await {
                    Ok(r) => r,
                    Err(_) => Err(redis::RedisError::from((redis::ErrorKind::IoError, "ping timed out"))),
                };
            match r {
                Ok(_) => s.mark(true, ""),
                Err(e) => s.mark(false, &redis_err(&e)),
            }
            drop(s);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Applies invalidations from every process (and acknowledges them), and collects the
    /// acknowledgements of this process's own writes. Reconnects until the store is dropped.
    async fn subscriber(me: std::sync::Weak<Self>, client: redis::Client) {
        use futures::StreamExt;
        loop {
            let Some(s) = me.upgrade() else { return };
            let ack_channel = format!("{ACK_PREFIX}{}", s.node);
            drop(s);
            let sub = async {
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(INVALIDATE).await?;
                ps.subscribe(&ack_channel).await?;
                Ok::<_, redis::RedisError>(ps)
            };
            if let Ok(Ok(ps)) = tokio::time::timeout(Duration::from_secs(2), sub).await {
                {
                    let Some(s) = me.upgrade() else { return };
                    // Anything cached before may have missed invalidations.
                    s.l1.lock().forget_all();
                    s.invalidations.fetch_add(1, Ordering::SeqCst);
                    s.subscribed.store(true, Ordering::SeqCst);
                    drop(s);
                    let mut stream = ps.into_on_message();
                    while let Some(msg) = stream.next().await {
                        let Some(s) = me.upgrade() else { return };
                        let payload: String = msg.get_payload().unwrap_or_default();
                        if msg.get_channel_name() == INVALIDATE {
                            s.on_invalidate(&payload).await;
                        } else if let Ok(nonce) = payload.parse::<u64>() {
                            if let Some(tx) = s.acks.lock().get(&nonce) {
                                let _ = tx.send(());
                            }
                        }
                    }
                    if let Some(s) = me.upgrade() {
                        s.subscribed.store(false, Ordering::SeqCst);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn on_invalidate(&self, payload: &str) {
        let mut parts = payload.splitn(3, ' ');
        let (Some(origin), Some(nonce), Some(session)) = (parts.next(), parts.next(), parts.next()) else { return };
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        // This process's own writes already put the new value in its cache.
        if origin == self.node {
            return;
        }
        self.l1.lock().forget(session);
        {
            let mut c = self.conn.clone();
            let _: redis::RedisResult<i64> =
                redis::cmd("PUBLISH").arg(format!("{ACK_PREFIX}{origin}")).arg(nonce).query_async(&mut c).await;
        }
    }

    /// Sets (`Some`) or clears (`None`) a session's scope in Redis, then invalidates every
    /// process's cached copy and waits for their acknowledgements.
    pub(super) async fn write(&self, session: &str, scope: Option<Scope>) -> Result<(), AnswerError> {
        let mut c = self.conn.clone();
        let key = Self::key(session);
        let r: redis::RedisResult<()> = match &scope {
            Some(s) => {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(s.encode_to_vec())
                    .arg("EX")
                    .arg(self.opts.ttl_s.max(1))
                    .query_async(&mut c)
                    .await
            }
            None => redis::cmd("DEL").arg(&key).query_async(&mut c).await,
        };
        if let Err(e) = r {
            self.mark(false, &redis_err(&e));
            return Err(AnswerError::Unavailable(format!(
                "session scope not saved: redis at {} failed ({e}); retry when it is back",
                self.opts.url
            )));
        }
        let nonce = self.nonce.fetch_add(1, Ordering::SeqCst);
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.acks.lock().insert(nonce, tx);
        let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(INVALIDATE)
            .arg(format!("{} {nonce} {session}", self.node))
            .query_async(&mut c)
            .await;
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.l1.lock().put(session, scope);
        // Every subscriber but this process's own acknowledges.
        let others = published.map(|n| n.max(1) - 1).unwrap_or(0);
        let deadline = tokio::time::Instant::now() + self.opts.invalidation_timeout;
        let mut got = 0;
        while got < others {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(())) => got += 1,
                _ => {
                    tracing::warn!(session, got, others, "not every process acknowledged a scope invalidation in time");
                    self.lookups.with_label_values(&["invalidation_timeout"]).inc();
                    break;
                }
            }
        }
        self.acks.lock().remove(&nonce);
        Ok(())
    }

    /// The cached scope when it may be served without asking Redis.
    fn cached_fresh(&self, cached: &Option<(Option<Scope>, Instant)>) -> Option<Option<Scope>> {
        let trusted = self.subscribed.load(Ordering::SeqCst) && self.redis_ok.load(Ordering::SeqCst);
        match cached {
            Some((scope, at)) if trusted && at.elapsed() < self.opts.cache_ttl => Some(scope.clone()),
            _ => None,
        }
    }

    pub(super) async fn get(&self, session: &str) -> Result<Option<Scope>, AnswerError> {
        let cached = self.l1.lock().get(session);
        if let Some(scope) = self.cached_fresh(&cached) {
            self.lookups.with_label_values(&["l1"]).inc();
            return Ok(scope);
        }
        let flight: Flight = self.inflight.lock().entry(session.to_string()).or_default().clone();
        let result = flight.get_or_init(|| self.read(session)).await.clone();
        {
            let mut inflight = self.inflight.lock();
            if inflight.get(session).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                inflight.remove(session);
            }
        }
        match result {
            Ok(scope) => Ok(scope),
            Err(e) => match cached {
                // Redis is down: keep serving what this process knew.
                Some((scope, _)) => {
                    self.lookups.with_label_values(&["stale"]).inc();
                    Ok(scope)
                }
                None => Err(AnswerError::Unavailable(format!(
                    "session scope unknown: redis at {} failed ({e}) and this process has no copy",
                    self.opts.url
                ))),
            },
        }
    }

    /// One Redis read; caches the result unless an invalidation arrived meanwhile.
    async fn read(&self, session: &str) -> Result<Option<Scope>, String> {
        // A flight that finished between this caller's cache miss and its joining the in-flight
        // map has filled the cache: no second read.
        let cached = self.l1.lock().get(session);
        if let Some(scope) = self.cached_fresh(&cached) {
            self.lookups.with_label_values(&["l1"]).inc();
            return Ok(scope);
        }
        let generation = self.invalidations.load(Ordering::SeqCst);
        let mut c = self.conn.clone();
        self.lookups.with_label_values(&["redis"]).inc();
        let r: redis::RedisResult<Option<Vec<u8>>> =
            redis::cmd("GET").arg(Self::key(session)).query_async(&mut c).await;
        let bytes = match r {
            Ok(b) => b,
            Err(e) => {
                self.mark(false, &redis_err(&e));
                return Err(redis_err(&e));
            }
        };
        let scope = match bytes {
            Some(b) => Some(Scope::decode(b.as_slice()).map_err(|e| format!("stored scope is corrupt: {e}"))?),
            None => None,
        };
        if self.invalidations.load(Ordering::SeqCst) == generation && self.subscribed.load(Ordering::SeqCst) {
            self.l1.lock().put(session, scope.clone());
        }
        Ok(scope)
    }
}
