//! Navigation over a published version of the `nav` fixture (real chunks with their references,
//! read back through DuckDB): definitions, references with their resolution, outlines, file
//! text from disk and from chunks, repo summaries; and the same through Flight `DoAction`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_flight::Action;
use codeintel_config::Config;
use codeintel_core::proto::v1::{DefinitionsResponse, FileRequest, ListReposRequest, ListReposResponse, SymbolRequest};
use hydrate_svc::ChunkStore;
use prost::Message;

mod common;
use common::{publish_repo_from, serve, TEST_COMMIT};

fn fixture_file(rel: &str) -> String {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .join("../../tests/e2e/fixtures/nav");
    std::fs::read_to_string(dir.join(rel)).unwrap()
}

fn nav_store(root: &Path, source: &Path) -> Arc<ChunkStore> {
    nav_store_chunks(root, source).0
}

fn nav_store_chunks(root: &Path, source: &Path) -> (Arc<ChunkStore>, Vec<codeintel_core::chunk::Chunk>) {
    let (stock, orders, queue) = (
        fixture_file("src/inventory/stock.py"),
        fixture_file("src/inventory/orders.py"),
        fixture_file("engine/queue.rs"),
    );
    let chunks = publish_repo_from(
        root,
        "nav",
        Some(source),
        &[
            ("src/inventory/stock.py", "python", &stock),
            ("src/inventory/orders.py", "python", &orders),
            ("engine/queue.rs", "rust", &queue),
        ],
    );
    let mut cfg = Config::default();
    cfg.data.root = root.to_path_buf();
    (ChunkStore::new(&cfg).unwrap(), chunks)
}

/// `(path, commit, stale)` of every chunk as hydration serves it.
fn served(store: &ChunkStore, chunks: &[codeintel_core::chunk::Chunk]) -> Vec<(String, String, bool)> {
    let ids: Vec<u64> = chunks.iter().map(|c| c.chunk_id).collect();
    let mut out = Vec::new();
    for b in store.fetch(&codeintel_core::ticket::HydrateTicket::new(ids, None)).unwrap() {
        assert_eq!(b.schema(), codeintel_core::wire::served_schema());
        out.extend(codeintel_core::wire::decode(&b).unwrap().into_iter().map(|c| (c.path, c.commit, c.stale)));
    }
    out
}

fn sym(s: &str) -> SymbolRequest {
    SymbolRequest { symbol: s.into(), repos: vec![], limit: 0 }
}

fn file(path: &str, start: u32, end: u32) -> FileRequest {
    FileRequest { repo: "nav".into(), path: path.into(), start_line: start, end_line: end }
}

#[test]
fn definitions_references_outlines_and_files_come_from_the_indexed_version() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, source) = (tmp.path().join("data"), tmp.path().join("src"));
    let (store, chunks) = nav_store_chunks(&root, &source);

    // Definitions: qualified with `.` or `::`, exact first; a bare name finds every one.
    let d = store.find_definitions(&sym("Stock::available")).unwrap();
    let spans: Vec<_> =
        d.definitions.iter().map(|d| (d.path.as_str(), d.start_line, d.end_line, d.kind.as_str())).collect();
    assert_eq!(spans, vec![("src/inventory/stock.py", 13, 14, "method")]);
    assert_eq!(d.definitions[0].signature, "def available(self, sku):");
    let new = store.find_definitions(&sym("new")).unwrap();
    assert_eq!(new.definitions.iter().map(|d| d.symbol.as_str()).collect::<Vec<_>>(), vec!["JobQueue::new"]);
    assert!(store.find_definitions(&sym("Nope")).unwrap().definitions.is_empty());

    // References: qualified uses first; another type's `new` is not one.
    let r = store.find_references(&sym("JobQueue::new")).unwrap();
    let lines: Vec<_> = r.references.iter().map(|x| (x.path.as_str(), x.line, x.resolution.as_str())).collect();
    assert_eq!(lines, vec![("engine/queue.rs", 35, "qualified")], "{:?}", r.references);
    assert_eq!(r.references[0].enclosing, "make_queue");
    assert_eq!(r.references[0].text, "let mut q = JobQueue::new();");
    let avail = store.find_references(&sym("Stock.available")).unwrap();
    let got: Vec<_> = avail.references.iter().map(|x| (x.line, x.resolution.as_str(), x.qualifier.as_str())).collect();
    assert_eq!(got, vec![(9, "qualified", "self"), (18, "same_file", "stock")], "{:?}", avail.references);
    let restock = store.find_references(&sym("restock")).unwrap();
    let got: Vec<_> = restock.references.iter().map(|x| (x.path.as_str(), x.line, x.kind.as_str())).collect();
    assert_eq!(got, vec![("src/inventory/orders.py", 1, "import"), ("src/inventory/orders.py", 10, "call")]);
    assert!(restock.references.iter().all(|x| x.resolution == "imported"), "{:?}", restock.references);

    // Callers: the definitions that call it, with their spans and call lines.
    let c = store.find_callers(&sym("Stock.available")).unwrap();
    let got: Vec<_> = c
        .callers
        .iter()
        .map(|c| (c.symbol.as_str(), c.start_line, c.end_line, c.lines.clone(), c.resolution.as_str()))
        .collect();
    assert_eq!(got, vec![("Stock.reserve", 8, 11, vec![9], "qualified"), ("restock", 17, 19, vec![18], "same_file")]);
    assert_eq!((c.total, c.definitions[0].start_line), (2, 13));
    let imports_only = store.find_callers(&sym("Decimal")).unwrap();
    assert_eq!(imports_only.callers.iter().map(|c| c.symbol.as_str()).collect::<Vec<_>>(), vec!["restock"]);
    let one = store.find_callers(&SymbolRequest { symbol: "Stock.available".into(), repos: vec![], limit: 1 }).unwrap();
    assert_eq!((one.callers.len(), one.total), (1, 2));

    // Outline: a file's definitions in line order.
    let o = store.outline(&file("src/inventory/stock.py", 0, 0)).unwrap();
    let names: Vec<_> = o.definitions.iter().map(|d| d.symbol.as_str()).collect();
    assert_eq!(names, vec!["Stock", "Stock.__init__", "Stock.reserve", "Stock.available", "restock"]);

    // The file as indexed, checked against the disk; a range; then stale after an edit.
    let f = store.read_file(&file("src/inventory/stock.py", 13, 14)).unwrap();
    assert_eq!((f.origin.as_str(), f.stale), ("disk", false));
    assert_eq!(f.text, "    def available(self, sku):\n        return self.levels.get(sku, 0)");
    assert_eq!(f.total_lines, 19);
    let rows = served(&store, &chunks);
    assert_eq!(rows.len(), chunks.len());
    assert!(rows.iter().all(|(_, commit, stale)| commit == TEST_COMMIT && !stale), "{rows:?}");
    std::fs::write(
        source.join("src/inventory/stock.py"),
        format!("# new first line\n{}", fixture_file("src/inventory/stock.py")),
    )
    .unwrap();
    let f = store.read_file(&file("src/inventory/stock.py", 13, 14)).unwrap();
    assert_eq!((f.origin.as_str(), f.stale), ("chunks", true));
    assert!(f.stale_reason.starts_with("the file on disk changed since v000001 was indexed"), "{}", f.stale_reason);
    assert_eq!(
        f.text, "    def available(self, sku):\n        return self.levels.get(sku, 0)",
        "still the indexed lines"
    );
    // Every hit from the edited file says so; the others do not.
    for (path, _, stale) in served(&store, &chunks) {
        assert_eq!(stale, path == "src/inventory/stock.py", "{path}");
    }
    std::fs::remove_file(source.join("src/inventory/stock.py")).unwrap();
    let f = store.read_file(&file("src/inventory/stock.py", 1, 1)).unwrap();
    assert!(f.stale && f.stale_reason.contains("no longer readable on disk"), "{}", f.stale_reason);
    assert_eq!(f.text, "from decimal import Decimal");

    // Refusals name what to fix.
    let e = store.read_file(&file("../secrets.txt", 0, 0)).unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.to_string().contains("must be relative to the repository"), "{e}");
    let e = store.read_file(&file("src/missing.py", 0, 0)).unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(e.to_string().contains("repo nav has no indexed file src/missing.py"), "{e}");
    let e = store.read_file(&file("engine/queue.rs", 500, 0)).unwrap_err();
    assert!(e.to_string().contains("start_line 500 is past the end of engine/queue.rs (38 lines)"), "{e}");
    let e = store
        .find_references(&SymbolRequest { symbol: "x".into(), repos: vec!["other".into()], limit: 0 })
        .unwrap_err();
    assert!(e.to_string().contains("other"), "{e}");
    assert!(store.find_references(&SymbolRequest { symbol: "x".into(), repos: vec![], limit: 5000 }).is_err());

    // The repo summary counts what is live.
    let repos = store.list_repos().unwrap().repos;
    assert_eq!(repos.len(), 1);
    let nav = &repos[0];
    assert_eq!((nav.repo.as_str(), nav.version, nav.files), ("nav", 1, 3));
    let langs: Vec<_> = nav.languages.iter().map(|l| l.language.as_str()).collect();
    assert_eq!(langs.len(), 2, "{langs:?}");
    assert!(langs.contains(&"python") && langs.contains(&"rust"));
    assert!(nav.definitions >= 12 && nav.references >= 20, "{nav:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn navigation_travels_as_flight_actions_of_protobuf_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let store = nav_store(&tmp.path().join("data"), &tmp.path().join("src"));
    let mut client = serve(store).await;

    let kinds: Vec<String> = {
        use futures::TryStreamExt;
        let s = client.list_actions(arrow_flight::Empty {}).await.unwrap().into_inner();
        s.map_ok(|a| a.r#type).try_collect().await.unwrap()
    };
    assert_eq!(kinds, vec!["FindDefinitions", "FindReferences", "FindCallers", "Outline", "ReadFile", "ListRepos"]);

    let body = sym("JobQueue::drain_ready").encode_to_vec();
    let mut results = client.do_action(Action::new("FindDefinitions", body)).await.unwrap().into_inner();
    let first = results.message().await.unwrap().expect("one result");
    let defs = DefinitionsResponse::decode(first.body).unwrap();
    assert_eq!(defs.definitions[0].start_line, 20);
    assert_eq!(defs.definitions[0].path, "engine/queue.rs");

    let mut results =
        client.do_action(Action::new("ListRepos", ListReposRequest {}.encode_to_vec())).await.unwrap().into_inner();
    let repos = ListReposResponse::decode(results.message().await.unwrap().unwrap().body).unwrap();
    assert_eq!(repos.repos[0].repo, "nav");

    let e = client.do_action(Action::new("DropTable", Vec::new())).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("unknown action \"DropTable\"; hydrate-svc answers FindDefinitions"),
        "{}",
        e.message()
    );
    let e = client.do_action(Action::new("ReadFile", vec![0xff, 0xff, 0xff])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("is not its request message"), "{}", e.message());
}
