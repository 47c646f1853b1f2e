//! Answer synthesis: a prompt of numbered sources within a character budget, streamed through an
//! OpenAI-compatible `/v1/chat/completions` server (vLLM), or, with no model configured, an
//! extractive answer that lists the retrieved code.

use std::time::Duration;

use futures::{Stream, StreamExt};

use crate::backends::Chunk;

pub const SYSTEM_PROMPT: &str = "You answer questions about a code base using only the numbered sources given. \
Cite every claim with its source number in brackets, like [1]. If the sources do not contain the answer, say so. Be concise.";

/// `repo/path:start-end`, the citation form used everywhere.
pub fn location(c: &Chunk) -> String {
    format!("{}/{}:{}-{}", c.repo, c.path, c.start_line, c.end_line)
}

/// The user message: numbered sources (cut to fit `budget_chars` in total), then the question.
pub fn build_prompt(query: &str, sources: &[Chunk], budget_chars: usize) -> String {
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
pub fn extractive_answer(query: &str, sources: &[Chunk], lines_per_source: usize) -> Vec<String> {
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
    pub fn new(
        base_url: &str,
        model: &str,
        max_tokens: u32,
        tls: &codeintel_config::TlsConfig,
    ) -> anyhow::Result<Self> {
        let http = codeintel_models::http_client(tls)
            .map_err(anyhow::Error::msg)?
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        Ok(Self {
            http,
            url: format!("{}/v1/chat/completions", base_url.trim_end_matches('/')),
            model: model.into(),
            max_tokens,
        })
    }

    /// Starts a streamed completion; yields content deltas as they arrive, then the usage the
    /// server reports (`stream_options.include_usage`).
    pub async fn stream(
        &self,
        prompt: String,
    ) -> Result<impl Stream<Item = Result<ChatEvent, String>> + use<>, String> {
        let body = serde_json::json!({
            "model": self.model,
            "stream": true,
            "stream_options": {"include_usage": true},
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
        // A server that answers a streamed request with a JSON or HTML page is not speaking the
        // OpenAI streaming protocol (a proxy's error page, a wrong URL); a missing type is let be.
        let kind = resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !kind.is_empty() && !kind.contains("event-stream") {
            return Err(format!(
                "{} answered {kind}, not an event stream (is it an OpenAI-compatible server?)",
                self.url
            ));
        }
        let mut bytes = resp.bytes_stream();
        let mut dec = SseDecoder::default();
        let mut ready: std::collections::VecDeque<Result<ChatEvent, String>> = Default::default();
        Ok(futures::stream::poll_fn(move |cx| loop {
            if let Some(e) = ready.pop_front() {
                return std::task::Poll::Ready(Some(e));
            }
            if dec.done {
                return std::task::Poll::Ready(None);
            }
            match bytes.poll_next_unpin(cx) {
                std::task::Poll::Ready(Some(Ok(b))) => ready.extend(dec.push(&b)),
                std::task::Poll::Ready(Some(Err(e))) => {
                    dec.done = true;
                    ready.push_back(Err(e.to_string()));
                }
                std::task::Poll::Ready(None) => ready.extend(dec.finish()),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    Token(String),
    Usage(Usage),
}

#[derive(Debug, PartialEq)]
pub enum SseLine {
    /// A chunk: its content delta (absent for role-only, finish and usage-only chunks) and the
    /// usage it carries, if any.
    Data {
        token: Option<String>,
        usage: Option<Usage>,
    },
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
            if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
                let msg = e.get("message").and_then(|m| m.as_str()).map(String::from).unwrap_or_else(|| e.to_string());
                return SseLine::Error(msg);
            }
            let token = v["choices"][0]["delta"]["content"].as_str().filter(|t| !t.is_empty()).map(String::from);
            let usage = v.get("usage").filter(|u| !u.is_null()).map(|u| Usage {
                prompt_tokens: u["prompt_tokens"].as_u64().unwrap_or(0) as u32,
                completion_tokens: u["completion_tokens"].as_u64().unwrap_or(0) as u32,
            });
            SseLine::Data { token, usage }
        }
        Err(e) => SseLine::Error(format!("bad stream chunk: {e}")),
    }
}

/// Turns the bytes of a chat completion stream, split anywhere (even inside a UTF-8 character),
/// into events. The last usage seen is reported once, when the stream ends.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: Vec<u8>,
    usage: Option<Usage>,
    pub done: bool,
}

impl SseDecoder {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Result<ChatEvent, String>> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        self.buf.extend_from_slice(bytes);
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            if self.line(line.trim_end(), &mut out) {
                break;
            }
        }
        out
    }

    /// The stream ended (`[DONE]` or end of body).
    pub fn finish(&mut self) -> Vec<Result<ChatEvent, String>> {
        let mut out = Vec::new();
        if !self.done && !self.buf.is_empty() {
            let rest = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).to_string();
            self.line(rest.trim(), &mut out);
        }
        self.done = true;
        if let Some(u) = self.usage.take() {
            out.push(Ok(ChatEvent::Usage(u)));
        }
        out
    }

    /// Handles one line; true when the stream is over.
    fn line(&mut self, line: &str, out: &mut Vec<Result<ChatEvent, String>>) -> bool {
        match parse_sse_line(line) {
            SseLine::Data { token, usage } => {
                if let Some(t) = token {
                    out.push(Ok(ChatEvent::Token(t)));
                }
                if usage.is_some() {
                    self.usage = usage;
                }
                false
            }
            SseLine::Done => {
                out.extend(self.finish());
                true
            }
            SseLine::Error(e) => {
                out.push(Err(e));
                self.done = true;
                true
            }
            SseLine::Skip => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(i: u32) -> Chunk {
        Chunk {
            chunk_id: i as u64,
            repo: "r".into(),
            path: format!("src/f{i}.py"),
            language: "python".into(),
            start_line: i,
            end_line: i + 2,
            symbol: format!("f{i}"),
            kind: "function".into(),
            text: "def f():\n    return 1\n".repeat(50),
            ..Default::default()
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
        assert_eq!(
            parse_sse_line(r#"data: {"choices":[{"delta":{"content":"Hi"}}]}"#),
            SseLine::Data { token: Some("Hi".into()), usage: None }
        );
        assert_eq!(parse_sse_line("data: [DONE]"), SseLine::Done);
        assert_eq!(parse_sse_line(": keep-alive"), SseLine::Skip);
        assert_eq!(
            parse_sse_line(r#"data: {"choices":[{"delta":{"role":"assistant"}}]}"#),
            SseLine::Data { token: None, usage: None }
        );
        assert!(matches!(parse_sse_line("data: {oops"), SseLine::Error(_)));
    }

    /// Recorded in the shapes vLLM's OpenAI-compatible server documents for
    /// `stream: true, stream_options: {include_usage: true}`: a role-only first chunk, content
    /// deltas (one with a multi-byte character), a finish chunk with `usage: null`, the
    /// usage-only final chunk with empty `choices`, then `[DONE]`.
    const VLLM_STREAM: &str = concat!(
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"It parses\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        ": ping\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" cookies \\u00e9 [1]\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" héllo\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\",\"stop_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":412,\"total_tokens\":419,\"completion_tokens\":7}}\n\n",
        "data: [DONE]\n\n",
    );

    fn decode_split(transcript: &[u8], step: usize) -> Vec<Result<ChatEvent, String>> {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        for part in transcript.chunks(step) {
            out.extend(d.push(part));
        }
        out.extend(d.finish());
        out
    }

    #[test]
    fn recorded_vllm_stream_decodes_however_it_is_split() {
        let want = vec![
            Ok(ChatEvent::Token("It parses".into())),
            Ok(ChatEvent::Token(" cookies é [1]".into())),
            Ok(ChatEvent::Token(" héllo".into())),
            Ok(ChatEvent::Usage(Usage { prompt_tokens: 412, completion_tokens: 7 })),
        ];
        for step in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(decode_split(VLLM_STREAM.as_bytes(), step), want, "split every {step} bytes");
        }
    }

    #[test]
    fn an_error_event_mid_stream_ends_it_with_the_message() {
        // vLLM reports errors inside the stream as a data event carrying an `error` object.
        let t = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Partial\"}}]}\n\n",
            "data: {\"error\":{\"object\":\"error\",\"message\":\"The model ran out of KV cache\",\"type\":\"InternalServerError\",\"param\":null,\"code\":500}}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"never\"}}]}\n\n",
        );
        let got = decode_split(t.as_bytes(), 5);
        assert_eq!(got[0], Ok(ChatEvent::Token("Partial".into())));
        assert_eq!(got[1], Err("The model ran out of KV cache".into()));
        assert_eq!(got.len(), 2, "nothing after the error: {got:?}");
    }

    #[test]
    fn a_stream_cut_without_done_still_yields_its_last_line() {
        let t = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}";
        let got = decode_split(t.as_bytes(), 10);
        assert_eq!(got, vec![Ok(ChatEvent::Token("a".into())), Ok(ChatEvent::Token("b".into()))]);
    }

    #[test]
    fn extractive_answer_cites_locations() {
        let a = extractive_answer("q", &[chunk(3)], 4).concat();
        assert!(a.contains("[1] r/src/f3.py:3-5 function `f3`"));
        assert!(a.contains("more lines"));
    }
}
