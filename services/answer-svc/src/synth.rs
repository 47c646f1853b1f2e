//! Answer synthesis: a prompt of numbered sources within a character budget, streamed through an
//! OpenAI-compatible `/v1/chat/completions` server (vLLM), or, with no model configured, an
//! extractive answer that lists the retrieved code.

use std::time::Duration;

use futures::{Stream, StreamExt};

use crate::backends::HydratedChunk;

pub const SYSTEM_PROMPT: &str = "You answer questions about a code base using only the numbered sources given. \
Cite every claim with its source number in brackets, like [1]. If the sources do not contain the answer, say so. Be concise.";

/// `repo/path:start-end`, the citation form used everywhere.
pub fn location(c: &HydratedChunk) -> String {
    format!("{}/{}:{}-{}", c.repo, c.path, c.start_line, c.end_line)
}

/// The user message: numbered sources (cut to fit `budget_chars` in total), then the question.
pub fn build_prompt(query: &str, sources: &[HydratedChunk], budget_chars: usize) -> String {
    let mut out = String::from("Sources:\n\n");
    let mut left = budget_chars;
    for (i, c) in sources.iter().enumerate() {
        if left < 200 {
            break;
        }
        let header = format!(
            "[{}] {}{}\n",
            i + 1,
            location(c),
            if c.symbol.is_empty() { String::new() } else { format!(" ({})", c.symbol) }
        );
        let mut code: String = c.text.chars().take(left.saturating_sub(header.len() + 16)).collect();
        if code.len() < c.text.len() {
            code.push_str("\n...");
        }
        left = left.saturating_sub(header.len() + code.len() + 16);
        out.push_str(&header);
        out.push_str(&format!("```{}\n{}\n```\n\n", c.language, code));
    }
    out.push_str(&format!("Question: {query}\nAnswer with citations:"));
    out
}

/// Pieces of an extractive answer, streamed as tokens: each source with its location and the
/// first lines of its code.
pub fn extractive_answer(query: &str, sources: &[HydratedChunk], lines_per_source: usize) -> Vec<String> {
    let mut out =
        vec![format!("Most relevant code for \"{query}\" (extractive answer: no language model configured):\n")];
    for (i, c) in sources.iter().enumerate() {
        let what = if c.symbol.is_empty() { c.kind.clone() } else { format!("{} `{}`", c.kind, c.symbol) };
        out.push(format!("\n[{}] {} {}\n", i + 1, location(c), what));
        let shown: Vec<&str> = c.text.lines().take(lines_per_source).collect();
        let more = c.text.lines().count().saturating_sub(shown.len());
        let mut block = format!("```{}\n{}\n", c.language, shown.join("\n"));
        if more > 0 {
            block.push_str(&format!("... ({more} more lines)\n"));
        }
        block.push_str("```\n");
        out.push(block);
    }
    out
}

#[derive(Debug, Clone)]
pub struct ChatClient {
    http: reqwest::Client,
    url: String,
    pub model: String,
    max_tokens: u32,
}

impl ChatClient {
    pub fn new(base_url: &str, model: &str, max_tokens: u32) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).build()?;
        Ok(Self {
            http,
            url: format!("{}/v1/chat/completions", base_url.trim_end_matches('/')),
            model: model.into(),
            max_tokens,
        })
    }

    /// Starts a streamed completion; yields content deltas as they arrive.
    pub async fn stream(&self, prompt: String) -> Result<impl Stream<Item = Result<String, String>> + use<>, String> {
        let body = serde_json::json!({
            "model": self.model,
            "stream": true,
            "max_tokens": self.max_tokens,
            "temperature": 0.1,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": prompt},
            ],
        });
        let resp = self.http.post(&self.url).json(&body).send().await.map_err(|e| format!("{}: {e}", self.url))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            return Err(format!("{} answered http {status}: {}", self.url, text.chars().take(300).collect::<String>()));
        }
        let mut bytes = resp.bytes_stream();
        let mut buf = String::new();
        let mut done = false;
        Ok(futures::stream::poll_fn(move |cx| loop {
            if done {
                return std::task::Poll::Ready(None);
            }
            if let Some(pos) = buf.find('\n') {
                let line: String = buf.drain(..=pos).collect();
                match parse_sse_line(line.trim_end()) {
                    SseLine::Token(t) => return std::task::Poll::Ready(Some(Ok(t))),
                    SseLine::Done => {
                        done = true;
                        return std::task::Poll::Ready(None);
                    }
                    SseLine::Error(e) => return std::task::Poll::Ready(Some(Err(e))),
                    SseLine::Skip => continue,
                }
            }
            match bytes.poll_next_unpin(cx) {
                std::task::Poll::Ready(Some(Ok(b))) => buf.push_str(&String::from_utf8_lossy(&b)),
                std::task::Poll::Ready(Some(Err(e))) => {
                    done = true;
                    return std::task::Poll::Ready(Some(Err(e.to_string())));
                }
                std::task::Poll::Ready(None) => {
                    done = true;
                    if !buf.trim().is_empty() {
                        if let SseLine::Token(t) = parse_sse_line(buf.trim()) {
                            return std::task::Poll::Ready(Some(Ok(t)));
                        }
                    }
                    return std::task::Poll::Ready(None);
                }
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }))
    }
}

#[derive(Debug, PartialEq)]
pub enum SseLine {
    Token(String),
    Done,
    Error(String),
    Skip,
}

/// One line of an OpenAI-style SSE stream.
pub fn parse_sse_line(line: &str) -> SseLine {
    let Some(data) = line.strip_prefix("data:") else { return SseLine::Skip };
    let data = data.trim();
    if data == "[DONE]" {
        return SseLine::Done;
    }
    match serde_json::from_str::<serde_json::Value>(data) {
        Ok(v) => {
            if let Some(e) = v.get("error") {
                return SseLine::Error(e.to_string());
            }
            match v["choices"][0]["delta"]["content"].as_str() {
                Some(t) if !t.is_empty() => SseLine::Token(t.to_string()),
                _ => SseLine::Skip,
            }
        }
        Err(e) => SseLine::Error(format!("bad stream chunk: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(i: u32) -> HydratedChunk {
        HydratedChunk {
            chunk_id: i as u64,
            repo: "r".into(),
            path: format!("src/f{i}.py"),
            language: "python".into(),
            start_line: i,
            end_line: i + 2,
            symbol: format!("f{i}"),
            kind: "function".into(),
            text: "def f():\n    return 1\n".repeat(50),
        }
    }

    #[test]
    fn prompt_numbers_sources_and_respects_the_budget() {
        let srcs: Vec<_> = (1..=20).map(chunk).collect();
        let p = build_prompt("what does f do", &srcs, 2000);
        assert!(p.contains("[1] r/src/f1.py:1-3 (f1)"));
        assert!(p.len() < 2600, "prompt of {} chars for a 2000 budget", p.len());
        assert!(!p.contains("[20]"));
        assert!(p.ends_with("Answer with citations:"));
    }

    #[test]
    fn sse_lines_parse() {
        assert_eq!(parse_sse_line(r#"data: {"choices":[{"delta":{"content":"Hi"}}]}"#), SseLine::Token("Hi".into()));
        assert_eq!(parse_sse_line("data: [DONE]"), SseLine::Done);
        assert_eq!(parse_sse_line(": keep-alive"), SseLine::Skip);
        assert_eq!(parse_sse_line(r#"data: {"choices":[{"delta":{"role":"assistant"}}]}"#), SseLine::Skip);
        assert!(matches!(parse_sse_line("data: {oops"), SseLine::Error(_)));
    }

    #[test]
    fn extractive_answer_cites_locations() {
        let a = extractive_answer("q", &[chunk(3)], 4).concat();
        assert!(a.contains("[1] r/src/f3.py:3-5 function `f3`"));
        assert!(a.contains("more lines"));
    }
}
