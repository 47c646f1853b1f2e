//! The models CodeIntel runs on the CPU, loaded from local files that packages ship: the
//! sentence [`embed`]der (candle, or a remote `/v1/embeddings` server), the SPLADE [`sparse`]
//! encoder, and the local [`chat`] model (SmolLM2 GGUF) behind `codeintel models serve`.

pub mod cache;
pub mod chat;
pub mod embed;
pub mod onnx;
pub mod rerank;
pub mod sparse;

/// An HTTP client builder for the model servers (embeddings, rerank, chat): the public roots
/// reqwest trusts, plus `tls.ca` when set, and `tls.cert`/`tls.key` as the client certificate
/// when a CA is set (mutual TLS with `codeintel models serve --set tls.http_client_auth=true`).
pub fn http_client(t: &codeintel_config::TlsConfig) -> Result<reqwest::ClientBuilder, String> {
    let mut b = reqwest::Client::builder();
    if t.calls() {
        let read =
            |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("cannot read {} (tls.*): {e}", p.display()));
        let ca =
            reqwest::Certificate::from_pem(&read(&t.ca)?).map_err(|e| format!("tls.ca {}: {e}", t.ca.display()))?;
        b = b.add_root_certificate(ca);
        if t.serves() {
            let mut pem = read(&t.cert)?;
            pem.push(b'\n');
            pem.extend(read(&t.key)?);
            b = b.identity(reqwest::Identity::from_pem(&pem).map_err(|e| format!("tls.cert/tls.key: {e}"))?);
        }
    }
    Ok(b)
}

/// Threads this process's local encoders (candle) use: sets `RAYON_NUM_THREADS` and
/// `CANDLE_NUM_THREADS`, which candle reads once, unless the environment already sets one of
/// them. Call it first in `main`, before any thread is started; `0` keeps candle's default
/// (every physical core).
pub fn set_encoder_threads(n: usize) {
    if n == 0 || std::env::var_os("RAYON_NUM_THREADS").is_some() || std::env::var_os("CANDLE_NUM_THREADS").is_some() {
        return;
    }
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
}
