//! The fault suite: each backend SIGKILLed in turn while answers run, then restarted on its
//! address (answer-svc is never restarted); `codeintel index` and `codeintel compact`
//! SIGKILLed at random moments. Each prints its figures (requests, completed, degraded, failed,
//! recovery time) for the benchmark notes.

use std::time::{Duration, Instant};

use codeintel_e2e::{bin_dir, copy_tree, fixture, index, index_output, start_at, Mesh, Proc};
use codeintel_proto::v1::answer_event::Event;
use codeintel_proto::v1::answer_service_client::AnswerServiceClient;
use codeintel_proto::v1::AnswerRequest;
use tonic::transport::Channel;

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    requests: usize,
    completed: usize,
    degraded: usize,
    failed: usize,
}

/// One Answer: Ok(limit codes) or the status. Limit codes are the retrieval ones only (the
/// extractive answer of a mesh without a language model is the norm here).
async fn answer(c: &mut AnswerServiceClient<Channel>) -> Result<Vec<String>, tonic::Status> {
    let req = AnswerRequest {
        query: "how is the cart total computed with tax".into(),
        top_k: 3,
        time_budget_ms: 3000,
        ..Default::default()
    };
    let mut s = c.answer(req).await?.into_inner();
    let mut codes = Vec::new();
    while let Some(ev) = s.message().await? {
        if let Some(Event::Limits(l)) = ev.event {
            codes.extend(l.limits.into_iter().map(|l| l.code).filter(|c| c != "extractive"));
        }
    }
    Ok(codes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_backend_killed_mid_answers_degrades_or_fails_precisely_then_recovers_without_restarting_answer_svc() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    index(&fixture("shop"), "shop", &data);
    let mut mesh = Mesh::start_with(&data, &["answer.eject_ms=200".to_string(), "answer.discovery_ms=200".to_string()]);
    let ch = Channel::from_shared(format!("http://{}", mesh.answer.addr)).unwrap().connect().await.unwrap();
    let mut c = AnswerServiceClient::new(ch);
    assert_eq!(answer(&mut c).await.unwrap(), Vec::<String>::new(), "healthy mesh answers without limits");
    let answer_pid = mesh.answer.child.id();
    let mut rows = Vec::new();
    for backend in ["vector-svc", "lexical-svc", "hydrate-svc"] {
        let proc: &mut Proc = match backend {
            "vector-svc" => &mut mesh.vector,
            "lexical-svc" => &mut mesh.lexical,
            _ => &mut mesh.hydrate,
        };
        let addr = proc.addr.clone();
        proc.child.kill().unwrap();
        proc.child.wait().unwrap();
        // While it is down: answers keep coming, degraded with the retriever's limit, or (no
        // hydration: nothing to cite) failing UNAVAILABLE naming hydrate-svc.
        let mut during = Tally::default();
        for _ in 0..10 {
            during.requests += 1;
            match answer(&mut c).await {
                Ok(codes) if codes.is_empty() => during.completed += 1,
                Ok(codes) => {
                    let want = if backend == "vector-svc" { "dense_unavailable" } else { "lexical_unavailable" };
                    assert!(codes.iter().any(|c| c == want), "{backend}: {codes:?}");
                    during.degraded += 1;
                }
                Err(e) => {
                    assert_eq!(backend, "hydrate-svc", "only a dead hydrate-svc may fail an answer: {e:?}");
                    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
                    assert!(e.message().contains("hydrate-svc"), "{}", e.message());
                    during.failed += 1;
                }
            }
        }
        if backend == "hydrate-svc" {
            assert_eq!(during.failed, during.requests);
        } else {
            assert_eq!(during.degraded, during.requests, "{backend}: {during:?}");
        }
        // Restarted on its address: answers recover without a limit, answer-svc untouched.
        let restarted = Instant::now();
        *proc = start_at(backend, &addr, &data, &[], &[]);
        let mut after = Tally::default();
        let recovered = loop {
            after.requests += 1;
            match answer(&mut c).await {
                Ok(codes) if codes.is_empty() => break restarted.elapsed(),
                Ok(_) => after.degraded += 1,
                Err(_) => after.failed += 1,
            }
            assert!(restarted.elapsed() < Duration::from_secs(30), "{backend} did not come back into answers in 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        rows.push((backend, during, after, recovered));
    }
    assert_eq!(mesh.answer.child.id(), answer_pid);
    assert!(mesh.answer.child.try_wait().unwrap().is_none(), "answer-svc must not have died");
    eprintln!(
        "fault                 requests completed degraded failed | after restart: requests until clean, recovery ms"
    );
    for (b, d, a, r) in rows {
        eprintln!(
            "SIGKILL {b:<13} {:>8} {:>9} {:>8} {:>6} | {:>3} {:>8.0}",
            d.requests,
            d.completed,
            d.degraded,
            d.failed,
            a.requests,
            r.as_secs_f64() * 1e3
        );
    }
}

/// A copy of the shop fixture to edit (`src`) and a data root beside it (`data`).
fn shop_source() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (src, data) = (tmp.path().join("src"), tmp.path().join("data"));
    copy_tree(&fixture("shop"), &src);
    (tmp, src, data)
}

/// A small pseudo-random sequence (splitmix64), fixed seed.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_and_compact_killed_at_random_moments_leave_every_published_version_servable() {
    let (_tmp, src, data) = shop_source();
    index(&src, "shop", &data);
    let bin = bin_dir().join("codeintel");
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(&bin);
        cmd.arg("--data-root").arg(&data).args(args);
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        cmd
    };
    let src_arg = src.to_str().unwrap().to_string();
    let index_args = ["index", src_arg.as_str(), "--repo", "shop", "--quiet"];
    let compact_args = ["compact", "--repo", "shop", "--quiet"];
    // How long one run of each kind takes here (an incremental index is several times longer
    // than a compaction): each kill lands uniformly inside the first three quarters of its
    // kind's run, so it hits model loading, embedding or the writes, not a finished process.
    // Each kind is timed twice, each time with an edit to write, and the faster run counts: the
    // first may read the model files from a cold page cache and last longer than every later run.
    let timed = |args: &[&str]| {
        let t = Instant::now();
        assert!(run(args).status().unwrap().success(), "{args:?} failed");
        (t.elapsed().as_millis() as u64).max(40)
    };
    let (mut index_ms, mut compact_ms) = (u64::MAX, u64::MAX);
    for warm in 0..2 {
        std::fs::write(src.join(format!("warm_{warm}.py")), format!("def warm_{warm}():\n    return {warm}\n"))
            .unwrap();
        index_ms = index_ms.min(timed(&index_args));
        compact_ms = compact_ms.min(timed(&compact_args));
    }
    let mut seed = 0x20261202u64;
    let mut killed = 0;
    for round in 0..20 {
        // An edit, so the run has something to write.
        let f = src.join(format!("extra_{round}.py"));
        std::fs::write(&f, format!("def extra_{round}(x):\n    return x * {round}\n")).unwrap();
        let compact = round % 4 == 3;
        let (args, run_ms): (&[&str], u64) =
            if compact { (&compact_args, compact_ms) } else { (&index_args, index_ms) };
        let mut child = run(args).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(5 + next(&mut seed) % (run_ms * 3 / 4)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        // Whatever it left: the published version opens in every service and answers.
        let vector = codeintel_e2e::start("vector-svc", &data, &[]);
        let lexical = codeintel_e2e::start("lexical-svc", &data, &[]);
        let hydrate = codeintel_e2e::start("hydrate-svc", &data, &[]);
        let answer_svc = codeintel_e2e::answer_over(&data, &[&vector], &[&lexical], &[&hydrate], &[]);
        let ch = Channel::from_shared(format!("http://{}", answer_svc.addr)).unwrap().connect().await.unwrap();
        let mut c = AnswerServiceClient::new(ch);
        let codes = answer(&mut c).await.unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        assert!(codes.is_empty(), "round {round}: the published version is not whole: {codes:?}");
    }
    // The next run succeeds and publishes.
    let out = index(&src, "shop", &data);
    assert!(out.contains("indexed shop"), "{out}");
    eprintln!(
        "20 runs of codeintel index/compact (index {index_ms} ms, compact {compact_ms} ms), {killed} SIGKILLed mid-run; every published version served"
    );
    assert!(killed >= 10, "only {killed} of 20 runs were killed while running");
}

/// A version's manifest as JSON.
fn manifest_json(data: &std::path::Path, repo: &str, version: u64) -> serde_json::Value {
    let p = data.join(repo).join("manifests").join(format!("v{version:06}.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn current(data: &std::path::Path, repo: &str) -> String {
    std::fs::read_to_string(data.join(repo).join("CURRENT")).unwrap().trim().to_string()
}

/// Flips one byte in the middle of a file, keeping its size.
fn damage(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

/// The paths of the hits a hybrid search returns.
async fn search_paths(c: &mut AnswerServiceClient<Channel>, query: &str) -> Vec<String> {
    let req = codeintel_proto::v1::SearchRequest { query: query.into(), top_k: 10, ..Default::default() };
    c.search(req).await.unwrap().into_inner().hits.into_iter().map(|h| h.path).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_artifact_refuses_its_version_by_name_and_the_previous_version_is_served() {
    let (_tmp, src, data) = shop_source();
    index(&src, "shop", &data);
    std::fs::write(src.join("zebra.py"), "def zebra_discount(cart):\n    return cart.total * 0.5\n").unwrap();
    index(&src, "shop", &data);
    assert_eq!(current(&data, "shop"), "v000002");
    // One file of version 2 that version 1 does not have, for each service: its own segment,
    // its secondary vectors and its tantivy folder's meta.json.
    let m2 = manifest_json(&data, "shop", 2);
    let segment = m2["segments"].as_array().unwrap().last().unwrap().as_str().unwrap().to_string();
    let vectors = m2["secondary"]["vectors"].as_str().expect("an incremental version has a secondary").to_string();
    let meta = format!("{}/meta.json", m2["tantivy_dir"].as_str().unwrap());
    for rel in [&segment, &vectors, &meta] {
        assert!(!manifest_json(&data, "shop", 1).to_string().contains(rel.as_str()), "{rel} is shared with v1");
        damage(&data.join("shop").join(rel));
    }
    // Fresh processes: each refuses version 2, names the file, and serves version 1.
    let mesh = Mesh::start(&data);
    for (p, rel) in [(&mesh.vector, &vectors), (&mesh.lexical, &meta), (&mesh.hydrate, &segment)] {
        let r = p.ready();
        assert_eq!(r["status"], "degraded", "{}: {r}", p.name);
        let why = r["reasons"].to_string();
        // "serving v000001 instead" on the first load, "still serving v000001" once a reload
        // poll has run.
        assert!(why.contains(rel.as_str()) && why.contains("serving v000001"), "{}: {why}", p.name);
    }
    let ch = Channel::from_shared(format!("http://{}", mesh.answer.addr)).unwrap().connect().await.unwrap();
    let mut c = AnswerServiceClient::new(ch);
    assert!(answer(&mut c).await.unwrap().is_empty(), "version 1 answers whole");
    assert!(!search_paths(&mut c, "zebra_discount").await.contains(&"zebra.py".to_string()), "v2 content was served");
    // The next index run sees the damage, does not build on it, and publishes a whole version
    // from scratch, which every service takes.
    let out = index_output(&src, "shop", &data);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("version 2 is damaged") && stderr.contains("rebuilding shop from scratch"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("(full)"), "{}", String::from_utf8_lossy(&out.stdout));
    let t = Instant::now();
    while [&mesh.vector, &mesh.lexical, &mesh.hydrate].iter().any(|p| p.ready()["status"] != "ready") {
        assert!(t.elapsed() < Duration::from_secs(20), "services did not take v3");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(search_paths(&mut c, "zebra_discount").await.contains(&"zebra.py".to_string()));
    eprintln!("damaged v2 (segment, vectors, tantivy meta): refused by name, v1 served, v3 taken in {:?}", t.elapsed());
}

/// A tmpfs mounted for the life of the guard (the fault suite runs as root, as CI here does).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }

    fn avail_bytes(&self) -> u64 {
        let out = std::process::Command::new("df").args(["--output=avail", "-B1"]).arg(&self.0).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_during_indexing_is_a_clear_error_and_the_previous_version_stays_served() {
    let (_tmp, src, data) = shop_source();
    let is_root = std::process::Command::new("id").arg("-u").output().unwrap().stdout.starts_with(b"0\n");
    let Some(disk) = Tmpfs::mount(&data, "64m") else {
        assert!(!is_root, "root could not mount a tmpfs");
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    };
    index(&src, "shop", &data);
    let mesh = Mesh::start(&data);
    let ch = Channel::from_shared(format!("http://{}", mesh.answer.addr)).unwrap().connect().await.unwrap();
    let mut c = AnswerServiceClient::new(ch);
    assert!(answer(&mut c).await.unwrap().is_empty());
    // Fill the disk but for 16 KiB, then index a change that needs more than that.
    let avail = disk.avail_bytes();
    let filler = data.join("filler");
    std::fs::write(&filler, vec![0u8; (avail - 16 * 1024) as usize]).unwrap();
    let body: String =
        (0..400).map(|i| format!("def grown_{i}(x):\n    return x + {i}  # {}\n", "pad ".repeat(20))).collect();
    std::fs::write(src.join("grown.py"), body).unwrap();
    let run = || index_output(&src, "shop", &data);
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "indexing onto a full disk succeeded:\n{stderr}");
    assert!(stderr.contains("No space left on device"), "the error does not say the disk is full:\n{stderr}");
    assert!(stderr.contains(data.to_str().unwrap()), "the error names no path under the data root:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The published version is untouched and still answers, in every service.
    assert_eq!(current(&data, "shop"), "v000001");
    assert!(answer(&mut c).await.unwrap().is_empty());
    for p in [&mesh.vector, &mesh.lexical, &mesh.hydrate] {
        assert_eq!(p.ready()["status"], "ready", "{}", p.name);
    }
    // With room again, the next run succeeds over what the failed one left.
    std::fs::remove_file(&filler).unwrap();
    let out = run();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(current(&data, "shop"), "v000002");
    let t = Instant::now();
    while !search_paths(&mut c, "grown_7").await.contains(&"grown.py".to_string()) {
        assert!(t.elapsed() < Duration::from_secs(20), "v2 was not served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("full disk: index failed with ENOSPC naming the path, v1 kept serving, the next run published v2");
    drop(mesh);
}
