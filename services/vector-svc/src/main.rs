use std::time::Duration;

use clap::Parser;
use codeintel_core::proto::v1::vector_service_server::VectorServiceServer;
use codeintel_server::{self as server, CommonArgs};
use vector_svc::grpc::VectorGrpc;
use vector_svc::VectorSearcher;

/// vector-svc: dense retrieval over FAISS.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> anyhow::Result<()> {
    // Indexes mirrored from an object store are private to this user.
    codeintel_server::private_files();
    let args = Args::parse();
    let cfg = args.common.load("vector")?;
    // Before any thread starts: candle reads its thread count from the environment once.
    codeintel_models::set_encoder_threads(cfg.embed.query_threads);
    // The runtime's and the encoder's threads inherit the CPUs of `vector.cpus`.
    let (runtime, pinned) = codeintel_server::cpus::runtime("vector.cpus", &cfg.vector.cpus)?;
    runtime.block_on(serve(cfg, pinned))
}

async fn serve(mut cfg: codeintel_config::Config, pinned: Option<Vec<usize>>) -> anyhow::Result<()> {
    let _telemetry = codeintel_server::telemetry::init("vector-svc", &cfg.telemetry)?;
    codeintel_server::cpus::announce("vector.cpus", pinned.as_deref());
    // An object-store data root: mirrored locally, pulled now and every reload_ms.
    let serves = cfg.vector.repos.clone();
    let period = std::time::Duration::from_millis(cfg.vector.reload_ms);
    codeintel_index::remote::follow(&mut cfg, &serves, period).await?;
    let searcher = VectorSearcher::new(&cfg).await?;
    let s = searcher.clone();
    server::spawn_reloader(Duration::from_millis(cfg.vector.reload_ms), move || s.refresh());
    let grpc =
        VectorServiceServer::new(VectorGrpc(searcher.clone())).max_decoding_message_size(cfg.limits.max_message_bytes);
    server::serve(
        server::ServeSpec {
            service: "vector-svc",
            health_name: "codeintel.v1.VectorService",
            addr: &cfg.vector.addr,
            metrics_addr: &cfg.vector.metrics_addr,
            metrics: searcher.metrics.clone(),
            readiness: searcher.readiness.clone(),
            admission: server::admission::Admission::new(&cfg.limits, server::admission::Auth::service(&cfg.auth)),
            limits: &cfg.limits,
            tls: &cfg.tls,
            extra_descriptors: &[],
        },
        |r| r.add_service(grpc),
    )
    .await
}
