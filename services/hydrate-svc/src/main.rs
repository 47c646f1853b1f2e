use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use clap::Parser;
use codeintel_server::{self as server, CommonArgs};
use hydrate_svc::flight::HydrateFlight;
use hydrate_svc::ChunkStore;

/// hydrate-svc: chunks in Parquet through DuckDB, served over Arrow Flight.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Indexes mirrored from an object store are private to this user.
    codeintel_server::private_files();
    let args = Args::parse();
    let mut cfg = args.common.load("hydrate")?;
    let _telemetry = codeintel_server::telemetry::init("hydrate-svc", &cfg.telemetry)?;
    // An object-store data root: mirrored locally, pulled now and every reload_ms.
    let serves = Vec::new();
    let period = std::time::Duration::from_millis(cfg.hydrate.reload_ms);
    codeintel_index::remote::follow(&mut cfg, &serves, period).await?;
    let store = ChunkStore::new(&cfg)?;
    let s = store.clone();
    server::spawn_reloader(Duration::from_millis(cfg.hydrate.reload_ms), move || s.refresh());
    let grpc = FlightServiceServer::new(HydrateFlight(store.clone()))
        .max_encoding_message_size(64 << 20)
        .max_decoding_message_size(cfg.limits.max_message_bytes);
    server::serve(
        server::ServeSpec {
            service: "hydrate-svc",
            health_name: "arrow.flight.protocol.FlightService",
            addr: &cfg.hydrate.addr,
            metrics_addr: &cfg.hydrate.metrics_addr,
            metrics: store.metrics.clone(),
            readiness: store.readiness.clone(),
            admission: server::admission::Admission::new(&cfg.limits, server::admission::Auth::service(&cfg.auth)),
            limits: &cfg.limits,
            tls: &cfg.tls,
            extra_descriptors: &[codeintel_core::proto::FLIGHT_DESCRIPTOR_SET],
        },
        |r| r.add_service(grpc),
    )
    .await
}
