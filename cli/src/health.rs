//! `codeintel health ADDR`: a gRPC health check (`grpc.health.v1.Health/Check`), the container
//! healthcheck of the image; it needs nothing but this binary.

use std::time::Duration;

use anyhow::Context;
use tonic::transport::Endpoint;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// What the server said about `service` (empty = the server as a whole) at `addr`
/// (`host:port` or `http://host:port`), within `timeout` for connecting and answering.
pub async fn check(addr: &str, service: &str, timeout: Duration) -> anyhow::Result<ServingStatus> {
    let url = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
    let endpoint = Endpoint::from_shared(url.clone())
        .with_context(|| format!("{addr:?} is not an address: use host:port"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let channel = endpoint.connect().await.with_context(|| format!("nothing answers at {url}"))?;
    let resp = HealthClient::new(channel)
        .check(HealthCheckRequest { service: service.to_string() })
        .await
        .map_err(|s| anyhow::anyhow!("health check at {url} failed: {:?}: {}", s.code(), s.message()))?;
    Ok(resp.into_inner().status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_what_a_real_health_service_says() {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter.set_service_status("codeintel.v1.VectorService", tonic_health::ServingStatus::NotServing).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let t = Duration::from_secs(2);
        assert_eq!(check(&addr, "", t).await.unwrap(), ServingStatus::Serving);
        assert_eq!(check(&addr, "codeintel.v1.VectorService", t).await.unwrap(), ServingStatus::NotServing);
        reporter
            .set_serving::<tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>>()
            .await;
        let e = check(&addr, "no.such.Service", t).await.unwrap_err();
        assert!(e.to_string().contains("NotFound"), "{e}");
        server.abort();
        let e = check("127.0.0.1:1", "", t).await.unwrap_err();
        assert!(e.to_string().contains("nothing answers at http://127.0.0.1:1"), "{e}");
    }
}
