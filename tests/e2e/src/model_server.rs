//! A scripted stand-in for an external model server (vLLM's OpenAI-compatible API), for fault
//! tests: a real HTTP/1.1 server on a loopback port that stalls, trickles a stream, or answers
//! rerank requests, and records what it saw (requests, and when a client closed a stream).
//! answer-svc talks to it over real sockets exactly as it would to vLLM.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Read the request and never answer (the connection stays open).
    Stall,
    /// Answer a chat completion with an SSE stream of one token every `every`, without end,
    /// until the client goes away.
    Trickle { every: Duration },
    /// `POST /rerank` answers 404; `POST /score` scores document i with i (so the last ranks
    /// first).
    ScoreReversed,
    /// Answers every request with this status line, content type and body (garbage, errors).
    Respond { status: &'static str, content_type: &'static str, body: String },
}

#[derive(Default)]
pub struct Seen {
    pub requests: AtomicUsize,
    /// Set when a client closed a stream this server was still writing.
    pub client_closed: AtomicBool,
    /// Paths requested, in order.
    pub paths: std::sync::Mutex<Vec<String>>,
}

pub struct ModelServer {
    pub url: String,
    pub seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ModelServer {
    pub async fn start(behaviour: Behaviour) -> ModelServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (b, s) = (behaviour.clone(), s.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, b, s).await;
                });
            }
        });
        ModelServer { url, seen, task }
    }
}

/// Reads one request: (path, body).
async fn read_request(conn: &mut TcpStream) -> std::io::Result<(String, String)> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut tmp).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    Ok((path, String::from_utf8_lossy(&buf[head_end..]).to_string()))
}

async fn respond(conn: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    respond_as(conn, status, "application/json", body).await
}

async fn respond_as(conn: &mut TcpStream, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    let msg = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(msg.as_bytes()).await
}

async fn serve(mut conn: TcpStream, behaviour: Behaviour, seen: Arc<Seen>) -> std::io::Result<()> {
    let (path, body) = read_request(&mut conn).await?;
    seen.requests.fetch_add(1, Ordering::SeqCst);
    seen.paths.lock().expect("paths lock").push(path.clone());
    match behaviour {
        Behaviour::Stall => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        }
        Behaviour::Trickle { every } => {
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                .await?;
            for i in 0.. {
                let event = format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{i} \"}}}}]}}\n\n");
                let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                if conn.write_all(chunk.as_bytes()).await.is_err() || conn.flush().await.is_err() {
                    seen.client_closed.store(true, Ordering::SeqCst);
                    return Ok(());
                }
                // A closed peer shows up as a readable EOF (or reset) before writes fail.
                let mut probe = [0u8; 1];
                if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(every, conn.read(&mut probe)).await {
                    seen.client_closed.store(true, Ordering::SeqCst);
                    return Ok(());
                }
            }
            Ok(())
        }
        Behaviour::Respond { status, content_type, body } => respond_as(&mut conn, status, content_type, &body).await,
        Behaviour::ScoreReversed => {
            if path == "/rerank" {
                return respond(&mut conn, "404 Not Found", r#"{"detail":"Not Found"}"#).await;
            }
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let n = v["text_2"].as_array().map_or(0, |a| a.len());
            let data: Vec<serde_json::Value> =
                (0..n).map(|i| serde_json::json!({"index": i, "object": "score", "score": i as f64})).collect();
            let out = serde_json::json!({"id": "score-1", "object": "list", "data": data});
            respond(&mut conn, "200 OK", &out.to_string()).await
        }
    }
}
