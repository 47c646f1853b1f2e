//! Admission, ahead of every handler (installed by [`crate::rpc::RpcLayer`]): who is calling
//! (bearer tokens for answer-svc's clients, one service token for the backends), how fast a
//! token may call (a token bucket each), and how many RPCs run and wait at once. A request
//! past a limit is refused at once with RESOURCE_EXHAUSTED and a retry hint
//! (`grpc-retry-pushback-ms`), never queued without bound. Health checks and reflection are
//! exempt from all of it.
//!
//! Tokens are configured as SHA-256 hashes and compared in constant time; the token itself is
//! never stored. The caller's [`Principal`] travels in the request's extensions, for handlers
//! that enforce which repos it may read.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use codeintel_config::{AuthConfig, LimitsConfig, TokenConfig};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The authenticated caller of a request (in its extensions).
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub name: String,
    /// Repos it may read; `None`: all.
    pub repos: Option<Arc<Vec<String>>>,
}

impl Principal {
    pub fn may_read(&self, repo: &str) -> bool {
        self.repos.as_ref().is_none_or(|r| r.iter().any(|x| x == repo))
    }
}

/// Why a request was not admitted: the gRPC code, the message, and a retry hint.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: tonic::Code,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// Metric label.
    pub reason: &'static str,
}

impl Refusal {
    fn unauthenticated(message: impl Into<String>) -> Self {
        Self {
            code: tonic::Code::Unauthenticated,
            message: message.into(),
            retry_after: None,
            reason: "unauthenticated",
        }
    }

    fn exhausted(reason: &'static str, message: String, retry_after: Duration) -> Self {
        Self { code: tonic::Code::ResourceExhausted, message, retry_after: Some(retry_after), reason }
    }

    /// The trailers-only gRPC response of this refusal.
    pub fn into_http<B: Default>(self) -> http::Response<B> {
        let mut resp = tonic::Status::new(self.code, self.message).into_http::<B>();
        if let Some(d) = self.retry_after {
            if let Ok(v) = http::HeaderValue::from_str(&d.as_millis().max(1).to_string()) {
                resp.headers_mut().insert("grpc-retry-pushback-ms", v);
            }
        }
        resp
    }
}

fn sha256(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

/// `hex` -> 32 bytes (validated by the config already).
fn from_hex(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The hex SHA-256 of a token, as `auth.tokens[].sha256` wants it.
pub fn token_hash(token: &str) -> String {
    sha256(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A token bucket: `rate` per second, up to `burst` at once.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self { rate, burst, tokens: burst, at: Instant::now() }
    }

    /// Takes one; `Err(wait)` until one is available.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// One configured client token.
pub struct Client {
    principal: Principal,
    hash: [u8; 32],
    bucket: Option<Mutex<Bucket>>,
}

/// Who may call this service.
pub enum Auth {
    /// Anyone (no tokens configured).
    Open,
    /// answer-svc with client tokens.
    Clients(Vec<Client>),
    /// A backend: only callers presenting the service token (answer-svc).
    Service([u8; 32]),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<TokenConfig>,
}

impl Auth {
    /// answer-svc: the client tokens of `auth.tokens` and `auth.tokens_file`; none: open.
    pub fn clients(a: &AuthConfig) -> anyhow::Result<Self> {
        let mut tokens = a.tokens.clone();
        if !a.tokens_file.as_os_str().is_empty() {
            tokens.extend(read_tokens_file(&a.tokens_file)?);
        }
        if tokens.is_empty() {
            return Ok(Auth::Open);
        }
        let mut clients = Vec::new();
        for t in tokens {
            let hash = from_hex(&t.sha256.to_ascii_lowercase()).ok_or_else(|| {
                anyhow::anyhow!("token {:?}: sha256 must be 64 hex digits (`codeintel token hash`)", t.name)
            })?;
            let repos = if t.repos.is_empty() { None } else { Some(Arc::new(t.repos.clone())) };
            let bucket = (t.rate_per_s > 0.0).then(|| Mutex::new(Bucket::new(t.rate_per_s, t.burst)));
            clients.push(Client { principal: Principal { name: t.name, repos }, hash, bucket });
        }
        Ok(Auth::Clients(clients))
    }

    /// A backend: requires `auth.service_token` when it is set.
    pub fn service(a: &AuthConfig) -> Self {
        if a.service_token.is_empty() {
            Auth::Open
        } else {
            Auth::Service(sha256(a.service_token.as_bytes()))
        }
    }

    fn check(&self, headers: &http::HeaderMap) -> Result<Option<&Client>, Refusal> {
        let bearer = || {
            headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .map(str::trim)
        };
        match self {
            Auth::Open => Ok(None),
            Auth::Service(want) => match bearer() {
                Some(t) if bool::from(sha256(t.as_bytes()).ct_eq(want)) => Ok(None),
                _ => Err(Refusal::unauthenticated(
                    "this service answers only answer-svc: the service token (auth.service_token) is missing or wrong",
                )),
            },
            Auth::Clients(clients) => {
                let Some(t) = bearer() else {
                    return Err(Refusal::unauthenticated(
                        "this service requires a bearer token: send the metadata `authorization: Bearer <token>`",
                    ));
                };
                let h = sha256(t.as_bytes());
                // Every hash is compared (no early exit), each in constant time.
                let mut found = None;
                for c in clients {
                    if bool::from(h.ct_eq(&c.hash)) {
                        found = Some(c);
                    }
                }
                found
                    .map(Some)
                    .ok_or_else(|| Refusal::unauthenticated("the bearer token is not one this service knows"))
            }
        }
    }
}

fn read_tokens_file(path: &Path) -> anyhow::Result<Vec<TokenConfig>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read auth.tokens_file {}: {e}", path.display()))?;
    let f: TokensFile = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("auth.tokens_file {} is not `[[tokens]]` tables: {e}", path.display()))?;
    Ok(f.tokens)
}

/// Paths that skip admission: health checks (probes) and reflection (schema only).
pub fn exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.")
}

/// The admission state of one service process.
pub struct Admission {
    auth: Auth,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_concurrent: usize,
    max_queue: usize,
    queue_wait: Duration,
    retry_after: Duration,
    pub(crate) refused: Option<prometheus::IntCounterVec>,
}

impl Admission {
    pub fn new(limits: &LimitsConfig, auth: Auth) -> Self {
        Self {
            auth,
            slots: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            waiting: AtomicUsize::new(0),
            max_concurrent: limits.max_concurrent.max(1),
            max_queue: limits.max_queue,
            queue_wait: Duration::from_millis(limits.queue_wait_ms),
            retry_after: Duration::from_millis(limits.retry_after_ms.max(1)),
            refused: None,
        }
    }

    /// Open, with limits far past any test's load (tests of other layers).
    pub fn unlimited() -> Self {
        let l = LimitsConfig { max_concurrent: 1 << 20, max_queue: 0, ..LimitsConfig::default() };
        Self::new(&l, Auth::Open)
    }

    /// Registers `admission_refused_total{reason}` in `registry`.
    pub fn with_metrics(mut self, registry: &prometheus::Registry) -> Self {
        let c = prometheus::IntCounterVec::new(
            prometheus::Opts::new("admission_refused_total", "RPCs refused before their handler, by reason"),
            &["reason"],
        )
        .expect("metric");
        if registry.register(Box::new(c.clone())).is_ok() {
            self.refused = Some(c);
        }
        self
    }

    /// Authentication and the token's rate, synchronously (no slot taken yet).
    pub fn authenticate(&self, headers: &http::HeaderMap) -> Result<Option<Principal>, Refusal> {
        let client = self.auth.check(headers)?;
        let Some(client) = client else { return Ok(None) };
        if let Some(b) = &client.bucket {
            // The guard is dropped before the message reads the rate (the lock is not reentrant).
            let (taken, rate) = {
                let mut g = b.lock();
                (g.take(Instant::now()), g.rate)
            };
            if let Err(wait) = taken {
                return Err(Refusal::exhausted(
                    "rate",
                    format!(
                        "token {:?} is over its rate limit ({rate} requests/s); retry in {} ms",
                        client.principal.name,
                        wait.as_millis().max(1)
                    ),
                    wait.max(Duration::from_millis(1)),
                ));
            }
        }
        Ok(Some(client.principal.clone()))
    }

    /// A slot to run in: at once if free, else after waiting in the bounded queue for at most
    /// `queue_wait` (and the request's `deadline`); refused at once when the queue is full.
    pub async fn slot(&self, deadline: Option<Duration>) -> Result<OwnedSemaphorePermit, Refusal> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(p);
        }
        let busy = || {
            Refusal::exhausted(
                "overload",
                format!(
                    "server busy: {} requests running and {} waiting (limits.max_concurrent, limits.max_queue); retry in {} ms",
                    self.max_concurrent,
                    self.waiting.load(Ordering::Relaxed),
                    self.retry_after.as_millis()
                ),
                self.retry_after,
            )
        };
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_queue {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(busy());
        }
        let wait = deadline.map_or(self.queue_wait, |d| d.min(self.queue_wait));
        let r = tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        match r {
            Ok(Ok(p)) => Ok(p),
            _ => Err(busy()),
        }
    }

    pub(crate) fn count(&self, r: &Refusal) {
        if let Some(c) = &self.refused {
            c.with_label_values(&[r.reason]).inc();
        }
    }
}

/// The service token this process presents to the services it calls (answer-svc to the
/// backends); set once at start.
static SERVICE_TOKEN: std::sync::OnceLock<tonic::metadata::AsciiMetadataValue> = std::sync::OnceLock::new();

/// Makes every later [`authorize`] present `token` (`auth.service_token`); empty: none.
pub fn present_service_token(token: &str) -> anyhow::Result<()> {
    if token.is_empty() {
        return Ok(());
    }
    let v = format!("Bearer {token}")
        .parse()
        .map_err(|_| anyhow::anyhow!("auth.service_token must be printable ASCII without spaces"))?;
    let _ = SERVICE_TOKEN.set(v);
    Ok(())
}

/// Adds the service token, if one is presented, to an outgoing request's metadata.
pub fn authorize(md: &mut tonic::metadata::MetadataMap) {
    if let Some(v) = SERVICE_TOKEN.get() {
        md.insert("authorization", v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(a) = auth {
            h.insert(http::header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    fn token(name: &str, secret: &str, repos: &[&str], rate: f64, burst: u32) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            sha256: token_hash(secret),
            repos: repos.iter().map(|r| r.to_string()).collect(),
            rate_per_s: rate,
            burst,
        }
    }

    #[test]
    fn client_tokens_name_the_caller_and_its_repos_and_refuse_the_rest() {
        let a = AuthConfig {
            tokens: vec![token("ci", "s3cret-ci", &["alpha"], 0.0, 0), token("ops", "s3cret-ops", &[], 0.0, 0)],
            ..Default::default()
        };
        let adm = Admission::new(&LimitsConfig::default(), Auth::clients(&a).unwrap());
        let p = adm.authenticate(&headers(Some("Bearer s3cret-ci"))).unwrap().unwrap();
        assert_eq!(p.name, "ci");
        assert!(p.may_read("alpha") && !p.may_read("beta"));
        let p = adm.authenticate(&headers(Some("Bearer s3cret-ops"))).unwrap().unwrap();
        assert!(p.may_read("beta"), "no repos listed: all");
        let e = adm.authenticate(&headers(None)).unwrap_err();
        assert_eq!(e.code, tonic::Code::Unauthenticated);
        assert!(e.message.contains("authorization: Bearer"), "{}", e.message);
        let e = adm.authenticate(&headers(Some("Bearer nope"))).unwrap_err();
        assert_eq!(e.code, tonic::Code::Unauthenticated);
        assert!(!e.message.contains("nope"), "the token is never echoed");
        assert_eq!(adm.authenticate(&headers(Some("Basic s3cret-ci"))).unwrap_err().code, tonic::Code::Unauthenticated);
    }

    #[test]
    fn the_service_token_admits_answer_svc_only_and_open_admits_all() {
        let a = AuthConfig { service_token: "mesh-secret".into(), ..Default::default() };
        let adm = Admission::new(&LimitsConfig::default(), Auth::service(&a));
        assert_eq!(adm.authenticate(&headers(Some("Bearer mesh-secret"))).unwrap(), None);
        let e = adm.authenticate(&headers(Some("Bearer other"))).unwrap_err();
        assert!(e.message.contains("only answer-svc"), "{}", e.message);
        assert!(adm.authenticate(&headers(None)).is_err());
        let open = Admission::new(&LimitsConfig::default(), Auth::service(&AuthConfig::default()));
        assert_eq!(open.authenticate(&headers(None)).unwrap(), None);
    }

    #[test]
    fn a_token_over_its_rate_is_refused_with_the_wait() {
        let a = AuthConfig { tokens: vec![token("slow", "t", &[], 2.0, 3)], ..Default::default() };
        let adm = Admission::new(&LimitsConfig::default(), Auth::clients(&a).unwrap());
        for _ in 0..3 {
            adm.authenticate(&headers(Some("Bearer t"))).unwrap();
        }
        let e = adm.authenticate(&headers(Some("Bearer t"))).unwrap_err();
        assert_eq!(e.code, tonic::Code::ResourceExhausted);
        let wait = e.retry_after.unwrap();
        assert!(wait > Duration::from_millis(100) && wait <= Duration::from_millis(500), "{wait:?}");
        let resp: http::Response<()> = e.into_http();
        assert_eq!(resp.headers()["grpc-status"], "8");
        assert!(resp.headers().contains_key("grpc-retry-pushback-ms"));
        let mut b = Bucket::new(2.0, 1);
        let t0 = Instant::now();
        assert!(b.take(t0).is_ok() && b.take(t0).is_err());
        assert!(b.take(t0 + Duration::from_millis(510)).is_ok(), "refilled at the rate");
    }

    #[tokio::test]
    async fn past_running_and_waiting_requests_are_refused_at_once() {
        let limits = LimitsConfig { max_concurrent: 2, max_queue: 1, queue_wait_ms: 5_000, ..Default::default() };
        let adm = Arc::new(Admission::new(&limits, Auth::Open));
        let a = adm.slot(None).await.unwrap();
        let _b = adm.slot(None).await.unwrap();
        // The third waits in the queue; the fourth finds the queue full and is refused at once.
        let waiter = {
            let adm = adm.clone();
            tokio::spawn(async move { adm.slot(None).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = Instant::now();
        let e = adm.slot(None).await.unwrap_err();
        assert!(t.elapsed() < Duration::from_millis(50), "refused after {:?}", t.elapsed());
        assert_eq!(e.code, tonic::Code::ResourceExhausted);
        assert!(e.message.contains("limits.max_concurrent"), "{}", e.message);
        drop(a);
        waiter.await.unwrap().expect("the queued request runs once a slot frees");
        // A wait bounded by the request's deadline.
        let t = Instant::now();
        let _c = adm.slot(None).await.unwrap();
        assert!(adm.slot(Some(Duration::from_millis(30))).await.is_err());
        assert!(t.elapsed() < Duration::from_millis(1000));
    }

    #[test]
    fn hashes_round_trip_and_exempt_paths() {
        let h = token_hash("abc");
        assert_eq!(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(from_hex(&h).unwrap(), sha256(b"abc"));
        assert!(exempt("/grpc.health.v1.Health/Check"));
        assert!(exempt("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"));
        assert!(!exempt("/codeintel.v1.AnswerService/Search"));
    }
}
