//! One backend (vector-svc, lexical-svc, hydrate-svc) reached through several endpoints:
//! replicas that share the load and stand in for one another, and shards that each serve some
//! repos.
//!
//! The configured address is a comma-separated list of `http://host:port`; a host name is
//! resolved to all its addresses (a Kubernetes headless Service) and re-resolved every
//! `answer.discovery_ms`, when each endpoint is also probed: vector-svc and lexical-svc with
//! `Info` (which repos they serve), hydrate-svc with a health check. A call goes to the healthy
//! endpoint with the fewest calls in flight (ties in turn); an endpoint whose call fails is
//! ejected for `answer.eject_ms` (doubling while it keeps failing) and the call is retried once
//! on another endpoint within the time left. When endpoints serve different repos (shards), a
//! request is split by repo, each part sent to a shard that serves it, and the hits merged.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use codeintel_core::proto::v1::lexical_service_client::LexicalServiceClient;
use codeintel_core::proto::v1::vector_service_client::VectorServiceClient;
use codeintel_core::proto::v1::{InfoRequest, InfoResponse, Scope, ScoredChunk};
use parking_lot::{Mutex, RwLock};
use tonic::transport::{Channel, Endpoint};

use crate::retrievers::CallError;

/// The longest an endpoint stays ejected after repeated failures.
const MAX_EJECT: Duration = Duration::from_secs(30);
/// A retry is not started with less time than this left.
const MIN_RETRY_BUDGET: Duration = Duration::from_millis(20);

/// How the endpoints of a backend are probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `VectorService/Info`: health and the repos served.
    VectorInfo,
    /// `LexicalService/Info`.
    LexicalInfo,
    /// `grpc.health.v1.Health/Check` of this service name (hydrate-svc serves every repo).
    Health(&'static str),
}

#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub discovery: Duration,
    pub eject: Duration,
    /// TLS of the calls (`tls.*`; plaintext when it has no CA).
    pub tls: codeintel_config::TlsConfig,
}

/// Counters of calls per endpoint, retries and ejections, in answer-svc's registry.
#[derive(Clone)]
pub struct PoolMetrics {
    calls: prometheus::IntCounterVec,
    retries: prometheus::IntCounterVec,
    ejections: prometheus::IntCounterVec,
}

impl PoolMetrics {
    pub fn new(registry: &prometheus::Registry) -> anyhow::Result<Self> {
        let calls = prometheus::IntCounterVec::new(
            prometheus::Opts::new("backend_calls_total", "Calls to backend endpoints by outcome"),
            &["backend", "endpoint", "outcome"],
        )?;
        let retries = prometheus::IntCounterVec::new(
            prometheus::Opts::new("backend_retries_total", "Calls retried on another endpoint after a failure"),
            &["backend"],
        )?;
        let ejections = prometheus::IntCounterVec::new(
            prometheus::Opts::new("backend_ejections_total", "Endpoints left out after a failed call or probe"),
            &["backend", "endpoint"],
        )?;
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(ejections.clone()))?;
        Ok(Self { calls, retries, ejections })
    }
}

/// `host:port` as configured (`http://` or `https://` in front).
#[derive(Debug, Clone, PartialEq)]
struct Target {
    scheme: String,
    host: String,
    port: u16,
}

fn parse_targets(spec: &str) -> anyhow::Result<Vec<Target>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let uri: http::Uri = part.parse().map_err(|e| anyhow::anyhow!("bad endpoint {part:?}: {e}"))?;
        let scheme = uri.scheme_str().unwrap_or("http").to_string();
        let host = uri.host().ok_or_else(|| anyhow::anyhow!("endpoint {part:?} has no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let port =
            uri.port_u16().ok_or_else(|| anyhow::anyhow!("endpoint {part:?} has no port: use http://host:port"))?;
        out.push(Target { scheme, host, port });
    }
    anyhow::ensure!(!out.is_empty(), "no endpoint in {spec:?}: use http://host:port[,http://host:port...]");
    Ok(out)
}

#[derive(Debug, Default)]
struct MemberState {
    /// Left out of the rotation until then.
    ejected_until: Option<Instant>,
    /// Consecutive failures (the ejection doubles with each).
    failures: u32,
    /// Repos it serves, from its last `Info`; `None` before one answered (or for hydrate-svc).
    repos: Option<Vec<String>>,
}

/// One endpoint (one address) of a backend.
pub struct Member {
    pub url: String,
    channel: Channel,
    inflight: AtomicUsize,
    state: Mutex<MemberState>,
}

impl Member {
    /// An endpoint at `url` (an address), whose server certificate names `host` (the name
    /// configured) when TLS is on.
    fn new(url: String, host: &str, tls: &codeintel_config::TlsConfig) -> anyhow::Result<Arc<Self>> {
        let mut endpoint = Endpoint::from_shared(codeintel_server::tls::scheme(tls, &url))
            .map_err(|e| anyhow::anyhow!("bad service url {url}: {e}"))?;
        if let Some(t) = codeintel_server::tls::client(tls, host)? {
            endpoint = endpoint.tls_config(t)?;
        }
        let channel = endpoint
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true)
            .connect_lazy();
        Ok(Arc::new(Self { url, channel, inflight: AtomicUsize::new(0), state: Mutex::new(MemberState::default()) }))
    }

    fn healthy(&self, now: Instant) -> bool {
        self.state.lock().ejected_until.is_none_or(|t| t <= now)
    }

    fn repos(&self) -> Option<Vec<String>> {
        self.state.lock().repos.clone()
    }
}

/// Why a call may be retried elsewhere: the endpoint, not the request, failed.
fn retryable(s: &tonic::Status) -> bool {
    matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled)
}

/// A well-mixed 64-bit value of a counter (SplitMix64): the draws of [`Pool::pick`] without a
/// random-number generator, and without the parity pattern of a plain counter shared by the
/// two calls each answer makes to lexical-svc.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Groups of endpoints serving the same repos, and the part of a request each gets.
type Plan = Vec<(Vec<Arc<Member>>, Scope)>;

pub struct Pool {
    backend: &'static str,
    probe: Probe,
    targets: Vec<Target>,
    members: RwLock<Vec<Arc<Member>>>,
    /// Counter behind the random draws of [`Pool::pick`].
    turn: AtomicUsize,
    opts: PoolOptions,
    metrics: PoolMetrics,
}

impl Pool {
    /// Resolves the endpoints of `spec` and starts re-resolving and probing them in the
    /// background (until the pool is dropped).
    pub async fn connect(
        backend: &'static str,
        spec: &str,
        probe: Probe,
        opts: PoolOptions,
        metrics: PoolMetrics,
    ) -> anyhow::Result<Arc<Self>> {
        let targets = parse_targets(spec)?;
        let pool = Arc::new(Self {
            backend,
            probe,
            targets,
            members: RwLock::new(Vec::new()),
            turn: AtomicUsize::new(codeintel_core::now_unix_ms() as usize),
            opts,
            metrics,
        });
        pool.resolve().await;
        pool.probe_all().await;
        tokio::spawn(Self::discovery(Arc::downgrade(&pool)));
        Ok(pool)
    }

    async fn discovery(me: Weak<Self>) {
        loop {
            let Some(period) = me.upgrade().map(|p| p.opts.discovery) else { return };
            tokio::time::sleep(period).await;
            let Some(p) = me.upgrade() else { return };
            p.resolve().await;
            p.probe_all().await;
        }
    }

    /// Re-resolves the targets: new addresses join, vanished ones leave, the others keep their
    /// state. A name that does not resolve (yet) keeps its previous addresses.
    async fn resolve(&self) {
        // (address URL, the host name configured for it)
        let mut urls: Vec<(String, String)> = Vec::new();
        let old: Vec<Arc<Member>> = self.members.read().clone();
        for t in &self.targets {
            let addrs: Vec<SocketAddr> = match t.host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, t.port)],
                Err(_) => match tokio::net::lookup_host((t.host.as_str(), t.port)).await {
                    Ok(a) => a.collect(),
                    Err(e) => {
                        tracing::warn!(backend = self.backend, host = %t.host, error = %e, "endpoint name does not resolve");
                        let prefix = format!("{}://{}:", t.scheme, t.host);
                        urls.extend(
                            old.iter().filter(|m| m.url.starts_with(&prefix)).map(|m| (m.url.clone(), t.host.clone())),
                        );
                        continue;
                    }
                },
            };
            for a in addrs {
                let host = match a.ip() {
                    IpAddr::V4(ip) => ip.to_string(),
                    IpAddr::V6(ip) => format!("[{ip}]"),
                };
                urls.push((format!("{}://{host}:{}", t.scheme, a.port()), t.host.clone()));
            }
        }
        urls.dedup();
        let mut next = Vec::with_capacity(urls.len());
        for (u, host) in urls {
            match old.iter().find(|m| m.url == u) {
                Some(m) => next.push(m.clone()),
                None => match Member::new(u, &host, &self.opts.tls) {
                    Ok(m) => next.push(m),
                    Err(e) => tracing::warn!(backend = self.backend, error = %e, "bad endpoint"),
                },
            }
        }
        let mut members = self.members.write();
        if *members.iter().map(|m| &m.url).collect::<Vec<_>>() != next.iter().map(|m| &m.url).collect::<Vec<_>>() {
            tracing::info!(backend = self.backend, endpoints = ?next.iter().map(|m| &m.url).collect::<Vec<_>>(), "backend endpoints");
        }
        *members = next;
    }

    /// Probes every endpoint: a good answer brings an ejected one back, a failure ejects it.
    async fn probe_all(&self) {
        let members = self.members.read().clone();
        let timeout = self.opts.discovery.clamp(Duration::from_millis(200), Duration::from_secs(2));
        let probes = members.iter().map(|m| async move {
            let r = tokio::time::timeout(timeout, self.probe_one(m))
                .await
                .unwrap_or_else(|_| Err("probe timed out".into()));
            (m, r)
        });
        for (m, r) in futures::future::join_all(probes).await {
            match r {
                Ok(repos) => {
                    let mut s = m.state.lock();
                    s.ejected_until = None;
                    s.failures = 0;
                    if repos.is_some() {
                        s.repos = repos;
                    }
                }
                Err(why) => self.eject(m, &why),
            }
        }
    }

    /// `Ok(Some(repos))` from `Info`, `Ok(None)` from a health check; `Err` when not serving.
    async fn probe_one(&self, m: &Member) -> Result<Option<Vec<String>>, String> {
        let info = |r: Result<tonic::Response<InfoResponse>, tonic::Status>| {
            let info = r.map_err(|s| format!("{:?}: {}", s.code(), s.message()))?.into_inner();
            if info.status == "down" {
                return Err(format!("down: {}", info.reasons.join("; ")));
            }
            Ok(Some(info.repos.into_iter().map(|r| r.repo).collect()))
        };
        let req = || {
            let mut r = tonic::Request::new(InfoRequest {});
            codeintel_server::admission::authorize(r.metadata_mut());
            r
        };
        match self.probe {
            Probe::VectorInfo => info(VectorServiceClient::new(m.channel.clone()).info(req()).await),
            Probe::LexicalInfo => info(LexicalServiceClient::new(m.channel.clone()).info(req()).await),
            Probe::Health(service) => {
                let mut c = tonic_health::pb::health_client::HealthClient::new(m.channel.clone());
                let r = c
                    .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
                    .await
                    .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
                let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
                if r.into_inner().status == serving {
                    Ok(None)
                } else {
                    Err("NOT_SERVING".into())
                }
            }
        }
    }

    fn eject(&self, m: &Member, why: &str) {
        let mut s = m.state.lock();
        s.failures = s.failures.saturating_add(1);
        let d = self.opts.eject.saturating_mul(1 << (s.failures - 1).min(5)).min(MAX_EJECT);
        if s.ejected_until.is_none_or(|t| t <= Instant::now()) {
            tracing::warn!(backend = self.backend, endpoint = %m.url, why, for_ms = d.as_millis() as u64, "endpoint ejected");
            self.metrics.ejections.with_label_values(&[self.backend, &m.url]).inc();
        }
        s.ejected_until = Some(Instant::now() + d);
    }

    /// Every repo an endpoint said it serves (`Info`); `None` until one has said.
    pub fn served_repos(&self) -> Option<Vec<String>> {
        let mut all: Option<Vec<String>> = None;
        for m in self.members() {
            if let Some(r) = m.repos() {
                all.get_or_insert_with(Vec::new).extend(r);
            }
        }
        all.map(|mut v| {
            v.sort();
            v.dedup();
            v
        })
    }

    /// The endpoints now known, healthy or not.
    pub fn members(&self) -> Vec<Arc<Member>> {
        self.members.read().clone()
    }

    /// Of two healthy endpoints of `group` (not in `skip`) drawn at random, the one with fewer
    /// calls in flight (the power of two choices); with none healthy, the one whose ejection
    /// ends first.
    fn pick(&self, group: &[Arc<Member>], skip: &[&Arc<Member>]) -> Option<Arc<Member>> {
        let now = Instant::now();
        let open: Vec<&Arc<Member>> = group.iter().filter(|m| !skip.iter().any(|s| Arc::ptr_eq(s, m))).collect();
        let healthy: Vec<&Arc<Member>> = open.iter().copied().filter(|m| m.healthy(now)).collect();
        match healthy.len() {
            0 => open.into_iter().min_by_key(|m| m.state.lock().ejected_until).cloned(),
            1 => Some(healthy[0].clone()),
            n => {
                let r = splitmix64(self.turn.fetch_add(1, Ordering::Relaxed) as u64);
                let a = (r % n as u64) as usize;
                let b = (a + 1 + ((r >> 32) % (n as u64 - 1)) as usize) % n;
                let (a, b) = (healthy[a], healthy[b]);
                Some(
                    if b.inflight.load(Ordering::Relaxed) < a.inflight.load(Ordering::Relaxed) { b } else { a }.clone(),
                )
            }
        }
    }

    /// Splits a request by the repos each group of endpoints serves. Unsharded (every endpoint
    /// serves the same repos, or none has said): one part, the scope unchanged.
    fn plan(&self, scope: &Scope) -> Result<Plan, CallError> {
        let members = self.members();
        if members.is_empty() {
            return Err(CallError::Status(tonic::Status::unavailable(format!(
                "no {} endpoint: {} resolve to no address",
                self.backend,
                self.targets.iter().map(|t| format!("{}:{}", t.host, t.port)).collect::<Vec<_>>().join(", ")
            ))));
        }
        let mut shards: BTreeMap<Vec<String>, Vec<Arc<Member>>> = BTreeMap::new();
        for m in &members {
            if let Some(mut repos) = m.repos() {
                repos.sort();
                shards.entry(repos).or_default().push(m.clone());
            }
        }
        if shards.len() <= 1 {
            return Ok(vec![(members, scope.clone())]);
        }
        let served: BTreeSet<&String> = shards.keys().flatten().collect();
        let wanted: Vec<String> =
            if scope.repos.is_empty() { served.iter().map(|r| r.to_string()).collect() } else { scope.repos.clone() };
        if let Some(missing) = wanted.iter().find(|r| !served.contains(r)) {
            return Err(CallError::Status(tonic::Status::invalid_argument(format!(
                "repo {missing:?} is not served by any {} shard; served repos: {}",
                self.backend,
                served.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            ))));
        }
        // Each repo goes to a shard already chosen for another repo if one serves it, else to
        // the first shard serving it that has a healthy endpoint (else the first serving it).
        let now = Instant::now();
        let mut parts: Vec<(Vec<String>, Vec<String>)> = Vec::new(); // (shard key, repos assigned)
        for repo in wanted {
            if let Some(p) = parts.iter_mut().find(|(key, _)| key.contains(&repo)) {
                p.1.push(repo);
                continue;
            }
            let serving: Vec<&Vec<String>> = shards.keys().filter(|k| k.contains(&repo)).collect();
            let key = serving
                .iter()
                .find(|k| shards[**k].iter().any(|m| m.healthy(now)))
                .or(serving.first())
                .map(|k| (*k).clone())
                .expect("a served repo has a shard");
            parts.push((key, vec![repo]));
        }
        Ok(parts
            .into_iter()
            .map(|(key, repos)| (shards.remove(&key).unwrap_or_default(), Scope { repos, ..scope.clone() }))
            .collect())
    }

    /// One call on one endpoint of `group`, retried once on another after an endpoint failure
    /// if time is left. `f` makes the call on a channel within a deadline.
    async fn call_group<T, F, Fut>(
        &self,
        group: &[Arc<Member>],
        scope: &Scope,
        d: Duration,
        f: &F,
    ) -> Result<T, CallError>
    where
        F: Fn(Channel, Scope, Duration) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let start = Instant::now();
        let mut tried: Vec<Arc<Member>> = Vec::new();
        loop {
            let skip: Vec<&Arc<Member>> = tried.iter().collect();
            let Some(m) = self.pick(group, &skip) else {
                return Err(CallError::Status(tonic::Status::unavailable(format!(
                    "no {} endpoint to call",
                    self.backend
                ))));
            };
            let left = d.saturating_sub(start.elapsed());
            m.inflight.fetch_add(1, Ordering::Relaxed);
            let r = tokio::time::timeout(left, f(m.channel.clone(), scope.clone(), left)).await;
            m.inflight.fetch_sub(1, Ordering::Relaxed);
            let outcome = match &r {
                Ok(Ok(_)) => "ok",
                Ok(Err(s)) if retryable(s) => "failed",
                Ok(Err(_)) => "error",
                Err(_) => "timeout",
            };
            self.metrics.calls.with_label_values(&[self.backend, &m.url, outcome]).inc();
            match r {
                Ok(Ok(v)) => {
                    let mut s = m.state.lock();
                    s.failures = 0;
                    return Ok(v);
                }
                Ok(Err(s)) if s.code() == tonic::Code::DeadlineExceeded => return Err(CallError::Timeout(d)),
                Ok(Err(s)) if retryable(&s) && start.elapsed() < d => {
                    self.eject(&m, &format!("{:?}: {}", s.code(), s.message()));
                    tried.push(m);
                    let another = group.len() > tried.len() && tried.len() < 2;
                    if another && d.saturating_sub(start.elapsed()) >= MIN_RETRY_BUDGET {
                        self.metrics.retries.with_label_values(&[self.backend]).inc();
                        continue;
                    }
                    return Err(if s.code() == tonic::Code::Cancelled {
                        CallError::Timeout(d)
                    } else {
                        CallError::Status(s)
                    });
                }
                Ok(Err(s)) if s.code() == tonic::Code::Cancelled => return Err(CallError::Timeout(d)),
                Ok(Err(s)) => return Err(CallError::Status(s)),
                Err(_) => return Err(CallError::Timeout(d)),
            }
        }
    }

    /// A call that any endpoint can answer (hydration), with the pool's balancing and retry.
    pub async fn call<T, F, Fut>(&self, scope: &Scope, d: Duration, f: F) -> Result<T, CallError>
    where
        F: Fn(Channel, Scope, Duration) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let members = self.members();
        if members.is_empty() {
            return Err(CallError::Status(tonic::Status::unavailable(format!(
                "no {} endpoint resolved",
                self.backend
            ))));
        }
        self.call_group(&members, scope, d, &f).await
    }

    /// A retrieval: split by shard when endpoints serve different repos, the parts in parallel,
    /// their hits merged best first and cut to `k`. One part failing fails the retrieval.
    pub async fn retrieve<F, Fut>(
        &self,
        scope: &Scope,
        k: u32,
        d: Duration,
        f: F,
    ) -> Result<Vec<ScoredChunk>, CallError>
    where
        F: Fn(Channel, Scope, Duration) -> Fut,
        Fut: Future<Output = Result<Vec<ScoredChunk>, tonic::Status>>,
    {
        let plan = self.plan(scope)?;
        if let [(group, scope)] = plan.as_slice() {
            return self.call_group(group, scope, d, &f).await;
        }
        let calls = plan.iter().map(|(group, part)| self.call_group(group, part, d, &f));
        let mut hits = Vec::new();
        for r in futures::future::join_all(calls).await {
            hits.extend(r?);
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(k as usize);
        Ok(hits)
    }

    /// Whether any endpoint serves (for readiness): `Err` with why none does.
    pub async fn serving(&self, d: Duration) -> Result<(), String> {
        let members = self.members();
        if members.is_empty() {
            return Err(format!("{} has no endpoint (its name resolves to no address)", self.backend));
        }
        let probes = members.iter().map(|m| tokio::time::timeout(d, self.probe_one(m)));
        let mut why = Vec::new();
        for (m, r) in members.iter().zip(futures::future::join_all(probes).await) {
            match r {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => why.push(format!("{}: {e}", m.url)),
                Err(_) => why.push(format!("{}: no answer within {} ms", m.url, d.as_millis())),
            }
        }
        Err(format!("{} unreachable or not serving ({})", self.backend, why.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> (Pool, Vec<Arc<Member>>) {
        let members: Vec<_> = (0..n)
            .map(|i| Member::new(format!("http://127.0.0.1:{}", 1000 + i), "127.0.0.1", &Default::default()).unwrap())
            .collect();
        let pool = Pool {
            backend: "vector-svc",
            probe: Probe::VectorInfo,
            targets: parse_targets("http://127.0.0.1:1000").unwrap(),
            members: RwLock::new(members.clone()),
            turn: AtomicUsize::new(0),
            opts: PoolOptions {
                discovery: Duration::from_secs(1),
                eject: Duration::from_secs(1),
                tls: Default::default(),
            },
            metrics: PoolMetrics::new(&prometheus::Registry::new()).unwrap(),
        };
        (pool, members)
    }

    #[tokio::test]
    async fn picks_spread_over_healthy_endpoints_and_skip_ejected_and_busy_ones() {
        let (pool, m) = pool(3);
        // Two picks per answer (lexical Search and SparseSearch) must not pin each to one replica.
        let mut every_other = [0usize; 3];
        for i in 0..600 {
            let p = pool.pick(&m, &[]).unwrap();
            if i % 2 == 0 {
                every_other[m.iter().position(|x| Arc::ptr_eq(x, &p)).unwrap()] += 1;
            }
        }
        assert!(every_other.iter().all(|&n| n > 60), "{every_other:?}");
        pool.eject(&m[0], "test");
        assert!((0..50).all(|_| !Arc::ptr_eq(&pool.pick(&m, &[]).unwrap(), &m[0])), "an ejected endpoint is left out");
        m[1].inflight.store(5, Ordering::Relaxed);
        assert!((0..50).all(|_| Arc::ptr_eq(&pool.pick(&m, &[]).unwrap(), &m[2])), "the idle one wins the draw");
        assert!(Arc::ptr_eq(&pool.pick(&m, &[&m[2]]).unwrap(), &m[1]), "a retry skips the endpoint that failed");
        pool.eject(&m[1], "test");
        pool.eject(&m[2], "test");
        assert!(Arc::ptr_eq(&pool.pick(&m, &[]).unwrap(), &m[0]), "all ejected: the first to come back is tried");
        assert!(pool.pick(&m[..1], &[&m[0]]).is_none());
    }

    #[tokio::test]
    async fn shards_split_a_request_by_repo_and_name_a_repo_no_shard_serves() {
        let (pool, m) = pool(3);
        m[0].state.lock().repos = Some(vec!["alpha".into()]);
        m[1].state.lock().repos = Some(vec!["alpha".into()]);
        m[2].state.lock().repos = Some(vec!["beta".into(), "gamma".into()]);
        let repos = |r: &[&str]| Scope { repos: r.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        let plan = pool.plan(&repos(&[])).unwrap();
        let parts: Vec<(usize, Vec<String>)> = plan.iter().map(|(g, s)| (g.len(), s.repos.clone())).collect();
        assert_eq!(parts, [(2, vec!["alpha".to_string()]), (1, vec!["beta".to_string(), "gamma".to_string()])]);
        let plan = pool.plan(&repos(&["gamma"])).unwrap();
        assert_eq!(plan.len(), 1);
        assert!(Arc::ptr_eq(&plan[0].0[0], &m[2]));
        match pool.plan(&repos(&["alpha", "delta"])) {
            Err(CallError::Status(s)) => {
                assert_eq!(s.code(), tonic::Code::InvalidArgument);
                assert!(s.message().contains("\"delta\" is not served by any vector-svc shard"), "{}", s.message());
            }
            _ => panic!("a repo no shard serves must be refused"),
        }
        // Every endpoint serving the same repos: not sharded, the scope goes unchanged.
        m[2].state.lock().repos = Some(vec!["alpha".into()]);
        let plan = pool.plan(&repos(&["zeta"])).unwrap();
        assert_eq!((plan.len(), plan[0].0.len(), plan[0].1.repos.clone()), (1, 3, vec!["zeta".to_string()]));
    }

    #[test]
    fn endpoint_lists_parse_and_bad_ones_say_why() {
        let t = parse_targets("http://10.0.0.1:50052, http://vector-svc-headless:50052,https://[::1]:7").unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!((t[1].host.as_str(), t[1].port), ("vector-svc-headless", 50052));
        assert_eq!((t[2].scheme.as_str(), t[2].host.as_str()), ("https", "::1"));
        assert!(parse_targets("http://vector-svc").unwrap_err().to_string().contains("no port"));
        assert!(parse_targets(" , ").unwrap_err().to_string().contains("no endpoint"));
    }
}
