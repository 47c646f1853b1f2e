//! `codeintel models serve`: the local models behind the same HTTP shapes vLLM serves, so that
//! a CPU-only deployment runs this as its own pod and the services' clients work unchanged
//! against it or against vLLM on GPUs.
//!
//! * `POST /v1/embeddings` (OpenAI): the configured embedder (MiniLM in process by default).
//! * `POST /score` (vLLM: `text_1`, `text_2`) and `POST /rerank` (Jina/Cohere: `query`,
//!   `documents`, `top_n`): cosine similarity of the embeddings, which is what vLLM computes
//!   when an embedding model (not a cross-encoder) backs these endpoints. No cross-encoder
//!   ships in a package reachable here, and this server does not pretend to be one.
//! * `POST /v1/chat/completions` (OpenAI): the local chat model ([`crate::chat`], SmolLM2 by
//!   default), streamed as server-sent events with `stream: true` (a role chunk, one chunk per
//!   piece of text, a chunk with `finish_reason`, a usage-only chunk with empty `choices` when
//!   `stream_options.include_usage` is set, then `data: [DONE]`), or one JSON body. A client
//!   that disconnects stops generation. Without a chat model it answers 503.
//! * `GET /v1/models`, `GET /health`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use codeintel_models::embed::Embedder;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use crate::chat::{render_chatml, ChatMessage, ChatModel, GenParams};

pub struct Models {
    pub embedder: Embedder,
    pub model_id: String,
    /// The chat model and the id it is served under.
    pub chat: Option<(Arc<ChatModel>, String)>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body =
        json!({"object": "error", "message": message.into(), "type": "BadRequestError", "code": status.as_u16()});
    (status, Json(body)).into_response()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
struct EmbeddingsRequest {
    input: OneOrMany,
}

#[derive(Deserialize)]
struct ScoreRequest {
    text_1: String,
    text_2: OneOrMany,
}

#[derive(Deserialize)]
struct RerankRequest {
    query: String,
    documents: Vec<String>,
    top_n: Option<usize>,
}

/// At most this many texts per request (vLLM's own limits are configurable; ours are fixed).
const MAX_TEXTS: usize = 1024;

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl Models {
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, Response> {
        if texts.is_empty() || texts.len() > MAX_TEXTS {
            return Err(error(StatusCode::BAD_REQUEST, format!("send 1 to {MAX_TEXTS} texts, got {}", texts.len())));
        }
        self.embedder.embed(texts).await.map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    }

    /// Cosine similarity of `query` with each document (vectors are L2-normalised).
    async fn scores(&self, query: String, docs: Vec<String>) -> Result<Vec<f32>, Response> {
        if docs.is_empty() {
            return Err(error(StatusCode::BAD_REQUEST, "no documents to score"));
        }
        let n = docs.len();
        let mut texts = vec![query];
        texts.extend(docs);
        let v = self.embed(texts).await?;
        Ok((0..n).map(|i| dot(&v[0], &v[i + 1])).collect())
    }
}

async fn embeddings(State(m): State<Arc<Models>>, Json(req): Json<EmbeddingsRequest>) -> Response {
    match m.embed(req.input.into_vec()).await {
        Ok(vs) => Json(json!({
            "object": "list",
            "model": m.model_id,
            "data": vs.iter().enumerate().map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v})).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(r) => r,
    }
}

async fn score(State(m): State<Arc<Models>>, Json(req): Json<ScoreRequest>) -> Response {
    match m.scores(req.text_1, req.text_2.into_vec()).await {
        Ok(s) => Json(json!({
            "id": format!("score-{}", codeintel_index::manifest::now_unix_ms()),
            "object": "list",
            "model": m.model_id,
            "data": s.iter().enumerate().map(|(i, s)| json!({"index": i, "object": "score", "score": s})).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(r) => r,
    }
}

async fn rerank(State(m): State<Arc<Models>>, Json(req): Json<RerankRequest>) -> Response {
    let docs = req.documents.clone();
    match m.scores(req.query, req.documents).await {
        Ok(s) => {
            let mut order: Vec<usize> = (0..s.len()).collect();
            order.sort_by(|a, b| s[*b].total_cmp(&s[*a]).then(a.cmp(b)));
            order.truncate(req.top_n.unwrap_or(s.len()));
            Json(json!({
                "id": format!("rerank-{}", codeintel_index::manifest::now_unix_ms()),
                "model": m.model_id,
                "results": order.iter().map(|&i| json!({"index": i, "document": {"text": docs[i]}, "relevance_score": s[i]})).collect::<Vec<_>>(),
            }))
            .into_response()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
struct ChatRequest {
    messages: Vec<ChatMessage>,
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<u64>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
}

/// Completion tokens when the request does not say.
const DEFAULT_MAX_TOKENS: usize = 256;

fn sse(v: &serde_json::Value) -> String {
    format!("data: {v}\n\n")
}

fn log_stats(st: &crate::chat::GenStats) {
    tracing::info!(
        prompt_tokens = st.prompt_tokens,
        completion_tokens = st.completion_tokens,
        prefill_s = st.prefill_s,
        decode_s = st.decode_s,
        "chat completion"
    );
}

async fn chat_completions(State(m): State<Arc<Models>>, Json(req): Json<ChatRequest>) -> Response {
    let Some((model, id)) = m.chat.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this model server has no chat model loaded (see models.chat_gguf); point answer.llm_url at vLLM",
        );
    };
    if req.messages.is_empty() {
        return error(StatusCode::BAD_REQUEST, "messages is empty");
    }
    let params = GenParams {
        max_tokens: req.max_completion_tokens.or(req.max_tokens).unwrap_or(DEFAULT_MAX_TOKENS).max(1),
        temperature: req.temperature.unwrap_or(0.0).max(0.0),
        top_p: req.top_p.filter(|p| *p > 0.0 && *p < 1.0),
        seed: req.seed.unwrap_or(299_792_458),
    };
    let prompt = render_chatml(&req.messages);
    let created = codeintel_index::manifest::now_unix_ms() / 1000;
    let cid = format!("chatcmpl-{}", codeintel_index::manifest::now_unix_ms());
    let chunk = {
        let (cid, id) = (cid.clone(), id.clone());
        move |delta: serde_json::Value, finish: Option<&str>| {
            json!({"id": cid, "object": "chat.completion.chunk", "created": created, "model": id,
                   "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
        }
    };
    if !req.stream {
        let (model, prompt) = (model.clone(), prompt.clone());
        let res = tokio::task::spawn_blocking(move || {
            let mut text = String::new();
            model
                .generate(
                    &prompt,
                    &params,
                    || true,
                    |piece| {
                        text.push_str(piece);
                        true
                    },
                )
                .map(|st| {
                    log_stats(&st);
                    (text, st)
                })
        })
        .await;
        return match res {
            Ok(Ok((text, st))) => Json(json!({
                "id": cid, "object": "chat.completion", "created": created, "model": id,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": st.finish.reason()}],
                "usage": {"prompt_tokens": st.prompt_tokens, "completion_tokens": st.completion_tokens,
                          "total_tokens": st.prompt_tokens + st.completion_tokens},
            }))
            .into_response(),
            Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e.to_string()),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    }
    let include_usage = req.stream_options.map(|o| o.include_usage).unwrap_or(false);
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(64);
    tokio::task::spawn_blocking(move || {
        let send = |s: String| tx.blocking_send(s).is_ok();
        if !send(sse(&chunk(json!({"role": "assistant", "content": ""}), None))) {
            return;
        }
        let alive = || !tx.is_closed();
        match model.generate(&prompt, &params, alive, |piece| send(sse(&chunk(json!({"content": piece}), None)))) {
            Ok(st) => {
                if st.finish == crate::chat::Finish::Cancelled {
                    tracing::info!(tokens = st.completion_tokens, "chat client went away; generation stopped");
                    return;
                }
                log_stats(&st);
                let _ = send(sse(&chunk(json!({}), Some(st.finish.reason()))));
                if include_usage {
                    let _ = send(sse(&json!({"id": cid, "object": "chat.completion.chunk", "created": created,
                        "model": id, "choices": [],
                        "usage": {"prompt_tokens": st.prompt_tokens, "completion_tokens": st.completion_tokens,
                                  "total_tokens": st.prompt_tokens + st.completion_tokens}})));
                }
            }
            Err(e) => {
                // vLLM reports a failure inside an open stream as an error object.
                let _ = send(sse(
                    &json!({"object": "error", "message": e.to_string(), "type": "BadRequestError", "code": 400}),
                ));
            }
        }
        let _ = send("data: [DONE]\n\n".to_string());
    });
    let body =
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

pub fn router(models: Arc<Models>) -> Router {
    let mut ids = vec![models.model_id.clone()];
    ids.extend(models.chat.as_ref().map(|(_, id)| id.clone()));
    Router::new()
        .route("/v1/embeddings", post(embeddings))
        .route("/score", post(score))
        .route("/rerank", post(rerank))
        .route("/v1/rerank", post(rerank))
        .route("/v1/chat/completions", post(chat_completions))
        .route(
            "/v1/models",
            get(move || async move {
                let data: Vec<_> = ids.iter().map(|id| json!({"id": id, "object": "model"})).collect();
                Json(json!({"object": "list", "data": data}))
            }),
        )
        .route("/health", get(|| async { StatusCode::OK }))
        .with_state(models)
}

/// Serves until Ctrl-C or SIGTERM, over TLS when `tls.cert` is set.
pub async fn serve(
    listener: tokio::net::TcpListener,
    models: Arc<Models>,
    tls: codeintel_config::TlsConfig,
) -> anyhow::Result<()> {
    codeintel_server::serve_app(listener, router(models), &tls, codeintel_server::shutdown_signal()).await
}
