//! A local chat model for `codeintel models serve`: a llama-architecture GGUF (SmolLM2-135M-
//! Instruct by default) run with candle's quantized kernels on the CPU.
//!
//! The GGUF carries no `tokenizer.json`, so the tokenizer is built from its metadata: the BPE
//! vocabulary and merges (`tokenizer.ggml.tokens` / `.merges`), the control tokens
//! (`token_type` 3: `<|im_start|>`, `<|im_end|>`, ...) as special added tokens, and the
//! pre-tokenizer that `tokenizer.ggml.pre` names (`smollm`: single digits, then GPT-2 byte-level
//! splitting). Prompts use the ChatML template these models were tuned on.
//!
//! One generation runs at a time (the weights hold one KV cache); further requests wait.

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use candle_transformers::generation::LogitsProcessor;
use candle_transformers::models::quantized_llama::ModelWeights;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: String,
}

#[derive(Debug, Clone)]
pub struct GenParams {
    pub max_tokens: usize,
    /// 0 = greedy.
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its turn.
    Stop,
    /// `max_tokens` were generated.
    Length,
    /// The receiver went away (client disconnected).
    Cancelled,
}

impl Finish {
    pub fn reason(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::Cancelled => "abort",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct GenStats {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub finish: Finish,
    /// Prompt processing (prefill), seconds.
    pub prefill_s: f64,
    /// Token generation after the first token, seconds.
    pub decode_s: f64,
}

pub struct ChatModel {
    weights: Mutex<ModelWeights>,
    tokenizer: Tokenizer,
    /// Tokens that end a turn.
    eos: Vec<u32>,
    /// Most prompt + completion tokens (`llama.context_length`).
    pub context: usize,
    /// Prompt tokens per forward pass during prefill (the KV cache carries the rest).
    pub prefill_chunk: usize,
}

fn md<'a>(ct: &'a Content, key: &str) -> anyhow::Result<&'a Value> {
    ct.metadata.get(key).with_context(|| format!("GGUF metadata has no {key}"))
}

fn strings(v: &Value) -> anyhow::Result<Vec<String>> {
    v.to_vec()?.iter().map(|x| Ok(x.to_string()?.clone())).collect()
}

/// The tokenizer a GGUF's metadata describes (GPT-2 style byte-level BPE).
pub fn tokenizer_from_gguf(ct: &Content) -> anyhow::Result<Tokenizer> {
    let model = md(ct, "tokenizer.ggml.model")?.to_string()?;
    anyhow::ensure!(model == "gpt2", "only byte-level BPE (gpt2) GGUF tokenizers are supported, this one is {model:?}");
    let tokens = strings(md(ct, "tokenizer.ggml.tokens")?)?;
    let merges: Vec<(String, String)> = strings(md(ct, "tokenizer.ggml.merges")?)?
        .into_iter()
        .map(|m| {
            let (a, b) = m.split_once(' ').with_context(|| format!("bad merge {m:?}"))?;
            Ok((a.to_string(), b.to_string()))
        })
        .collect::<anyhow::Result<_>>()?;
    let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v.to_vec()?.iter().map(|x| x.to_i32()).collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| anyhow::anyhow!("BPE: {e}"))?;
    let mut tok = Tokenizer::new(bpe);
    let pre = ct.metadata.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
    let byte_level = PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true));
    let pre_tok = match pre.as_str() {
        // llama.cpp's `smollm`: every digit alone, then the GPT-2 split.
        "smollm" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            byte_level,
        ])),
        "gpt2" | "default" | "" => byte_level,
        other => anyhow::bail!("GGUF pre-tokenizer {other:?} is not supported (known: smollm, gpt2)"),
    };
    tok.with_pre_tokenizer(Some(pre_tok));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    let control: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, t)| **t == 3)
        .map(|(s, _)| AddedToken::from(s.clone(), true).normalized(false))
        .collect();
    tok.add_special_tokens(&control);
    Ok(tok)
}

/// ChatML, with the default system turn these models expect when the caller sends none.
pub fn render_chatml(messages: &[ChatMessage]) -> String {
    let mut s = String::new();
    if messages.first().map(|m| m.role != "system").unwrap_or(true) {
        s.push_str(
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n",
        );
    }
    for m in messages {
        s.push_str(&format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content));
    }
    s.push_str("<|im_start|>assistant\n");
    s
}

impl ChatModel {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let mut f = std::fs::File::open(path)
            .with_context(|| format!("chat model {} (run `make deps` or set models.chat_gguf)", path.display()))?;
        let ct = Content::read(&mut f).with_context(|| format!("reading GGUF {}", path.display()))?;
        let tokenizer = tokenizer_from_gguf(&ct)?;
        let context = md(&ct, "llama.context_length").and_then(|v| Ok(v.to_u32()? as usize)).unwrap_or(2048);
        let mut eos = Vec::new();
        for key in ["tokenizer.ggml.eos_token_id"] {
            if let Some(v) = ct.metadata.get(key) {
                eos.push(v.to_u32()?);
            }
        }
        for t in ["<|im_end|>", "<|endoftext|>"] {
            if let Some(id) = tokenizer.token_to_id(t) {
                if !eos.contains(&id) {
                    eos.push(id);
                }
            }
        }
        let weights = ModelWeights::from_gguf(ct, &mut f, &Device::Cpu).context("loading GGUF weights")?;
        Ok(Self { weights: Mutex::new(weights), tokenizer, eos, context, prefill_chunk: 256 })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Token ids of `text`, special tokens (`<|im_start|>`) recognised.
    pub fn encode(&self, text: &str) -> anyhow::Result<Vec<u32>> {
        Ok(self.tokenizer.encode(text, false).map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?.get_ids().to_vec())
    }

    /// The next-token logits after `prompt`, prefilled `chunk` tokens per forward pass.
    pub fn prompt_logits(&self, prompt: &str, chunk: usize) -> anyhow::Result<Vec<f32>> {
        let ids = self.encode(prompt)?;
        anyhow::ensure!(!ids.is_empty() && ids.len() < self.context, "prompt of {} tokens", ids.len());
        let mut w = self.weights.lock().map_err(|_| anyhow::anyhow!("chat model lock poisoned"))?;
        let mut logits = None;
        for (i, piece) in ids.chunks(chunk.max(1)).enumerate() {
            let input = Tensor::new(piece, &Device::Cpu)?.unsqueeze(0)?;
            logits = Some(w.forward(&input, i * chunk.max(1))?.squeeze(0)?);
        }
        Ok(logits.expect("a non-empty prompt").to_vec1()?)
    }

    /// Generates a completion of `prompt`, calling `emit` with each new piece of text as soon as
    /// it forms whole characters; `emit` returning false stops generation (the client left), as
    /// does `alive` returning false between pieces of the prompt.
    pub fn generate(
        &self,
        prompt: &str,
        p: &GenParams,
        alive: impl Fn() -> bool,
        mut emit: impl FnMut(&str) -> bool,
    ) -> anyhow::Result<GenStats> {
        let ids = self.encode(prompt)?;
        anyhow::ensure!(!ids.is_empty(), "the prompt is empty");
        anyhow::ensure!(
            ids.len() < self.context,
            "the prompt has {} tokens; this model's context holds {}",
            ids.len(),
            self.context
        );
        let max_tokens = p.max_tokens.min(self.context - ids.len());
        let mut sampler = LogitsProcessor::new(p.seed, (p.temperature > 0.0).then_some(p.temperature), p.top_p);
        let mut w = self.weights.lock().map_err(|_| anyhow::anyhow!("chat model lock poisoned"))?;
        let t = std::time::Instant::now();
        // The prompt goes through in pieces, so that a client that left stops a long prefill too.
        let mut logits = None;
        let chunk = self.prefill_chunk.max(1);
        for (i, piece) in ids.chunks(chunk).enumerate() {
            if i > 0 && !alive() {
                return Ok(GenStats {
                    prompt_tokens: ids.len(),
                    completion_tokens: 0,
                    finish: Finish::Cancelled,
                    prefill_s: t.elapsed().as_secs_f64(),
                    decode_s: 0.0,
                });
            }
            let input = Tensor::new(piece, &Device::Cpu)?.unsqueeze(0)?;
            logits = Some(w.forward(&input, i * chunk)?.squeeze(0)?);
        }
        let mut logits = logits.expect("a non-empty prompt");
        let prefill_s = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let mut out: Vec<u32> = Vec::new();
        let mut sent = 0usize;
        let finish = loop {
            let next = sampler.sample(&logits)?;
            if self.eos.contains(&next) {
                break Finish::Stop;
            }
            out.push(next);
            let text = self.tokenizer.decode(&out, true).map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
            // Hold back a piece that ends inside a multi-byte character.
            if let Some(piece) = text.get(sent..).filter(|p| !p.is_empty() && !p.ends_with('\u{FFFD}')) {
                if !emit(piece) {
                    break Finish::Cancelled;
                }
                sent = text.len();
            }
            if out.len() >= max_tokens {
                break Finish::Length;
            }
            let input = Tensor::new(&[next], &Device::Cpu)?.unsqueeze(0)?;
            logits = w.forward(&input, ids.len() + out.len() - 1)?.squeeze(0)?;
        };
        Ok(GenStats {
            prompt_tokens: ids.len(),
            completion_tokens: out.len(),
            finish,
            prefill_s,
            decode_s: t.elapsed().as_secs_f64(),
        })
    }
}
