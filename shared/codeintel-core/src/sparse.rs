//! Learned sparse representations (SPLADE): a BERT masked-LM's vocabulary logits turned into
//! term weights, `w(t) = max over tokens of log(1 + relu(logit(t)))`, for documents and queries
//! alike. A document is then a short list of weighted word-piece ids, scored against a query by
//! dot product (lexical-svc keeps them in an inverted index). The model is loaded with candle from
//! local files; `sparse.model_dir` names them.
//!
//! Also the on-disk form of a set of sparse documents ([`write_docs`] / [`read_docs`]): per
//! document its chunk id, path, language and terms, little-endian, with a magic header.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::BertForMaskedLM;
use tokenizers::Tokenizer;

use crate::embed::EmbedError;

/// Word-piece id and weight, sorted by id; weights are positive.
pub type SparseVec = Vec<(u32, f32)>;

/// A SPLADE encoder running on the CPU.
pub struct SpladeEncoder {
    model: BertForMaskedLM,
    tokenizer: Tokenizer,
    batch_size: usize,
    workers: usize,
}

/// Loads safetensors and adapts the names that older BERT checkpoints use: `LayerNorm.gamma` /
/// `beta` become `weight` / `bias`, and a decoder tied to the word embeddings (absent from the
/// file) is materialised from them with the `cls.predictions.bias` bias.
fn bert_mlm_tensors(bytes: &[u8]) -> Result<HashMap<String, Tensor>, EmbedError> {
    let loaded =
        candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(|e| EmbedError::Model(e.to_string()))?;
    let mut out: HashMap<String, Tensor> = loaded
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
        .collect();
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
    pub fn load(dir: &Path, max_tokens: usize, batch_size: usize, workers: usize) -> Result<Self, EmbedError> {
        let (cfg, bytes, tokenizer) = crate::embed::read_bert_dir(dir, max_tokens)?;
        let vb = VarBuilder::from_tensors(bert_mlm_tensors(&bytes)?, DType::F32, &Device::Cpu);
        let model = BertForMaskedLM::load(vb, &cfg).map_err(|e| EmbedError::Model(e.to_string()))?;
        Ok(Self { model, tokenizer, batch_size: batch_size.max(1), workers: workers.max(1) })
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
        let ids: Vec<u32> = enc.iter().flat_map(|e| e.get_ids().to_vec()).collect();
        let mask: Vec<u32> = enc.iter().flat_map(|e| e.get_attention_mask().to_vec()).collect();
        let ids = Tensor::from_vec(ids, (n, len), &Device::Cpu).map_err(m)?;
        let mask = Tensor::from_vec(mask, (n, len), &Device::Cpu).map_err(m)?;
        let types = ids.zeros_like().map_err(m)?;
        let logits = self.model.forward(&ids, &types, Some(&mask)).map_err(m)?; // (n, len, vocab)
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

/// One stored sparse document.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseDoc {
    pub chunk_id: u64,
    pub path: String,
    pub language: String,
    pub terms: SparseVec,
}

const MAGIC: &[u8; 8] = b"CISPRS01";

fn put_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u32).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

/// Writes documents to `path` (through a temporary file, fsynced, then renamed).
pub fn write_docs(path: &Path, docs: &[SparseDoc]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    {
        let f = std::fs::File::create(&tmp)?;
        let mut w = BufWriter::new(&f);
        w.write_all(MAGIC)?;
        w.write_all(&(docs.len() as u64).to_le_bytes())?;
        for d in docs {
            w.write_all(&d.chunk_id.to_le_bytes())?;
            put_str(&mut w, &d.path)?;
            put_str(&mut w, &d.language)?;
            w.write_all(&(d.terms.len() as u32).to_le_bytes())?;
            for (t, x) in &d.terms {
                w.write_all(&t.to_le_bytes())?;
                w.write_all(&x.to_le_bytes())?;
            }
        }
        w.flush()?;
        drop(w);
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

fn get<const N: usize>(r: &mut impl Read) -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

fn get_str(r: &mut impl Read) -> std::io::Result<String> {
    let n = u32::from_le_bytes(get(r)?) as usize;
    let mut b = vec![0u8; n];
    r.read_exact(&mut b)?;
    String::from_utf8(b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Reads what [`write_docs`] wrote.
pub fn read_docs(path: &Path) -> std::io::Result<Vec<SparseDoc>> {
    let mut r = BufReader::new(std::fs::File::open(path)?);
    if &get::<8>(&mut r)? != MAGIC {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not a sparse document file", path.display()),
        ));
    }
    let n = u64::from_le_bytes(get(&mut r)?) as usize;
    let mut docs = Vec::with_capacity(n.min(1 << 24));
    for _ in 0..n {
        let chunk_id = u64::from_le_bytes(get(&mut r)?);
        let path = get_str(&mut r)?;
        let language = get_str(&mut r)?;
        let nnz = u32::from_le_bytes(get(&mut r)?) as usize;
        let mut terms = Vec::with_capacity(nnz);
        for _ in 0..nnz {
            let t = u32::from_le_bytes(get(&mut r)?);
            let x = f32::from_le_bytes(get(&mut r)?);
            terms.push((t, x));
        }
        docs.push(SparseDoc { chunk_id, path, language, terms });
    }
    Ok(docs)
}

/// The live documents of a set of files (oldest first): a later file's copy of a chunk replaces
/// an earlier one, and `dead` chunk ids are dropped. Sorted by chunk id.
pub fn live_docs(
    dir: &Path,
    files: &[String],
    dead: &std::collections::HashSet<u64>,
) -> std::io::Result<Vec<SparseDoc>> {
    let mut by_id: std::collections::BTreeMap<u64, SparseDoc> = std::collections::BTreeMap::new();
    for f in files {
        let p = dir.join(f);
        let docs = read_docs(&p).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
        for d in docs {
            by_id.insert(d.chunk_id, d);
        }
    }
    by_id.retain(|id, _| !dead.contains(id));
    Ok(by_id.into_values().collect())
}
