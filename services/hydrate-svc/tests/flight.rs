//! hydrate-svc over a real Flight server on loopback: identical batches under concurrency,
//! scope filters that exclude what they should, and hostile filter strings treated as data.

use arrow::array::AsArray;
use arrow::datatypes::UInt64Type;
use arrow::record_batch::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::Ticket;
use codeintel_config::Config;
use codeintel_core::ticket::HydrateTicket;
use codeintel_index::manifest;
use futures::TryStreamExt;
use hydrate_svc::ChunkStore;
use tonic::transport::Channel;

mod common;
use common::{publish_repo, serve};

async fn get(c: &mut FlightServiceClient<Channel>, t: &HydrateTicket) -> Result<Vec<RecordBatch>, tonic::Status> {
    let stream = c.do_get(Ticket::new(t.encode())).await?.into_inner();
    Ok(FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from)).try_collect().await.unwrap())
}

fn ids(batches: &[RecordBatch]) -> Vec<u64> {
    batches.iter().flat_map(|b| b.column(0).as_primitive::<UInt64Type>().values().to_vec()).collect()
}

/// Both ways of hydrating: the rows held in memory (`hydrate.in_memory`, the default) and DuckDB
/// over the segments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_do_get_is_consistent_scoped_and_injection_proof() {
    for in_memory in [true, false] {
        do_get_is_consistent_scoped_and_injection_proof(in_memory).await;
    }
}

async fn do_get_is_consistent_scoped_and_injection_proof(in_memory: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let a = publish_repo(
        root,
        "alpha",
        &[
            ("src/a.py", "python", "def one():\n    return 1\n\n\ndef two():\n    return 2\n"),
            ("tests/test_a.py", "python", "def test_one():\n    assert one() == 1\n"),
            ("lib/b.rs", "rust", "fn three() -> u32 {\n    3\n}\n"),
        ],
    );
    let b = publish_repo(root, "beta", &[("x.js", "javascript", "function four() {\n  return 4;\n}\n")]);
    let mut cfg = Config::default();
    cfg.data.root = root.to_path_buf();
    let store = ChunkStore::with_memory(&cfg, in_memory).unwrap();
    assert_eq!(store.memory_bytes() > 0, in_memory);
    let client = serve(store).await;

    let all: Vec<u64> = a.iter().chain(b.iter()).map(|c| c.chunk_id).collect();
    let ticket = HydrateTicket::new(all.clone(), None);

    // 100 concurrent DoGet calls for the same ids return identical batches.
    let first = get(&mut client.clone(), &ticket).await.unwrap();
    let mut expected = all.clone();
    expected.sort_unstable();
    let mut got = ids(&first);
    got.sort_unstable();
    assert_eq!(got, expected);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (mut c, t) = (client.clone(), ticket.clone());
            tokio::spawn(async move { get(&mut c, &t).await.unwrap() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), first);
    }

    // Scope filters: repo, include/exclude globs, language.
    let scoped = |repos: &[&str], inc: &[&str], exc: &[&str], langs: &[&str]| HydrateTicket {
        chunk_ids: all.clone(),
        repos: repos.iter().map(|s| s.to_string()).collect(),
        include_globs: inc.iter().map(|s| s.to_string()).collect(),
        exclude_globs: exc.iter().map(|s| s.to_string()).collect(),
        languages: langs.iter().map(|s| s.to_string()).collect(),
    };
    let only = |pred: &dyn Fn(&codeintel_core::chunk::Chunk) -> bool| {
        let mut v: Vec<u64> = a.iter().chain(b.iter()).filter(|c| pred(c)).map(|c| c.chunk_id).collect();
        v.sort_unstable();
        v
    };
    let mut c = client.clone();
    let mut got = ids(&get(&mut c, &scoped(&["beta"], &[], &[], &[])).await.unwrap());
    got.sort_unstable();
    assert_eq!(got, only(&|c| c.repo == "beta"));
    let mut got = ids(&get(&mut c, &scoped(&[], &["**/*.py"], &["tests/**"], &[])).await.unwrap());
    got.sort_unstable();
    assert_eq!(got, only(&|c| c.path == "src/a.py"));
    let mut got = ids(&get(&mut c, &scoped(&[], &[], &[], &["rust"])).await.unwrap());
    got.sort_unstable();
    assert_eq!(got, only(&|c| c.language == "rust"));

    // Hostile strings are data: they match nothing and break nothing.
    for evil in ["python' OR '1'='1", "x'); DROP TABLE chunks; --", "\" OR 1=1 --"] {
        let r = get(&mut c, &scoped(&[], &[], &[], &[evil])).await.unwrap();
        assert!(ids(&r).is_empty(), "{evil} matched rows");
    }
    // The store still answers normally afterwards.
    assert_eq!(ids(&get(&mut c, &ticket).await.unwrap()).len(), all.len());

    // Bad tickets: INVALID_ARGUMENT with a reason.
    let e = c.do_get(Ticket::new(b"not json".to_vec())).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = get(&mut c, &scoped(&["nope"], &[], &[], &[])).await.unwrap_err();
    assert!(e.message().contains("unknown repo"), "{}", e.message());
    let e = get(&mut c, &HydrateTicket::default()).await.unwrap_err();
    assert!(e.message().contains("chunk_ids"), "{}", e.message());
}

/// Incremental versions: rows of tombstoned chunks are never returned, a chunk present in two
/// segments comes back once, and compaction keeps exactly the live rows.
#[test]
fn tombstones_hide_rows_and_compaction_keeps_only_live_ones() {
    for in_memory in [true, false] {
        tombstones_hide_rows(in_memory);
    }
}

fn tombstones_hide_rows(in_memory: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let chunks = publish_repo(
        root,
        "r",
        &[("a.py", "python", "def alpha():\n    return 1\n"), ("b.py", "python", "def beta():\n    return 2\n")],
    );
    let dir = root.join("r");
    let mut m = manifest::load_current(root, "r").unwrap();
    let (alpha, beta) = (chunks[0].chunk_id, chunks[1].chunk_id);
    // v2: beta deleted, alpha written again into a second segment (as a revert would).
    let seg2 = codeintel_index::segment::write_segment(&dir, "v000002", &chunks[..1]).unwrap();
    manifest::write_ids(&dir.join("tombstones/v000002.ids"), &[beta]).unwrap();
    m.version = 2;
    m.segments.push(seg2);
    m.tombstones = Some("tombstones/v000002.ids".into());
    manifest::publish(root, &m).unwrap();
    let mut cfg = codeintel_config::Config::default();
    cfg.data.root = root.to_path_buf();
    let store = ChunkStore::with_memory(&cfg, in_memory).unwrap();
    let ids_of = |batches: Vec<arrow::record_batch::RecordBatch>| -> Vec<u64> {
        batches
            .iter()
            .flat_map(|b| b.column(0).as_any().downcast_ref::<arrow::array::UInt64Array>().unwrap().values().to_vec())
            .collect()
    };
    let got = ids_of(store.fetch(&HydrateTicket::new(vec![alpha, beta], None)).unwrap());
    assert_eq!(got, vec![alpha], "beta is tombstoned; alpha appears once");
    let dead = manifest::tombstones(&dir, &m).unwrap();
    let (rel, rows) = codeintel_index::segment::compact_segments(&dir, &m.segments, &dead, "v000003").unwrap();
    assert_eq!(rows, 1);
    m.version = 3;
    m.segments = vec![rel];
    m.tombstones = None;
    manifest::publish(root, &m).unwrap();
    store.refresh();
    assert_eq!(ids_of(store.fetch(&HydrateTicket::new(vec![alpha, beta], None)).unwrap()), vec![alpha]);
}
