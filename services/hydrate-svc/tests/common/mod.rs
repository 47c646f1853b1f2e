//! Helpers of hydrate-svc's integration tests: a published repo of real chunks, a Flight
//! server on loopback.
#![allow(dead_code)] // each test file uses some of them

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::FlightServiceServer;
use codeintel_chunk::chunk_file;
use codeintel_core::chunk::{sha256_hex, ChunkOptions};
use codeintel_index::manifest::{self, BuildSettings, EmbeddingContract, FirstArtifacts, Manifest, VectorFiles};
use hydrate_svc::flight::HydrateFlight;
use hydrate_svc::ChunkStore;
use tonic::transport::{Channel, Server};

/// The git commit a repo published with a source folder is recorded at.
pub const TEST_COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Publishes a repo whose segment holds real chunks of a few files; the vector and lexical
/// artifacts the manifest names are not used by hydrate-svc and are left empty.
pub fn publish_repo(root: &Path, repo: &str, files: &[(&str, &str, &str)]) -> Vec<codeintel_core::chunk::Chunk> {
    publish_repo_from(root, repo, None, files)
}

/// As [`publish_repo`]; with `source`, the files are also written under it, their hashes are
/// their content's and the manifest names it as where the repo was indexed from, at git commit
/// [`TEST_COMMIT`].
pub fn publish_repo_from(
    root: &Path,
    repo: &str,
    source: Option<&Path>,
    files: &[(&str, &str, &str)],
) -> Vec<codeintel_core::chunk::Chunk> {
    let chunks: Vec<_> =
        files.iter().flat_map(|(path, lang, src)| chunk_file(repo, path, lang, src, ChunkOptions::default())).collect();
    let dir = root.join(repo);
    let v = manifest::version_name(1);
    let segment = codeintel_index::segment::write_segment(&dir, &v, &chunks).unwrap();
    std::fs::create_dir_all(dir.join("vector")).unwrap();
    std::fs::write(dir.join("vector/unused.faiss"), b"").unwrap();
    std::fs::write(dir.join("vector/unused.json"), b"[]").unwrap();
    std::fs::create_dir_all(dir.join("lexical/unused")).unwrap();
    let contract = EmbeddingContract {
        model_id: "m".into(),
        dim: 4,
        metric: "inner_product".into(),
        normalized: true,
        weights_sha256: String::new(),
    };
    let primary = VectorFiles {
        faiss_index: "vector/unused.faiss".into(),
        chunk_meta: "vector/unused.json".into(),
        vectors: "vector/unused.faiss".into(),
        kind: "flat".into(),
        count: chunks.len() as u64,
    };
    let a = FirstArtifacts { segments: vec![segment], primary, tantivy_dir: "lexical/unused".into(), sparse: None };
    let hashes: BTreeMap<String, String> = files
        .iter()
        .map(|(p, _, text)| {
            (p.to_string(), if source.is_some() { sha256_hex(text.as_bytes()) } else { "h".to_string() })
        })
        .collect();
    if let Some(src) = source {
        for (p, _, text) in files {
            std::fs::create_dir_all(src.join(p).parent().unwrap()).unwrap();
            std::fs::write(src.join(p), text).unwrap();
        }
    }
    let from = source.map_or("test".to_string(), |s| s.display().to_string());
    let mut m = Manifest::new(repo, 1, from, BuildSettings::vectors_only(contract), a, hashes);
    if source.is_some() {
        m.git = Some(manifest::GitInfo { commit: TEST_COMMIT.into(), branch: "main".into(), ..Default::default() });
    }
    manifest::publish(root, &m).unwrap();
    chunks
}

pub async fn serve(store: Arc<ChunkStore>) -> FlightServiceClient<Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        Server::builder()
            .add_service(FlightServiceServer::new(HydrateFlight(store)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    let ch = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    FlightServiceClient::new(ch)
}
