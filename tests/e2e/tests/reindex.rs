//! Re-indexing publishes a new version only when files changed, and embeds only new chunks.

use codeintel_e2e::{copy_tree, fixture, index};

fn embedded(summary: &str) -> usize {
    let (_, rest) = summary.split_once("chunks (").unwrap_or_else(|| panic!("unexpected summary {summary}"));
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn reindexing_reuses_vectors_of_unchanged_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("shop");
    copy_tree(&fixture("shop"), &repo);
    let data = tmp.path().join("data");
    let first = index(&repo, "shop", &data);
    assert!(first.contains("version 1"), "{first}");
    let all = embedded(&first);
    assert!(all >= 8, "{first}");

    let again = index(&repo, "shop", &data);
    assert!(again.contains("(up to date)") && again.contains("version 1"), "{again}");
    assert_eq!(embedded(&again), 0, "nothing changed: {again}");

    // One function edited: only the chunks of that span are embedded again.
    let f = repo.join("web/session.js");
    let src = std::fs::read_to_string(&f)
        .unwrap()
        .replace("decodeURIComponent(v || '')", "decodeURIComponent((v || '').trim())");
    std::fs::write(&f, src).unwrap();
    let edited = index(&repo, "shop", &data);
    assert!(edited.contains("(incremental)") && edited.contains("version 2"), "{edited}");
    assert_eq!(embedded(&edited), 1, "one chunk changed: {edited}");
    assert!(edited.contains("(1 changed, 0 deleted)"), "{edited}");
}

/// A running mesh picks up a newly published version by itself: new code becomes searchable
/// and removed code disappears, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_mesh_swaps_to_a_new_version() {
    use codeintel_proto::v1::answer_service_client::AnswerServiceClient;
    use codeintel_proto::v1::{SearchMode, SearchRequest};

    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("shop");
    copy_tree(&fixture("shop"), &repo);
    let data = tmp.path().join("data");
    index(&repo, "shop", &data);
    let mesh = codeintel_e2e::Mesh::start(&data);
    let ch = tonic::transport::Channel::from_shared(format!("http://{}", mesh.answer.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = AnswerServiceClient::new(ch);
    let top_symbol =
        |r: &codeintel_proto::v1::SearchResponse| r.hits.first().map(|h| h.symbol.clone()).unwrap_or_default();
    let search = |q: &str| SearchRequest {
        query: q.into(),
        scope: None,
        top_k: 3,
        mode: SearchMode::Lexical as i32,
        rerank: false,
    };

    let before = c.search(search("backoff_delay")).await.unwrap().into_inner();
    assert_eq!(top_symbol(&before), "backoff_delay");

    // Rename the function and publish a new version while the mesh serves.
    let f = repo.join("engine/ratelimit.rs");
    let src = std::fs::read_to_string(&f).unwrap().replace("backoff_delay", "retry_pause_for_attempt");
    std::fs::write(&f, src).unwrap();
    index(&repo, "shop", &data);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = c.search(search("retry_pause_for_attempt")).await.unwrap().into_inner();
        if top_symbol(&r) == "retry_pause_for_attempt" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "new version not served within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = c.search(search("backoff_delay")).await.unwrap().into_inner();
    assert!(r.hits.iter().all(|h| !h.text.contains("fn backoff_delay")), "old code still served: {:?}", r.hits);
}
