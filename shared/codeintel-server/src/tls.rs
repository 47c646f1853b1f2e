//! TLS from PEM files (`tls.*`, rustls through tonic): the server side every service serves
//! with, and the client side answer-svc (and the CLI) call with, mutual when a CA is set.

use std::path::Path;

use anyhow::Context;
use codeintel_config::TlsConfig;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {} (tls.*)", path.display()))
}

fn identity(t: &TlsConfig) -> anyhow::Result<Identity> {
    anyhow::ensure!(!t.key.as_os_str().is_empty(), "tls.cert is set but tls.key is not: they go together (PEM files)");
    Ok(Identity::from_pem(read(&t.cert, "certificate")?, read(&t.key, "private key")?))
}

/// The server's TLS, when `tls.cert` is set: with `tls.ca`, client certificates signed by it
/// are required (or optional with `tls.client_auth = false`).
pub fn server(t: &TlsConfig) -> anyhow::Result<Option<ServerTlsConfig>> {
    if !t.serves() {
        anyhow::ensure!(
            t.key.as_os_str().is_empty(),
            "tls.key is set but tls.cert is not: they go together (PEM files)"
        );
        return Ok(None);
    }
    let mut c = ServerTlsConfig::new().identity(identity(t)?);
    if t.calls() {
        c = c
            .client_ca_root(Certificate::from_pem(read(&t.ca, "CA certificate")?))
            .client_auth_optional(!t.client_auth);
    }
    Ok(Some(c))
}

/// The client's TLS for calls to `host`, when `tls.ca` is set: servers verified against it
/// (named `tls.domain`, else `host`), and `tls.cert` presented for mutual TLS when set.
pub fn client(t: &TlsConfig, host: &str) -> anyhow::Result<Option<ClientTlsConfig>> {
    if !t.calls() {
        return Ok(None);
    }
    let domain = if t.domain.is_empty() { host.trim_start_matches('[').trim_end_matches(']') } else { &t.domain };
    let mut c = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&t.ca, "CA certificate")?))
        .domain_name(domain.to_string());
    if t.serves() {
        c = c.identity(identity(t)?);
    }
    Ok(Some(c))
}

/// `url` with `https://` when this process calls over TLS (configured URLs may say `http://`).
pub fn scheme(t: &TlsConfig, url: &str) -> String {
    match url.strip_prefix("http://") {
        Some(rest) if t.calls() => format!("https://{rest}"),
        _ => url.to_string(),
    }
}

/// The rustls acceptor of the HTTP endpoints (`/metrics`, `/ready`, `codeintel models serve`)
/// when `tls.cert` is set: the same identity as the gRPC port; with `tls.ca`, client
/// certificates signed by it are verified when presented and required only with
/// `tls.http_client_auth`. ALPN offers HTTP/2 and HTTP/1.1.
pub fn http_acceptor(t: &TlsConfig) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    if !t.serves() {
        return Ok(None);
    }
    anyhow::ensure!(!t.key.as_os_str().is_empty(), "tls.cert is set but tls.key is not: they go together (PEM files)");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let pem_certs = |p: &Path, what: &str| -> anyhow::Result<Vec<CertificateDer<'static>>> {
        let certs = CertificateDer::pem_slice_iter(&read(p, what)?)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{what} {} is not PEM", p.display()))?;
        anyhow::ensure!(!certs.is_empty(), "{what} {} holds no certificate", p.display());
        Ok(certs)
    };
    let certs = pem_certs(&t.cert, "certificate")?;
    let key = PrivateKeyDer::from_pem_slice(&read(&t.key, "private key")?)
        .with_context(|| format!("private key {} is not a PEM private key", t.key.display()))?;
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = if t.calls() {
        let mut roots = rustls::RootCertStore::empty();
        for c in pem_certs(&t.ca, "CA certificate")? {
            roots.add(c).context("tls.ca holds a certificate rustls cannot use as a root")?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider);
        let verifier = if t.http_client_auth { verifier } else { verifier.allow_unauthenticated() };
        builder.with_client_cert_verifier(verifier.build()?)
    } else {
        builder.with_no_client_auth()
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .with_context(|| format!("tls.key {} does not match tls.cert {}", t.key.display(), t.cert.display()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg))))
}
