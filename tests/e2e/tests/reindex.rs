//! Re-indexing publishes a new version and embeds only chunks that changed.

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
    assert!(again.contains("version 2"), "{again}");
    assert_eq!(embedded(&again), 0, "nothing changed: {again}");

    // One function edited: only the chunks of that span are embedded again.
    let f = repo.join("web/session.js");
    let src = std::fs::read_to_string(&f)
        .unwrap()
        .replace("decodeURIComponent(v || '')", "decodeURIComponent((v || '').trim())");
    std::fs::write(&f, src).unwrap();
    let edited = index(&repo, "shop", &data);
    assert!(edited.contains("version 3"), "{edited}");
    assert_eq!(embedded(&edited), 1, "one chunk changed: {edited}");
}
