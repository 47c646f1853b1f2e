//! `codeintel up` as a supervisor, with real processes: the mesh on free loopback ports, answer-svc
//! killed with SIGKILL, restarted on the same port and healthy again; SIGTERM stops everything.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use codeintel_e2e::{bin_dir, indexed_shop};

/// `n` distinct free loopback addresses (held together while picked, so none repeats).
fn free_addrs(n: usize) -> Vec<String> {
    let held: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port")).collect();
    held.iter().map(|l| l.local_addr().unwrap().to_string()).collect()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// A process that is gone (or a zombie nobody has reaped yet: init reaps orphans).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// `codeintel up`, its stdout lines, and every child pid it printed; on drop (a failed test)
/// it is stopped and every child it started is killed.
struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    pids: Vec<u32>,
}

impl Up {
    /// The next stdout line satisfying `want`, within `deadline`.
    fn wait_for(&mut self, what: &str, deadline: Instant, want: impl Fn(&str) -> bool) -> String {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    eprintln!("[up] {line}");
                    self.seen.push(line.clone());
                    if let Some(pid) = pid_of(&line).filter(|p| !self.pids.contains(p)) {
                        self.pids.push(pid);
                    }
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no {what} from `codeintel up` in time; its output:\n{}", self.seen.join("\n")),
            }
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return; // it stopped its children itself
        }
        signal(self.child.id(), "TERM");
        let t = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() && t.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in &self.pids {
            if !gone(*pid) {
                signal(*pid, "KILL");
            }
        }
    }
}

/// The pid in `NAME pid PID ...` (the lines `up` prints for each child it starts).
fn pid_of(line: &str) -> Option<u32> {
    let mut w = line.split_whitespace();
    let (_name, p, pid) = (w.next()?, w.next()?, w.next()?);
    if p != "pid" {
        return None;
    }
    pid.parse().ok()
}

/// Waits until `codeintel health ADDR` says SERVING.
fn wait_serving(addr: &str, deadline: Instant, what: &str) {
    loop {
        let out = Command::new(bin_dir().join("codeintel")).args(["health", addr, "--timeout-ms", "1000"]).output();
        if out.is_ok_and(|o| o.status.success()) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} is not SERVING at {addr} in time");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn up_restarts_a_killed_service_on_its_port_and_sigterm_stops_everything() {
    let (tmp, data) = indexed_shop();
    let addrs = free_addrs(8);
    let [vector, lexical, hydrate, answer, vm, lm, hm, am] = &addrs[..] else { unreachable!() };
    let sets = [
        format!("vector.addr={vector}"),
        format!("lexical.addr={lexical}"),
        format!("hydrate.addr={hydrate}"),
        format!("answer.addr={answer}"),
        format!("vector.metrics_addr={vm}"),
        format!("lexical.metrics_addr={lm}"),
        format!("hydrate.metrics_addr={hm}"),
        format!("answer.metrics_addr={am}"),
        format!("answer.vector_url=http://{vector}"),
        format!("answer.lexical_url=http://{lexical}"),
        format!("answer.hydrate_url=http://{hydrate}"),
    ];
    let mut cmd = Command::new(bin_dir().join("codeintel"));
    cmd.arg("--data-root").arg(&data);
    for s in &sets {
        cmd.arg("--set").arg(s);
    }
    let mut child = cmd
        .arg("up")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start codeintel up");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut up = Up { child, lines: rx, seen: Vec::new(), pids: Vec::new() };

    let t = Instant::now() + Duration::from_secs(60);
    let line = up.wait_for("answer-svc pid line", t, |l| l.starts_with("answer-svc ") && pid_of(l).is_some());
    let old = pid_of(&line).unwrap();
    up.wait_for("`mesh is up`", t, |l| l.starts_with("mesh is up"));
    assert_eq!(up.pids.len(), 4, "a pid for each service: {:?}", up.seen);
    wait_serving(answer, t, "answer-svc");

    signal(old, "KILL");
    let t = Instant::now() + Duration::from_secs(60);
    let line = up.wait_for("restart notice", t, |l| l.starts_with("answer-svc exited"));
    up.pids.retain(|p| *p != old); // dead: never signalled again
    assert!(line.contains("(signal 9); restarting in 0.5 s (restart 1)"), "{line}");
    let line = up.wait_for("restarted line", t, |l| l.starts_with("answer-svc pid") && l.contains("restarted"));
    let new = pid_of(&line).unwrap();
    assert_ne!(new, old);
    wait_serving(answer, t, "the restarted answer-svc");
    let log = std::fs::read_to_string(tmp.path().join("logs/answer-svc.log")).unwrap_or_default();
    assert!(log.contains("--- restart 1 at "), "no restart marker in answer-svc.log:\n{log}");

    signal(up.child.id(), "TERM");
    let t = Instant::now() + Duration::from_secs(20);
    up.wait_for("`mesh stopped`", t, |l| l == "mesh stopped");
    let status = loop {
        if let Some(st) = up.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < t, "codeintel up did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "codeintel up exited with {status} after SIGTERM");
    let children = up.pids.clone();
    assert_eq!(children.len(), 4, "vector, lexical, hydrate and the new answer-svc: {children:?}");
    while let Some(p) = children.iter().find(|p| !gone(**p)) {
        assert!(Instant::now() < t, "child pid {p} is still running after `codeintel up` stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
    for addr in [vector, lexical, hydrate, answer] {
        assert!(std::net::TcpStream::connect(addr.as_str()).is_err(), "something still listens on {addr}");
    }
}
