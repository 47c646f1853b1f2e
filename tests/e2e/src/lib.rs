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
    /// `host:port` of its `/metrics` and `/ready` HTTP endpoint, when it serves one.
    pub http: Option<String>,
}

impl Proc {
    /// The body of an HTTP GET of `path` on its metrics port.
    pub fn http_get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let addr = self.http.as_deref().expect("started with a metrics address");
        let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics port");
        write!(s, "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
    }

    /// The JSON `/ready` document (`{"status": ..., "reasons": [...]}`).
    pub fn ready(&self) -> serde_json::Value {
        let json = self.http_get("/ready");
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("bad /ready body {json:?}: {e}"))
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> String {
        self.http_get("/metrics")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a service on an ephemeral loopback port and waits for its `listening on grpc` line.
pub fn start(name: &str, data_root: &Path, extra: &[String]) -> Proc {
    start_env(name, data_root, extra, &[])
}

/// As [`start`], with more environment variables for the process.
pub fn start_env(name: &str, data_root: &Path, extra: &[String], env: &[(&str, String)]) -> Proc {
    start_at(name, "127.0.0.1:0", data_root, extra, env)
}

/// As [`start_env`], listening on `addr` (a restart on the address a process had).
pub fn start_at(name: &str, addr: &str, data_root: &Path, extra: &[String], env: &[(&str, String)]) -> Proc {
    let mut cmd = Command::new(bin_dir().join(name));
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    cmd.args(["--addr", addr, "--metrics-addr", "127.0.0.1:0", "--data-root"])
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
                    let http = rest.split("://").nth(1).map(|h| h.trim_end_matches("/metrics").trim().to_string());
                    let _ = tx.send((addr, http));
                    sent = true;
                    continue;
                }
            }
            eprintln!("[{n}] {line}");
        }
    });
    let (addr, http) =
        rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("{name} did not start listening in 60 s"));
    Proc { name: name.into(), child, addr, http }
}

/// Runs `codeintel index` on `path` into `data_root`, whatever its outcome.
pub fn index_output(path: &Path, repo: &str, data_root: &Path) -> std::process::Output {
    Command::new(bin_dir().join("codeintel"))
        .args(["index"])
        .arg(path)
        .args(["--repo", repo, "--quiet", "--data-root"])
        .arg(data_root)
        .output()
        .expect("run codeintel index")
}

/// Runs `codeintel index` on `path` into `data_root`; returns its summary line.
pub fn index(path: &Path, repo: &str, data_root: &Path) -> String {
    let out = index_output(path, repo, data_root);
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
        Self::start_all(data_root, &[], answer_options)
    }

    /// As [`Mesh::start_with`], with `key=value` options for every service too.
    pub fn start_all(data_root: &Path, common: &[String], answer_options: &[String]) -> Mesh {
        let common: Vec<String> = common.iter().flat_map(|u| ["--set".to_string(), u.clone()]).collect();
        let vector = start("vector-svc", data_root, &common);
        let lexical = start("lexical-svc", data_root, &common);
        let hydrate = start("hydrate-svc", data_root, &common);
        let options: Vec<String> = answer_options.iter().cloned().chain(common_options(&common)).collect();
        let answer = answer_over(data_root, &[&vector], &[&lexical], &[&hydrate], &options);
        Mesh { vector, lexical, hydrate, answer }
    }

    /// Another answer-svc process over the same backends (a second worker or pod).
    pub fn another_answer(&self, data_root: &Path, answer_options: &[String]) -> Proc {
        answer_over(data_root, &[&self.vector], &[&self.lexical], &[&self.hydrate], answer_options)
    }
}

/// The `key=value` options back out of `--set` pairs.
fn common_options(flags: &[String]) -> Vec<String> {
    flags.iter().filter(|f| f.as_str() != "--set").cloned().collect()
}

/// answer-svc over these backend processes (several per backend: replicas or shards), with a
/// 10 s budget and more `key=value` options.
pub fn answer_over(
    data_root: &Path,
    vector: &[&Proc],
    lexical: &[&Proc],
    hydrate: &[&Proc],
    options: &[String],
) -> Proc {
    let list = |ps: &[&Proc]| ps.iter().map(|p| format!("http://{}", p.addr)).collect::<Vec<_>>().join(",");
    let base = [
        format!("answer.vector_url={}", list(vector)),
        format!("answer.lexical_url={}", list(lexical)),
        format!("answer.hydrate_url={}", list(hydrate)),
        "answer.time_budget_ms=10000".to_string(),
        "answer.retriever_timeout_ms=8000".to_string(),
    ];
    let extra: Vec<String> = base.iter().chain(options).flat_map(|o| ["--set".to_string(), o.clone()]).collect();
    start("answer-svc", data_root, &extra)
}

/// A temporary folder with the `shop` fixture indexed into `<tmp>/data`; returns both.
pub fn indexed_shop() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    index(&fixture("shop"), "shop", &data);
    (tmp, data)
}

/// This crate's folder, read at run time: cargo sets it for every test process, and a binary
/// built in another checkout sharing the target folder would otherwise carry that checkout's path.
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}

pub fn fixture(name: &str) -> PathBuf {
    manifest_dir().join("fixtures").join(name)
}

pub mod model_server;
pub mod otlp;

/// A real `redis-server` on a free loopback port, without persistence; killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut r = RedisServer { port, child: None };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// (Re)starts it on the same port and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed by `make deps`");
        self.child = Some(child);
        let t = std::time::Instant::now();
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(t.elapsed() < Duration::from_secs(10), "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs a command through `redis-cli`; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default()
    }

    /// How many times Redis has executed `command` (from `INFO commandstats`).
    pub fn calls(&self, command: &str) -> u64 {
        let info = self.cli(&["INFO", "commandstats"]);
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
