//! Session scopes in Redis (L2) behind the in-process [`L1`]; [`Invalidations`] keeps the L1s
//! of all processes coherent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::invalidation::Invalidations;
use super::l1::L1;
use super::SessionScope;
use crate::error::AnswerError;
use codeintel_core::proto::v1::{Limit, Scope};
use parking_lot::{Mutex, RwLock};
use prost::Message;

const KEY_PREFIX: &str = "codeintel:scope:";
/// A key without expiry that the first process to reach a store writes with a random value:
/// when a process finds another value, or none, the store lost its data (restarted without
/// persistence, flushed) and the process gives back the scopes it knows.
const EPOCH_KEY: &str = "codeintel:epoch";

#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub url: String,
    pub ttl_s: u64,
    pub cache_entries: usize,
    pub cache_ttl: Duration,
    pub invalidation_timeout: Duration,
}

type Flight = Arc<tokio::sync::OnceCell<Result<SessionScope, String>>>;

/// Session scopes in Redis (L2) behind an in-process LRU (L1). Concurrent L1 misses for one
/// session share one Redis read. `SetScope`/`ClearScope` announce the change (see
/// [`Invalidations`]) and wait for every other process to drop its copy, so a scope changed
/// through one process is what the next request to any other process sees. While
/// the invalidation channel is down the L1 is bypassed; while Redis is down, cached scopes keep
/// being served and the store reports itself degraded.
pub struct RedisStore {
    opts: RedisOptions,
    conn: redis::aio::ConnectionManager,
    l1: Arc<Mutex<L1>>,
    invalidations: Arc<Invalidations>,
    inflight: Mutex<HashMap<String, Flight>>,
    redis_ok: AtomicBool,
    reason: RwLock<String>,
    lookups: prometheus::IntCounterVec,
    /// 1 while Redis answers, 0 while it does not.
    up: prometheus::IntGauge,
    /// The store's [`EPOCH_KEY`] as this process last read it.
    epoch: Mutex<String>,
    /// Scopes written back to a store that had lost them.
    restored: prometheus::IntCounter,
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
        let restored = prometheus::IntCounter::new(
            "scope_restored_total",
            "Session scopes written back to a session store that had lost its data",
        )?;
        registry.register(Box::new(restored.clone()))?;
        let l1 = Arc::new(Mutex::new(L1::new(opts.cache_entries)));
        let invalidations = Invalidations::start(client, conn.clone(), l1.clone(), Duration::from_secs(3)).await;
        let s = Arc::new(Self {
            opts,
            conn,
            l1,
            invalidations,
            inflight: Mutex::new(HashMap::new()),
            redis_ok: AtomicBool::new(true),
            reason: RwLock::new(String::new()),
            lookups,
            up,
            epoch: Mutex::new(String::new()),
            restored,
        });
        if let Err(e) = s.check_epoch().await {
            tracing::warn!(error = %e, "could not read the session store's epoch");
        }
        tokio::spawn(Self::prober(Arc::downgrade(&s)));
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
        if !self.invalidations.subscribed() {
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
            // Reading the epoch is the ping: one round trip says Redis answers and whether it
            // lost its data.
            let r = match tokio::time::timeout(Duration::from_millis(800), s.check_epoch()).await {
                Ok(r) => r,
                Err(_) => Err(redis::RedisError::from((redis::ErrorKind::IoError, "ping timed out"))),
            };
            match r {
                Ok(()) => s.mark(true, ""),
                Err(e) => s.mark(false, &redis_err(&e)),
            }
            drop(s);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Reads the store's epoch (writing one when it has none); when it is not the one this
    /// process saw last, the store lost its data, and every scope this process knows is written
    /// back (`SET NX`, so a scope set since the loss wins). Other processes do the same with
    /// theirs, so the sessions they knew are whole again for every process.
    async fn check_epoch(&self) -> redis::RedisResult<()> {
        let mut c = self.conn.clone();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let fresh = format!("{nanos:x}-{:x}", std::process::id());
        let (epoch,): (Option<String>,) = redis::pipe()
            .cmd("SET")
            .arg(EPOCH_KEY)
            .arg(&fresh)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(EPOCH_KEY)
            .query_async(&mut c)
            .await?;
        let epoch = epoch.unwrap_or_default();
        let before = std::mem::replace(&mut *self.epoch.lock(), epoch.clone());
        if before.is_empty() || before == epoch {
            return Ok(());
        }
        let known = self.l1.lock().known_all();
        tracing::warn!(
            sessions = known.len(),
            "the session store lost its data (its epoch changed); writing back the scopes this process knows"
        );
        let ttl = self.opts.ttl_s.max(1);
        for chunk in known.chunks(256) {
            let mut p = redis::pipe();
            for (session, scope) in chunk {
                p.cmd("SET").arg(Self::key(session)).arg(scope.encode_to_vec()).arg("EX").arg(ttl).arg("NX").ignore();
            }
            p.query_async::<()>(&mut c).await?;
            self.restored.inc_by(chunk.len() as u64);
        }
        Ok(())
    }

    /// Sets (`Some`) or clears (`None`) a session's scope in Redis, then invalidates every
    /// process's cached copy and waits for their acknowledgements.
    pub(super) async fn write(&self, session: &str, scope: Option<Scope>) -> Result<(), AnswerError> {
        if !self.redis_ok.load(Ordering::SeqCst) {
            // Known down (the prober's last ping failed): say so at once, not after a connect
            // timeout.
            return Err(AnswerError::Unavailable(format!(
                "session scope not saved: the session store (redis at {}) is unreachable ({}); retry when it is back",
                self.opts.url,
                self.reason.read()
            )));
        }
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
        let acked = self
            .invalidations
            .announce(session, self.opts.invalidation_timeout, || self.l1.lock().put(session, scope))
            .await;
        if acked.got < acked.others {
            tracing::warn!(
                session,
                acked.got,
                acked.others,
                "not every process acknowledged a scope invalidation in time"
            );
            self.lookups.with_label_values(&["invalidation_timeout"]).inc();
        }
        Ok(())
    }

    /// The cached scope when it may be served without asking Redis.
    fn cached_fresh(&self, cached: &Option<(Option<Scope>, Instant)>) -> Option<Option<Scope>> {
        let trusted = self.invalidations.subscribed() && self.redis_ok.load(Ordering::SeqCst);
        match cached {
            Some((scope, at)) if trusted && at.elapsed() < self.opts.cache_ttl => Some(scope.clone()),
            _ => None,
        }
    }

    pub(super) async fn get(&self, session: &str) -> Result<SessionScope, AnswerError> {
        let cached = self.l1.lock().get(session);
        if let Some(scope) = self.cached_fresh(&cached) {
            self.lookups.with_label_values(&["l1"]).inc();
            return Ok(SessionScope { scope, limits: Vec::new() });
        }
        if !self.redis_ok.load(Ordering::SeqCst) {
            // Known down: no Redis round trip (each would wait for a connect timeout).
            return self.without_redis(session, cached, &self.reason.read().clone());
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
            Ok(found) => Ok(found),
            Err(e) => self.without_redis(session, cached, &e),
        }
    }

    /// Redis is down: what this process knew of the session, said in a limit; with nothing
    /// known, UNAVAILABLE (never "no scope", which would widen the session to every repo).
    fn without_redis(
        &self,
        session: &str,
        cached: Option<(Option<Scope>, Instant)>,
        why: &str,
    ) -> Result<SessionScope, AnswerError> {
        let url = &self.opts.url;
        let copy = match cached {
            Some((scope, _)) => Some(scope),
            None => self.l1.lock().known(session).map(Some),
        };
        match copy {
            Some(scope) => {
                self.lookups.with_label_values(&["stale"]).inc();
                let limits = vec![Limit {
                    code: "session_store_unreachable".into(),
                    message: format!(
                        "the session store (redis at {url}) is unreachable ({why}); this request used this process's last copy of the session's scope"
                    ),
                }];
                Ok(SessionScope { scope, limits })
            }
            None => Err(AnswerError::Unavailable(format!(
                "session scope unknown: the session store (redis at {url}) is unreachable ({why}) and this process has no copy; retry when it is back, or send the scope with the request"
            ))),
        }
    }

    /// One Redis read; caches the result unless an invalidation arrived meanwhile. A session
    /// that this process knew with a scope and that Redis no longer holds (its data was lost)
    /// keeps that scope, with a limit saying so.
    async fn read(&self, session: &str) -> Result<SessionScope, String> {
        // A flight that finished between this caller's cache miss and its joining the in-flight
        // map has filled the cache: no second read.
        let cached = self.l1.lock().get(session);
        if let Some(scope) = self.cached_fresh(&cached) {
            self.lookups.with_label_values(&["l1"]).inc();
            return Ok(SessionScope { scope, limits: Vec::new() });
        }
        let generation = self.invalidations.generation();
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
        let unchanged = self.invalidations.generation() == generation;
        if scope.is_none() && unchanged {
            if let Some(known) = self.l1.lock().known(session) {
                self.lookups.with_label_values(&["lost"]).inc();
                tracing::warn!(session, "the session store lost a session's scope; serving this process's copy");
                let limits = vec![Limit {
                    code: "session_scope_lost".into(),
                    message: format!(
                        "the session store (redis at {}) no longer holds this session's scope (restarted without its data, or expired); this request used this process's last copy; call SetScope again to restore it, or ClearScope to drop it",
                        self.opts.url
                    ),
                }];
                return Ok(SessionScope { scope: Some(known), limits });
            }
        }
        if unchanged && self.invalidations.subscribed() {
            self.l1.lock().put(session, scope.clone());
        }
        Ok(SessionScope { scope, limits: Vec::new() })
    }
}
