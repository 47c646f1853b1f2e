//! The bootstrap every service shares: tracing, health, reflection (v1 and v1alpha),
//! Prometheus `/metrics` and JSON `/ready` over HTTP, graceful shutdown on SIGTERM/Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use parking_lot::RwLock;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};
use serde::Serialize;
use tokio::net::TcpListener;

pub mod admission;
pub mod cpus;
pub mod rpc;
pub mod telemetry;
pub mod tls;

/// The router every service adds its gRPC services to: under the shared middleware stack.
pub type GrpcRouter =
    tonic::transport::server::Router<tower::layer::util::Stack<rpc::RpcLayer, tower::layer::util::Identity>>;

/// Service readiness: `ready`, `degraded` (serving with reduced function) or `down`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Readiness {
    pub status: &'static str,
    pub reasons: Vec<String>,
}

impl Readiness {
    /// The one readiness rule of the mesh, the same for every service: `down` when it cannot
    /// answer any request (`unusable` names why: no backend has answered yet, every repo it
    /// holds failed to load, a dependency every request needs is unreachable); else `degraded`
    /// when it answers with less than it should (`impaired` names what: a repo that failed to
    /// load, one retriever down, a GPU fallback, the session store down); else `ready`.
    /// Health reports NOT_SERVING only when `down`.
    pub fn judge(unusable: Vec<String>, impaired: Vec<String>) -> Self {
        if !unusable.is_empty() {
            let mut reasons = unusable;
            reasons.extend(impaired);
            Self { status: "down", reasons }
        } else if !impaired.is_empty() {
            Self { status: "degraded", reasons: impaired }
        } else {
            Self::ready()
        }
    }

    /// [`Readiness::judge`] for a service that serves indexed repos: repos that failed to load
    /// make it `down` only when it serves none at all, else `degraded`, as do `notes`.
    pub fn of_repos(served: usize, failed: Vec<String>, notes: Vec<String>) -> Self {
        if served == 0 && !failed.is_empty() {
            Self::judge(failed, notes)
        } else {
            let mut impaired = failed;
            impaired.extend(notes);
            Self::judge(Vec::new(), impaired)
        }
    }

    pub fn ready() -> Self {
        Self { status: "ready", reasons: Vec::new() }
    }
    pub fn down(reason: impl Into<String>) -> Self {
        Self { status: "down", reasons: vec![reason.into()] }
    }
    pub fn is_down(&self) -> bool {
        self.status == "down"
    }
}

pub type SharedReadiness = Arc<RwLock<Readiness>>;

#[cfg(test)]
mod readiness_tests {
    use super::Readiness;

    #[test]
    fn one_rule_down_only_when_nothing_can_be_answered() {
        assert_eq!(Readiness::judge(vec![], vec![]).status, "ready");
        assert_eq!(Readiness::judge(vec![], vec!["gpu".into()]).status, "degraded");
        let down = Readiness::judge(vec!["no backend answered".into()], vec!["x".into()]);
        assert_eq!((down.status, down.reasons.len()), ("down", 2));
        // A repo that fails to load among served ones degrades; alone, it is down.
        assert_eq!(Readiness::of_repos(2, vec!["repo a: bad".into()], vec![]).status, "degraded");
        assert_eq!(Readiness::of_repos(0, vec!["repo a: bad".into()], vec![]).status, "down");
        assert_eq!(Readiness::of_repos(0, vec![], vec![]).status, "ready");
    }
}

/// Per-service Prometheus metrics (`codeintel_` prefix).
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub stages: HistogramVec,
}

impl Metrics {
    pub fn new(service: &str) -> Self {
        let registry =
            Registry::new_custom(Some("codeintel".into()), Some([("service".to_string(), service.to_string())].into()))
                .expect("valid registry");
        let requests =
            IntCounterVec::new(Opts::new("requests_total", "gRPC requests by rpc and status code"), &["rpc", "code"])
                .expect("metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("request_duration_seconds", "gRPC request latency by rpc")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["rpc"],
        )
        .expect("metric");
        let stages = HistogramVec::new(
            HistogramOpts::new("stage_duration_seconds", "latency of pipeline stages")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &["stage"],
        )
        .expect("metric");
        // Resident memory, CPU seconds, open files and threads of this process
        // (`codeintel_process_resident_memory_bytes`, ...).
        #[cfg(target_os = "linux")]
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())).expect("register");
        registry.register(Box::new(requests.clone())).expect("register");
        registry.register(Box::new(latency.clone())).expect("register");
        registry.register(Box::new(stages.clone())).expect("register");
        Self { registry, requests, latency, stages }
    }

    pub fn stage(&self, stage: &str, seconds: f64) {
        self.stages.with_label_values(&[stage]).observe(seconds);
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("encode metrics");
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Makes what this process creates from now on private to its user (umask 077: folders 0700,
/// files 0600), whatever the umask it was started with: the data root holds the indexed code
/// and `traces/*.parquet` every query asked. Each binary calls it first thing in `main`; the
/// services and the indexer must therefore run as one user (the image and the charts use uid
/// 10001 throughout).
pub fn private_files() {
    use rustix::fs::Mode;
    let _previous = rustix::process::umask(Mode::RWXG | Mode::RWXO);
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
/// Logs only; services use [`crate::telemetry::init`] once their configuration is loaded.
pub fn init_tracing() {
    crate::telemetry::init_logs();
}

pub async fn bind(addr: &str, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen for {what} on {addr}: {e}"))
}

/// Reflection services (v1 and v1alpha) over the CodeIntel contracts, health, and `extra` sets,
/// advertising `services` and health.
pub fn reflection(
    services: &[&str],
    extra: &[&'static [u8]],
) -> anyhow::Result<(
    tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
    tonic_reflection::server::v1alpha::ServerReflectionServer<impl tonic_reflection::server::v1alpha::ServerReflection>,
)> {
    let mut v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(codeintel_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    let mut v1a = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(codeintel_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for set in extra {
        v1 = v1.register_encoded_file_descriptor_set(set);
        v1a = v1a.register_encoded_file_descriptor_set(set);
    }
    // Advertise only what this process serves, not every service in the descriptor sets.
    for name in services.iter().copied().chain(["grpc.health.v1.Health"]) {
        v1 = v1.with_service_name(name);
        v1a = v1a.with_service_name(name);
    }
    v1 = v1.with_service_name("grpc.reflection.v1.ServerReflection");
    v1a = v1a.with_service_name("grpc.reflection.v1alpha.ServerReflection");
    Ok((v1.build_v1()?, v1a.build_v1alpha()?))
}

/// Accepted connections with Nagle's algorithm off: small gRPC frames on loopback otherwise
/// wait for delayed ACKs (tens of milliseconds per call).
pub fn incoming(listener: TcpListener) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
        let s = s?;
        // A peer that already hung up makes this fail; that connection then fails on its own,
        // the listener must not.
        if let Err(e) = s.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
        Ok(s)
    })
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received, draining");
}

/// The gRPC health name every service reports SERVING for while its process answers, ready or
/// not (the overall name `""` and the service's own name follow readiness). For liveness probes.
pub const LIVENESS_SERVICE: &str = "codeintel.Liveness";

/// Serves `/metrics` (Prometheus text) and `/ready` (JSON readiness; 503 when down), over TLS
/// when `tls.cert` is set.
pub async fn serve_http(
    listener: TcpListener,
    metrics: Metrics,
    readiness: SharedReadiness,
    tls: &codeintel_config::TlsConfig,
) -> anyhow::Result<()> {
    let m = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m.clone();
                async move { m.render() }
            }),
        )
        .route(
            "/ready",
            get(move || {
                let r = readiness.read().clone();
                async move {
                    let code = if r.is_down() {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        axum::http::StatusCode::OK
                    };
                    (
                        code,
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        serde_json::to_string(&r).unwrap_or_default(),
                    )
                }
            }),
        );
    serve_app(listener, app, tls, shutdown_signal()).await
}

/// Serves an HTTP app until `shutdown` resolves, then lets open requests finish: plaintext
/// (HTTP/1.1) without `tls.cert`, else TLS ([`tls::http_acceptor`]) with HTTP/2 or HTTP/1.1 by
/// ALPN. A client whose handshake fails or stalls (10 s) is dropped without affecting others.
pub async fn serve_app(
    listener: TcpListener,
    app: axum::Router,
    tls: &codeintel_config::TlsConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Some(acceptor) = tls::http_acceptor(tls)? else {
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "serving plaintext HTTP on a non-loopback address; set tls.cert and tls.key");
        }
        axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
        return Ok(());
    };
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let (acceptor, app, watcher) = (acceptor.clone(), app.clone(), graceful.watcher());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let conn = builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), svc);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown()).await;
    Ok(())
}

/// Prints where a service listens, in the form `codeintel up` and scripts read.
pub fn announce(service: &str, grpc: SocketAddr, http: Option<SocketAddr>, tls: bool) {
    let scheme = if tls { "https" } else { "http" };
    match http {
        Some(h) => eprintln!("{service} listening on grpc {grpc} metrics {scheme}://{h}/metrics"),
        None => eprintln!("{service} listening on grpc {grpc}"),
    }
}

/// Flags every service binary takes; they override the file and environment layers.
#[derive(Debug, clap::Args)]
pub struct CommonArgs {
    /// TOML configuration file.
    #[arg(long, env = codeintel_config::CONFIG_FILE_ENV)]
    pub config: Option<std::path::PathBuf>,
    /// gRPC listen address (overrides `<section>.addr`).
    #[arg(long)]
    pub addr: Option<String>,
    /// HTTP address for /metrics and /ready (overrides `<section>.metrics_addr`).
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// Data root holding the indexed repos (overrides `data.root`).
    #[arg(long)]
    pub data_root: Option<std::path::PathBuf>,
    /// Any option by its dotted key, e.g. `--set answer.rrf_k=30`; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl CommonArgs {
    /// Loads the layered configuration and applies these flags; `section` names the service's
    /// own section (`vector`, `lexical`, `hydrate`, `answer`).
    pub fn load(&self, section: &str) -> anyhow::Result<codeintel_config::Config> {
        let mut cfg = codeintel_config::Config::load(self.config.as_deref())?;
        for kv in &self.set {
            let (k, v) = kv.split_once('=').ok_or_else(|| anyhow::anyhow!("--set expects KEY=VALUE, got {kv:?}"))?;
            cfg.set(k.trim(), v.trim())?;
        }
        if let Some(a) = &self.addr {
            cfg.set(&format!("{section}.addr"), &format!("{a:?}"))?;
        }
        if let Some(a) = &self.metrics_addr {
            cfg.set(&format!("{section}.metrics_addr"), &format!("{a:?}"))?;
        }
        if let Some(r) = &self.data_root {
            cfg.data.root = r.clone();
        }
        Ok(cfg)
    }
}

/// Runs `f` every `interval` on a blocking thread (index reloads read files).
pub fn spawn_reloader(interval: std::time::Duration, f: impl Fn() + Send + Sync + 'static) {
    let f = Arc::new(f);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let f = f.clone();
            let _ = tokio::task::spawn_blocking(move || f()).await;
        }
    });
}

/// What [`serve`] runs: names, addresses and the shared state behind health and metrics.
pub struct ServeSpec<'a> {
    pub service: &'static str,
    /// Fully-qualified gRPC service whose health follows `readiness`.
    pub health_name: &'static str,
    pub addr: &'a str,
    pub metrics_addr: &'a str,
    pub metrics: Metrics,
    pub readiness: SharedReadiness,
    /// Descriptor sets for reflection beyond the CodeIntel contracts and health.
    pub extra_descriptors: &'a [&'static [u8]],
    /// Who may call and how much at once ([`admission`]).
    pub admission: admission::Admission,
    /// Header size bound (message sizes are set on each service by its main).
    pub limits: &'a codeintel_config::LimitsConfig,
    /// TLS of the gRPC port ([`tls::server`]).
    pub tls: &'a codeintel_config::TlsConfig,
}

/// Serves a service with health, reflection (v1 + v1alpha), metrics and graceful shutdown.
pub async fn serve(spec: ServeSpec<'_>, add: impl FnOnce(GrpcRouter) -> GrpcRouter) -> anyhow::Result<()> {
    let ServeSpec {
        service,
        health_name,
        addr,
        metrics_addr,
        metrics,
        readiness,
        extra_descriptors,
        admission,
        limits,
        tls: tls_cfg,
    } = spec;
    let admission = std::sync::Arc::new(admission.with_metrics(&metrics.registry));
    let listener = bind(addr, "grpc").await?;
    let grpc_addr = listener.local_addr()?;
    let http = if metrics_addr.is_empty() { None } else { Some(bind(metrics_addr, "metrics").await?) };
    let http_addr = http.as_ref().map(|l| l.local_addr()).transpose()?;
    if let Some(l) = http {
        let (m, r, t) = (metrics.clone(), readiness.clone(), tls_cfg.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_http(l, m, r, &t).await {
                tracing::error!(error = %e, "metrics server failed");
            }
        });
    }
    let (reporter, health) = tonic_health::server::health_reporter();
    // Alive as long as it answers, whatever its readiness: what a liveness probe asks, so that a
    // service whose backends are down is taken out of rotation but not restarted.
    reporter.set_service_status(LIVENESS_SERVICE, tonic_health::ServingStatus::Serving).await;
    let r = readiness.clone();
    tokio::spawn(async move {
        loop {
            let status = if r.read().is_down() {
                tonic_health::ServingStatus::NotServing
            } else {
                tonic_health::ServingStatus::Serving
            };
            reporter.set_service_status("", status).await;
            reporter.set_service_status(health_name, status).await;
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    });
    let (v1, v1a) = reflection(&[health_name], extra_descriptors)?;
    // One middleware stack for every RPC of every service, health and reflection included.
    let mut builder = tonic::transport::Server::builder();
    match tls::server(tls_cfg)? {
        Some(t) => builder = builder.tls_config(t)?,
        None if !grpc_addr.ip().is_loopback() => tracing::warn!(
            service,
            addr = %grpc_addr,
            "serving plaintext gRPC on a non-loopback address: anyone who reaches it can read the traffic; set tls.cert and tls.key"
        ),
        None => {}
    }
    let router = builder
        .http2_max_header_list_size(limits.max_header_bytes)
        .layer(rpc::RpcLayer::new(metrics.clone(), admission))
        .add_service(health)
        .add_service(v1)
        .add_service(v1a);
    let router = add(router);
    announce(service, grpc_addr, http_addr, tls_cfg.serves());
    router.serve_with_incoming_shutdown(incoming(listener), shutdown_signal()).await?;
    tracing::info!(service, "stopped");
    Ok(())
}
