//! The local chat model (SmolLM2 GGUF from `make deps`): its tokenizer built from the GGUF
//! metadata, and `/v1/chat/completions` over real HTTP driven by answer-svc's own vLLM client.

use std::sync::{Arc, OnceLock};

use answer_svc::synthesis::{ChatClient, ChatEvent};
use codeintel::chat::{render_chatml, ChatMessage, ChatModel, GenParams};
use codeintel::models::{serve, Models};
use codeintel_config::Config;
use codeintel_models::embed::Embedder;
use futures::StreamExt;

fn model() -> Arc<ChatModel> {
    static M: OnceLock<Arc<ChatModel>> = OnceLock::new();
    M.get_or_init(|| Arc::new(ChatModel::load(&Config::default().chat_gguf()).expect("chat model (run `make deps`)")))
        .clone()
}

#[test]
fn the_gguf_tokenizer_keeps_control_tokens_whole_splits_digits_and_round_trips() {
    let m = model();
    let t = m.tokenizer();
    assert_eq!(t.get_vocab_size(true), 49152);
    // Control tokens are single ids (as the GGUF numbers them), not spelled out.
    let ids = m.encode("<|im_start|>user\nhi<|im_end|>\n").unwrap();
    assert_eq!(ids.first(), Some(&1));
    assert!(ids.contains(&2));
    assert_eq!(m.encode("<|endoftext|>").unwrap(), vec![0]);
    // Every digit is its own token (the `smollm` pre-tokenizer).
    let digits = m.encode("12345").unwrap();
    assert_eq!(digits.len(), 5);
    assert_eq!(t.id_to_token(digits[0]).as_deref(), Some("1"));
    // Byte-level BPE: a common word with its leading space is one token ("Ġthe").
    let the = m.encode(" the").unwrap();
    assert_eq!(the.len(), 1);
    assert_eq!(t.id_to_token(the[0]).as_deref(), Some("Ġthe"));
    // Any text, unicode and whitespace included, decodes back to itself.
    for s in ["fn parse_header2(line: &str) -> Option<(String, u16)> {\n\t// héllo 🙂\n}", "  x  =  \"日本\"\r\n"]
    {
        let ids = m.encode(s).unwrap();
        assert_eq!(t.decode(&ids, false).unwrap(), s);
    }
}

/// Token ids that llama.cpp's own GGUF tokenizer (llama-cpp-python 0.3, `tokenize(text,
/// add_bos=False, special=True)` on the same file) gives for these texts: the reference.
#[test]
fn token_ids_match_llama_cpp_on_the_same_gguf() {
    let m = model();
    let cases: [(&str, &[u32]); 3] = [
        (
            "<|im_start|>user\nWhere is parse_header2 defined in src/http.rs? It returns 12345 bytes.<|im_end|>\n<|im_start|>assistant\n",
            &[1, 4093, 198, 9576, 314, 12865, 79, 12476, 34, 4355, 281, 14484, 31, 5031, 30, 2833, 47, 657, 6765, 216, 33, 34, 35, 36, 37, 15590, 30, 2, 198, 1, 520, 9531, 198],
        ),
        ("fn parse_header2(line: &str) -> Option<(String, u16)> {\n\t// h\u{e9}llo \u{1f642}\n}", &[7853, 12865, 79, 12476, 34, 24, 1311, 42, 1456, 1321, 25, 4722, 29033, 44, 24, 10492, 28, 326, 33, 38, 46153, 1662, 198, 197, 1559, 294, 2756, 31394, 47526, 198, 109]),
        (
            "Sources:\n[1] shop/src/cart.py:3-11\n    def compute_total(cart, tax_rate):\n        return sum(q * 2 for _, q in cart.items)\n",
            &[29808, 42, 198, 75, 33, 77, 6434, 31, 10920, 31, 33836, 30, 1306, 42, 35, 29, 33, 33, 472, 753, 12258, 79, 9712, 24, 33836, 28, 3024, 79, 2944, 727, 448, 1003, 2028, 24, 97, 1672, 216, 34, 327, 21779, 7329, 281, 6657, 30, 8416, 25, 198],
        ),
    ];
    for (text, want) in cases {
        assert_eq!(m.encode(text).unwrap(), want.to_vec(), "{text:?}");
    }
}

#[test]
fn chatml_adds_the_default_system_turn_only_when_missing() {
    let user = ChatMessage { role: "user".into(), content: "hi".into() };
    let p = render_chatml(std::slice::from_ref(&user));
    assert!(
        p.starts_with("<|im_start|>system\n") && p.ends_with("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    );
    let sys = ChatMessage { role: "system".into(), content: "Cite sources.".into() };
    let p = render_chatml(&[sys, user]);
    assert_eq!(p.matches("<|im_start|>system").count(), 1);
    assert!(p.starts_with("<|im_start|>system\nCite sources.<|im_end|>\n"));
}

#[test]
fn generation_is_greedy_deterministic_and_bounded() {
    let m = model();
    let prompt = render_chatml(&[ChatMessage { role: "user".into(), content: "Count from one to twenty.".into() }]);
    let p = GenParams { max_tokens: 6, temperature: 0.0, top_p: None, seed: 1 };
    let run = || {
        let mut pieces = Vec::new();
        let st = m
            .generate(
                &prompt,
                &p,
                || true,
                |s| {
                    pieces.push(s.to_string());
                    true
                },
            )
            .unwrap();
        (pieces, st)
    };
    let (a, st) = run();
    assert_eq!((st.completion_tokens, st.finish.reason()), (6, "length"));
    assert!(a.len() >= 2 && !a.concat().trim().is_empty(), "{a:?}");
    assert_eq!(run().0, a, "greedy decoding repeats itself");
    // A receiver that stops listening stops generation.
    let mut seen = 0;
    let st = m
        .generate(
            &prompt,
            &GenParams { max_tokens: 50, ..p.clone() },
            || true,
            |_| {
                seen += 1;
                seen < 2
            },
        )
        .unwrap();
    assert_eq!(st.finish.reason(), "abort");
    assert!(st.completion_tokens <= 3, "{}", st.completion_tokens);
    // A long prompt is abandoned between its pieces once the client is gone.
    let code = include_str!("../../shared/codeintel-models/src/chat.rs");
    let question = format!("Explain what this Rust code does:\n{}", &code[..2500]);
    let long = render_chatml(&[ChatMessage { role: "user".into(), content: question.clone() }]);
    assert!(m.encode(&long).unwrap().len() > 2 * 256, "the prompt spans several prefill pieces");
    let polls = std::cell::Cell::new(0);
    let st = m
        .generate(
            &long,
            &p,
            || {
                polls.set(polls.get() + 1);
                false
            },
            |_| true,
        )
        .unwrap();
    assert_eq!((st.finish.reason(), st.completion_tokens, polls.get()), ("abort", 0, 1));
    let text = {
        let mut out = String::new();
        m.generate(
            &long,
            &p,
            || true,
            |s| {
                out.push_str(s);
                true
            },
        )
        .unwrap();
        out
    };
    assert!(!text.trim().is_empty());
    // Prefill in pieces computes what the prompt in one piece does: the same five most likely
    // next tokens, logits within quantisation noise (Q4_1 weights, 8-bit activations).
    let whole = m.prompt_logits(&long, usize::MAX).unwrap();
    let top5 = |v: &[f32]| {
        let mut i: Vec<usize> = (0..v.len()).collect();
        i.sort_by(|a, b| v[*b].total_cmp(&v[*a]));
        let mut t = i[..5].to_vec();
        t.sort();
        t
    };
    let range = whole.iter().cloned().fold(f32::MIN, f32::max) - whole.iter().cloned().fold(f32::MAX, f32::min);
    for c in [64usize, 256] {
        let part = m.prompt_logits(&long, c).unwrap();
        assert_eq!(top5(&part), top5(&whole), "chunk {c}");
        let diff = whole.iter().zip(&part).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < 0.05 * range, "chunk {c}: logits differ by {diff} (range {range})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_streams_token_by_token_through_the_vllm_client_and_stops_at_max_tokens() {
    let mut cfg = Config::default();
    cfg.embed.workers = 1;
    let embedder = Embedder::from_config(&cfg, 0, codeintel_models::embed::Role::Documents).await.unwrap();
    let models = Arc::new(Models {
        embedder,
        model_id: cfg.embed.model_id.clone(),
        chat: Some((model(), "SmolLM2-135M-Instruct".into())),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, models, Default::default()));

    let client = ChatClient::new(&url, "SmolLM2-135M-Instruct", 12, &Default::default()).unwrap();
    let mut s = Box::pin(client.stream("Write a long story about a cat who learns Rust.".into()).await.unwrap());
    let (mut tokens, mut usage) = (Vec::new(), None);
    while let Some(ev) = s.next().await {
        match ev.unwrap() {
            ChatEvent::Token(t) => tokens.push(t),
            ChatEvent::Usage(u) => usage = Some(u),
        }
    }
    let usage = usage.expect("the final usage chunk");
    assert_eq!(usage.completion_tokens, 12, "stops at max_tokens");
    assert!(usage.prompt_tokens > 10);
    assert!(tokens.len() >= 6, "text arrives in pieces, not at once: {tokens:?}");

    // The raw wire: role chunk first, a finish_reason, the usage-only chunk, then [DONE].
    let body = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .json(&serde_json::json!({"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4,
            "stream": true, "stream_options": {"include_usage": true}}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(events.last(), Some(&"[DONE]"));
    let json: Vec<serde_json::Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(json[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(json.iter().any(|j| j["choices"][0]["finish_reason"].is_string()));
    let last = json.last().unwrap();
    assert!(last["choices"].as_array().unwrap().is_empty() && last["usage"]["completion_tokens"].as_u64() <= Some(4));

    // Non-streaming: one body with the message and usage; bad input is a 400.
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .json(&serde_json::json!({"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 3}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["object"], "chat.completion");
    assert!(r["usage"]["completion_tokens"].as_u64().unwrap() <= 3);
    let bad = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .json(&serde_json::json!({"messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}
