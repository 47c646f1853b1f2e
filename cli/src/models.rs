//! `codeintel models serve`: the local models behind the same HTTP shapes vLLM serves, so that
//! a CPU-only deployment runs this as its own pod and the services' clients work unchanged
//! against it or against vLLM on GPUs.
//!
//! * `POST /v1/embeddings` (OpenAI): the configured embedder (MiniLM in process by default).
//! * `POST /score` (vLLM: `text_1`, `text_2`) and `POST /rerank` (Jina/Cohere: `query`,
//!   `documents`, `top_n`): cosine similarity of the embeddings, which is what vLLM computes
//!   when an embedding model (not a cross-encoder) backs these endpoints. No cross-encoder
//!   ships in a package reachable here, and this server does not pretend to be one.
//! * `GET /v1/models`, `GET /health`.
//!
//! Chat completions (SmolLM2) are not served yet: `/v1/chat/completions` answers 501.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use codeintel_core::embed::Embedder;
use serde::Deserialize;
use serde_json::json;

pub struct Models {
    pub embedder: Embedder,
    pub model_id: String,
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
            "id": format!("score-{}", codeintel_core::manifest::now_unix_ms()),
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
                "id": format!("rerank-{}", codeintel_core::manifest::now_unix_ms()),
                "model": m.model_id,
                "results": order.iter().map(|&i| json!({"index": i, "document": {"text": docs[i]}, "relevance_score": s[i]})).collect::<Vec<_>>(),
            }))
            .into_response()
        }
        Err(r) => r,
    }
}

pub fn router(models: Arc<Models>) -> Router {
    let id = models.model_id.clone();
    Router::new()
        .route("/v1/embeddings", post(embeddings))
        .route("/score", post(score))
        .route("/rerank", post(rerank))
        .route("/v1/rerank", post(rerank))
        .route(
            "/v1/chat/completions",
            post(|| async {
                error(
                    StatusCode::NOT_IMPLEMENTED,
                    "this model server has no chat model yet; point answer.llm_url at vLLM",
                )
            }),
        )
        .route(
            "/v1/models",
            get(move || async move { Json(json!({"object": "list", "data": [{"id": id, "object": "model"}]})) }),
        )
        .route("/health", get(|| async { StatusCode::OK }))
        .with_state(models)
}

/// Serves until the listener fails or the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, models: Arc<Models>) -> std::io::Result<()> {
    axum::serve(listener, router(models)).await
}
