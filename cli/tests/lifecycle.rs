//! The index lifecycle end to end, on the real stores and the real embedder: incremental
//! updates, tombstones, compaction, crashes between writes, and searches during swaps.

use std::path::Path;
use std::sync::Arc;

use codeintel::index::{self, IndexOptions, Mode};
use codeintel_config::Config;
use codeintel_core::proto::v1::RetrieveRequest;
use codeintel_core::ticket::HydrateTicket;
use codeintel_index::manifest;

const CART: &str = "class Cart:\n    def __init__(self):\n        self.items = []\n\n    def add_item(self, sku, qty):\n        self.items.append((sku, qty))\n\n\ndef compute_total(cart, tax_rate):\n    subtotal = sum(q * 2 for _, q in cart.items)\n    return subtotal * (1 + tax_rate)\n";
const MAIL: &str = "def send_invoice_email(address, invoice):\n    body = render_invoice(invoice)\n    return smtp_deliver(address, body)\n\n\ndef render_invoice(invoice):\n    return f\"Invoice {invoice.number}\"\n";
const RETRY: &str = "pub fn backoff_delay(attempt: u32) -> u64 {\n    let base = 100u64;\n    base.saturating_mul(1 << attempt.min(10))\n}\n";

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf, Config) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src, "shop/cart.py", CART);
    write(&src, "shop/mail.py", MAIL);
    write(&src, "net/retry.rs", RETRY);
    let mut cfg = Config::default();
    cfg.data.root = tmp.path().join("data");
    cfg.embed.workers = 1;
    cfg.index.gc_grace_ms = 0;
    cfg.vector.reload_ms = 10;
    (tmp, src, cfg)
}

fn opts() -> IndexOptions {
    IndexOptions { quiet: true, ..Default::default() }
}

fn req(q: &str, k: u32) -> RetrieveRequest {
    RetrieveRequest { query: q.into(), scope: None, top_k: k, exact_symbol: String::new() }
}

struct Searchers {
    vector: Arc<vector_svc::VectorSearcher>,
    lexical: Arc<lexical_svc::service::LexicalSearcher>,
    hydrate: Arc<hydrate_svc::store::ChunkStore>,
}

impl Searchers {
    async fn new(cfg: &Config) -> Self {
        Self {
            vector: vector_svc::VectorSearcher::new(cfg).await.unwrap(),
            lexical: lexical_svc::service::LexicalSearcher::new(cfg).unwrap(),
            hydrate: hydrate_svc::store::ChunkStore::new(cfg).unwrap(),
        }
    }

    fn refresh(&self) {
        self.vector.refresh();
        self.lexical.refresh();
        self.hydrate.refresh();
    }

    async fn dense_ids(&self, q: &str, k: u32) -> Vec<u64> {
        self.vector.search(&req(q, k)).await.unwrap().into_iter().map(|h| h.chunk_id).collect()
    }

    fn lexical_ids(&self, q: &str) -> Vec<u64> {
        self.lexical.search(&req(q, 50)).unwrap().into_iter().map(|h| h.chunk_id).collect()
    }

    fn sparse_ids(&self, q: &str, k: u32) -> Vec<u64> {
        self.lexical.sparse_search(&req(q, k)).unwrap().into_iter().map(|h| h.chunk_id).collect()
    }

    /// (path, text) of the rows hydrate returns for `ids`.
    fn rows(&self, ids: &[u64]) -> Vec<(String, String)> {
        use arrow::array::{Array, AsArray};
        let mut out = Vec::new();
        for b in self.hydrate.fetch(&HydrateTicket::new(ids.to_vec(), None)).unwrap() {
            let col = |n: &str| {
                arrow::compute::cast(b.column_by_name(n).unwrap(), &arrow::datatypes::DataType::Utf8).unwrap()
            };
            let (p, t) = (col("path"), col("text"));
            let (p, t) = (p.as_string::<i32>(), t.as_string::<i32>());
            for i in 0..p.len() {
                out.push((p.value(i).to_string(), t.value(i).to_string()));
            }
        }
        out
    }
}

/// Mode bits of `p` (not following a symlink).
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// The two files: a private key in a `.txt`, AWS keys in Python settings (spelt in
/// pieces, so that this file itself is not taken for a secret when the repository is indexed).
fn write_secrets(src: &Path) {
    let key = format!(
        "-----BEGIN OPENSSH {}-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n\
         -----END OPENSSH PRIVATE KEY-----\n",
        "PRIVATE KEY"
    );
    write(src, "keys/deploy_key.txt", &key);
    let settings = format!(
        "DEBUG = False\nAWS_ACCESS_KEY_ID = \"{}\"\nAWS_SECRET_ACCESS_KEY = \"{}\"\n",
        concat!("AKIA", "IOSFODNN7EXAMPLE"),
        concat!("wJalrXUtnFEMI/K7MDENG", "/bPxRfiCYEXAMPLEKEY")
    );
    write(src, "config/settings.py", &settings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_index_replaces_edited_and_deleted_code_in_every_store() {
    let (_tmp, src, cfg) = setup();
    write_secrets(&src);
    let r1 = index::run(&cfg, &src, "shop", &opts()).await.unwrap();
    assert_eq!((r1.mode, r1.version), (Mode::Full, 1));
    // The secrets are left out, counted and listed by rule; the other files are indexed.
    assert_eq!(r1.files, 3, "{r1:?}");
    let secrets = [
        ("config/settings.py".to_string(), "AWS access key id".to_string()),
        ("keys/deploy_key.txt".to_string(), "private key block".to_string()),
    ];
    assert_eq!(r1.skipped_secrets, secrets);
    assert_eq!(r1.skipped, [("secret".to_string(), 2)]);
    assert_eq!(
        index::skipped_lines(&r1, 1),
        ["skipped 2 files: 2 secret", "skipped config/settings.py: AWS access key id", "and 1 more",]
    );
    // The data root and everything written under it are private to their owner.
    let data = &cfg.data.root;
    let m1 = manifest::load_current(data, "shop").unwrap();
    let repo_dir = data.join("shop");
    for dir in [data.clone(), repo_dir.clone(), repo_dir.join("manifests"), repo_dir.join(&m1.tantivy_dir)] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    let lexical_files: Vec<_> = std::fs::read_dir(repo_dir.join(&m1.tantivy_dir))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    assert!(!lexical_files.is_empty());
    let written = m1.files().into_iter().map(|f| repo_dir.join(f)).chain([repo_dir.join("CURRENT")]);
    for file in written.chain(lexical_files) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    assert!(m1.file_hashes.keys().all(|p| !p.starts_with("keys/") && !p.starts_with("config/")), "{m1:?}");
    let s = Searchers::new(&cfg).await;
    assert!(s.lexical_ids("AWS_SECRET_ACCESS_KEY").is_empty() && s.lexical_ids("OPENSSH").is_empty());
    let every = s.dense_ids("private key and AWS secret access key", 50).await;
    assert!(!every.is_empty());
    for (path, text) in s.rows(&every) {
        assert!(path.starts_with("shop/") || path.starts_with("net/"), "{path} was indexed");
        assert!(!text.contains("PRIVATE KEY") && !text.contains("AKIA"), "{path}: {text}");
    }
    let all = r1.chunks as u32;
    let old_total = s.lexical_ids("compute_total")[0];
    let mail_ids = s.lexical_ids("send_invoice_email render_invoice");
    assert!(!mail_ids.is_empty());
    assert_eq!(m1.sparse.len(), 1, "sparse documents are written with the version");
    assert_eq!(s.sparse_ids("send an invoice by email", 1), vec![mail_ids[0]]);

    // Nothing changed: no new version.
    let again = index::run(&cfg, &src, "shop", &opts()).await.unwrap();
    assert_eq!((again.mode, again.version, again.embedded), (Mode::UpToDate, 1, 0));

    // Edit one function, delete one file.
    write(&src, "shop/cart.py", &CART.replace("sum(q * 2", "sum(q * unit_price_cents"));
    std::fs::remove_file(src.join("shop/mail.py")).unwrap();
    let r2 = index::run(&cfg, &src, "shop", &IndexOptions { quiet: true, ..Default::default() }).await.unwrap();
    assert_eq!(r2.mode, Mode::Incremental);
    assert_eq!((r2.changed_files, r2.deleted_files), (1, 1));
    assert_eq!(r2.embedded, 1, "only the edited function is embedded: {r2:?}");
    let m2 = manifest::load_current(&cfg.data.root, "shop").unwrap();
    assert!(m2.secondary.is_some() && m2.tombstones.is_some(), "{m2:?}");
    s.refresh();

    // The new text is found; the old chunk and the deleted file's chunks are gone everywhere.
    let new_total = s.lexical_ids("unit_price_cents");
    assert_eq!(new_total.len(), 1);
    assert_ne!(new_total[0], old_total);
    assert!(s.dense_ids("compute the cart total with unit price cents", 3).await.contains(&new_total[0]));
    let dense_all = s.dense_ids("anything", all + 10).await;
    for gone in mail_ids.iter().chain([&old_total]) {
        assert!(!dense_all.contains(gone), "dense still returns dead chunk {gone}");
        assert!(!s.lexical_ids("send_invoice_email render_invoice compute_total").contains(gone));
    }
    assert!(s.rows(&[old_total]).is_empty(), "hydrate must not return a tombstoned chunk");
    // Sparse: the new chunk's own file, the dead ones dropped.
    assert_eq!(m2.sparse.len(), 2);
    let sparse_all = s.sparse_ids("invoice email cart total unit price cents retry delay", all + 10);
    assert!(sparse_all.contains(&new_total[0]), "{sparse_all:?}");
    for gone in mail_ids.iter().chain([&old_total]) {
        assert!(!sparse_all.contains(gone), "sparse still returns dead chunk {gone}");
    }
    let rows = s.rows(&new_total);
    assert_eq!(rows.len(), 1);
    assert!(rows[0].1.contains("unit_price_cents"));
    assert_eq!(dense_all.len() as u64, m2.chunks);

    // Compaction folds it all into a new primary: same results (Flat is exact), no secondary.
    let queries = ["compute the total of a cart", "retry delay", "add item to cart", "unit price"];
    let mut before = Vec::new();
    for q in queries {
        before.push(s.vector.search(&req(q, 5)).await.unwrap());
    }
    let m3 = index::compact(&cfg, "shop", true, None).unwrap();
    assert!(m3.secondary.is_none() && m3.tombstones.is_none() && m3.segments.len() == 1);
    assert_eq!(m3.chunks, m2.chunks);
    s.refresh();
    for (q, b) in queries.iter().zip(before) {
        let a = s.vector.search(&req(q, 5)).await.unwrap();
        assert_eq!(a.iter().map(|h| h.chunk_id).collect::<Vec<_>>(), b.iter().map(|h| h.chunk_id).collect::<Vec<_>>());
        for (x, y) in a.iter().zip(&b) {
            assert!((x.score - y.score).abs() < 1e-5, "{q}: {} vs {}", x.score, y.score);
        }
    }
    assert_eq!(s.lexical_ids("unit_price_cents"), new_total);
    assert!(s.rows(&mail_ids).is_empty());
    assert_eq!(m3.sparse.len(), 1, "compaction folds the sparse files into one");
    assert_eq!(s.sparse_ids("invoice email cart total unit price cents retry delay", all + 10), sparse_all);

    // A deleted file's chunks never come back, across more versions.
    write(&src, "net/retry.rs", &RETRY.replace("100u64", "250u64"));
    index::run(&cfg, &src, "shop", &opts()).await.unwrap();
    s.refresh();
    for gone in &mail_ids {
        assert!(!s.dense_ids("anything", all + 10).await.contains(gone));
    }
    assert!(s.lexical_ids("send_invoice_email").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_chunking_rebuilds_instead_of_updating_and_reuses_unchanged_vectors() {
    let (_tmp, src, mut cfg) = setup();
    let r1 = index::run(&cfg, &src, "shop", &opts()).await.unwrap();
    let m1 = manifest::load_current(&cfg.data.root, "shop").unwrap();
    assert_eq!(m1.settings.chunking, codeintel_core::chunk::ChunkOptions::default().key());
    // The class `Cart` (7 lines) is one chunk under the default; with 3-line chunks it is cut
    // to its header, so the files did not change but the chunks did.
    cfg.index.max_chunk_lines = 3;
    let r2 = index::run(&cfg, &src, "shop", &opts()).await.unwrap();
    assert_eq!((r2.mode, r2.version), (Mode::Full, 2), "{r2:?}");
    assert!(r2.embedded > 0 && r2.embedded < r2.chunks, "unchanged chunks keep their vectors: {r2:?} after {r1:?}");
    let m2 = manifest::load_current(&cfg.data.root, "shop").unwrap();
    assert_eq!(m2.settings.chunking, format!("{}/3/{}", codeintel_core::chunk::CHUNK_FORMAT, cfg.index.window_lines));
    let again = index::run(&cfg, &src, "shop", &opts()).await.unwrap();
    assert_eq!(again.mode, Mode::UpToDate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definitions_vector_is_the_mean_of_its_code_and_name_views_and_switching_views_reembeds() {
    use codeintel_chunk::chunk_file;
    use codeintel_core::chunk::ChunkOptions;
    use codeintel_models::embed::{combine_views, Embedder};
    let (_tmp, src, mut cfg) = setup();
    // The f32 export, whose vector of a text does not depend on the texts batched with it: the
    // int8 ones (the document default is `onnx-mixed`) scale a batch's activations together,
    // so a chunk embedded alone is only close to its vector from the index (checked below).
    let default_runtime = std::mem::replace(&mut cfg.embed.runtime, "onnx".into());
    let r1 = index::run(&cfg, &src, "shop", &opts()).await.unwrap();
    let repo_dir = manifest::repo_dir(&cfg.data.root, "shop").unwrap();
    let m1 = manifest::load_current(&cfg.data.root, "shop").unwrap();
    assert_eq!(m1.settings.embed_views, 2);
    let embedder = Embedder::from_config(&cfg, 0, codeintel_models::embed::Role::Documents).await.unwrap();
    let chunk = chunk_file("shop", "net/retry.rs", "rust", RETRY, ChunkOptions::default()).remove(0);
    let texts = vec![chunk.embedding_text(), chunk.name_text().expect("a function has a name view")];
    let e = embedder.embed(texts.clone()).await.unwrap();
    let stored = |m: &manifest::Manifest| {
        let (metas, vs) = codeintel_index::vector::live_vectors(&repo_dir, m).unwrap();
        let row = metas.iter().position(|x| x.id == chunk.chunk_id).expect("the chunk has a vector");
        let dim = m.settings.embedding.dim as usize;
        vs[row * dim..(row + 1) * dim].to_vec()
    };
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4);
    let both = combine_views(&[&e[0], &e[1]]);
    assert!(close(&stored(&m1), &both), "stored vector is the mean of the two views");
    assert!(!close(&e[0], &both), "the name view changes the vector");

    // Code view only: every chunk is embedded again, to its code vector.
    cfg.embed.name_view = false;
    let r2 = index::run(&cfg, &src, "shop", &opts()).await.unwrap();
    assert_eq!((r2.mode, r2.embedded), (Mode::Full, r1.chunks), "{r2:?}");
    let m2 = manifest::load_current(&cfg.data.root, "shop").unwrap();
    assert_eq!(m2.settings.embed_views, 1);
    assert!(close(&stored(&m2), &e[0]));

    // The default runtime: the same chunk embedded alone points where its indexed vector does.
    cfg.embed.runtime = default_runtime;
    assert_eq!(cfg.embed.runtime, "onnx-mixed");
    let r3 = index::run(&cfg, &src, "shop", &opts()).await.unwrap();
    assert_eq!(r3.mode, Mode::UpToDate, "the document runtime is not part of the index's settings");
    let mixed = Embedder::from_config(&cfg, 0, codeintel_models::embed::Role::Documents).await.unwrap();
    let alone = mixed.embed(vec![texts[0].clone()]).await.unwrap().remove(0);
    let cos = alone.iter().zip(&e[0]).map(|(a, b)| a * b).sum::<f32>();
    assert!(cos > 0.99 && cos < 0.99999, "mixed int8 against f32: cosine {cos}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_past_the_threshold_is_compacted_automatically() {
    let (_tmp, src, mut cfg) = setup();
    cfg.index.compact_min_vectors = 0;
    cfg.index.compact_ratio = 0.5;
    let r1 = index::run(&cfg, &src, "shop", &opts()).await.unwrap();
    // One changed chunk out of five: 20%, under the 50% threshold.
    write(&src, "net/retry.rs", &RETRY.replace("100u64", "250u64"));
    let r2 = index::run(&cfg, &src, "shop", &opts()).await.unwrap();
    assert_eq!((r2.mode, r2.compacted), (Mode::Incremental, None));
    assert_eq!(manifest::load_current(&cfg.data.root, "shop").unwrap().secondary.unwrap().count, 1);
    // A new file with several chunks pushes the secondary past it.
    write(&src, "shop/more.py", &MAIL.replace("invoice", "receipt"));
    write(&src, "shop/extra.py", &CART.replace("Cart", "Basket"));
    let r3 = index::run(&cfg, &src, "shop", &opts()).await.unwrap();
    let v = r3.compacted.expect("compaction ran");
    let m = manifest::load_current(&cfg.data.root, "shop").unwrap();
    assert_eq!((m.version, m.secondary.clone(), m.tombstones.clone()), (v, None, None));
    assert_eq!(m.chunks as usize, r3.chunks);
    assert!(m.chunks as usize > r1.chunks);
}

/// Every file a version names exists and every store opens and answers from it.
async fn assert_servable(cfg: &Config, version: u64) {
    let m = manifest::load_current(&cfg.data.root, "shop").unwrap();
    assert_eq!(m.version, version, "the published version must not move");
    let dir = cfg.data.root.join("shop");
    for f in m.files() {
        assert!(dir.join(f).is_file(), "{f} is missing");
    }
    let s = Searchers::new(cfg).await;
    assert!(s.vector.readiness.read().reasons.is_empty(), "{:?}", s.vector.readiness.read().reasons);
    let ids = s.dense_ids("compute the total of a cart", 3).await;
    assert_eq!(ids.len(), 3);
    assert!(!s.lexical_ids("backoff_delay").is_empty());
    assert_eq!(s.rows(&ids).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_write_leaves_the_previous_version_servable() {
    let (_tmp, src, cfg) = setup();
    index::run(&cfg, &src, "shop", &opts()).await.unwrap();
    write(&src, "shop/cart.py", &CART.replace("sum(q * 2", "sum(q * unit_price_cents"));
    std::fs::remove_file(src.join("shop/mail.py")).unwrap();
    // Incremental: segment, secondary, tombstones, lexical, sparse, then the manifest.
    let mut failures = 0;
    for step in 0.. {
        let o = IndexOptions { quiet: true, fail_after_writes: Some(step), ..Default::default() };
        match index::run(&cfg, &src, "shop", &o).await {
            Err(e) => {
                assert!(e.to_string().contains("injected failure"), "{e}");
                failures += 1;
                assert_servable(&cfg, 1).await;
            }
            Ok(r) => {
                assert_eq!(r.mode, Mode::Incremental);
                break;
            }
        }
    }
    assert_eq!(failures, 6, "every write step was interrupted once");
    let v = manifest::load_current(&cfg.data.root, "shop").unwrap().version;
    assert_servable(&cfg, v).await;
    // Compaction: segment, primary, lexical, sparse, then the manifest.
    for step in 0..5 {
        let e = index::compact(&cfg, "shop", true, Some(step)).unwrap_err();
        assert!(e.to_string().contains("injected failure"), "{e}");
        assert_servable(&cfg, v).await;
    }
    let m = index::compact(&cfg, "shop", true, None).unwrap();
    assert_servable(&cfg, m.version).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_searches_during_swaps_all_succeed() {
    let (_tmp, src, cfg) = setup();
    index::run(&cfg, &src, "shop", &opts()).await.unwrap();
    let s = Arc::new(Searchers::new(&cfg).await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (s, stop) = (s.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 20 {
                let hits = s.vector.search(&req("compute the total of a cart", 3)).await.expect("dense search");
                assert_eq!(hits.len(), 3);
                let lex = s.lexical.search(&req("backoff_delay", 3)).expect("lexical search");
                assert!(!lex.is_empty());
                let rows = s.rows(&hits.iter().map(|h| h.chunk_id).collect::<Vec<_>>());
                assert_eq!(rows.len(), 3, "task {t}: hydrate lost rows during a swap");
                n += 1;
            }
            n
        }));
    }
    // Five new versions (incremental and compacted) swapped in while searches run.
    for i in 0..5 {
        write(&src, "net/retry.rs", &RETRY.replace("100u64", &format!("{}u64", 200 + i)));
        index::run(&cfg, &src, "shop", &opts()).await.unwrap();
        if i == 2 {
            index::compact(&cfg, "shop", true, None).unwrap();
        }
        s.refresh();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("no search task failed");
    }
    assert!(total >= 80);
    assert!(manifest::load_current(&cfg.data.root, "shop").unwrap().version >= 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_written_at_another_dimension_is_refused_with_the_difference() {
    use codeintel_index::vector::{write_artifact, ChunkMeta, IndexKind};
    let (tmp, _src, cfg) = setup();
    let dir = cfg.data.root.join("wide");
    let dim = 1024u32;
    let vectors = vector_svc::synthetic::clustered(20, dim as usize, 2, 0.5, 1);
    let metas: Vec<ChunkMeta> =
        (0..20).map(|id| ChunkMeta { id, path: "a.py".into(), language: "python".into() }).collect();
    let f = write_artifact(&dir, "v000001", dim, &vectors, &metas, IndexKind::Flat).unwrap();
    let seg = codeintel_index::segment::write_segment(&dir, "v000001", &[]).unwrap();
    let lex = codeintel_index::lexical::write_index(&dir, "v000001", &[]).unwrap();
    let contract = manifest::EmbeddingContract {
        model_id: cfg.embed.model_id.clone(),
        dim,
        metric: "inner_product".into(),
        normalized: true,
        weights_sha256: String::new(),
    };
    let a = manifest::FirstArtifacts { segments: vec![seg], primary: f, tantivy_dir: lex, sparse: None };
    let hashes = std::collections::BTreeMap::from([("a.py".to_string(), "h".to_string())]);
    let settings = codeintel_index::build::settings(&cfg, contract);
    let m = manifest::Manifest::new("wide", 1, tmp.path().display().to_string(), settings, a, hashes);
    manifest::publish(&cfg.data.root, &m).unwrap();
    let v = vector_svc::VectorSearcher::new(&cfg).await.unwrap();
    let info = v.info();
    assert_eq!(info.status, "down");
    assert!(
        info.reasons.iter().any(|r| r.contains("dimension mismatch: index=1024, embedder=384")),
        "{:?}",
        info.reasons
    );
    let err = v.search(&req("anything", 3)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert!(err.to_string().contains("dimension mismatch"), "{err}");
}

/// A vector-svc asked for a GPU it cannot use (here: built without the `gpu` feature) serves the
/// same results from the CPU and says so: `degraded`, not `down`, with the reason and the device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpu_that_cannot_be_used_degrades_to_cpu_search_instead_of_failing() {
    let (_tmp, src, cfg) = setup();
    index::run(&cfg, &src, "shop", &opts()).await.unwrap();
    let cpu = vector_svc::VectorSearcher::new(&cfg).await.unwrap();
    let mut wants_gpu = cfg.clone();
    wants_gpu.vector.device = "gpu".into();
    wants_gpu.vector.gpu_ordinal = 4096;
    let degraded = vector_svc::VectorSearcher::new(&wants_gpu).await.unwrap();
    let info = degraded.info();
    assert_eq!(info.status, "degraded", "{:?}", info.reasons);
    assert_eq!(info.device, "cpu");
    assert!(info.reasons.iter().any(|r| r.ends_with("serving from the CPU")), "{:?}", info.reasons);
    assert_eq!(info.repos.len(), 1);
    assert!(!degraded.readiness.read().is_down());
    let q = req("send the invoice by email", 3);
    let (a, b) = (cpu.search(&q).await.unwrap(), degraded.search(&q).await.unwrap());
    assert!(!a.is_empty());
    assert_eq!(a.iter().map(|h| h.chunk_id).collect::<Vec<_>>(), b.iter().map(|h| h.chunk_id).collect::<Vec<_>>());
    assert_eq!(cpu.info().status, "ready");
}

/// Size of every file under the repo's lexical folder.
fn lexical_sizes(cfg: &Config) -> std::collections::BTreeMap<std::path::PathBuf, u64> {
    fn walk(dir: &Path, out: &mut std::collections::BTreeMap<std::path::PathBuf, u64>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.insert(p.clone(), e.metadata().unwrap().len());
            }
        }
    }
    let mut out = Default::default();
    walk(&cfg.data.root.join("shop/lexical"), &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_indexers_on_one_repo_take_turns_and_never_rewrite_a_published_file() {
    let (_tmp, src, mut cfg) = setup();
    cfg.index.keep_versions = 20;
    index::run(&cfg, &src, "shop", &opts()).await.unwrap();
    for round in 0..5 {
        write(&src, "net/retry.rs", &RETRY.replace("100u64", &format!("{}u64", 300 + round)));
        let before = lexical_sizes(&cfg);
        let runs: Vec<_> = (0..2)
            .map(|_| {
                let (cfg, src) = (cfg.clone(), src.clone());
                tokio::spawn(async move { index::run(&cfg, &src, "shop", &opts()).await })
            })
            .collect();
        let mut modes = Vec::new();
        for r in runs {
            modes.push(r.await.unwrap().unwrap().mode);
        }
        modes.sort_by_key(|m| *m as u8);
        // One updates; the other waited for it and found nothing left to do.
        assert_eq!(modes, vec![Mode::Incremental, Mode::UpToDate], "round {round}");
        let after = lexical_sizes(&cfg);
        for (path, size) in &before {
            if let Some(now) = after.get(path) {
                assert_eq!(now, size, "round {round}: published file {} was rewritten", path.display());
            }
        }
        let v = manifest::load_current(&cfg.data.root, "shop").unwrap().version;
        assert_eq!(v, round + 2, "one new version per round");
        assert_servable(&cfg, v).await;
    }
    // Refusing instead of waiting names the other writer.
    let held =
        codeintel_index::lock::RepoLock::acquire(&cfg.data.root, "shop", codeintel_index::lock::Wait::Refuse, |_| {})
            .unwrap();
    let o = IndexOptions { quiet: true, no_wait: true, ..Default::default() };
    let e = index::run(&cfg, &src, "shop", &o).await.unwrap_err().to_string();
    assert!(e.contains("being written by another indexer") && e.contains("pid"), "{e}");
    drop(held);
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_is_indexed_from_the_object_database_and_a_moved_commit_is_recorded() {
    let (_tmp, src, cfg) = setup();
    git(&src, &["init", "-q"]);
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "one"]);
    let one = git(&src, &["rev-parse", "HEAD"]);
    let refund = format!("{CART}\n\ndef refund_order(order):\n    return order.total\n");
    write(&src, "shop/cart.py", &refund);
    git(&src, &["commit", "-q", "-am", "two"]);
    let two = git(&src, &["rev-parse", "HEAD"]);
    // Work in progress that is never committed.
    write(&src, "shop/cart.py", &format!("{refund}\n\ndef uncommitted_discount():\n    return 0\n"));
    let rev = |rev| index::Source::Rev { folder: &src, rev };
    let s = Searchers::new(&cfg).await;
    let all = |s: &Searchers| {
        s.refresh();
        let m = manifest::load_current(&cfg.data.root, "shop").unwrap();
        let ids: Vec<u64> = s.lexical_ids("cart order discount refund total");
        (m, s.rows(&ids).into_iter().map(|(_, t)| t).collect::<Vec<_>>().join("\n"))
    };

    let r1 = index::run_from(&cfg, rev(one.as_str()), "shop", &opts()).await.unwrap();
    assert_eq!(r1.mode, Mode::Full);
    let (m1, text) = all(&s);
    let g = m1.git.clone().expect("the commit is recorded");
    assert_eq!((g.commit.as_str(), g.dirty), (one.as_str(), false));
    assert_eq!(m1.file_hashes["shop/cart.py"], codeintel_core::chunk::sha256_hex(CART.as_bytes()));
    assert!(
        text.contains("compute_total") && !text.contains("refund_order") && !text.contains("uncommitted"),
        "{text}"
    );

    // The branch: only the file that changed between the commits is re-embedded.
    let r2 = index::run_from(&cfg, rev("main"), "shop", &opts()).await.unwrap();
    assert_eq!((r2.mode, r2.changed_files), (Mode::Incremental, 1));
    let (m2, text) = all(&s);
    let g = m2.git.clone().unwrap();
    assert_eq!((g.commit.as_str(), g.branch.as_str()), (two.as_str(), "main"));
    assert!(text.contains("refund_order") && !text.contains("uncommitted"), "{text}");

    // A commit that touches no indexed file: nothing re-embedded, the new commit recorded in a
    // version that shares every artifact.
    std::fs::write(src.join(".gitignore"), "*.tmp\n").unwrap();
    git(&src, &["add", ".gitignore"]);
    git(&src, &["commit", "-q", "-m", "three"]);
    let three = git(&src, &["rev-parse", "HEAD"]);
    let r3 = index::run_from(&cfg, rev("main"), "shop", &opts()).await.unwrap();
    assert_eq!((r3.mode, r3.recorded_commit, r3.embedded), (Mode::UpToDate, true, 0));
    let (m3, text) = all(&s);
    assert_eq!(m3.version, m2.version + 1);
    assert_eq!(m3.git.as_ref().unwrap().commit, three);
    assert_eq!((m3.segments.clone(), m3.chunks), (m2.segments.clone(), m2.chunks));
    assert!(text.contains("refund_order"), "{text}");
    let again = index::run_from(&cfg, rev("main"), "shop", &opts()).await.unwrap();
    assert_eq!((again.mode, again.recorded_commit, again.version), (Mode::UpToDate, false, m3.version));

    // The work tree itself, dirty: indexed from disk with the uncommitted function.
    let r4 = index::run(&cfg, &src, "shop", &opts()).await.unwrap();
    assert_eq!(r4.mode, Mode::Incremental);
    let (m4, text) = all(&s);
    let g = m4.git.unwrap();
    assert_eq!((g.commit.as_str(), g.dirty, g.changed_files), (three.as_str(), true, 1));
    assert!(text.contains("uncommitted_discount"), "{text}");
}
