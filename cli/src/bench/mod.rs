//! `codeintel bench`: measurements of the index lifecycle and of the running mesh, release build.
//!
//! * `vectors`: synthetic clustered vectors (see `vector_svc::synthetic`) at each size: exact
//!   (`Flat`) against trained primaries, latency p50/p95/p99 and recall@10 against exact search,
//!   build (= vector compaction) time, index size against raw size, and the peak memory of a real
//!   `vector-svc` process serving the trained index.
//! * `lifecycle`: a generated source tree of N chunks is published as a base version (its
//!   vectors synthetic, everything else real), then M chunks' files are edited and
//!   `codeintel index` runs incrementally with the real embedder: seconds until searchable,
//!   split into embedding and everything else; then a whole-repo compaction.
//! * `remote`: a synthetic N-vector version uploaded to the object-store data root and pulled
//!   into an empty mirror (upload, and download-and-swap, seconds).
//! * `gpu` (feature `gpu`): exact search on the GPU against FAISS `Flat` on the CPU over the
//!   same synthetic vectors: agreement of the top k, batched queries per second, latency.
//! * `hydrate`: one repo's hydrations from the rows held in memory against DuckDB over the
//!   Parquet segments, same tickets: latency, memory, load time.
//! * `nprobe`: one repo's trained dense primary at several `vector.nprobe` values, real query
//!   embeddings: recall of the top k against probing every list, and search latency.
//! * `load`: concurrent `Search` or `Answer` clients against a running answer-svc at several
//!   concurrency levels: queries per second, latency percentiles, failures by status code.

mod answers;
mod encoders;
mod gpu;
mod hydrate;
mod lifecycle;
mod load;
mod nprobe;
mod remote;
mod scope;
mod vectors;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use answers::{answers, AnswerFigures};
pub use encoders::{encoders, EncoderFigures};
#[cfg(feature = "gpu")]
pub use gpu::gpu;
pub use gpu::{Agreement, BatchFigures, ConcurrentFigures, GpuFigures};
pub use hydrate::{hydrate, HydrateFigures};
pub use lifecycle::{lifecycle, LifecycleFigures};
pub use load::{
    load, memory_table, parse_queries, table as load_table, LevelFigures, LoadFigures, LoadOptions, MemorySample, Rpc,
    BUILTIN_QUERIES,
};
pub use nprobe::{nprobe, NprobeFigures, NprobeRow};
pub use remote::{remote, RemoteFigures};
pub use scope::{scope, ScopeFigures};
pub use vectors::{vectors, IndexFigures, VectorFigures};

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

impl Latency {
    pub fn of(samples: &mut [Duration]) -> Self {
        samples.sort();
        let p = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len().max(1)) - 1;
            samples.get(i).map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0)
        };
        Self { p50_ms: p(0.50), p95_ms: p(0.95), p99_ms: p(0.99) }
    }
}

pub(crate) fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub fn default_workdir() -> PathBuf {
    std::env::temp_dir().join(format!("codeintel-bench-{}", std::process::id()))
}
