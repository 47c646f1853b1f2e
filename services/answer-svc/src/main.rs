use answer_svc::grpc::AnswerGrpc;
use answer_svc::navigation::NavigationGrpc;
use answer_svc::Engine;
use clap::Parser;
use codeintel_core::proto::v1::answer_service_server::AnswerServiceServer;
use codeintel_core::proto::v1::navigation_service_server::NavigationServiceServer;
use codeintel_server::{self as server, CommonArgs};

/// answer-svc: hybrid retrieval, fusion, hydration and streamed answers.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The answer traces (every query asked) are private to this user.
    codeintel_server::private_files();
    let args = Args::parse();
    let cfg = args.common.load("answer")?;
    let _telemetry = codeintel_server::telemetry::init("answer-svc", &cfg.telemetry)?;
    // Before the first call to a backend (the probes of Engine::new).
    server::admission::present_service_token(&cfg.auth.service_token)?;
    let engine = Engine::new(&cfg).await?;
    let e = engine.clone();
    tokio::spawn(async move {
        loop {
            e.check_backends().await;
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    });
    let grpc =
        AnswerServiceServer::new(AnswerGrpc(engine.clone())).max_decoding_message_size(cfg.limits.max_message_bytes);
    let nav = NavigationServiceServer::new(NavigationGrpc(engine.clone()))
        .max_decoding_message_size(cfg.limits.max_message_bytes);
    let served = server::serve(
        server::ServeSpec {
            service: "answer-svc",
            health_name: "codeintel.v1.AnswerService",
            addr: &cfg.answer.addr,
            metrics_addr: &cfg.answer.metrics_addr,
            metrics: engine.metrics.clone(),
            readiness: engine.readiness.clone(),
            admission: server::admission::Admission::new(&cfg.limits, server::admission::Auth::clients(&cfg.auth)?),
            limits: &cfg.limits,
            tls: &cfg.tls,
            extra_descriptors: &[],
        },
        |r| r.add_service(grpc).add_service(nav),
    )
    .await;
    engine.flush_traces().await;
    served
}
