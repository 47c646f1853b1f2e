//! The encoders on ONNX Runtime against candle, with the real model files and library that
//! `make fetch` puts in the cache: same vectors and term weights within 1e-4, batches with
//! padding included, and errors that say what to fix.

use codeintel_config::Config;
use codeintel_models::embed::{EmbedError, LocalEmbedder, Runtime};
use codeintel_models::sparse::SpladeEncoder;

fn texts() -> Vec<String> {
    let long = "fn parse(line: &str) -> Option<Header> {\n    let (k, v) = line.split_once(':')?;\n    Some(Header { key: k.trim().to_lowercase(), value: v.trim().into() })\n}\n".repeat(12);
    [
        "how does the answer service fuse dense and lexical results?",
        "get_f64_le",
        "def refresh_token(session):\n    \"\"\"Renew the access token before it expires.\"\"\"\n    return session.renew()",
        "",
        long.as_str(),
        "class LRUCache:\n    def __init__(self, capacity):\n        self.capacity = capacity\n        self.items = OrderedDict()",
    ]
    .map(String::from)
    .into()
}

fn onnx(cfg: &Config) -> Runtime {
    Runtime::new("onnx", cfg.onnx_runtime(), 1).unwrap()
}

#[test]
fn embeddings_match_candle_within_1e_4() {
    let cfg = Config::default();
    // Batches of 4: the short texts share a padded batch with longer ones.
    let candle = LocalEmbedder::load(&cfg.model_dir(), 256, 4, 1, &Runtime::Candle).unwrap();
    let ort = LocalEmbedder::load(&cfg.model_dir(), 256, 4, 2, &onnx(&cfg)).expect("embed.onnx (run `make fetch`)");
    assert_eq!(ort.dim(), 384);
    let t = texts();
    let (a, b) = (candle.embed(&t).unwrap(), ort.embed(&t).unwrap());
    let mut worst = 0f32;
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.len(), y.len());
        for (p, q) in x.iter().zip(y) {
            worst = worst.max((p - q).abs());
        }
    }
    assert!(worst < 1e-4, "largest difference {worst}");
    // One text alone (no padding) gives the vector it got inside the padded batch.
    let alone = ort.embed(&t[1..2]).unwrap();
    let d = alone[0].iter().zip(&b[1]).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
    assert!(d < 1e-5, "padding changed a vector by {d}");
}

#[test]
fn splade_weights_match_candle_within_1e_4() {
    let cfg = Config::default();
    let dir = cfg.sparse_model_dir();
    let candle = SpladeEncoder::load(&dir, 256, 4, 1, &Runtime::Candle).unwrap();
    let ort = SpladeEncoder::load(&dir, 256, 4, 1, &onnx(&cfg)).expect("splade.onnx (run `make fetch`)");
    let t = texts();
    let (a, b) = (candle.encode(&t, 0).unwrap(), ort.encode(&t, 0).unwrap());
    for (x, y) in a.iter().zip(&b) {
        let (x, y): (std::collections::HashMap<u32, f32>, std::collections::HashMap<u32, f32>) =
            (x.iter().copied().collect(), y.iter().copied().collect());
        for id in x.keys().chain(y.keys()) {
            let (p, q) = (x.get(id).copied().unwrap_or(0.0), y.get(id).copied().unwrap_or(0.0));
            assert!((p - q).abs() < 1e-4, "term {id}: candle {p}, onnx {q}");
        }
    }
    assert!(b[0].len() > 10, "a question has terms");
}

#[test]
fn a_missing_export_or_library_says_what_to_run() {
    let cfg = Config::default();
    let empty = tempfile::tempdir().unwrap();
    std::fs::copy(cfg.model_dir().join("config.json"), empty.path().join("config.json")).unwrap();
    std::fs::copy(cfg.model_dir().join("tokenizer.json"), empty.path().join("tokenizer.json")).unwrap();
    let err = LocalEmbedder::load(empty.path(), 256, 4, 1, &onnx(&cfg)).err().expect("no embed.onnx");
    assert!(matches!(err, EmbedError::MissingModel { .. }), "{err}");
    assert!(err.to_string().contains("embed.onnx") && err.to_string().contains("make fetch"), "{err}");
    assert!(Runtime::new("tensorflow", cfg.onnx_runtime(), 1).is_err());
}
