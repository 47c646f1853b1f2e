//! The local encoders on ONNX Runtime: the same BERT weights as candle's, exported to an ONNX
//! graph by `scripts/onnx/export_bert.py` (mean pooling, or the SPLADE head, inside the graph)
//! and run by the `libonnxruntime.so` that the PyPI `onnxruntime` wheel ships, loaded at run
//! time (`embed.onnx_runtime`). On this project's 2-core machine MiniLM encodes a short query
//! in about a third of candle's time (docs/benchmarks.md, "Encoders on ONNX Runtime").

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;

use crate::embed::EmbedError;

/// The one ONNX Runtime environment of the process (the library is loaded once; the first
/// caller's path wins, later callers with another path get an error).
fn environment(lib: &Path) -> Result<&'static ort::environment::Environment, EmbedError> {
    static ENV: OnceLock<Result<(PathBuf, ort::environment::Environment), String>> = OnceLock::new();
    let got = ENV.get_or_init(|| {
        if !lib.is_file() {
            return Err(format!(
                "ONNX Runtime library {} not found (run `make fetch`, set CODEINTEL__EMBED__ONNX_RUNTIME, \
                 or use the candle runtime: CODEINTEL__EMBED__RUNTIME=candle and CODEINTEL__SPARSE__RUNTIME=candle)",
                lib.display()
            ));
        }
        let env = ort::init_from(lib)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", lib.display()))?
            .with_name("codeintel")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("ONNX Runtime environment: {e}"))?;
        Ok((lib.to_path_buf(), env))
    });
    match got {
        Ok((path, env)) if path == lib => Ok(env),
        Ok((path, _)) => Err(EmbedError::Model(format!(
            "ONNX Runtime is already loaded from {}; cannot also load {}",
            path.display(),
            lib.display()
        ))),
        Err(e) => Err(EmbedError::Model(e.clone())),
    }
}

/// A BERT graph with inputs `input_ids`, `attention_mask` (batch, tokens) and one output
/// (batch, width), held as `sessions` ONNX Runtime sessions so that many callers can run it at
/// once (a session runs one call at a time); each session computes on `threads` threads.
pub struct OnnxBert {
    sessions: Vec<Mutex<Session>>,
    output: String,
    width: usize,
    next: std::sync::atomic::AtomicUsize,
}

impl OnnxBert {
    pub fn load(lib: &Path, graph: &Path, sessions: usize, threads: usize) -> Result<Self, EmbedError> {
        if !graph.is_file() {
            return Err(EmbedError::MissingModel {
                dir: graph.parent().map(|p| p.display().to_string()).unwrap_or_default(),
                message: format!(
                    "{} (the ONNX export of the model: run `make fetch`, or use the candle runtime)",
                    graph.file_name().map(|f| f.to_string_lossy()).unwrap_or_default()
                ),
            });
        }
        let env = environment(lib)?;
        let m = |e: ort::Error| EmbedError::Model(format!("ONNX session for {}: {e}", graph.display()));
        let mut out = Vec::new();
        for _ in 0..sessions.max(1) {
            let s = Session::builder(env)
                .map_err(m)?
                .with_optimization_level(GraphOptimizationLevel::Level3)
                .map_err(|e| m(e.into()))?
                .with_intra_threads(threads.max(1))
                .map_err(|e| m(e.into()))?
                .with_inter_threads(1)
                .map_err(|e| m(e.into()))?
                .with_intra_op_spinning(false)
                .map_err(|e| m(e.into()))?
                .commit_from_file(graph)
                .map_err(m)?;
            out.push(Mutex::new(s));
        }
        let first = out[0].lock().map_err(|_| EmbedError::Model("ONNX session poisoned".into()))?;
        let names: Vec<String> = first.inputs().iter().map(|i| i.name().to_string()).collect();
        if names != ["input_ids", "attention_mask"] {
            return Err(EmbedError::Model(format!(
                "{}: inputs are {names:?}, expected [input_ids, attention_mask] (re-export it with scripts/onnx/export_bert.py)",
                graph.display()
            )));
        }
        let output =
            first.outputs().first().ok_or_else(|| EmbedError::Model(format!("{} has no output", graph.display())))?;
        let width = match output.dtype() {
            ort::value::ValueType::Tensor { shape, .. } if shape.len() == 2 && shape[1] > 0 => shape[1] as usize,
            t => {
                return Err(EmbedError::Model(format!(
                    "{}: output {} is {t:?}, expected (batch, width)",
                    graph.display(),
                    output.name()
                )))
            }
        };
        let output_name = output.name().to_string();
        drop(first);
        Ok(Self { sessions: out, output: output_name, width, next: Default::default() })
    }

    /// Columns of the output: the hidden size (embedder) or the vocabulary (SPLADE).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Runs `n` rows of `len` tokens (row-major ids and mask) and returns `n` rows of
    /// [`OnnxBert::width`] values. Takes the first idle session, or waits for one.
    pub fn run(&self, ids: Vec<i64>, mask: Vec<i64>, n: usize, len: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        let m = |e: ort::Error| EmbedError::Model(format!("ONNX Runtime: {e}"));
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let k = self.sessions.len();
        let mut guard = (0..k).find_map(|i| self.sessions[(start + i) % k].try_lock().ok());
        if guard.is_none() {
            guard =
                Some(self.sessions[start % k].lock().map_err(|_| EmbedError::Model("ONNX session poisoned".into()))?);
        }
        let session = guard.as_mut().expect("a session");
        let ids = Tensor::from_array(([n, len], ids)).map_err(m)?;
        let mask = Tensor::from_array(([n, len], mask)).map_err(m)?;
        let outputs = session.run(ort::inputs!["input_ids" => ids, "attention_mask" => mask]).map_err(m)?;
        let (shape, data) = outputs[self.output.as_str()].try_extract_tensor::<f32>().map_err(m)?;
        if shape.len() != 2 || shape[0] as usize != n || shape[1] as usize != self.width {
            return Err(EmbedError::Model(format!("ONNX output shape {shape:?}, expected [{n}, {}]", self.width)));
        }
        Ok(data.chunks(self.width).map(|r| r.to_vec()).collect())
    }
}
