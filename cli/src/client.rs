//! The answer-svc client every command uses (`ask`, `search`, `eval`, `bench`): the bearer
//! token from `CODEINTEL_TOKEN` on every request when it is set (never a flag: command lines
//! are visible to every user of the host).

use std::time::Duration;

use anyhow::Context;
use codeintel_core::proto::v1::answer_service_client::AnswerServiceClient;
use codeintel_core::proto::v1::navigation_service_client::NavigationServiceClient;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Environment variable holding the caller's bearer token.
pub const TOKEN_ENV: &str = "CODEINTEL_TOKEN";

/// Adds `authorization: Bearer <token>` to each request when a token is set.
#[derive(Clone, Default)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl Bearer {
    /// `Authorization` header value as received (`Bearer …`), passed on unchanged.
    pub fn header(value: &str) -> anyhow::Result<Self> {
        Ok(Bearer(Some(value.parse().context("the authorization header must be printable ASCII")?)))
    }

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

pub type NavClient = NavigationServiceClient<InterceptedService<Channel, Bearer>>;

/// The endpoint of answer-svc at `addr` (`host:port` or a URL), over TLS when `tls.ca` is set.
fn endpoint(addr: &str, tls: &codeintel_config::TlsConfig) -> anyhow::Result<(Endpoint, String)> {
    let url = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
    let url = codeintel_server::tls::scheme(tls, &url);
    let mut endpoint =
        Endpoint::from_shared(url.clone()).with_context(|| format!("{addr:?} is not an address: use host:port"))?;
    let host = endpoint.uri().host().unwrap_or("localhost").to_string();
    if let Some(t) = codeintel_server::tls::client(tls, &host)? {
        endpoint = endpoint.tls_config(t)?;
    }
    Ok((endpoint.connect_timeout(Duration::from_secs(2)), url))
}

/// A connected channel to answer-svc at `addr`.
pub async fn channel(addr: &str, tls: &codeintel_config::TlsConfig) -> anyhow::Result<Channel> {
    let (endpoint, url) = endpoint(addr, tls)?;
    endpoint
        .connect()
        .await
        .with_context(|| format!("answer-svc is not reachable at {url}: start the mesh with `codeintel up`"))
}

/// A channel to answer-svc that connects on first use (and again after a failure), for a
/// long-running client such as `codeintel mcp` that must start before the mesh does.
pub fn lazy_channel(addr: &str, tls: &codeintel_config::TlsConfig) -> anyhow::Result<Channel> {
    Ok(endpoint(addr, tls)?.0.connect_lazy())
}

/// The answer-svc client over `ch`, with the bearer token `bearer`.
pub fn answer_client(ch: Channel, bearer: Bearer) -> AnswerClient {
    AnswerServiceClient::with_interceptor(ch, bearer).max_decoding_message_size(64 << 20)
}

/// The navigation client over `ch`, with the bearer token `bearer`.
pub fn nav_client(ch: Channel, bearer: Bearer) -> NavClient {
    NavigationServiceClient::with_interceptor(ch, bearer).max_decoding_message_size(64 << 20)
}

/// Connects to answer-svc at `addr` (`host:port` or a URL), over TLS when `tls.ca` is set.
pub async fn connect(addr: &str, tls: &codeintel_config::TlsConfig) -> anyhow::Result<AnswerClient> {
    Ok(answer_client(channel(addr, tls).await?, Bearer::from_env()?))
}

/// Connects the navigation client to answer-svc at `addr`.
pub async fn connect_nav(addr: &str, tls: &codeintel_config::TlsConfig) -> anyhow::Result<NavClient> {
    Ok(nav_client(channel(addr, tls).await?, Bearer::from_env()?))
}
