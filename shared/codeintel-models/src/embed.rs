//! Embedders: the built-in CPU model (a BERT sentence encoder run with candle, loaded from local
//! files) or an OpenAI-compatible `/v1/embeddings` endpoint. Vectors are L2-normalised so inner
//! product is cosine similarity.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use codeintel_config::Config;
use codeintel_core::EmbeddingContract;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("model files missing in {dir}: {message} (run `make deps` or set CODEINTEL__EMBED__MODEL_DIR)")]
    MissingModel { dir: String, message: String },
    #[error("embedding model failed: {0}")]
    Model(String),
    #[error("embedding endpoint {url} failed: {message}")]
    Remote { url: String, message: String },
}

/// What a local encoder is loaded to encode: documents when indexing, queries when serving.
/// Each has its own runtime setting (queries are short and latency-bound: int8 pays there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Documents,
    Queries,
}

/// Which engine runs a local encoder's forward pass (`embed.runtime`, `sparse.runtime`).
#[derive(Debug, Clone, PartialEq)]
pub enum Runtime {
    /// candle, from the safetensors weights.
    Candle,
    /// ONNX Runtime, from one of the model folder's ONNX exports ([`Weights`]), with the
    /// shared library at `library`; each session computes on `threads` threads.
    Onnx { library: PathBuf, threads: usize, weights: Weights },
}

/// Which ONNX export of a model folder runs (`scripts/onnx/quantize.py` writes the int8 ones:
/// per-channel dynamic quantization, activations quantized per call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    /// `{stem}.onnx`: the safetensors' f32 weights (candle's vectors within 1e-4).
    F32,
    /// `{stem}.int8.onnx`: every matrix product on int8 weights.
    Int8,
    /// `{stem}.mixed.onnx`: int8 except each layer's feed-forward output projection, whose
    /// GELU input int8 activations lose most on (f32 there).
    Mixed,
}

impl Runtime {
    /// `name` is `onnx-mixed`, `onnx-int8`, `onnx` or `candle`; `threads` is per forward pass
    /// (0 = every core).
    pub fn new(name: &str, library: PathBuf, threads: usize) -> Result<Self, EmbedError> {
        let all = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let threads = if threads == 0 { all } else { threads };
        let weights = match name {
            "candle" => return Ok(Runtime::Candle),
            "onnx" => Weights::F32,
            "onnx-int8" => Weights::Int8,
            "onnx-mixed" => Weights::Mixed,
            other => {
                return Err(EmbedError::Model(format!(
                    "unknown encoder runtime {other:?} (use onnx-mixed, onnx-int8, onnx or candle)"
                )))
            }
        };
        Ok(Runtime::Onnx { library, threads, weights })
    }

    /// The model folder's ONNX export this runtime loads: `{stem}.onnx`, `{stem}.int8.onnx`
    /// or `{stem}.mixed.onnx`.
    pub fn onnx_file(&self, dir: &Path, stem: &str) -> PathBuf {
        match self {
            Runtime::Onnx { weights: Weights::Int8, .. } => dir.join(format!("{stem}.int8.onnx")),
            Runtime::Onnx { weights: Weights::Mixed, .. } => dir.join(format!("{stem}.mixed.onnx")),
            _ => dir.join(format!("{stem}.onnx")),
        }
    }

    /// The runtime `cfg` names for the embedder (`kind` = `embed`) or SPLADE (`sparse`), for
    /// documents (`runtime`) or queries (`query_runtime`).
    pub fn from_config(cfg: &Config, kind: &str, threads: usize, role: Role) -> Result<Self, EmbedError> {
        let name = match (kind, role) {
            ("sparse", Role::Documents) => &cfg.sparse.runtime,
            ("sparse", Role::Queries) => &cfg.sparse.query_runtime,
            (_, Role::Documents) => &cfg.embed.runtime,
            (_, Role::Queries) => &cfg.embed.query_runtime,
        };
        Self::new(name, cfg.onnx_runtime(), threads)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Runtime::Candle => "candle",
            Runtime::Onnx { weights: Weights::F32, .. } => "onnx",
            Runtime::Onnx { weights: Weights::Int8, .. } => "onnx-int8",
            Runtime::Onnx { weights: Weights::Mixed, .. } => "onnx-mixed",
        }
    }
}

enum EmbedModel {
    Candle(Box<BertModel>),
    Onnx(crate::onnx::OnnxBert),
}

/// A sentence encoder that runs in this process on the CPU.
pub struct LocalEmbedder {
    model: EmbedModel,
    tokenizer: Tokenizer,
    dim: usize,
    /// [`weights_sha256`] of the model folder: the weights every runtime's vectors come from.
    weights: String,
    batch_size: usize,
    workers: usize,
}

impl LocalEmbedder {
    /// `workers` forward passes run side by side on long inputs (see [`LocalEmbedder::embed`]).
    /// With [`Runtime::Onnx`], `workers` sessions are opened (one per concurrent forward pass).
    pub fn load(
        dir: &Path,
        max_tokens: usize,
        batch_size: usize,
        workers: usize,
        runtime: &Runtime,
    ) -> Result<Self, EmbedError> {
        let workers = workers.max(1);
        let (model, dim, tokenizer) = match runtime {
            Runtime::Candle => {
                let (cfg, weights, tokenizer) = read_bert_dir(dir, max_tokens)?;
                let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
                    .map_err(|e| EmbedError::Model(e.to_string()))?;
                let model = BertModel::load(vb, &cfg).map_err(|e| EmbedError::Model(e.to_string()))?;
                (EmbedModel::Candle(Box::new(model)), cfg.hidden_size, tokenizer)
            }
            Runtime::Onnx { library, threads, .. } => {
                let (_, tokenizer) = read_bert_config(dir, max_tokens)?;
                let m = crate::onnx::OnnxBert::load(library, &runtime.onnx_file(dir, "embed"), workers, *threads)?;
                let dim = m.width();
                (EmbedModel::Onnx(m), dim, tokenizer)
            }
        };
        // After the model, so that a missing export is what a folder without one reports.
        let weights = weights_sha256(dir)?;
        Ok(Self { model, tokenizer, dim, weights, batch_size, workers })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The sha256 of the model folder's `model.safetensors`, which the ONNX exports are made
    /// from: the contract's name for these weights.
    pub fn weights_sha256(&self) -> &str {
        &self.weights
    }

    /// Embeds texts in batches of similar length (less padding), returning vectors in input order.
    /// With several workers, batches are shared out among that many threads; each forward pass
    /// then runs on its own thread (the indexer sets `RAYON_NUM_THREADS=1` so candle does not
    /// also split every matrix product, which cost more in synchronisation than it gained).
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        in_batches(texts, self.batch_size, self.workers, |batch| self.embed_batch(batch))
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let m = |e: candle_core::Error| EmbedError::Model(e.to_string());
        let enc = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| EmbedError::Model(e.to_string()))?;
        let n = enc.len();
        let len = enc.first().map(|e| e.get_ids().len()).unwrap_or(0);
        let model = match &self.model {
            EmbedModel::Candle(model) => model,
            EmbedModel::Onnx(onnx) => {
                let (ids, mask) = onnx_inputs(&enc);
                return Ok(onnx.run(ids, mask, n, len)?.into_iter().map(normalize).collect());
            }
        };
        let ids: Vec<u32> = enc.iter().flat_map(|e| e.get_ids().to_vec()).collect();
        let mask: Vec<u32> = enc.iter().flat_map(|e| e.get_attention_mask().to_vec()).collect();
        let ids = Tensor::from_vec(ids, (n, len), &Device::Cpu).map_err(m)?;
        let mask = Tensor::from_vec(mask, (n, len), &Device::Cpu).map_err(m)?;
        let types = ids.zeros_like().map_err(m)?;
        let hidden = model.forward(&ids, &types, Some(&mask)).map_err(m)?; // (n, len, dim)
                                                                           // Mean pooling over real tokens, then L2 normalisation.
        let maskf = mask.to_dtype(DType::F32).map_err(m)?.unsqueeze(2).map_err(m)?;
        let summed = hidden.broadcast_mul(&maskf).map_err(m)?.sum(1).map_err(m)?;
        let counts = maskf.sum(1).map_err(m)?.clamp(1e-9, f64::MAX).map_err(m)?;
        let mean = summed.broadcast_div(&counts).map_err(m)?;
        let rows: Vec<Vec<f32>> = mean.to_vec2().map_err(m)?;
        Ok(rows.into_iter().map(normalize).collect())
    }
}

/// The sha256 of a model folder's `model.safetensors`: what an index's embedding contract
/// names, so vectors of other weights (another fine-tune, the base model) are not mixed.
pub fn weights_sha256(dir: &Path) -> Result<String, EmbedError> {
    let bytes = std::fs::read(dir.join("model.safetensors")).map_err(|e| EmbedError::MissingModel {
        dir: dir.display().to_string(),
        message: format!("model.safetensors: {e}"),
    })?;
    Ok(codeintel_core::chunk::sha256_hex(&bytes))
}

/// The files of a local BERT-family model folder: its config, its safetensors bytes, and its
/// tokenizer set to pad batches to their longest text and truncate at `max_tokens`.
pub(crate) fn read_bert_dir(dir: &Path, max_tokens: usize) -> Result<(BertConfig, Vec<u8>, Tokenizer), EmbedError> {
    let (cfg, tokenizer) = read_bert_config(dir, max_tokens)?;
    let weights = std::fs::read(dir.join("model.safetensors")).map_err(|e| EmbedError::MissingModel {
        dir: dir.display().to_string(),
        message: format!("model.safetensors: {e}"),
    })?;
    Ok((cfg, weights, tokenizer))
}

/// A model folder's config and tokenizer (padding to the longest text, truncation at
/// `max_tokens`), without the weights.
pub(crate) fn read_bert_config(dir: &Path, max_tokens: usize) -> Result<(BertConfig, Tokenizer), EmbedError> {
    let missing = |message: String| EmbedError::MissingModel { dir: dir.display().to_string(), message };
    let cfg_text =
        std::fs::read_to_string(dir.join("config.json")).map_err(|e| missing(format!("config.json: {e}")))?;
    let cfg: BertConfig =
        serde_json::from_str(&cfg_text).map_err(|e| EmbedError::Model(format!("config.json: {e}")))?;
    let mut tokenizer =
        Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| missing(format!("tokenizer.json: {e}")))?;
    tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..Default::default() }));
    tokenizer
        .with_truncation(Some(TruncationParams { max_length: max_tokens, ..Default::default() }))
        .map_err(|e| EmbedError::Model(e.to_string()))?;
    Ok((cfg, tokenizer))
}

/// The `input_ids` and `attention_mask` of a padded batch, row-major, as ONNX wants them.
pub(crate) fn onnx_inputs(enc: &[tokenizers::Encoding]) -> (Vec<i64>, Vec<i64>) {
    let ids = enc.iter().flat_map(|e| e.get_ids().iter().map(|&x| x as i64)).collect();
    let mask = enc.iter().flat_map(|e| e.get_attention_mask().iter().map(|&x| x as i64)).collect();
    (ids, mask)
}

/// Runs `f` over `texts` in batches of similar length (less padding), `workers` threads taking
/// every `workers`-th batch, and returns the results in input order.
pub fn in_batches<T: Clone + Default + Send>(
    texts: &[String],
    batch_size: usize,
    workers: usize,
    f: impl Fn(&[&str]) -> Result<Vec<T>, EmbedError> + Sync,
) -> Result<Vec<T>, EmbedError> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| texts[i].len());
    let batches: Vec<&[usize]> = order.chunks(batch_size.max(1)).collect();
    let workers = workers.min(batches.len()).max(1);
    let run = |w: usize| -> Result<Vec<(usize, T)>, EmbedError> {
        let mut done = Vec::new();
        for batch in batches.iter().skip(w).step_by(workers) {
            let inputs: Vec<&str> = batch.iter().map(|&i| texts[i].as_str()).collect();
            done.extend(batch.iter().copied().zip(f(&inputs)?));
        }
        Ok(done)
    };
    let parts: Vec<Result<Vec<(usize, T)>, EmbedError>> = if workers == 1 {
        vec![run(0)]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers).map(|w| s.spawn(move || run(w))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(EmbedError::Model("model worker panicked".into()))))
                .collect()
        })
    };
    let mut out = vec![T::default(); texts.len()];
    for part in parts {
        for (i, v) in part? {
            out[i] = v;
        }
    }
    Ok(out)
}

pub use codeintel_core::{combine_views, normalize};

/// An OpenAI-compatible embeddings server (vLLM, TEI, ...).
pub struct RemoteEmbedder {
    client: reqwest::Client,
    url: String,
    model: String,
    batch_size: usize,
}

impl RemoteEmbedder {
    pub fn new(
        url: &str,
        model: &str,
        batch_size: usize,
        timeout: Duration,
        tls: &codeintel_config::TlsConfig,
    ) -> Result<Self, EmbedError> {
        let client = crate::http_client(tls)
            .map_err(|message| EmbedError::Remote { url: url.into(), message })?
            .timeout(timeout)
            .build()
            .map_err(|e| EmbedError::Remote { url: url.into(), message: e.to_string() })?;
        Ok(Self {
            client,
            url: format!("{}/v1/embeddings", url.trim_end_matches('/')),
            model: model.into(),
            batch_size,
        })
    }

    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size) {
            let err = |message: String| EmbedError::Remote { url: self.url.clone(), message };
            let resp = self
                .client
                .post(&self.url)
                .json(&serde_json::json!({ "model": self.model, "input": batch }))
                .send()
                .await
                .map_err(|e| err(e.to_string()))?;
            let status = resp.status();
            if !status.is_success() {
                let body = resp.text().await.unwrap_or_default();
                return Err(err(format!("http {status}: {}", body.chars().take(300).collect::<String>())));
            }
            let body: serde_json::Value = resp.json().await.map_err(|e| err(e.to_string()))?;
            let mut data: Vec<(usize, Vec<f32>)> = body["data"]
                .as_array()
                .ok_or_else(|| err("response has no data array".into()))?
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let idx = d["index"].as_u64().map(|x| x as usize).unwrap_or(i);
                    let v = d["embedding"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|x| x.as_f64()).map(|x| x as f32).collect())
                        .unwrap_or_default();
                    (idx, v)
                })
                .collect();
            if data.len() != batch.len() {
                return Err(err(format!("asked for {} embeddings, got {}", batch.len(), data.len())));
            }
            data.sort_by_key(|(i, _)| *i);
            out.extend(data.into_iter().map(|(_, v)| normalize(v)));
        }
        Ok(out)
    }
}

/// The configured embedder, local or remote.
#[derive(Clone)]
pub enum Embedder {
    Local(Arc<LocalEmbedder>),
    Remote(Arc<RemoteEmbedder>),
}

impl Embedder {
    /// `threads`: per forward pass of the local model on ONNX Runtime (candle's are set for the
    /// whole process, [`crate::set_encoder_threads`]).
    pub async fn from_config(cfg: &Config, threads: usize, role: Role) -> Result<Self, EmbedError> {
        if cfg.embed.url.is_empty() {
            let dir: PathBuf = cfg.model_dir();
            let (max, batch, workers) = (cfg.embed.max_tokens, cfg.embed.batch_size, cfg.embed.workers);
            let runtime = Runtime::from_config(cfg, "embed", threads, role)?;
            let e = tokio::task::spawn_blocking(move || LocalEmbedder::load(&dir, max, batch, workers, &runtime))
                .await
                .map_err(|e| EmbedError::Model(e.to_string()))??;
            Ok(Embedder::Local(Arc::new(e)))
        } else {
            let r = RemoteEmbedder::new(
                &cfg.embed.url,
                &cfg.embed.model_id,
                cfg.embed.remote_batch_size,
                Duration::from_millis(cfg.embed.timeout_ms),
                &cfg.tls,
            )?;
            Ok(Embedder::Remote(Arc::new(r)))
        }
    }

    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        match self {
            Embedder::Local(e) => {
                let e = e.clone();
                tokio::task::spawn_blocking(move || e.embed(&texts))
                    .await
                    .map_err(|e| EmbedError::Model(e.to_string()))?
            }
            Embedder::Remote(r) => r.embed(&texts).await,
        }
    }

    /// The contract this embedder produces vectors under (the remote dimension is probed).
    pub async fn contract(&self, model_id: &str) -> Result<EmbeddingContract, EmbedError> {
        let (dim, weights_sha256) = match self {
            Embedder::Local(e) => (e.dim(), e.weights_sha256().to_string()),
            Embedder::Remote(r) => {
                (r.embed(&["dimension probe".to_string()]).await?.first().map(|v| v.len()).unwrap_or(0), String::new())
            }
        };
        Ok(EmbeddingContract {
            model_id: model_id.to_string(),
            dim: dim as u32,
            metric: "inner_product".into(),
            normalized: true,
            weights_sha256,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn combined_views_are_unit_length_and_close_to_each_view() {
        let a = [1.0f32, 0.0, 0.0];
        let b = [0.0f32, 1.0, 0.0];
        let c = combine_views(&[&a, &b]);
        assert!((dot(&c, &c) - 1.0).abs() < 1e-6);
        // Orthogonal views: the mean is equally close to both, closer than they are to each other.
        assert!((dot(&c, &a) - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert!((dot(&c, &b) - dot(&c, &a)).abs() < 1e-6);
        // A single view is itself; identical views too.
        assert_eq!(combine_views(&[&a]), a.to_vec());
        assert_eq!(combine_views(&[&a, &a]), a.to_vec());
    }
}
