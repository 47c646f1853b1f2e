//! `codeintel models serve` over real HTTP on loopback, driven by the same clients the services
//! use against vLLM.

use std::sync::Arc;
use std::time::Duration;

use codeintel::models::{serve, Models};
use codeintel_config::Config;
use codeintel_models::embed::{Embedder, RemoteEmbedder};

async fn start() -> (String, Embedder) {
    let mut cfg = Config::default();
    cfg.embed.workers = 1;
    let embedder = Embedder::from_config(&cfg, 0, codeintel_models::embed::Role::Documents).await.unwrap();
    let models = Arc::new(Models { embedder: embedder.clone(), model_id: cfg.embed.model_id.clone(), chat: None });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, models, Default::default()));
    (url, embedder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_embeddings_match_in_process_ones() {
    let (url, local) = start().await;
    // One request of all three texts: the server then embeds the batch the process does (the
    // int8 document graph scales a batch's activations together, so other batches differ a little).
    let remote = RemoteEmbedder::new(&url, "m", 3, Duration::from_secs(30), &Default::default()).unwrap();
    let texts: Vec<String> = ["fn parse_header(s: &str)", "how are sessions refreshed", "def compute_total(cart): ..."]
        .map(String::from)
        .into();
    let a = local.embed(texts.clone()).await.unwrap();
    let b = remote.embed(&texts).await.unwrap();
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.len(), 384);
        let diff = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "served and in-process embeddings differ by {diff}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_and_rerank_put_the_relevant_snippet_first() {
    let (url, _) = start().await;
    let docs = vec![
        "def render_sidebar(theme):\n    return html.div(theme.colors)".to_string(),
        "def refresh_session_token(session):\n    session.token = issue_token(session.user)\n    return session"
            .to_string(),
    ];
    // /rerank through answer-svc's client.
    let c = answer_svc::rerank::RerankClient::new(&url, "m", &Default::default()).unwrap();
    let r = c.rerank("refresh the session token", &docs, Duration::from_secs(30)).await.unwrap();
    assert_eq!(r.endpoint, "/rerank");
    assert_eq!(r.order[0].0, 1, "{:?}", r.order);
    assert!(r.order[0].1 > r.order[1].1);
    // /score in vLLM's request and response shape.
    let resp: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/score"))
        .json(&serde_json::json!({"model": "m", "text_1": "refresh the session token", "text_2": docs}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let s: Vec<f64> = resp["data"].as_array().unwrap().iter().map(|d| d["score"].as_f64().unwrap()).collect();
    assert!(s[1] > s[0], "{resp}");
    // Bad input is a 400 with a reason, not a crash.
    let bad = reqwest::Client::new()
        .post(format!("{url}/rerank"))
        .json(&serde_json::json!({"query": "q", "documents": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

/// `make certs` into `dir` (the project's script, openssl).
fn certs(dir: &std::path::Path) -> codeintel_config::TlsConfig {
    let script = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .join("../scripts/certs.sh");
    let out = std::process::Command::new("bash").arg(&script).arg(dir).output().unwrap();
    assert!(out.status.success(), "make certs failed: {}", String::from_utf8_lossy(&out.stderr));
    codeintel_config::TlsConfig {
        cert: dir.join("mesh.pem"),
        key: dir.join("mesh-key.pem"),
        ca: dir.join("ca.pem"),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_serve_speaks_tls_and_can_require_client_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let tls = certs(tmp.path());
    let mut cfg = Config::default();
    cfg.embed.workers = 1;
    let embedder = Embedder::from_config(&cfg, 0, codeintel_models::embed::Role::Documents).await.unwrap();
    let models = Arc::new(Models { embedder, model_id: cfg.embed.model_id.clone(), chat: None });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let strict = codeintel_config::TlsConfig { http_client_auth: true, ..tls.clone() };
    tokio::spawn(serve(listener, models, strict));
    let url = format!("https://localhost:{port}");
    let texts = vec!["fn parse_header(s: &str)".to_string()];
    // The services' own client, trusting the CA and presenting the mesh certificate.
    let remote = RemoteEmbedder::new(&url, "m", 2, Duration::from_secs(30), &tls).unwrap();
    assert_eq!(remote.embed(&texts).await.unwrap()[0].len(), 384);
    // Trusting the CA but with no client certificate: refused in the handshake.
    let ca_only = codeintel_config::TlsConfig { ca: tls.ca.clone(), ..Default::default() };
    let anonymous = RemoteEmbedder::new(&url, "m", 2, Duration::from_secs(30), &ca_only).unwrap();
    assert!(anonymous.embed(&texts).await.is_err(), "a client without a certificate was served");
    // Plaintext to a TLS port gets nothing.
    let plain = RemoteEmbedder::new(&format!("http://127.0.0.1:{port}"), "m", 2, Duration::from_secs(5), &tls).unwrap();
    assert!(plain.embed(&texts).await.is_err());
}
