//! `codeintel mcp` driven by the official MCP Python SDK (PyPI `mcp`, installed by
//! `make test-deps-mcp`) over stdio and over streamable HTTP, against a real mesh on the `nav`
//! fixture: every tool listed with a schema and called, results checked against the fixture
//! (a definition's span, references' lines, an outline, a stale-file warning after an edit, a
//! path escape refused). Also the references table of the fixture: precision and recall of
//! `FindReferences` (`codeintel refs --json`), printed and bounded.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use codeintel_e2e::{bin_dir, copy_tree, fixture, index, Mesh};
use serde_json::{json, Value};

/// The venv `make test-deps-mcp` fills.
fn python() -> PathBuf {
    let cache = std::env::var_os("CODEINTEL_CACHE").map(PathBuf::from).unwrap_or_else(|| "/var/cache/codeintel".into());
    let py = cache.join("venv-mcp/bin/python");
    assert!(py.is_file(), "{} is missing: run `make test-deps-mcp` (part of `make test`)", py.display());
    py
}

fn client_script() -> PathBuf {
    codeintel_e2e::manifest_dir().join("mcp/client.py")
}

/// The MCP Inspector's CLI (npm `@modelcontextprotocol/inspector-cli`, `make test-deps-mcp`).
fn inspector_cli() -> PathBuf {
    let cache = std::env::var_os("CODEINTEL_CACHE").map(PathBuf::from).unwrap_or_else(|| "/var/cache/codeintel".into());
    let cli = cache.join("mcp-inspector/node_modules/@modelcontextprotocol/inspector-cli/build/index.js");
    assert!(cli.is_file(), "{} is missing: run `make test-deps-mcp` (part of `make test`)", cli.display());
    cli
}

/// One Inspector CLI call (`target` is a command line or a URL, then `--method ...`); its JSON.
fn inspect(target: &[&str], env: &[(&str, &str)], method: &[&str]) -> Value {
    let mut cmd = Command::new("node");
    cmd.arg(inspector_cli());
    // The CLI passes its own environment to a server it starts.
    cmd.envs(env.iter().copied());
    let out = cmd.args(target).args(method).output().expect("run the MCP Inspector CLI (node)");
    assert!(
        out.status.success(),
        "inspector {method:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("inspector output is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// The Inspector lists the eight tools and calls one, over `target`.
fn check_inspector(target: &[&str], env: &[(&str, &str)]) {
    let listed = inspect(target, env, &["--method", "tools/list"]);
    let names: BTreeSet<&str> =
        listed["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, TOOLS.into_iter().collect::<BTreeSet<_>>(), "{listed}");
    let called = inspect(
        target,
        env,
        &["--method", "tools/call", "--tool-name", "find_definition", "--tool-arg", "symbol=Stock.available"],
    );
    assert_ne!(called["isError"], json!(true), "{called}");
    let text = called["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.starts_with("nav/src/inventory/stock.py:13-14 Stock.available (method, python)"), "{called}");
}

/// Runs the SDK client with `calls`; returns its JSON report.
fn drive(args: &[String], calls: &Value) -> Value {
    let mut child = Command::new(python())
        .arg(client_script())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the MCP client");
    child.stdin.take().unwrap().write_all(calls.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "MCP client failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("client output is not JSON ({e})"))
}

fn call(report: &Value, i: usize) -> (&str, bool) {
    let c = &report["calls"][i];
    (c["text"].as_str().unwrap(), c["is_error"].as_bool().unwrap())
}

/// The calls every transport makes, in order (indexes used below).
fn calls() -> Value {
    json!([
        ["list_repos", {}],
        ["index_status", {"repo": "nav"}],
        ["find_definition", {"symbol": "Stock.available"}],
        ["find_references", {"symbol": "JobQueue::new", "repo": "nav"}],
        ["list_symbols", {"repo": "nav", "path": "src/inventory/stock.py"}],
        ["read_code", {"repo": "nav", "path": "src/inventory/stock.py", "start_line": 13, "end_line": 14}],
        ["read_code", {"repo": "nav", "path": "../../etc/passwd"}],
        ["search_code", {"query": "reserve stock quantity", "repos": ["nav"], "limit": 3}],
        ["ask", {"question": "how is stock reserved?", "repos": ["nav"], "top_k": 3}],
        ["index_status", {"repo": "nope"}],
        ["search_code", {"query": "JobQueue", "repos": ["nav"], "limit": 20, "max_chars": 300}],
        ["find_callers", {"symbol": "Stock.available", "repo": "nav"}]
    ])
}

const TOOLS: [&str; 9] = [
    "search_code",
    "ask",
    "read_code",
    "find_definition",
    "find_references",
    "find_callers",
    "list_symbols",
    "list_repos",
    "index_status",
];

/// `commit`: the fixture's git commit, which every hit and citation names.
fn check_report(report: &Value, stale: bool, commit: &str) {
    let tools = report["tools"].as_object().unwrap();
    for t in TOOLS {
        let tool = tools.get(t).unwrap_or_else(|| panic!("tool {t} is not listed: {tools:?}"));
        assert_eq!(tool["schema"]["type"], "object", "{t} has an object schema");
        assert!(tool["description"].as_str().is_some_and(|d| d.len() > 40), "{t} says what it does");
    }
    assert_eq!(tools["read_code"]["schema"]["required"], json!(["repo", "path"]), "{}", tools["read_code"]);

    let (repos, err) = call(report, 0);
    assert!(!err && repos.starts_with("nav v1: "), "{repos}");
    assert!(repos.contains("python") && repos.contains("rust"), "{repos}");
    let (status, err) = call(report, 1);
    assert!(!err && status.starts_with("nav v1: ") && status.contains(" definitions, "), "{status}");

    let (def, err) = call(report, 2);
    assert!(!err, "{def}");
    assert!(
        def.starts_with(
            "nav/src/inventory/stock.py:13-14 Stock.available (method, python) v1: def available(self, sku):"
        ),
        "{def}"
    );

    let (refs, err) = call(report, 3);
    assert!(!err, "{refs}");
    assert!(refs.starts_with("1 reference to JobQueue::new"), "{refs}");
    assert!(refs.contains("defined at nav/engine/queue.rs:12-14 JobQueue::new"), "{refs}");
    assert!(
        refs.contains("nav/engine/queue.rs:35 [call, qualified] in make_queue: let mut q = JobQueue::new();"),
        "{refs}"
    );
    assert!(!refs.contains("queue.rs:13"), "VecDeque::new is another type's: {refs}");

    let (outline, err) = call(report, 4);
    assert!(!err, "{outline}");
    let lines: Vec<&str> = outline.lines().collect();
    assert_eq!(lines[0], "nav/src/inventory/stock.py: 5 definitions", "{outline}");
    assert!(lines.contains(&"    13-14 method Stock.available: def available(self, sku):"), "{outline}");
    assert!(lines.contains(&"  17-19 function restock: def restock(stock, sku, quantity):"), "{outline}");

    let (file, err) = call(report, 5);
    assert!(!err, "{file}");
    let flines: Vec<&str> = file.lines().collect();
    let at = format!("nav/src/inventory/stock.py:13-14 (python, v1 at {}, ", &commit[..12]);
    assert!(flines[0].starts_with(&at), "the file names its commit: {file}");
    if stale {
        assert!(flines[1].starts_with("warning: stale: the file on disk changed since v000001 was indexed"), "{file}");
        assert_eq!(flines[2], "13 |     def available(self, sku):", "the lines as indexed: {file}");
    } else {
        assert!(flines[0].contains("checked against the file on disk"), "{file}");
        assert_eq!(flines[1], "13 |     def available(self, sku):", "{file}");
        assert_eq!(flines[2], "14 |         return self.levels.get(sku, 0)", "{file}");
    }

    let (escape, err) = call(report, 6);
    assert!(err, "a path outside the repo is a tool error: {escape}");
    assert!(escape.contains("InvalidArgument") && escape.contains("must be relative to the repository"), "{escape}");

    let (hits, err) = call(report, 7);
    assert!(!err, "{hits}");
    assert!(hits.starts_with("[1] nav/"), "{hits}");
    assert!(hits.contains("Stock.reserve"), "{hits}");
    let short = format!(" @{}", &commit[..12]);
    assert!(hits.lines().next().unwrap().ends_with(&short), "each hit names its commit: {hits}");
    // The hits on stock.py are flagged once the file changed on disk; the others never.
    let flagged: Vec<&str> = hits
        .lines()
        .zip(hits.lines().skip(1))
        .filter(|(_, next)| next.contains("stale: the file on disk changed since it was indexed"))
        .map(|(head, _)| head)
        .collect();
    if stale {
        assert!(!flagged.is_empty() && flagged.iter().all(|h| h.contains("nav/src/inventory/stock.py:")), "{hits}");
    } else {
        assert!(flagged.is_empty(), "{hits}");
    }

    let (answer, err) = call(report, 8);
    assert!(!err, "{answer}");
    assert!(answer.starts_with("[1] nav/"), "citations first: {answer}");
    assert!(answer.lines().next().unwrap().ends_with(&short), "each citation names its commit: {answer}");
    assert_eq!(answer.contains("    stale: the file on disk changed"), stale, "{answer}");
    let progress = report["calls"][8]["progress"].as_array().unwrap();
    assert!(!progress.is_empty(), "the answer's tokens arrive as progress notifications");
    let streamed: String = progress.iter().filter_map(|p| p.as_str()).collect();
    // The answer's text (after the sources and a blank line) is what streamed.
    let body = answer.split_once("\n\n").map(|(_, b)| b).unwrap_or("");
    let first = body.lines().next().unwrap_or("").trim();
    assert!(
        first.len() > 10 && streamed.contains(first),
        "the streamed tokens are the answer: {streamed:?} / {answer}"
    );

    let (unknown, err) = call(report, 9);
    assert!(err && unknown.contains("repo nope is not served (served: nav)"), "{unknown}");

    let (small, err) = call(report, 10);
    assert!(!err, "{small}");
    assert!(small.len() <= 300, "max_chars bounds the result: {} chars", small.len());
    assert!(small.contains("more lines not shown (max_chars 300)"), "{small}");

    let (callers, err) = call(report, 11);
    assert!(!err, "{callers}");
    let lines: Vec<&str> = callers.lines().collect();
    assert_eq!(lines[0], "2 callers of Stock.available", "{callers}");
    assert!(lines.contains(&"nav/src/inventory/stock.py:8-11 Stock.reserve [qualified] calls at line 9: if self.available(sku) < quantity:"), "{callers}");
    assert!(
        lines.iter().any(|l| l.starts_with("nav/src/inventory/stock.py:17-19 restock [same_file] calls at line 18")),
        "{callers}"
    );
}

/// `codeintel mcp --http` on an ephemeral port; its `/mcp` URL.
struct HttpMcp {
    child: std::process::Child,
    url: String,
}

impl Drop for HttpMcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_http(answer: &str) -> HttpMcp {
    let mut child = Command::new(bin_dir().join("codeintel"))
        .args(["--set", &format!("answer.addr={answer}"), "mcp", "--http", "--addr", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start codeintel mcp --http");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("mcp listening on ") {
                let _ = tx.send(url.trim().to_string());
            } else {
                eprintln!("[mcp] {line}");
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(30)).expect("codeintel mcp --http did not start");
    HttpMcp { child, url }
}

#[test]
fn an_agent_uses_every_tool_over_stdio_and_streamable_http() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("nav");
    copy_tree(&fixture("nav"), &src);
    let commit = git_commit_all(&src);
    let data = tmp.path().join("data");
    index(&src, "nav", &data);
    let mesh = Mesh::start(&data);
    let codeintel = bin_dir().join("codeintel").display().to_string();
    let stdio = |extra: &[&str]| -> Vec<String> {
        let mut a =
            vec!["stdio".to_string(), codeintel.clone(), "--set".into(), format!("answer.addr={}", mesh.answer.addr)];
        a.extend(extra.iter().map(|s| s.to_string()));
        a.push("mcp".into());
        a
    };

    let report = drive(&stdio(&[]), &calls());
    check_report(&report, false, &commit);
    // A second client, the MCP Inspector's CLI; the address from the environment this time.
    check_inspector(&[&codeintel, "mcp"], &[("CODEINTEL__ANSWER__ADDR", &mesh.answer.addr)]);

    let http = start_http(&mesh.answer.addr);
    assert!(http.url.starts_with("http://127.0.0.1:") && http.url.ends_with("/mcp"), "{}", http.url);
    let report = drive(&["http".into(), http.url.clone()], &calls());
    check_report(&report, false, &commit);
    check_inspector(&[&http.url, "--transport", "http"], &[]);

    // The file changes after indexing: read_code says so, and still shows the indexed lines.
    let stock = src.join("src/inventory/stock.py");
    let edited = format!("# moved down a line\n{}", std::fs::read_to_string(&stock).unwrap());
    std::fs::write(&stock, edited).unwrap();
    let report = drive(&stdio(&[]), &calls());
    check_report(&report, true, &commit);
}

/// Makes `dir` a git work tree with everything in one commit; that commit's id.
fn git_commit_all(dir: &Path) -> String {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "fixture"]);
    git(&["rev-parse", "HEAD"])
}

#[test]
fn the_mcp_server_answers_with_tool_errors_when_the_mesh_is_down() {
    // Nothing listens on this port: every tool call is a tool error that says what to do.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let codeintel = bin_dir().join("codeintel").display().to_string();
    let args =
        vec!["stdio".to_string(), codeintel, "--set".into(), format!("answer.addr=127.0.0.1:{port}"), "mcp".into()];
    let report = drive(&args, &json!([["list_repos", {}], ["search_code", {"query": "x"}]]));
    for i in 0..2 {
        let (text, err) = call(&report, i);
        assert!(err, "{text}");
        assert!(text.contains("start the mesh with `codeintel up`"), "{text}");
    }
}

/// Expected uses of each symbol in the `nav` fixture: (symbol, {path:line}).
const NAV_REFERENCES: &[(&str, &[&str])] = &[
    ("Stock.available", &["src/inventory/stock.py:9", "src/inventory/stock.py:18"]),
    ("restock", &["src/inventory/orders.py:1", "src/inventory/orders.py:10"]),
    ("Stock", &["src/inventory/orders.py:1", "src/inventory/orders.py:4", "src/inventory/orders.py:9"]),
    ("Decimal", &["src/inventory/stock.py:1", "src/inventory/stock.py:19"]),
    ("JobQueue::new", &["engine/queue.rs:35"]),
    ("JobQueue::drain_ready", &["engine/queue.rs:30"]),
    ("JobQueue::push", &["engine/queue.rs:36"]),
    ("JobQueue", &["engine/queue.rs:11", "engine/queue.rs:29", "engine/queue.rs:34", "engine/queue.rs:35"]),
    ("Job", &["engine/queue.rs:4", "engine/queue.rs:16", "engine/queue.rs:20", "engine/queue.rs:36"]),
];

fn refs(data_answer: &str, symbol: &str) -> BTreeSet<String> {
    let out = Command::new(bin_dir().join("codeintel"))
        .args(["--set", &format!("answer.addr={data_answer}"), "refs", symbol, "--json", "--limit", "1000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "codeintel refs {symbol}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            format!("{}:{}", v["path"].as_str().unwrap(), v["line"])
        })
        .collect()
}

#[test]
fn references_of_the_fixture_have_full_recall_and_bounded_precision() {
    let tmp = tempfile::tempdir().unwrap();
    let data: &Path = &tmp.path().join("data");
    index(&fixture("nav"), "nav", data);
    let mesh = Mesh::start(data);
    let (mut tp, mut fp, mut fnn) = (0usize, 0usize, 0usize);
    for (symbol, expected) in NAV_REFERENCES {
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        let got = refs(&mesh.answer.addr, symbol);
        let hit = got.intersection(&expected).count();
        tp += hit;
        fp += got.len() - hit;
        fnn += expected.len() - hit;
        eprintln!("refs {symbol}: expected {expected:?}, got {got:?}");
    }
    let precision = tp as f64 / (tp + fp).max(1) as f64;
    let recall = tp as f64 / (tp + fnn).max(1) as f64;
    eprintln!(
        "nav fixture references: precision {precision:.3} recall {recall:.3} ({tp} right, {fp} wrong, {fnn} missed)"
    );
    assert_eq!(fnn, 0, "every expected use is found");
    assert!(precision >= 0.85, "precision {precision:.3}");
}
