//! A data root in an object store: a real S3-compatible server (moto's, from PyPI, installed by
//! `make test-deps-s3`) on loopback, the indexer publishing into it, the services mirroring it,
//! and a loopback proxy between the services and the server that cuts downloads midway.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use codeintel_e2e::{answer_over, bin_dir, copy_tree, fixture, start_env, Proc};
use codeintel_proto::v1::answer_service_client::AnswerServiceClient;
use codeintel_proto::v1::SearchRequest;
use tonic::transport::Channel;

const BUCKET: &str = "codeintel";

fn moto_server() -> PathBuf {
    let cache = std::env::var_os("CODEINTEL_CACHE").map(PathBuf::from).unwrap_or_else(|| "/var/cache/codeintel".into());
    let bin = cache.join("venv-s3/bin/moto_server");
    assert!(bin.is_file(), "{} is missing: run `make test-deps-s3` (make test does)", bin.display());
    bin
}

struct S3Server {
    port: u16,
    child: Child,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl S3Server {
    fn start() -> S3Server {
        let port = free_port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(30), "moto_server did not listen in 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let s = S3Server { port, child };
        // Create the bucket (moto accepts an unsigned request).
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(c, "PUT /{BUCKET} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut resp = String::new();
        c.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "bucket not created: {resp}");
        s
    }
}

/// A loopback TCP proxy to the S3 server that, while armed, cuts a connection once it has sent
/// `CUT_AFTER` bytes of the answer to a GET of an artifact (not of `CURRENT`, a manifest or a
/// listing): downloads interrupted midway.
struct CuttingProxy {
    port: u16,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicU64>,
}

/// Small: object_store resumes a cut download with a range request (twice here), so only a
/// file larger than three of these stays unfinished while the proxy is armed.
const CUT_AFTER: u64 = 1_000;

/// Whether a request line fetches an artifact of a version.
fn artifact_get(request: &[u8]) -> bool {
    let line = String::from_utf8_lossy(request.split(|&b| b == b'\n').next().unwrap_or_default()).to_string();
    line.starts_with("GET ")
        && !line.contains("CURRENT")
        && !line.contains("/manifests/")
        && !line.contains("list-type")
}

impl CuttingProxy {
    fn start(upstream: u16) -> CuttingProxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (armed, cuts) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (a, n) = (armed.clone(), cuts.clone());
        std::thread::spawn(move || {
            for client in l.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let (a, n) = (a.clone(), n.clone());
                // (the connection's last request fetches an artifact, bytes of its answer sent)
                let state = Arc::new(std::sync::Mutex::new((false, 0u64)));
                let (mut c_in, mut s_out, st) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap(), state.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    while let Ok(k) = c_in.read(&mut buf) {
                        if k == 0 {
                            break;
                        }
                        if buf[..k].starts_with(b"GET ")
                            || buf[..k].starts_with(b"HEAD ")
                            || buf[..k].starts_with(b"PUT ")
                        {
                            *st.lock().unwrap() = (artifact_get(&buf[..k]), 0);
                        }
                        if s_out.write_all(&buf[..k]).is_err() {
                            break;
                        }
                    }
                    let _ = s_out.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let (mut server, mut client) = (server, client);
                    let mut buf = [0u8; 8192];
                    while let Ok(k) = server.read(&mut buf) {
                        if k == 0 {
                            break;
                        }
                        let mut st = state.lock().unwrap();
                        if a.load(Ordering::SeqCst) && st.0 && st.1 + k as u64 > CUT_AFTER {
                            let keep = CUT_AFTER.saturating_sub(st.1) as usize;
                            let _ = client.write_all(&buf[..keep]);
                            n.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        st.1 += k as u64;
                        drop(st);
                        if client.write_all(&buf[..k]).is_err() {
                            break;
                        }
                    }
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    let _ = server.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        CuttingProxy { port, armed, cuts }
    }
}

fn aws_env(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT", format!("http://127.0.0.1:{port}")),
        ("AWS_ALLOW_HTTP", "true".into()),
    ]
}

/// `codeintel index` into the store; returns its output.
fn index_into(store_url: &str, path: &Path, mirror: &Path, port: u16) -> String {
    let out = Command::new(bin_dir().join("codeintel"))
        .arg("index")
        .arg(path)
        .args(["--repo", "shop", "--quiet", "--data-root", store_url, "--set"])
        .arg(format!("data.mirror={}", mirror.display()))
        .envs(aws_env(port))
        .output()
        .expect("run codeintel index");
    assert!(out.status.success(), "codeintel index failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

async fn hits_for(c: &mut AnswerServiceClient<Channel>, query: &str) -> Vec<String> {
    let req = SearchRequest { query: query.into(), scope: None, top_k: 5, mode: 0, rerank: false };
    c.search(req).await.unwrap().into_inner().hits.iter().map(|h| format!("{}:{}", h.path, h.symbol)).collect()
}

fn current(mirror: &Path) -> String {
    std::fs::read_to_string(mirror.join("shop/CURRENT")).unwrap_or_default().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_serve_a_data_root_in_s3_and_survive_a_download_cut_midway() {
    let s3 = S3Server::start();
    let proxy = CuttingProxy::start(s3.port);
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("s3://{BUCKET}/indexes");
    let repo = tmp.path().join("shop");
    copy_tree(&fixture("shop"), &repo);

    let out = index_into(&url, &repo, &tmp.path().join("mirror-indexer"), s3.port);
    assert!(out.contains("published shop version 1 to s3://codeintel/indexes"), "{out}");

    // Each service mirrors the store into its own folder, through the proxy.
    let env = aws_env(proxy.port);
    let svc = |name: &str| {
        let mirror = tmp.path().join(format!("mirror-{name}"));
        let extra = ["--set".to_string(), format!("data.mirror={}", mirror.display())];
        (start_env(name, Path::new(&url), &extra, &env), mirror)
    };
    let (vector, vm) = svc("vector-svc");
    let (lexical, lm) = svc("lexical-svc");
    let (hydrate, hm) = svc("hydrate-svc");
    for m in [&vm, &lm, &hm] {
        assert_eq!(current(m), "v000001", "pulled before serving: {}", m.display());
    }
    let answer: Proc = answer_over(tmp.path(), &[&vector], &[&lexical], &[&hydrate], &[]);
    let ch = Channel::from_shared(format!("http://{}", answer.addr)).unwrap().connect().await.unwrap();
    let mut c = AnswerServiceClient::new(ch);
    let hits = hits_for(&mut c, "cart total with tax").await;
    assert!(!hits.is_empty(), "served from the mirror of the store");
    assert!(hits_for(&mut c, "apply_gift_voucher").await.iter().all(|h| !h.contains("apply_gift_voucher")));

    // A new version, published while every download from the store is cut midway.
    let cart = repo.join("src/shop/cart.py");
    let mut text = std::fs::read_to_string(&cart).unwrap();
    text.push_str("\n\ndef apply_gift_voucher(total, voucher_cents):\n    \"\"\"Take a gift voucher off the cart total.\"\"\"\n    return max(0, total - voucher_cents)\n");
    std::fs::write(&cart, text).unwrap();
    // And a larger module, so that every store's new files are larger than a few cuts.
    let mut big = String::from("\"\"\"Shipping rates by region.\"\"\"\n");
    for i in 0..120 {
        big.push_str(&format!(
            "\n\ndef shipping_rate_zone_{i}(weight_grams, express=False):\n    \"\"\"Rate for zone {i} in cents.\"\"\"\n    base = {base} + weight_grams // {div}\n    return base * 2 if express else base\n",
            base = 300 + i * 7,
            div = 50 + i
        ));
    }
    std::fs::write(repo.join("src/shop/shipping_rates.py"), big).unwrap();
    proxy.armed.store(true, Ordering::SeqCst);
    let out = index_into(&url, &repo, &tmp.path().join("mirror-indexer"), s3.port);
    assert!(out.contains("incremental") && out.contains("version 2"), "{out}");
    let t = Instant::now();
    while proxy.cuts.load(Ordering::SeqCst) < 3 && t.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(proxy.cuts.load(Ordering::SeqCst) >= 3, "the services tried to download version 2");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    for m in [&vm, &lm, &hm] {
        assert_eq!(current(m), "v000001", "an interrupted download does not swap: {}", m.display());
    }
    let partial: Vec<PathBuf> =
        [&vm, &lm, &hm].iter().flat_map(|m| walk(m)).filter(|p| p.to_string_lossy().ends_with(".part")).collect();
    assert!(!partial.is_empty(), "a download was cut midway: its .part file is there, unused");
    let still = hits_for(&mut c, "cart total with tax").await;
    assert_eq!(still, hits, "version 1 keeps serving meanwhile");

    // Downloads work again: every service swaps to version 2 by itself.
    proxy.armed.store(false, Ordering::SeqCst);
    let t = Instant::now();
    while [&vm, &lm, &hm].iter().any(|m| current(m) != "v000002") && t.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for m in [&vm, &lm, &hm] {
        assert_eq!(current(m), "v000002", "{}", m.display());
        let parts: Vec<_> = walk(m).into_iter().filter(|p| p.to_string_lossy().ends_with(".part")).collect();
        assert!(parts.is_empty(), "no partial file is left once the download succeeded: {parts:?}");
    }
    let t = Instant::now();
    loop {
        let hits = hits_for(&mut c, "apply_gift_voucher").await;
        if hits.iter().any(|h| h.contains("apply_gift_voucher")) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "version 2 is served: {hits:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
