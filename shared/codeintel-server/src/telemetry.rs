//! Logs and OpenTelemetry traces for every binary.
//!
//! Logs go to stderr (`RUST_LOG` filters them). With `telemetry.otlp_endpoint` set, `tracing`
//! spans are also exported as OpenTelemetry spans over OTLP/HTTP (protobuf, `<endpoint>/v1/traces`,
//! what the OpenTelemetry Collector, Jaeger and Tempo receive on port 4318), batched. The trace
//! context crosses the mesh in W3C `traceparent` gRPC metadata: clients [`inject`] it, servers
//! open their request span with [`server_span`], so one `Answer` is one trace across services.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use codeintel_config::TelemetryConfig;

/// Flushes and stops the span exporter when dropped (at the end of `main`).
pub struct TelemetryGuard(Option<SdkTracerProvider>);

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            // The HTTP exporter's blocking client must not be shut down on an async thread.
            let _ = std::thread::spawn(move || {
                if let Err(e) = p.shutdown() {
                    eprintln!("telemetry: flushing spans failed: {e}");
                }
            })
            .join();
        }
    }
}

fn filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,tantivy=warn".into())
}

/// Logs only (commands that are not services).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt().with_env_filter(filter()).with_writer(std::io::stderr).try_init();
}

fn provider(service: &str, cfg: &TelemetryConfig) -> anyhow::Result<SdkTracerProvider> {
    let endpoint = format!("{}/v1/traces", cfg.otlp_endpoint.trim_end_matches('/'));
    let service = service.to_string();
    let (ratio, delay) = (cfg.sample_ratio, cfg.export_interval_ms);
    // The blocking HTTP client is built (and later dropped) off the async runtime's threads.
    std::thread::spawn(move || -> anyhow::Result<SdkTracerProvider> {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(&endpoint)
            .with_timeout(std::time::Duration::from_secs(5))
            .build()?;
        let batch = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default().with_scheduled_delay(std::time::Duration::from_millis(delay)).build(),
            )
            .build();
        Ok(SdkTracerProvider::builder()
            .with_span_processor(batch)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))))
            .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(service).build())
            .build())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("telemetry setup panicked"))?
}

/// Logs, plus span export when `telemetry.otlp_endpoint` is set. Keep the guard until exit.
pub fn init(service: &str, cfg: &TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // Each layer filters for itself: `RUST_LOG` quiets the logs without losing spans.
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter());
    if cfg.otlp_endpoint.is_empty() {
        let _ = tracing_subscriber::registry().with(fmt).try_init();
        return Ok(TelemetryGuard(None));
    }
    let provider = provider(service, cfg)?;
    let tracer = provider.tracer(service.to_string());
    let spans = tracing_subscriber::EnvFilter::new("info,h2=off,hyper=off,tower=off,tantivy=off");
    let otel = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(spans);
    let _ = tracing_subscriber::registry().with(fmt).with(otel).try_init();
    tracing::info!(endpoint = %cfg.otlp_endpoint, "exporting OpenTelemetry spans");
    Ok(TelemetryGuard(Some(provider)))
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) =
            (tonic::metadata::MetadataKey::from_bytes(key.as_bytes()), tonic::metadata::MetadataValue::try_from(&value))
        {
            self.0.insert(k, v);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes the current span's trace context into outgoing gRPC metadata (`traceparent`).
pub fn inject(md: &mut tonic::metadata::MetadataMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(md));
}

/// The span a gRPC request runs in (`Service/Method`), child of the caller's span when the
/// request carries a `traceparent`. Made by the shared middleware ([`crate::rpc`]).
pub fn server_span(method: &str, headers: &http::HeaderMap) -> tracing::Span {
    let span = tracing::info_span!("rpc", otel.name = %method, otel.kind = "server", rpc.method = %method);
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
    span
}
