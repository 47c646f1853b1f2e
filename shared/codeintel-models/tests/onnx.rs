//! The encoders on ONNX Runtime against candle, with the real model files and library that
//! `make fetch` puts in the cache: same vectors and term weights within 1e-4, batches with
//! padding included, and errors that say what to fix. The int8 exports (`onnx-int8`, the query
//! default) are close to candle, not equal: the same direction (cosine) and the same strongest
//! terms; the mixed one (`onnx-mixed`, the document default) closer than int8.

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

fn cosine(x: &[f32], y: &[f32]) -> f32 {
    let dot: f32 = x.iter().zip(y).map(|(a, b)| a * b).sum();
    dot / (x.iter().map(|a| a * a).sum::<f32>().sqrt() * y.iter().map(|a| a * a).sum::<f32>().sqrt())
}

#[test]
fn int8_embeddings_point_where_candle_points() {
    let cfg = Config::default();
    let int8 = Runtime::new("onnx-int8", cfg.onnx_runtime(), 1).unwrap();
    assert_eq!(int8.name(), "onnx-int8");
    let candle = LocalEmbedder::load(&cfg.model_dir(), 256, 4, 1, &Runtime::Candle).unwrap();
    let q = LocalEmbedder::load(&cfg.model_dir(), 256, 4, 2, &int8).expect("embed.int8.onnx (run `make fetch`)");
    let t = texts();
    let (a, b) = (candle.embed(&t).unwrap(), q.embed(&t).unwrap());
    let mut worst_cos = 1f32;
    let mut largest = 0f32;
    for (x, y) in a.iter().zip(&b) {
        worst_cos = worst_cos.min(cosine(x, y));
        largest = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(largest, f32::max);
    }
    eprintln!("int8 embeddings: lowest cosine to candle {worst_cos}, largest component difference {largest}");
    assert!(worst_cos > 0.95, "an int8 embedding is {worst_cos} from candle's");
    // It is the quantized graph that ran (the f32 one is within 1e-4).
    assert!(largest > 1e-3, "int8 and f32 agree to {largest}: was embed.int8.onnx loaded?");
    // What retrieval needs: the code a question is about stays the nearest of these texts.
    let nearest = |v: &[Vec<f32>]| (2..v.len()).max_by(|&i, &j| cosine(&v[0], &v[i]).total_cmp(&cosine(&v[0], &v[j])));
    assert_eq!(nearest(&a), nearest(&b));
}

#[test]
fn the_mixed_export_is_nearer_to_f32_than_int8_and_still_quantized() {
    let cfg = Config::default();
    let load = |name: &str| {
        let rt = Runtime::new(name, cfg.onnx_runtime(), 1).unwrap();
        LocalEmbedder::load(&cfg.model_dir(), 256, 4, 1, &rt)
            .unwrap_or_else(|e| panic!("{name}: {e} (run `make fetch`)"))
    };
    let t: Vec<String> = texts().into_iter().filter(|t| !t.is_empty()).collect();
    let f32 = load("onnx").embed(&t).unwrap();
    let (int8, mixed) = (load("onnx-int8").embed(&t).unwrap(), load("onnx-mixed").embed(&t).unwrap());
    let gap = |v: &[Vec<f32>]| f32.iter().zip(v).map(|(x, y)| 1.0 - cosine(x, y)).sum::<f32>() / t.len() as f32;
    let (gi, gm) = (gap(&int8), gap(&mixed));
    eprintln!("mean 1 - cosine to f32: int8 {gi:.2e}, mixed {gm:.2e}");
    assert!(gm < gi, "the mixed export ({gm}) is not nearer to f32 than int8 ({gi})");
    // It is a quantized graph that ran, not embed.onnx (which is within 1e-4 of f32).
    let largest =
        f32.iter().zip(&mixed).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0f32, f32::max);
    assert!(largest > 1e-3, "mixed and f32 agree to {largest}: was embed.mixed.onnx loaded?");
    assert_eq!(Runtime::new("onnx-mixed", cfg.onnx_runtime(), 1).unwrap().name(), "onnx-mixed");
    let empty = tempfile::tempdir().unwrap();
    let rt = Runtime::new("onnx-mixed", cfg.onnx_runtime(), 1).unwrap();
    assert!(rt.onnx_file(empty.path(), "embed").ends_with("embed.mixed.onnx"));
}

#[test]
fn int8_splade_keeps_the_strongest_terms() {
    let cfg = Config::default();
    let dir = cfg.sparse_model_dir();
    let int8 = Runtime::new("onnx-int8", cfg.onnx_runtime(), 1).unwrap();
    let candle = SpladeEncoder::load(&dir, 256, 4, 1, &Runtime::Candle).unwrap();
    let q = SpladeEncoder::load(&dir, 256, 4, 1, &int8).expect("splade.int8.onnx (run `make fetch`)");
    let t = texts();
    let (a, b) = (candle.encode(&t, 0).unwrap(), q.encode(&t, 0).unwrap());
    let top = |v: &[(u32, f32)]| {
        let mut v = v.to_vec();
        v.sort_by(|x, y| y.1.total_cmp(&x.1));
        v.into_iter().take(10).map(|(t, _)| t).collect::<std::collections::HashSet<u32>>()
    };
    for (i, (x, y)) in a.iter().zip(&b).enumerate().filter(|(i, _)| !t[*i].is_empty()) {
        let shared = top(x).intersection(&top(y)).count();
        eprintln!("text {i}: {shared} of the 10 strongest terms shared with candle");
        assert!(shared >= 7, "text {i}: only {shared} of the 10 strongest terms are candle's");
    }
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
    let int8 = Runtime::new("onnx-int8", cfg.onnx_runtime(), 1).unwrap();
    let err = LocalEmbedder::load(empty.path(), 256, 4, 1, &int8).err().expect("no embed.int8.onnx");
    assert!(err.to_string().contains("embed.int8.onnx"), "{err}");
    assert!(Runtime::new("tensorflow", cfg.onnx_runtime(), 1).is_err());
}

#[test]
fn queries_and_documents_each_get_their_own_runtime_setting() {
    use codeintel_models::embed::Role;
    let mut cfg = Config::default();
    let rt = |cfg: &Config, kind, role| Runtime::from_config(cfg, kind, 1, role).unwrap().name();
    assert_eq!(rt(&cfg, "embed", Role::Documents), "onnx-mixed");
    assert_eq!(rt(&cfg, "embed", Role::Queries), "onnx-int8");
    assert_eq!(rt(&cfg, "sparse", Role::Documents), "onnx-int8");
    assert_eq!(rt(&cfg, "sparse", Role::Queries), "onnx-int8");
    cfg.embed.query_runtime = "candle".into();
    cfg.sparse.runtime = "onnx".into();
    assert_eq!(rt(&cfg, "embed", Role::Queries), "candle");
    assert_eq!(rt(&cfg, "embed", Role::Documents), "onnx-mixed");
    assert_eq!(rt(&cfg, "sparse", Role::Documents), "onnx");
}
