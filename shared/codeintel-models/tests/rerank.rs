//! The built-in cross-encoder with the real base model that `make deps` fetches
//! (`sparse.model_dir`): the same scores as PyTorch gave when it was trained, and refusal of
//! weights that are not the ones described.

use codeintel_config::Config;
use codeintel_models::rerank::{CrossEncoder, BUILTIN_META, BUILTIN_WEIGHTS};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    query: String,
    document: String,
    score: f32,
}

fn base() -> std::path::PathBuf {
    Config::default().sparse_model_dir()
}

#[test]
fn builtin_scores_match_the_training_framework() {
    let m = CrossEncoder::builtin(&base()).expect("reranker over the splade model (run `make deps`)");
    let refs: Vec<Reference> = serde_json::from_str(include_str!("../../../models/rerank/reference.json")).unwrap();
    assert!(refs.len() >= 6);
    for r in &refs {
        let got = m.score(&r.query, std::slice::from_ref(&r.document)).unwrap()[0];
        assert!((got - r.score).abs() < 1e-3, "{got} vs PyTorch {} for {:?}", r.score, r.query);
    }
    // Scoring in a batch (padded to the longest pair) gives the same scores as one at a time.
    let docs: Vec<String> = refs.iter().take(3).map(|r| r.document.clone()).collect();
    let batch = m.score(&refs[0].query, &docs).unwrap();
    for (d, s) in docs.iter().zip(&batch) {
        let one = m.score(&refs[0].query, std::slice::from_ref(d)).unwrap()[0];
        assert!((one - s).abs() < 1e-4, "batched {s} vs alone {one}");
    }
    assert!(m.label.starts_with("local-cross-encoder "), "{}", m.label);
    assert!(m.score("anything", &[]).unwrap().is_empty());
}

#[test]
fn damaged_or_mismatched_weights_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let weights = d.path().join("rerank.safetensors");
    std::fs::write(d.path().join("rerank.json"), BUILTIN_META).unwrap();
    std::fs::write(&weights, BUILTIN_WEIGHTS).unwrap();
    assert!(CrossEncoder::load(&base(), &weights).is_ok());

    let mut bad = BUILTIN_WEIGHTS.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(&weights, &bad).unwrap();
    let e = CrossEncoder::load(&base(), &weights).err().expect("a damaged file loads").to_string();
    assert!(e.contains("sha256"), "{e}");

    // The right delta over other base weights (the MiniLM folder here) is refused too.
    std::fs::write(&weights, BUILTIN_WEIGHTS).unwrap();
    let other = Config::default().data.cache.join("models").join("all-MiniLM-L6-v2");
    let e = CrossEncoder::load(&other, &weights).err().expect("loads over other base weights").to_string();
    assert!(e.contains("trained over base weights"), "{e}");
}
