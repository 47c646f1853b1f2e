//! The answer stream: citations, then tokens from the language model (or the extractive
//! answer), then limits, trace and done.

use std::time::{Duration, Instant};

use codeintel_core::proto::v1::answer_event::Event;
use codeintel_core::proto::v1::{
    AnswerEvent, AnswerRequest, Citation, Citations, Done, Limits, Scope, SearchMode, Token, Trace,
};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::retrievers::Chunk;
use crate::synthesis::{build_prompt, extractive_answer, ChatEvent};

use super::stages::{limit, stage};
use super::*;

impl Engine {
    pub(super) async fn run_answer(
        &self,
        req: AnswerRequest,
        (scope, scope_limits): (Scope, Vec<Limit>),
        top_k: u32,
        tx: mpsc::Sender<Result<AnswerEvent, tonic::Status>>,
    ) {
        let started = Instant::now();
        let send = |e: Event| {
            let tx = tx.clone();
            async move { tx.send(Ok(AnswerEvent { event: Some(e) })).await.is_ok() }
        };
        let budget_ms =
            if req.time_budget_ms == 0 { self.cfg.answer.time_budget_ms } else { req.time_budget_ms as u64 };
        let budget = Duration::from_millis(budget_ms);
        let default_n =
            self.parts.reranker.as_ref().and_then(|r| r.default_depth()).unwrap_or(self.cfg.answer.rerank_top_n);
        let rerank_n = if req.rerank_top_n == 0 { default_n } else { req.rerank_top_n };
        let r = match self.retrieve(&req.query, &scope, SearchMode::Hybrid, top_k, budget, rerank_n).await {
            Ok(r) => r,
            Err(e) => {
                // Nothing to cite: end the stream with the precise status (UNAVAILABLE naming the
                // services, DEADLINE_EXCEEDED, ...).
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        let citations: Vec<Citation> = r
            .hits
            .iter()
            .enumerate()
            .map(|(i, h)| Citation {
                index: i as u32 + 1,
                repo: h.chunk.repo.clone(),
                path: h.chunk.path.clone(),
                start_line: h.chunk.start_line,
                end_line: h.chunk.end_line,
                score: h.score,
                symbol: h.chunk.symbol.clone(),
                language: h.chunk.language.clone(),
                chunk_id: h.chunk.chunk_id,
                commit: h.chunk.commit.clone(),
                stale: h.chunk.stale,
            })
            .collect();
        if !send(Event::Citations(Citations { citations })).await {
            return;
        }
        let mut limits = scope_limits;
        limits.extend(r.limits);
        let mut stages = r.stages;
        let sources: Vec<Chunk> = r.hits.iter().map(|h| h.chunk.clone()).collect();
        let t = Instant::now();
        let mut ttft = 0.0;
        let mut tokens = 0u32;
        let mut synthesizer = "extractive".to_string();
        let mut streamed = false;
        let mut usage = None;
        let mut first_token_at: Option<Instant> = None;
        let mut last_token_at: Option<Instant> = None;
        if sources.is_empty() {
            limits.push(limit("no_results", "nothing in scope matched the question; widen the scope or rephrase"));
        } else if let Some(chat) = &self.chat {
            // Synthesis gets what is left of the budget; a model that misses it leaves the
            // retrieved code as the answer.
            let deadline = tokio::time::Instant::from_std(started + budget);
            let prompt = build_prompt(&req.query, &sources, self.cfg.answer.prompt_chars);
            match tokio::time::timeout_at(deadline, chat.stream(prompt)).await {
                Ok(Ok(stream)) => {
                    synthesizer = chat.model.clone();
                    let mut stream = std::pin::pin!(stream);
                    let limits_before = limits.len();
                    loop {
                        let item = match tokio::time::timeout_at(deadline, stream.next()).await {
                            Ok(Some(item)) => item,
                            Ok(None) => break,
                            Err(_) => {
                                let (code, what) = if streamed {
                                    ("synthesis_truncated", "stopped streaming at the time budget")
                                } else {
                                    ("synthesis_timeout", "sent no token within the time budget; showing the retrieved code instead")
                                };
                                limits.push(limit(code, format!("the language model {what} ({budget_ms} ms)")));
                                break;
                            }
                        };
                        match item {
                            Ok(ChatEvent::Token(text)) => {
                                if tokens == 0 {
                                    ttft = started.elapsed().as_secs_f64() * 1e3;
                                    first_token_at = Some(Instant::now());
                                }
                                last_token_at = Some(Instant::now());
                                tokens += 1;
                                streamed = true;
                                if !send(Event::Token(Token { text })).await {
                                    return;
                                }
                            }
                            Ok(ChatEvent::Usage(u)) => usage = Some(u),
                            Err(e) => {
                                limits.push(limit(
                                    "synthesis_interrupted",
                                    format!("the language model stream failed: {e}"),
                                ));
                                break;
                            }
                        }
                    }
                    if !streamed && limits.len() == limits_before {
                        limits.push(limit(
                            "synthesis_empty",
                            "the language model's stream ended without a token; showing the retrieved code instead",
                        ));
                    }
                }
                Ok(Err(e)) => limits.push(limit(
                    "synthesis_failed",
                    format!("the language model could not be reached ({e}); showing the retrieved code instead"),
                )),
                Err(_) => limits.push(limit(
                    "synthesis_timeout",
                    format!(
                        "the language model did not answer within the time budget ({budget_ms} ms); showing the retrieved code instead"
                    ),
                )),
            }
        } else {
            limits.push(limit(
                "extractive",
                "no language model is configured (set CODEINTEL__ANSWER__LLM_URL to an OpenAI-compatible server); the answer lists the retrieved code",
            ));
        }
        if !streamed && !sources.is_empty() {
            synthesizer = "extractive".into();
            for piece in extractive_answer(&req.query, &sources, 12) {
                if tokens == 0 {
                    ttft = started.elapsed().as_secs_f64() * 1e3;
                }
                tokens += 1;
                if !send(Event::Token(Token { text: piece })).await {
                    return;
                }
            }
        }
        stages.push(stage("synthesize", t));
        let cited: Vec<u64> = sources.iter().map(|c| c.chunk_id).collect();
        let kept_limits = limits.clone();
        if !limits.is_empty() && !send(Event::Limits(Limits { limits })).await {
            return;
        }
        let trace = Trace {
            stages,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
            retrievers: r.retrievers,
            ttft_ms: ttft,
            tokens,
            synthesizer,
            route: r.route,
            reranker: r.reranker,
            ranks: r.ranks,
            tokens_in: usage.map_or(0, |u: crate::synthesis::Usage| u.prompt_tokens),
            tokens_out: usage.map_or(if streamed { tokens } else { 0 }, |u| u.completion_tokens),
            tokens_per_second: match (first_token_at, last_token_at) {
                (Some(a), Some(b)) if b > a => {
                    usage.map_or(tokens, |u| u.completion_tokens) as f64 / (b - a).as_secs_f64()
                }
                _ => 0.0,
            },
        };
        self.metrics.stage("answer_total", trace.total_ms / 1e3);
        if let Some(sink) = &self.traces {
            sink.record(crate::traces::TraceRow {
                unix_ms: codeintel_core::now_unix_ms(),
                query: req.query.clone(),
                top_k,
                trace: trace.clone(),
                limits: kept_limits,
                cited,
            });
        }
        if send(Event::Trace(trace)).await {
            let _ = send(Event::Done(Done {})).await;
        }
    }
}
