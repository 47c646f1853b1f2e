//! SPLADE with the real model files that `make deps` fetches (`sparse.model_dir`).

use codeintel_config::Config;
use codeintel_index::sparse::{read_docs, write_docs, SparseDoc};
use codeintel_models::sparse::{dot, SpladeEncoder};

fn encoder() -> SpladeEncoder {
    let cfg = Config::default();
    let rt = codeintel_models::embed::Runtime::from_config(&cfg, "sparse", 1, codeintel_models::embed::Role::Documents)
        .unwrap();
    SpladeEncoder::load(&cfg.sparse_model_dir(), 256, 4, 1, &rt).expect("splade model (run `make deps`)")
}

#[test]
fn term_weights_are_positive_sparse_and_sorted() {
    let e = encoder();
    let docs: Vec<String> = [
        "def refresh_token(session):\n    \"\"\"Renew the access token before it expires.\"\"\"\n    return session.renew()",
        "fn parse_header(line: &str) -> Header { line.split(':').collect() }",
        "",
    ]
    .map(String::from)
    .into();
    let v = e.encode(&docs, 0).unwrap();
    assert_eq!(v.len(), 3);
    for d in &v[..2] {
        assert!(!d.is_empty());
        // Sparse: a small share of the 30,522-term vocabulary.
        assert!(d.len() < 3_000, "{} terms", d.len());
        assert!(d.iter().all(|(_, w)| *w > 0.0 && w.is_finite()));
        assert!(d.windows(2).all(|p| p[0].0 < p[1].0), "sorted by term id, no duplicates");
    }
    // The document's own words carry weight.
    let names: Vec<String> = v[0].iter().filter_map(|(t, _)| e.token(*t)).collect();
    assert!(names.iter().any(|t| t == "token") && names.iter().any(|t| t == "session"), "{names:?}");
    // max_terms keeps the heaviest.
    let top = e.encode(&docs[..1], 8).unwrap().remove(0);
    assert_eq!(top.len(), 8);
    let min_top = top.iter().map(|(_, w)| *w).fold(f32::MAX, f32::min);
    let kept: Vec<u32> = top.iter().map(|(t, _)| *t).collect();
    assert!(v[0].iter().filter(|(t, _)| !kept.contains(t)).all(|(_, w)| *w <= min_top));
}

#[test]
fn a_query_matches_the_document_that_shares_its_expanded_terms() {
    let e = encoder();
    let docs: Vec<String> = [
        "def refresh_token(session):\n    \"\"\"Renew the access token before it expires.\"\"\"\n    return session.renew()",
        "def draw_circle(canvas, radius):\n    canvas.arc(0, 0, radius)",
        "SELECT name FROM users WHERE age > 30",
    ]
    .map(String::from)
    .into();
    let d = e.encode(&docs, 256).unwrap();
    let q = e.encode(&["how is the access token renewed".to_string()], 64).unwrap().remove(0);
    let scores: Vec<f32> = d.iter().map(|x| dot(&q, x)).collect();
    assert!(scores[0] > scores[1] && scores[0] > scores[2], "{scores:?}");
    let q = e.encode(&["draw a circle".to_string()], 64).unwrap().remove(0);
    let scores: Vec<f32> = d.iter().map(|x| dot(&q, x)).collect();
    assert!(scores[1] > scores[0] && scores[1] > scores[2], "{scores:?}");
    // The default (int8) graph scales a batch's activations together, so a document encoded
    // alone keeps its strongest terms, not every weight.
    let alone = e.encode(&docs[1..2], 256).unwrap().remove(0);
    let top = |v: &[(u32, f32)]| {
        let mut v = v.to_vec();
        v.sort_by(|x, y| y.1.total_cmp(&x.1));
        v.into_iter().take(10).map(|(t, _)| t).collect::<std::collections::HashSet<u32>>()
    };
    assert!(top(&alone).intersection(&top(&d[1])).count() >= 9, "{alone:?} against {:?}", d[1]);
    // On the f32 graph batching changes no weight.
    let cfg = Config::default();
    let rt = codeintel_models::embed::Runtime::new("onnx", cfg.onnx_runtime(), 1).unwrap();
    let f32 = SpladeEncoder::load(&cfg.sparse_model_dir(), 256, 4, 1, &rt).expect("splade.onnx (run `make deps`)");
    let (d, alone) = (f32.encode(&docs, 256).unwrap(), f32.encode(&docs[1..2], 256).unwrap().remove(0));
    assert_eq!(alone.len(), d[1].len());
    for (a, b) in alone.iter().zip(&d[1]) {
        assert_eq!(a.0, b.0);
        assert!((a.1 - b.1).abs() < 1e-4);
    }
}

#[test]
fn documents_round_trip_through_their_file() {
    let dir = tempfile::tempdir().unwrap();
    let docs = vec![
        SparseDoc { chunk_id: 7, path: "a/b.rs".into(), language: "rust".into(), terms: vec![(3, 0.5), (90, 1.25)] },
        SparseDoc { chunk_id: u64::MAX, path: "ü/c.py".into(), language: "python".into(), terms: vec![] },
    ];
    let p = dir.path().join("sparse/v1.bin");
    write_docs(&p, &docs).unwrap();
    assert_eq!(read_docs(&p).unwrap(), docs);
    std::fs::write(&p, b"garbage!garbage!").unwrap();
    assert!(read_docs(&p).is_err());
}
