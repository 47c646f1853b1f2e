//! The domain types every crate of the mesh shares, without heavy dependencies: what a chunk
//! is (and its form on the wire), query classification, scope filters, hydration tickets, and
//! what a vector means.

pub mod chunk;
pub mod query;
pub mod role;
pub mod scope;
pub mod subject;
pub mod ticket;
pub mod wire;

pub use codeintel_proto as proto;
use serde::{Deserialize, Serialize};

/// What every vector in an index means; services refuse to serve when theirs differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingContract {
    pub model_id: String,
    pub dim: u32,
    /// `inner_product` over L2-normalised vectors (cosine).
    pub metric: String,
    pub normalized: bool,
    /// The sha256 of the weights that made the vectors (a local embedder's
    /// `model.safetensors`); empty for a remote embedder, whose `model_id` names them, and in
    /// manifests written before weights were named, which a local embedder then refuses.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub weights_sha256: String,
}

/// Word-piece id and weight, sorted by id; weights are positive (a SPLADE representation).
pub type SparseVec = Vec<(u32, f32)>;

/// One vector for several views of the same chunk: the normalised mean of their (normalised)
/// vectors. Its cosine with a query is the views' mean cosine scaled by one per chunk factor,
/// so a query close to either view finds the chunk.
pub fn combine_views(views: &[&[f32]]) -> Vec<f32> {
    let dim = views.first().map_or(0, |v| v.len());
    let mut sum = vec![0f32; dim];
    for v in views {
        debug_assert_eq!(v.len(), dim, "views of one chunk share the dimension");
        for (s, x) in sum.iter_mut().zip(v.iter()) {
            *s += x;
        }
    }
    normalize(sum)
}

pub fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    v
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
