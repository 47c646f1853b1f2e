use std::time::Duration;

use clap::Parser;
use codeintel_core::proto::v1::lexical_service_server::LexicalServiceServer;
use codeintel_server::{self as server, CommonArgs};
use lexical_svc::grpc::LexicalGrpc;
use lexical_svc::LexicalSearcher;

/// lexical-svc: BM25 retrieval over tantivy.
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
    let cfg = args.common.load("lexical")?;
    // Before any thread starts: candle reads its thread count from the environment once.
    codeintel_models::set_encoder_threads(cfg.embed.query_threads);
    // The runtime's and the encoder's threads inherit the CPUs of `lexical.cpus`.
    let (runtime, pinned) = codeintel_server::cpus::runtime("lexical.cpus", &cfg.lexical.cpus)?;
    runtime.block_on(serve(cfg, pinned))
}

async fn serve(mut cfg: codeintel_config::Config, pinned: Option<Vec<usize>>) -> anyhow::Result<()> {
    let _telemetry = codeintel_server::telemetry::init("lexical-svc", &cfg.telemetry)?;
    codeintel_server::cpus::announce("lexical.cpus", pinned.as_deref());
    // An object-store data root: mirrored locally, pulled now and every reload_ms.
    let serves = cfg.lexical.repos.clone();
    let period = std::time::Duration::from_millis(cfg.lexical.reload_ms);
    codeintel_index::remote::follow(&mut cfg, &serves, period).await?;
    let searcher = LexicalSearcher::new(&cfg)?;
    let s = searcher.clone();
    server::spawn_reloader(Duration::from_millis(cfg.lexical.reload_ms), move || s.refresh());
    let grpc = LexicalServiceServer::new(LexicalGrpc(searcher.clone()))
        .max_decoding_message_size(cfg.limits.max_message_bytes);
    server::serve(
        server::ServeSpec {
            service: "lexical-svc",
            health_name: "codeintel.v1.LexicalService",
            addr: &cfg.lexical.addr,
            metrics_addr: &cfg.lexical.metrics_addr,
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
