//! Helpers to run the mesh as real processes: binaries from the build, ephemeral loopback
//! ports read from each service's startup line, processes killed when the guard drops.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The folder holding the workspace binaries of the profile these tests were built with.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>").to_path_buf();
    for b in ["codeintel", "vector-svc", "lexical-svc", "hydrate-svc", "answer-svc"] {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: run `make test` (it builds the binaries first)",
            dir.join(b).display()
        );
    }
    dir
}

pub struct Proc {
    pub name: String,
    pub child: Child,
    pub addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a service on an ephemeral loopback port and waits for its `listening on grpc` line.
pub fn start(name: &str, data_root: &Path, extra: &[String]) -> Proc {
    let mut cmd = Command::new(bin_dir().join(name));
    cmd.args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--data-root"])
        .arg(data_root)
        .args(["--set", "vector.reload_ms=200", "--set", "lexical.reload_ms=200", "--set", "hydrate.reload_ms=200"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let n = name.to_string();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent {
                if let Some(rest) = line.split("listening on grpc ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                    sent = true;
                    continue;
                }
            }
            eprintln!("[{n}] {line}");
        }
    });
    let addr =
        rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("{name} did not start listening in 60 s"));
    Proc { name: name.into(), child, addr }
}

/// Runs `codeintel index` on `path` into `data_root`; returns its summary line.
pub fn index(path: &Path, repo: &str, data_root: &Path) -> String {
    let out = Command::new(bin_dir().join("codeintel"))
        .args(["index"])
        .arg(path)
        .args(["--repo", repo, "--quiet", "--data-root"])
        .arg(data_root)
        .output()
        .expect("run codeintel index");
    assert!(out.status.success(), "codeintel index failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Copies a folder tree (fixtures are edited in copies, never in place).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

pub struct Mesh {
    pub vector: Proc,
    pub lexical: Proc,
    pub hydrate: Proc,
    pub answer: Proc,
}

impl Mesh {
    pub fn start(data_root: &Path) -> Mesh {
        Self::start_with(data_root, &[])
    }

    /// As [`Mesh::start`], with more `key=value` options for answer-svc.
    pub fn start_with(data_root: &Path, answer_options: &[String]) -> Mesh {
        let vector = start("vector-svc", data_root, &[]);
        let lexical = start("lexical-svc", data_root, &[]);
        let hydrate = start("hydrate-svc", data_root, &[]);
        let urls = [
            format!("answer.vector_url=http://{}", vector.addr),
            format!("answer.lexical_url=http://{}", lexical.addr),
            format!("answer.hydrate_url=http://{}", hydrate.addr),
            "answer.time_budget_ms=10000".to_string(),
            "answer.retriever_timeout_ms=8000".to_string(),
        ];
        let extra: Vec<String> =
            urls.iter().chain(answer_options).flat_map(|u| ["--set".to_string(), u.clone()]).collect();
        let answer = start("answer-svc", data_root, &extra);
        Mesh { vector, lexical, hydrate, answer }
    }
}

pub fn fixture(name: &str) -> PathBuf {
    // Read at run time: cargo sets it for every test process, and a binary built in another
    // checkout sharing the target folder would otherwise carry that checkout's path.
    let dir =
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    dir.join("fixtures").join(name)
}

pub mod model_server;
