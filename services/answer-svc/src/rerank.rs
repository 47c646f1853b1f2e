//! Second-stage reranking through a rerank server, in the wire shapes vLLM serves for a
//! cross-encoder: `POST /rerank` (Jina/Cohere: `query`, `documents`, `top_n`; results carry
//! `index` and `relevance_score`), and `POST /score` (`text_1`, `text_2`; `data[].index`,
//! `data[].score`) for servers that have no `/rerank`.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum RerankError {
    #[error("no answer within {0} ms")]
    Timeout(u128),
    #[error("{0}")]
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct RerankClient {
    http: reqwest::Client,
    base: String,
    pub model: String,
}

#[derive(Deserialize)]
struct RerankResponse {
    results: Vec<RerankResult>,
}

#[derive(Deserialize)]
struct RerankResult {
    index: usize,
    relevance_score: f32,
}

#[derive(Deserialize)]
struct ScoreResponse {
    data: Vec<ScoreResult>,
}

#[derive(Deserialize)]
struct ScoreResult {
    index: usize,
    score: f32,
}

/// Scores per document index, best first, and the endpoint that produced them.
#[derive(Debug, Clone, PartialEq)]
pub struct Reranked {
    pub order: Vec<(usize, f32)>,
    pub endpoint: &'static str,
}

impl RerankClient {
    pub fn new(base_url: &str, model: &str, tls: &codeintel_config::TlsConfig) -> anyhow::Result<Self> {
        let http = codeintel_models::http_client(tls)
            .map_err(anyhow::Error::msg)?
            .connect_timeout(Duration::from_secs(1))
            .build()?;
        Ok(Self { http, base: base_url.trim_end_matches('/').to_string(), model: model.to_string() })
    }

    /// Reranks `documents` for `query` within `deadline`.
    pub async fn rerank(&self, query: &str, documents: &[String], deadline: Duration) -> Result<Reranked, RerankError> {
        match tokio::time::timeout(deadline, self.call(query, documents)).await {
            Ok(r) => r,
            Err(_) => Err(RerankError::Timeout(deadline.as_millis())),
        }
    }

    async fn call(&self, query: &str, documents: &[String]) -> Result<Reranked, RerankError> {
        let url = format!("{}/rerank", self.base);
        let body = serde_json::json!({
            "model": self.model,
            "query": query,
            "documents": documents,
            "top_n": documents.len(),
        });
        let resp =
            self.http.post(&url).json(&body).send().await.map_err(|e| RerankError::Failed(format!("{url}: {e}")))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::METHOD_NOT_ALLOWED {
            return self.score(query, documents).await;
        }
        let text = resp.text().await.map_err(|e| RerankError::Failed(format!("{url}: {e}")))?;
        if !status.is_success() {
            return Err(RerankError::Failed(format!("{url} answered http {status}: {}", clip(&text))));
        }
        let r: RerankResponse = serde_json::from_str(&text)
            .map_err(|e| RerankError::Failed(format!("{url}: unexpected response ({e}): {}", clip(&text))))?;
        let order = r.results.into_iter().map(|r| (r.index, r.relevance_score)).collect();
        finish(order, documents.len(), "/rerank")
    }

    async fn score(&self, query: &str, documents: &[String]) -> Result<Reranked, RerankError> {
        let url = format!("{}/score", self.base);
        let body = serde_json::json!({ "model": self.model, "text_1": query, "text_2": documents });
        let resp =
            self.http.post(&url).json(&body).send().await.map_err(|e| RerankError::Failed(format!("{url}: {e}")))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| RerankError::Failed(format!("{url}: {e}")))?;
        if !status.is_success() {
            return Err(RerankError::Failed(format!("{url} answered http {status}: {}", clip(&text))));
        }
        let r: ScoreResponse = serde_json::from_str(&text)
            .map_err(|e| RerankError::Failed(format!("{url}: unexpected response ({e}): {}", clip(&text))))?;
        let order = r.data.into_iter().map(|r| (r.index, r.score)).collect();
        finish(order, documents.len(), "/score")
    }
}

fn clip(s: &str) -> String {
    s.chars().take(300).collect()
}

/// Validates indexes (each once, in range), sorts best first; documents the server left out
/// keep their fusion order after the scored ones.
fn finish(mut order: Vec<(usize, f32)>, n: usize, endpoint: &'static str) -> Result<Reranked, RerankError> {
    let mut seen = vec![false; n];
    for (i, _) in &order {
        if *i >= n || std::mem::replace(&mut seen[*i], true) {
            return Err(RerankError::Failed(format!("{endpoint} returned index {i} for {n} documents")));
        }
    }
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let floor = order.last().map(|o| o.1).unwrap_or(0.0);
    order.extend((0..n).filter(|i| !seen[*i]).map(|i| (i, floor)));
    Ok(Reranked { order, endpoint })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_sort_best_first_and_bad_indexes_are_rejected() {
        let r = finish(vec![(0, 0.1), (2, 0.9), (1, 0.5)], 3, "/rerank").unwrap();
        assert_eq!(r.order.iter().map(|o| o.0).collect::<Vec<_>>(), vec![2, 1, 0]);
        let r = finish(vec![(1, 0.7)], 3, "/rerank").unwrap();
        assert_eq!(r.order.iter().map(|o| o.0).collect::<Vec<_>>(), vec![1, 0, 2], "unscored keep fusion order");
        assert!(finish(vec![(3, 0.1)], 3, "/rerank").is_err());
        assert!(finish(vec![(1, 0.1), (1, 0.2)], 3, "/score").is_err());
    }

    #[test]
    fn vllm_response_shapes_parse() {
        // Shapes from vLLM's documented /rerank and /score responses.
        let rr: RerankResponse = serde_json::from_str(
            r#"{"id":"rerank-1","model":"BAAI/bge-reranker-base","usage":{"total_tokens":56},
               "results":[{"index":1,"document":{"text":"Paris"},"relevance_score":0.99},
                          {"index":0,"document":{"text":"Berlin"},"relevance_score":0.01}]}"#,
        )
        .unwrap();
        assert_eq!((rr.results[0].index, rr.results[0].relevance_score), (1, 0.99));
        let sr: ScoreResponse = serde_json::from_str(
            r#"{"id":"score-1","object":"list","created":1,"model":"BAAI/bge-reranker-v2-m3",
               "data":[{"index":0,"object":"score","score":0.0010},{"index":1,"object":"score","score":1.0}],
               "usage":{"prompt_tokens":30,"total_tokens":30}}"#,
        )
        .unwrap();
        assert_eq!((sr.data[1].index, sr.data[1].score), (1, 1.0));
    }
}
