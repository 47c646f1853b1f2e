//! The answer-svc client every command uses (`ask`, `search`, `eval`, `bench`): the bearer
//! token from `CODEINTEL_TOKEN` on every request when it is set (never a flag: command lines
//! are visible to every user of the host).

use std::time::Duration;

use anyhow::Context;
use codeintel_core::proto::v1::answer_service_client::AnswerServiceClient;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Environment variable holding the caller's bearer token.
pub const TOKEN_ENV: &str = "CODEINTEL_TOKEN";

/// Adds `authorization: Bearer <token>` to each request when a token is set.
#[derive(Clone, Default)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl Bearer {
    /// The token of [`TOKEN_ENV`], if set.
    pub fn from_env() -> anyhow::Result<Self> {
        match std::env::var(TOKEN_ENV) {
            Ok(t) if !t.trim().is_empty() => Ok(Bearer(Some(
                format!("Bearer {}", t.trim())
                    .parse()
                    .with_context(|| format!("{TOKEN_ENV} must be printable ASCII"))?,
            ))),
            _ => Ok(Bearer(None)),
        }
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub type AnswerClient = AnswerServiceClient<InterceptedService<Channel, Bearer>>;

/// Connects to answer-svc at `addr` (`host:port` or a URL), over TLS when `tls.ca` is set.
pub async fn connect(addr: &str, tls: &codeintel_config::TlsConfig) -> anyhow::Result<AnswerClient> {
    let url = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
    let url = codeintel_server::tls::scheme(tls, &url);
    let mut endpoint =
        Endpoint::from_shared(url.clone()).with_context(|| format!("{addr:?} is not an address: use host:port"))?;
    let host = endpoint.uri().host().unwrap_or("localhost").to_string();
    if let Some(t) = codeintel_server::tls::client(tls, &host)? {
        endpoint = endpoint.tls_config(t)?;
    }
    let ch = endpoint
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .with_context(|| format!("answer-svc is not reachable at {url}: start the mesh with `codeintel up`"))?;
    Ok(AnswerServiceClient::with_interceptor(ch, Bearer::from_env()?).max_decoding_message_size(64 << 20))
}
