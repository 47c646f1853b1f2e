//! Learned sparse representations (SPLADE): a BERT masked-LM's vocabulary logits turned into
//! term weights, `w(t) = max over tokens of log(1 + relu(logit(t)))`, for documents and queries
//! alike. A document is then a short list of weighted word-piece ids, scored against a query by
//! dot product (lexical-svc keeps them in an inverted index). The model is loaded with candle from
//! local files; `sparse.model_dir` names them.
//!
//! The on-disk form of sparse documents is `codeintel_index::sparse`'s.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::BertForMaskedLM;
use tokenizers::Tokenizer;

use crate::embed::{EmbedError, Runtime};
pub use codeintel_core::SparseVec;

enum SpladeModel {
    Candle(Box<BertForMaskedLM>),
    /// The ONNX export computes the pooled term weights itself (`splade.onnx`).
    Onnx(crate::onnx::OnnxBert),
}

/// A SPLADE encoder running on the CPU.
pub struct SpladeEncoder {
    model: SpladeModel,
    tokenizer: Tokenizer,
    batch_size: usize,
    workers: usize,
}

/// Loads BERT safetensors with the names older checkpoints use adapted: `LayerNorm.gamma` /
/// `beta` become `weight` / `bias`.
pub(crate) fn bert_tensors(bytes: &[u8]) -> Result<HashMap<String, Tensor>, EmbedError> {
    let loaded =
        candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(|e| EmbedError::Model(e.to_string()))?;
    Ok(loaded
        .into_iter()
        .map(|(k, v)| {
            let k = if let Some(p) = k.strip_suffix("LayerNorm.gamma") {
                format!("{p}LayerNorm.weight")
            } else if let Some(p) = k.strip_suffix("LayerNorm.beta") {
                format!("{p}LayerNorm.bias")
            } else {
                k
            };
            (k, v)
        })
        .collect())
}

/// [`bert_tensors`], and a decoder tied to the word embeddings (absent from the file)
/// materialised from them with the `cls.predictions.bias` bias.
fn bert_mlm_tensors(bytes: &[u8]) -> Result<HashMap<String, Tensor>, EmbedError> {
    let mut out = bert_tensors(bytes)?;
    if !out.contains_key("cls.predictions.decoder.weight") {
        let emb = out
            .get("bert.embeddings.word_embeddings.weight")
            .cloned()
            .ok_or_else(|| EmbedError::Model("no word embeddings to tie the decoder to".into()))?;
        out.insert("cls.predictions.decoder.weight".into(), emb);
    }
    if !out.contains_key("cls.predictions.decoder.bias") {
        let bias = out
            .get("cls.predictions.bias")
            .cloned()
            .ok_or_else(|| EmbedError::Model("masked-LM head has no bias".into()))?;
        out.insert("cls.predictions.decoder.bias".into(), bias);
    }
    Ok(out)
}

impl SpladeEncoder {
    /// With [`Runtime::Onnx`], `workers` sessions are opened (one per concurrent forward pass).
    pub fn load(
        dir: &Path,
        max_tokens: usize,
        batch_size: usize,
        workers: usize,
        runtime: &Runtime,
    ) -> Result<Self, EmbedError> {
        let workers = workers.max(1);
        let (model, tokenizer) = match runtime {
            Runtime::Candle => {
                let (cfg, bytes, tokenizer) = crate::embed::read_bert_dir(dir, max_tokens)?;
                let vb = VarBuilder::from_tensors(bert_mlm_tensors(&bytes)?, DType::F32, &Device::Cpu);
                let model = BertForMaskedLM::load(vb, &cfg).map_err(|e| EmbedError::Model(e.to_string()))?;
                (SpladeModel::Candle(Box::new(model)), tokenizer)
            }
            Runtime::Onnx { library, threads, .. } => {
                let (cfg, tokenizer) = crate::embed::read_bert_config(dir, max_tokens)?;
                let file = runtime.onnx_file(dir, "splade");
                let m = crate::onnx::OnnxBert::load(library, &file, workers, *threads)?;
                if m.width() != cfg.vocab_size {
                    return Err(EmbedError::Model(format!(
                        "{} gives {} weights per text, the vocabulary has {}",
                        file.display(),
                        m.width(),
                        cfg.vocab_size
                    )));
                }
                (SpladeModel::Onnx(m), tokenizer)
            }
        };
        Ok(Self { model, tokenizer, batch_size: batch_size.max(1), workers })
    }

    /// The word-piece of an id (for explaining matches).
    pub fn token(&self, id: u32) -> Option<String> {
        self.tokenizer.id_to_token(id)
    }

    /// Encodes texts (in input order), keeping each one's `max_terms` heaviest terms (0 = all).
    /// Batches of similar length are shared out among the workers, as the embedder does.
    pub fn encode(&self, texts: &[String], max_terms: usize) -> Result<Vec<SparseVec>, EmbedError> {
        crate::embed::in_batches(texts, self.batch_size, self.workers, |batch| self.encode_batch(batch, max_terms))
    }

    fn encode_batch(&self, texts: &[&str], max_terms: usize) -> Result<Vec<SparseVec>, EmbedError> {
        let m = |e: candle_core::Error| EmbedError::Model(e.to_string());
        let enc = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| EmbedError::Model(e.to_string()))?;
        let n = enc.len();
        let len = enc.first().map(|e| e.get_ids().len()).unwrap_or(0);
        if n == 0 || len == 0 {
            return Ok(vec![Vec::new(); n]);
        }
        let model = match &self.model {
            SpladeModel::Candle(model) => model,
            SpladeModel::Onnx(onnx) => {
                let (ids, mask) = crate::embed::onnx_inputs(&enc);
                return Ok(onnx.run(ids, mask, n, len)?.iter().map(|r| sparsify(r, max_terms)).collect());
            }
        };
        let ids: Vec<u32> = enc.iter().flat_map(|e| e.get_ids().to_vec()).collect();
        let mask: Vec<u32> = enc.iter().flat_map(|e| e.get_attention_mask().to_vec()).collect();
        let ids = Tensor::from_vec(ids, (n, len), &Device::Cpu).map_err(m)?;
        let mask = Tensor::from_vec(mask, (n, len), &Device::Cpu).map_err(m)?;
        let types = ids.zeros_like().map_err(m)?;
        let logits = model.forward(&ids, &types, Some(&mask)).map_err(m)?; // (n, len, vocab)
                                                                           // max over positions of log(1 + relu(x)) = log(1 + relu(max over positions of x)), the
                                                                           // function being monotonic: pool the logits first (padding pushed far below), then
                                                                           // transform the small (n, vocab) result. Fewer vocabulary-sized tensors per batch.
        let pad = ((mask.to_dtype(DType::F32).map_err(m)? - 1.0).map_err(m)? * 1e9).map_err(m)?;
        let pooled = logits.broadcast_add(&pad.unsqueeze(2).map_err(m)?).map_err(m)?.max(1).map_err(m)?;
        let act = (pooled.relu().map_err(m)? + 1.0).map_err(m)?.log().map_err(m)?; // (n, vocab)
        let rows: Vec<Vec<f32>> = act.to_vec2().map_err(m)?;
        Ok(rows.into_iter().map(|r| sparsify(&r, max_terms)).collect())
    }
}

/// The positive entries of a dense weight row, the `max_terms` heaviest (0 = all), sorted by id.
pub fn sparsify(row: &[f32], max_terms: usize) -> SparseVec {
    let mut v: SparseVec = row.iter().enumerate().filter(|(_, w)| **w > 0.0).map(|(i, w)| (i as u32, *w)).collect();
    if max_terms > 0 && v.len() > max_terms {
        v.select_nth_unstable_by(max_terms - 1, |a, b| b.1.total_cmp(&a.1));
        v.truncate(max_terms);
    }
    v.sort_unstable_by_key(|(t, _)| *t);
    v
}

/// Dot product of two id-sorted sparse vectors.
pub fn dot(a: &[(u32, f32)], b: &[(u32, f32)]) -> f32 {
    let (mut i, mut j, mut s) = (0, 0, 0.0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                s += a[i].1 * b[j].1;
                i += 1;
                j += 1;
            }
        }
    }
    s
}
