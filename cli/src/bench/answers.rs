//! `codeintel bench answers`: time to citations, first token and end of `Answer` against a running mesh.

use std::collections::HashSet;
use std::time::Instant;

use serde::Serialize;

use super::Latency;

#[derive(Debug, Serialize)]
pub struct AnswerFigures {
    pub queries: usize,
    pub top_k: u32,
    pub rerank_top_n: u32,
    pub time_budget_ms: u32,
    /// Request sent -> the citations event.
    pub to_citations: Latency,
    /// Request sent -> the first answer token.
    pub to_first_token: Latency,
    /// Request sent -> the stream's end.
    pub total: Latency,
    /// Answers whose text came from a language model (the others were extractive).
    pub synthesized: usize,
    /// Limit codes reported, with how many answers had each.
    pub limits: std::collections::BTreeMap<String, usize>,
    pub mean_tokens_out: f64,
    /// Mean of the server-side `tokens_per_second` over synthesized answers.
    pub mean_tokens_per_second: f64,
    pub failed: usize,
}

/// `Answer` for each query (JSON lines with `query`), one at a time, against a running mesh.
pub async fn answers(
    client: &mut crate::client::AnswerClient,
    queries: &[String],
    top_k: u32,
    rerank_top_n: u32,
    time_budget_ms: u32,
) -> anyhow::Result<AnswerFigures> {
    use codeintel_core::proto::v1::answer_event::Event;
    use codeintel_core::proto::v1::AnswerRequest;
    let (mut cites, mut first, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut limits = std::collections::BTreeMap::new();
    let (mut synthesized, mut failed, mut tokens, mut tps) = (0usize, 0usize, 0u64, Vec::new());
    for q in queries {
        let t = Instant::now();
        let req = AnswerRequest { query: q.clone(), scope: None, top_k, rerank_top_n, time_budget_ms };
        let mut stream = match client.answer(req).await {
            Ok(s) => s.into_inner(),
            Err(e) => {
                eprintln!("{q}: {e}");
                failed += 1;
                continue;
            }
        };
        let (mut c, mut f) = (None, None);
        let mut seen = HashSet::new();
        loop {
            match stream.message().await {
                Ok(Some(ev)) => match ev.event {
                    Some(Event::Citations(_)) => c = c.or(Some(t.elapsed())),
                    Some(Event::Token(_)) => f = f.or(Some(t.elapsed())),
                    Some(Event::Limits(l)) => {
                        for l in l.limits {
                            if seen.insert(l.code.clone()) {
                                *limits.entry(l.code).or_insert(0) += 1;
                            }
                        }
                    }
                    Some(Event::Trace(tr)) if tr.synthesizer != "extractive" && tr.tokens_out > 0 => {
                        synthesized += 1;
                        tokens += tr.tokens_out as u64;
                        tps.push(tr.tokens_per_second);
                    }
                    _ => {}
                },
                Ok(None) => break,
                Err(e) => {
                    eprintln!("{q}: {e}");
                    failed += 1;
                    break;
                }
            }
        }
        total.push(t.elapsed());
        cites.extend(c);
        first.extend(f);
    }
    Ok(AnswerFigures {
        queries: queries.len(),
        top_k,
        rerank_top_n,
        time_budget_ms,
        to_citations: Latency::of(&mut cites),
        to_first_token: Latency::of(&mut first),
        total: Latency::of(&mut total),
        synthesized,
        limits,
        mean_tokens_out: if synthesized > 0 { tokens as f64 / synthesized as f64 } else { 0.0 },
        mean_tokens_per_second: if tps.is_empty() { 0.0 } else { tps.iter().sum::<f64>() / tps.len() as f64 },
        failed,
    })
}
