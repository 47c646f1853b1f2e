//! Exact inner-product search on a CUDA GPU (feature `gpu`).
//!
//! A repo's live vectors are held on the device as one row-major f32 matrix. A batch of queries
//! is scored by one cuBLAS matrix product (vectors^T x queries, every score exact in f32, no
//! TF32), and the top k of each query is selected on the device by a kernel compiled with NVRTC
//! at start: each block takes a segment of 4096 scores into shared memory and keeps its best k
//! (a bitonic top-k: runs of k sorted, then halved pairwise and re-merged until one run is
//! left); passes repeat over the kept candidates until one segment per query is left.
//! Only the k winners per query come back to the host.
//!
//! vector-svc searches one query per request; [`Resident::search_one`] batches the queries of
//! concurrent requests: while the GPU is busy, arriving queries wait in a queue, and a batching
//! thread searches all that wait in one product once it is free.
//!
//! CUDA's driver, cuBLAS and NVRTC are loaded at run time (cudarc's `dynamic-loading`), so the
//! binary builds without a CUDA toolkit and, on a machine without them, [`Gpu::open`] returns an
//! error instead of failing: the caller falls back to the CPU.
//!
//! Unsafe code is allowed in this module alone: cuBLAS calls and kernel launches are `unsafe`
//! in cudarc because the arguments' shapes are not checked; each call below states its shapes.
#![allow(unsafe_code)]

use std::sync::Arc;

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};
use parking_lot::Mutex;

/// Scores per block (a power of two; 32 KiB of shared memory with the ids).
pub const SEGMENT: usize = 4096;
/// The largest k the GPU selects; deeper searches go to the CPU index.
pub const MAX_K: usize = SEGMENT / 2;
/// Row id of padding (a segment past the end of the data).
const NONE: i32 = i32::MAX;
/// Threads per block (`THREADS` in the kernel too).
const THREADS: u32 = 1024;
/// Device memory one batch's query-by-vector score matrix may take.
const SCORE_BYTES: usize = 1 << 30;

const KERNEL: &str = r#"
#define SEG 4096
#define NONE 0x7fffffff

#define THREADS 1024
#define PER ((SEG / 2 + THREADS - 1) / THREADS)

// Higher score first; equal scores by lower row id.
__device__ __forceinline__ bool better(float va, int ia, float vb, int ib) {
    return va > vb || (va == vb && ia < ib);
}

// Orders positions lo < hi: the better first when `first`, else the worse first.
__device__ __forceinline__ void exchange(float* sv, int* si, int lo, int hi, bool first) {
    const float a = sv[lo], b = sv[hi];
    const int ia = si[lo], ib = si[hi];
    if (first ? better(b, ib, a, ia) : better(a, ia, b, ib)) {
        sv[lo] = b; sv[hi] = a;
        si[lo] = ib; si[hi] = ia;
    }
}

// Block (x, y) takes segment x of row y: `len` scores at vals[y * row_stride ...] with their ids
// (ids[...] when has_ids, else the position), and writes its best k, best first, to
// out_v/out_i[(y * gridDim.x + x) * k ...]. Launched with THREADS threads per block.
extern "C" __global__ void topk_pass(const float* __restrict__ vals, const int* __restrict__ ids, int has_ids,
                                     long long row_stride, int len, int k,
                                     float* __restrict__ out_v, int* __restrict__ out_i) {
    __shared__ float sv[SEG];
    __shared__ int si[SEG];
    const float neg = __int_as_float(0xff800000);
    const long long row = blockIdx.y;
    const int seg = blockIdx.x;
    const long long base = row * row_stride;
    const int start = seg * SEG;
    for (int j = threadIdx.x; j < SEG; j += blockDim.x) {
        const int p = start + j;
        float v = neg;
        int id = NONE;
        if (p < len) {
            const int c = has_ids ? ids[base + p] : p;
            if (c != NONE) {
                v = vals[base + p];
                id = c;
            }
        }
        sv[j] = v;
        si[j] = id;
    }
    // Bitonic top-k: sort runs of K (k rounded up to a power of two) in alternating directions,
    // then halve until one run is left: the better of each pair of runs' elements at the same
    // rank (one run best first, the other worst first) is a bitonic run holding the pair's best
    // K, which a bitonic merge sorts again.
    int K = 1;
    while (K < k) K <<= 1;
    for (int size = 2; size <= K; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            __syncthreads();
            for (int t = threadIdx.x; t < SEG / 2; t += THREADS) {
                const int lo = 2 * t - (t & (stride - 1));
                exchange(sv, si, lo, lo + stride, (lo & size) == 0);
            }
        }
    }
    __syncthreads();
    for (int width = SEG; width > K; width >>= 1) {
        const int half = width >> 1;
        float rv[PER];
        int ri[PER];
        int c = 0;
        for (int t = threadIdx.x; t < half; t += THREADS, ++c) {
            const int a = 2 * (t - (t & (K - 1))) + (t & (K - 1));
            const int b = a + K;
            const bool take_b = better(sv[b], si[b], sv[a], si[a]);
            rv[c] = take_b ? sv[b] : sv[a];
            ri[c] = take_b ? si[b] : si[a];
        }
        __syncthreads();
        c = 0;
        for (int t = threadIdx.x; t < half; t += THREADS, ++c) {
            sv[t] = rv[c];
            si[t] = ri[c];
        }
        for (int stride = K >> 1; stride > 0; stride >>= 1) {
            __syncthreads();
            for (int t = threadIdx.x; t < half / 2; t += THREADS) {
                const int lo = 2 * t - (t & (stride - 1));
                exchange(sv, si, lo, lo + stride, (lo & K) == 0);
            }
        }
        __syncthreads();
    }
    const long long out = (row * gridDim.x + seg) * (long long)k;
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
        out_v[out + j] = sv[j];
        out_i[out + j] = si[j];
    }
}
"#;

fn cuda(what: &str) -> impl Fn(cudarc::driver::DriverError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// One CUDA device with its stream, cuBLAS handle and the compiled top-k kernel.
pub struct Gpu {
    ordinal: usize,
    name: String,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    topk: CudaFunction,
    /// Stands in for the ids of the first pass (positions are the ids there).
    no_ids: CudaSlice<i32>,
    /// One search at a time: they share the stream and the cuBLAS handle, and the device runs
    /// one matrix product at full speed anyway.
    lock: Mutex<()>,
}

impl Gpu {
    /// Opens device `ordinal`, or says why there is no usable GPU.
    pub fn open(ordinal: usize) -> Result<Arc<Self>, String> {
        // SAFETY: each only tries to dlopen the library (and keeps it when found).
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err("the CUDA driver (libcuda.so) is not installed".into());
        }
        let count = CudaContext::device_count().map_err(cuda("no CUDA device"))?;
        if ordinal >= count.max(0) as usize {
            return Err(format!("GPU {ordinal} asked for, {count} present"));
        }
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err("cuBLAS (libcublas.so) not found: add CUDA's lib64 to LD_LIBRARY_PATH".into());
        }
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err("NVRTC (libnvrtc.so) not found: add CUDA's lib64 to LD_LIBRARY_PATH".into());
        }
        let ctx = CudaContext::new(ordinal).map_err(cuda("CUDA context"))?;
        let name = ctx.name().map_err(cuda("device name"))?;
        let stream = ctx.new_stream().map_err(cuda("CUDA stream"))?;
        let blas = CudaBlas::new(stream.clone()).map_err(|e| format!("cuBLAS: {e}"))?;
        let ptx = cudarc::nvrtc::compile_ptx(KERNEL).map_err(|e| format!("NVRTC compiling the top-k kernel: {e}"))?;
        let module = ctx.load_module(ptx).map_err(cuda("loading the top-k kernel"))?;
        let topk = module.load_function("topk_pass").map_err(cuda("top-k kernel"))?;
        let no_ids = stream.alloc_zeros::<i32>(1).map_err(cuda("allocation"))?;
        Ok(Arc::new(Self { ordinal, name, stream, blas, topk, no_ids, lock: Mutex::new(()) }))
    }

    /// (free, total) device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize), String> {
        self.stream.context().mem_get_info().map_err(cuda("memory info"))
    }

    /// `gpu <ordinal>: <name>, <free> MiB free of <total> MiB`.
    pub fn describe(&self) -> String {
        match self.memory() {
            Ok((free, total)) => {
                format!("gpu {}: {}, {} MiB free of {} MiB", self.ordinal, self.name, free >> 20, total >> 20)
            }
            Err(_) => format!("gpu {}: {}", self.ordinal, self.name),
        }
    }

    /// Sorts each row's `len` candidates (at `row_stride`) in segments, keeping `k` per segment:
    /// returns the kept scores and ids, `rows` x `segments(len)` x `k`.
    #[allow(clippy::too_many_arguments)]
    fn select(
        &self,
        vals: &CudaSlice<f32>,
        ids: Option<&CudaSlice<i32>>,
        row_stride: usize,
        len: usize,
        rows: usize,
        k: usize,
    ) -> Result<(CudaSlice<f32>, CudaSlice<i32>, usize), String> {
        let segments = len.div_ceil(SEGMENT);
        let out = rows * segments * k;
        // SAFETY: uninitialised device memory, every element of which the kernel writes (each
        // of the rows x segments blocks writes its k).
        let mut out_v = unsafe { self.stream.alloc::<f32>(out) }.map_err(cuda("allocation"))?;
        let mut out_i = unsafe { self.stream.alloc::<i32>(out) }.map_err(cuda("allocation"))?;
        let has_ids = i32::from(ids.is_some());
        let (row_stride, len_i, k_i) = (row_stride as i64, len as i32, k as i32);
        let cfg = LaunchConfig {
            grid_dim: (segments as u32, rows as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = self.stream.launch_builder(&self.topk);
        launch
            .arg(vals)
            .arg(ids.unwrap_or(&self.no_ids))
            .arg(&has_ids)
            .arg(&row_stride)
            .arg(&len_i)
            .arg(&k_i)
            .arg(&mut out_v)
            .arg(&mut out_i);
        // SAFETY: `vals` (and `ids` when given) hold rows x row_stride elements with
        // len <= row_stride; the outputs hold rows x segments x k; k <= SEGMENT.
        unsafe { launch.launch(cfg) }.map_err(cuda("top-k kernel launch"))?;
        Ok((out_v, out_i, segments))
    }
}

type Hits = Result<Vec<(u32, f32)>, String>;

/// A query waiting for the GPU.
struct Waiting {
    query: Vec<f32>,
    k: usize,
    done: std::sync::mpsc::Sender<Hits>,
}

/// The vectors on the device.
struct Data {
    gpu: Arc<Gpu>,
    rows: CudaSlice<f32>,
    n: usize,
    dim: usize,
}

/// Vectors resident on a GPU, with the thread that batches single queries for them.
pub struct Resident {
    data: Arc<Data>,
    queue: std::sync::mpsc::Sender<Waiting>,
}

impl Resident {
    /// Copies `n` row-major vectors of `dim` floats to the device.
    pub fn upload(gpu: &Arc<Gpu>, vectors: &[f32], dim: usize) -> Result<Self, String> {
        if dim == 0 || !vectors.len().is_multiple_of(dim) {
            return Err(format!("{} floats are not vectors of dimension {dim}", vectors.len()));
        }
        let n = vectors.len() / dim;
        if n >= NONE as usize {
            return Err(format!("{n} vectors: the GPU search numbers rows with 31-bit ids"));
        }
        let rows = {
            let _one = gpu.lock.lock();
            let rows = gpu.stream.clone_htod(vectors).map_err(cuda("copying vectors to the GPU"))?;
            gpu.stream.synchronize().map_err(cuda("copying vectors to the GPU"))?;
            rows
        };
        let data = Arc::new(Data { gpu: gpu.clone(), rows, n, dim });
        let (queue, waiting) = std::sync::mpsc::channel();
        let d = data.clone();
        std::thread::Builder::new()
            .name("gpu-batcher".into())
            .spawn(move || batcher(&d, &waiting))
            .map_err(|e| format!("cannot start the GPU batching thread: {e}"))?;
        Ok(Self { data, queue })
    }

    pub fn len(&self) -> usize {
        self.data.n
    }

    pub fn is_empty(&self) -> bool {
        self.data.n == 0
    }

    /// Device memory the vectors take.
    pub fn bytes(&self) -> usize {
        self.data.n * self.data.dim * 4
    }

    /// The best `k` (row, inner product) of each of the row-major `queries`, best first (equal
    /// scores by row). `k` is at most [`MAX_K`].
    pub fn search(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<(u32, f32)>>, String> {
        self.data.check(queries, k)?;
        let _one = self.data.gpu.lock.lock();
        self.data.search_locked(queries, k)
    }

    /// The best `k` of one query. It waits in a queue that the batching thread drains whole
    /// each time the GPU is free, so concurrent callers share one matrix product.
    pub fn search_one(&self, query: &[f32], k: usize) -> Hits {
        self.data.check(query, k)?;
        if query.len() != self.data.dim {
            return Err(format!("one query of dimension {}, {} floats given", self.data.dim, query.len()));
        }
        let (done, answer) = std::sync::mpsc::channel();
        let stopped = || "the GPU batching thread has stopped".to_string();
        self.queue.send(Waiting { query: query.to_vec(), k, done }).map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }
}

/// Searches whatever waits, in one batch, until the [`Resident`] is dropped.
fn batcher(data: &Data, waiting: &std::sync::mpsc::Receiver<Waiting>) {
    while let Ok(first) = waiting.recv() {
        let mut batch = vec![first];
        batch.extend(waiting.try_iter());
        let k_max = batch.iter().map(|w| w.k).max().unwrap_or(0);
        let queries: Vec<f32> = batch.iter().flat_map(|w| w.query.iter().copied()).collect();
        let found = {
            let _one = data.gpu.lock.lock();
            data.search_locked(&queries, k_max)
        };
        match found {
            Ok(found) => {
                for (w, mut hits) in batch.into_iter().zip(found) {
                    hits.truncate(w.k);
                    let _ = w.done.send(Ok(hits));
                }
            }
            Err(e) => {
                for w in batch {
                    let _ = w.done.send(Err(e.clone()));
                }
            }
        }
    }
}

impl Data {
    fn check(&self, queries: &[f32], k: usize) -> Result<(), String> {
        if !queries.len().is_multiple_of(self.dim) {
            return Err(format!("{} floats are not queries of dimension {}", queries.len(), self.dim));
        }
        if k > MAX_K {
            return Err(format!("the GPU selects at most {MAX_K} results per query, {k} asked for"));
        }
        Ok(())
    }

    /// [`Resident::search`] with the GPU's lock held.
    fn search_locked(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<(u32, f32)>>, String> {
        let (n, dim) = (self.n, self.dim);
        let nq = queries.len() / dim;
        let k = k.min(n);
        if n == 0 || k == 0 || nq == 0 {
            return Ok(vec![Vec::new(); nq]);
        }
        let gpu = &self.gpu;
        gpu.stream.context().bind_to_thread().map_err(cuda("CUDA context"))?;
        let batch = (SCORE_BYTES / (4 * n)).clamp(1, 4096);
        let mut out = Vec::with_capacity(nq);
        for qs in queries.chunks(batch * dim) {
            let b = qs.len() / dim;
            let q_dev = gpu.stream.clone_htod(qs).map_err(cuda("copying queries"))?;
            // SAFETY: the product below writes all n x b scores (beta = 0).
            let mut scores = unsafe { gpu.stream.alloc::<f32>(n * b) }.map_err(cuda("allocation"))?;
            let gemm = GemmConfig {
                transa: cublasOperation_t::CUBLAS_OP_T,
                transb: cublasOperation_t::CUBLAS_OP_N,
                m: n as i32,
                n: b as i32,
                k: dim as i32,
                alpha: 1.0f32,
                lda: dim as i32,
                ldb: dim as i32,
                beta: 0.0f32,
                ldc: n as i32,
            };
            // SAFETY: column-major, `rows` is dim x n (lda = dim), `q_dev` dim x b (ldb = dim);
            // rows^T . q_dev is n x b (ldc = n): query j's scores are n contiguous floats.
            unsafe { gpu.blas.gemm(gemm, &self.rows, &q_dev, &mut scores) }
                .map_err(|e| format!("cuBLAS sgemm: {e}"))?;
            let (mut vals, mut ids, mut segments) = gpu.select(&scores, None, n, n, b, k)?;
            drop(scores);
            while segments > 1 {
                let len = segments * k;
                let (v, i, s) = gpu.select(&vals, Some(&ids), len, len, b, k)?;
                (vals, ids, segments) = (v, i, s);
            }
            let vals = gpu.stream.clone_dtoh(&vals).map_err(cuda("copying results"))?;
            let ids = gpu.stream.clone_dtoh(&ids).map_err(cuda("copying results"))?;
            for r in 0..b {
                let row = (r * k..(r + 1) * k)
                    .filter(|&j| ids[j] != NONE)
                    .map(|j| (ids[j] as u32, vals[j]))
                    .collect::<Vec<_>>();
                out.push(row);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    //! These need a CUDA GPU: on a GPU host, `scripts/gpu-check.sh` (or `cargo test -p vector-svc
    //! --features gpu -- --include-ignored`) runs them. Without one, `open_reports_why_there_is_no_gpu`
    //! runs instead.
    use super::*;
    use crate::synthetic;

    fn exact(data: &[f32], queries: &[f32], dim: usize, k: usize) -> Vec<Vec<(u32, f32)>> {
        queries
            .chunks(dim)
            .map(|q| {
                let mut s: Vec<(u32, f32)> = data
                    .chunks(dim)
                    .enumerate()
                    .map(|(i, v)| (i as u32, v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>()))
                    .collect();
                s.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                s.truncate(k);
                s
            })
            .collect()
    }

    /// Same rows as the exact CPU ranking, allowing swaps between scores within f32 rounding.
    fn assert_same(gpu: &[Vec<(u32, f32)>], cpu: &[Vec<(u32, f32)>]) {
        assert_eq!(gpu.len(), cpu.len());
        for (g, c) in gpu.iter().zip(cpu) {
            assert_eq!(g.len(), c.len());
            for (a, b) in g.iter().zip(c) {
                assert!((a.1 - b.1).abs() < 1e-4, "score {} vs {}", a.1, b.1);
                if a.0 != b.0 {
                    assert!((a.1 - b.1).abs() < 1e-5, "row {} vs {} at distinct scores", a.0, b.0);
                }
            }
            assert!(g.windows(2).all(|w| w[0].1 >= w[1].1), "not best first");
        }
    }

    #[test]
    #[ignore = "needs a CUDA GPU; runs on a GPU host by scripts/gpu-check.sh (--include-ignored)"]
    fn top_k_equals_exact_cpu_search() {
        let gpu = Gpu::open(0).expect("a GPU");
        let dim = 64;
        // Sizes around the segment length, and several passes (n / SEGMENT * k > SEGMENT).
        for (n, k, nq) in [(1, 10, 3), (100, 10, 5), (4096, 10, 4), (4097, 7, 4), (70_001, 100, 9), (200_000, 2048, 2)]
        {
            let (data, queries) = synthetic::clustered_split(n, nq, dim, (n / 100).max(4), 1.0, n as u64);
            let resident = Resident::upload(&gpu, &data, dim).expect("upload");
            assert_eq!(resident.len(), n);
            let found = resident.search(&queries, k).expect("search");
            assert_same(&found, &exact(&data, &queries, dim, k));
        }
    }

    #[test]
    #[ignore = "needs a CUDA GPU; runs on a GPU host by scripts/gpu-check.sh (--include-ignored)"]
    fn ties_come_by_row_and_k_past_max_is_refused() {
        let gpu = Gpu::open(0).expect("a GPU");
        let dim = 8;
        let data = vec![0.5f32; 10_000 * dim];
        let resident = Resident::upload(&gpu, &data, dim).expect("upload");
        let found = resident.search(&[1.0; 8], 5).expect("search");
        assert_eq!(found[0].iter().map(|h| h.0).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        assert!(resident.search(&[1.0; 8], MAX_K + 1).unwrap_err().contains("at most"));
        // Many queries in one call come back in order.
        let queries: Vec<f32> = (0..300).flat_map(|i| vec![i as f32; dim]).collect();
        assert_eq!(resident.search(&queries, 1).expect("search").len(), 300);
    }

    #[test]
    #[ignore = "needs a CUDA GPU; runs on a GPU host by scripts/gpu-check.sh (--include-ignored)"]
    fn concurrent_single_queries_are_batched_and_each_gets_its_own_answer() {
        let gpu = Gpu::open(0).expect("a GPU");
        let dim = 32;
        let (data, queries) = synthetic::clustered_split(50_000, 256, dim, 500, 1.0, 9);
        let resident = Resident::upload(&gpu, &data, dim).expect("upload");
        let serial = resident.search(&queries, 20).expect("search");
        std::thread::scope(|s| {
            for t in 0..16 {
                let (r, queries, serial) = (&resident, &queries, &serial);
                s.spawn(move || {
                    // Different k per thread: each gets its own prefix of the batch's best.
                    let k = 1 + t % 20;
                    for (i, q) in queries.chunks(dim).enumerate().skip(t) {
                        // Batches of other sizes may take other cuBLAS kernels: equal up to rounding.
                        assert_same(&[r.search_one(q, k).expect("search")], &[serial[i][..k].to_vec()]);
                    }
                });
            }
        });
        assert!(resident.search_one(&queries[..dim - 1], 5).is_err());
    }

    #[test]
    fn open_reports_why_there_is_no_gpu() {
        // Ordinal 4096 exists nowhere: on a GPU host and off one alike this is an error that
        // names the cause, never a panic.
        let err = Gpu::open(4096).err().expect("no such GPU");
        assert!(err.contains("not installed") || err.contains("asked for") || err.contains("no CUDA device"), "{err}");
    }
}
