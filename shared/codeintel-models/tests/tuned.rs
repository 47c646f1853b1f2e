//! The code-tuned embedder (issue 19) as `make fetch` builds it from the shipped LoRA deltas
//! (`models/embed`, folded into the base weights by `scripts/onnx/merge_lora.py`): the folder
//! is the one the shipped `lora.json` describes, candle and ONNX Runtime give the vectors
//! PyTorch gave when it was trained, and its weights are named apart from the base model's, so
//! an index embedded with one is not served with the other.

use codeintel_config::Config;
use codeintel_models::embed::{weights_sha256, LocalEmbedder, Runtime};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    text: String,
    vector: Vec<f32>,
}

const LORA_JSON: &str = include_str!("../../../models/embed/lora.json");

fn tuned() -> std::path::PathBuf {
    Config::default().data.cache.join("models").join("all-MiniLM-L6-v2-code")
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()
        / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt())
}

#[test]
fn the_merged_folder_gives_the_trained_vectors_on_every_runtime() {
    let dir = tuned();
    let built = std::fs::read_to_string(dir.join("lora.json")).expect("the code-tuned embedder (run `make fetch`)");
    assert_eq!(built, LORA_JSON, "{} was merged from other deltas: run `make fetch`", dir.display());
    let refs: Vec<Reference> = serde_json::from_str(include_str!("../../../models/embed/reference.json")).unwrap();
    assert!(refs.len() >= 4);
    let cfg = Config::default();
    for (runtime, exact) in [("candle", true), ("onnx", true), ("onnx-mixed", false), ("onnx-int8", false)] {
        let rt =
            if runtime == "candle" { Runtime::Candle } else { Runtime::new(runtime, cfg.onnx_runtime(), 1).unwrap() };
        // One text at a time: the int8 graphs scale activations per batch.
        let e = LocalEmbedder::load(&dir, 256, 1, 1, &rt).unwrap();
        for r in &refs {
            let got = &e.embed(std::slice::from_ref(&r.text)).unwrap()[0];
            if exact {
                let worst = got.iter().zip(&r.vector).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(worst < 1e-3, "{runtime}: {worst} from PyTorch's vector of {:?}", r.text);
            } else {
                let c = cosine(got, &r.vector);
                assert!(c > 0.98, "{runtime}: cosine {c} to PyTorch's vector of {:?}", r.text);
            }
        }
    }
}

#[test]
fn tuned_and_base_weights_have_different_names_and_vectors() {
    let base = Config::default().data.cache.join("models").join("all-MiniLM-L6-v2");
    let meta: serde_json::Value = serde_json::from_str(LORA_JSON).unwrap();
    let (tuned_sha, base_sha) = (weights_sha256(&tuned()).unwrap(), weights_sha256(&base).unwrap());
    assert_eq!(base_sha, meta["base"]["sha256"].as_str().unwrap(), "the deltas were trained over these base weights");
    assert_ne!(tuned_sha, base_sha);
    let t = LocalEmbedder::load(&tuned(), 256, 1, 1, &Runtime::Candle).unwrap();
    let b = LocalEmbedder::load(&base, 256, 1, 1, &Runtime::Candle).unwrap();
    assert_eq!((t.weights_sha256(), b.weights_sha256()), (tuned_sha.as_str(), base_sha.as_str()));
    // Training moved the vectors: the same text is embedded differently by the two.
    let text = vec![
        "Gets an IEEE754 double-precision floating point number from self in little-endian byte order".to_string()
    ];
    let c = cosine(&t.embed(&text).unwrap()[0], &b.embed(&text).unwrap()[0]);
    assert!(c < 0.999, "the tuned weights embed like the base ones (cosine {c})");
}
