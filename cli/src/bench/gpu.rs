//! `codeintel bench gpu`: GPU exact search against FAISS `Flat` on the CPU.

use serde::Serialize;

use super::Latency;

#[derive(Debug, Serialize)]
pub struct BatchFigures {
    pub batch: usize,
    pub queries_per_s: f64,
}

#[derive(Debug, Serialize)]
pub struct ConcurrentFigures {
    pub threads: usize,
    pub queries_per_s: f64,
}

/// How the GPU's top k compares with FAISS `Flat` on the CPU, query by query.
#[derive(Debug, Serialize)]
pub struct Agreement {
    /// Queries whose k ids came back identical and in the same order.
    pub identical_lists: f64,
    /// Share of the CPU's top k that the GPU's top k holds.
    pub recall: f64,
    /// Largest difference between the scores at the same rank.
    pub max_abs_score_diff: f32,
}

#[derive(Debug, Serialize)]
pub struct GpuFigures {
    pub n: usize,
    pub dim: usize,
    pub k: usize,
    pub queries: usize,
    pub device: String,
    pub cpu_threads: usize,
    /// Copying the vectors to the GPU, seconds.
    pub upload_s: f64,
    /// FAISS `Flat` (BLAS, every core), all queries in one call.
    pub cpu_batched_queries_per_s: f64,
    /// FAISS `Flat`, one query at a time (the first 200 queries).
    pub cpu_single: Latency,
    /// GPU, one query at a time (the first 1,000 queries).
    pub gpu_single: Latency,
    pub gpu_batched: Vec<BatchFigures>,
    /// `threads` threads each searching one query at a time (vector-svc's path): the GPU
    /// batches the queries that wait while it is busy.
    pub gpu_concurrent: Vec<ConcurrentFigures>,
    pub agreement: Agreement,
}

#[cfg(feature = "gpu")]
fn agreement(gpu: &[Vec<(u32, f32)>], cpu_scores: &[f32], cpu_ids: &[i64], k: usize) -> Agreement {
    let (mut identical, mut hit, mut total, mut diff) = (0usize, 0usize, 0usize, 0f32);
    for (q, g) in gpu.iter().enumerate() {
        let ids = &cpu_ids[q * k..(q + 1) * k];
        let scores = &cpu_scores[q * k..(q + 1) * k];
        let truth: std::collections::HashSet<i64> = ids.iter().copied().filter(|&i| i >= 0).collect();
        total += truth.len();
        hit += g.iter().filter(|h| truth.contains(&(h.0 as i64))).count();
        identical += usize::from(g.iter().map(|h| h.0 as i64).eq(ids.iter().copied().filter(|&i| i >= 0)));
        for (h, s) in g.iter().zip(scores) {
            diff = diff.max((h.1 - s).abs());
        }
    }
    Agreement {
        identical_lists: identical as f64 / gpu.len().max(1) as f64,
        recall: hit as f64 / total.max(1) as f64,
        max_abs_score_diff: diff,
    }
}

/// GPU exact search against FAISS `Flat` on the CPU, same vectors and queries.
#[cfg(feature = "gpu")]
pub fn gpu(
    sizes: &[usize],
    dim: usize,
    queries: usize,
    batches: &[usize],
    k: usize,
    ordinal: usize,
) -> anyhow::Result<Vec<GpuFigures>> {
    use std::time::Instant;

    use codeintel_index::vector::IndexKind;
    use vector_svc::gpu::{Gpu, Resident};
    use vector_svc::{faiss_ext, synthetic};
    let device = Gpu::open(ordinal).map_err(|e| anyhow::anyhow!("no usable GPU: {e}"))?;
    let cpu_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = Vec::new();
    for &n in sizes {
        eprintln!("[{n} x {dim}] generating clustered vectors");
        let (data, qs) = synthetic::clustered_split(n, queries, dim, (n / 100).max(16), 1.0, n as u64);
        let ids: Vec<u64> = (0..n as u64).collect();
        let flat = codeintel_index::vector::build_index(dim as u32, &data, &ids, IndexKind::Flat)?;
        eprintln!("[{n} x {dim}] CPU Flat, {queries} queries in one call");
        let t = Instant::now();
        let (cpu_scores, cpu_ids) = faiss_ext::search(&flat, &qs, k, 1, None)?;
        let cpu_batched_queries_per_s = queries as f64 / t.elapsed().as_secs_f64();
        let mut lat = Vec::new();
        for q in qs.chunks(dim).take(200) {
            let t = Instant::now();
            faiss_ext::search(&flat, q, k, 1, None)?;
            lat.push(t.elapsed());
        }
        let cpu_single = Latency::of(&mut lat);
        drop(flat);
        eprintln!("[{n} x {dim}] GPU");
        let t = Instant::now();
        let resident = Resident::upload(&device, &data, dim).map_err(anyhow::Error::msg)?;
        let upload_s = t.elapsed().as_secs_f64();
        resident.search(&qs[..dim], k).map_err(anyhow::Error::msg)?;
        let mut lat = Vec::new();
        for q in qs.chunks(dim).take(1000) {
            let t = Instant::now();
            resident.search(q, k).map_err(anyhow::Error::msg)?;
            lat.push(t.elapsed());
        }
        let gpu_single = Latency::of(&mut lat);
        let mut gpu_batched = Vec::new();
        let mut found = Vec::new();
        for &b in batches {
            found.clear();
            let t = Instant::now();
            for chunk in qs.chunks(b.max(1) * dim) {
                found.extend(resident.search(chunk, k).map_err(anyhow::Error::msg)?);
            }
            let qps = queries as f64 / t.elapsed().as_secs_f64();
            eprintln!("  batch {b}: {qps:.0} queries/s");
            gpu_batched.push(BatchFigures { batch: b, queries_per_s: qps });
        }
        let mut gpu_concurrent = Vec::new();
        for threads in [4usize, 16, 64] {
            let t = Instant::now();
            std::thread::scope(|s| -> anyhow::Result<()> {
                let workers: Vec<_> = (0..threads)
                    .map(|w| {
                        let (resident, qs) = (&resident, &qs);
                        s.spawn(move || -> Result<(), String> {
                            for q in qs.chunks(dim).skip(w).step_by(threads) {
                                resident.search_one(q, k)?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                for w in workers {
                    w.join().map_err(|_| anyhow::anyhow!("a search thread panicked"))?.map_err(anyhow::Error::msg)?;
                }
                Ok(())
            })?;
            let qps = queries as f64 / t.elapsed().as_secs_f64();
            eprintln!("  {threads} threads, one query each: {qps:.0} queries/s");
            gpu_concurrent.push(ConcurrentFigures { threads, queries_per_s: qps });
        }
        let agreement = agreement(&found, &cpu_scores, &cpu_ids, k);
        eprintln!("  {agreement:?}");
        out.push(GpuFigures {
            n,
            dim,
            k,
            queries,
            device: device.describe(),
            cpu_threads,
            upload_s,
            cpu_batched_queries_per_s,
            cpu_single,
            gpu_single,
            gpu_batched,
            gpu_concurrent,
            agreement,
        });
    }
    Ok(out)
}
