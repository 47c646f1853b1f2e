//! `codeintel up`: starts the four service binaries (found beside this one) on the configured
//! addresses, prints where they listen, their pids and where they log, supervises them (a child
//! that dies is restarted with exponential backoff; one that keeps dying stops the mesh), and
//! stops them all on Ctrl-C/SIGTERM. Meant for one host; production runs the compose file or the
//! Helm charts.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use codeintel_config::Config;
use tokio::process::{Child, Command};

pub struct Service {
    pub name: &'static str,
    pub addr: String,
    pub metrics: String,
}

pub fn services(cfg: &Config) -> Vec<Service> {
    vec![
        Service { name: "vector-svc", addr: cfg.vector.addr.clone(), metrics: cfg.vector.metrics_addr.clone() },
        Service { name: "lexical-svc", addr: cfg.lexical.addr.clone(), metrics: cfg.lexical.metrics_addr.clone() },
        Service { name: "hydrate-svc", addr: cfg.hydrate.addr.clone(), metrics: cfg.hydrate.metrics_addr.clone() },
        Service { name: "answer-svc", addr: cfg.answer.addr.clone(), metrics: cfg.answer.metrics_addr.clone() },
    ]
}

/// Where the service binaries are: beside the running `codeintel`.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("codeintel has no parent directory")?.to_path_buf())
}

/// When to restart a child that exited: the delay doubles from `initial` up to `max` with each
/// restart, falls back to `initial` once the child had stayed up `reset_after`, and there is no
/// restart (`None`) once the child has exited more than `max_restarts` times within `window`.
///
/// Plain arithmetic, no clock: time is the sum of the uptimes it is told and the delays it
/// returned (the supervisor restarts a child when its delay has passed).
#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
    pub window: Duration,
    pub max_restarts: usize,
    next: Duration,
    clock: Duration,
    exits: VecDeque<Duration>,
}

impl Default for Backoff {
    /// 0.5 s doubling to 30 s, reset after 60 s up, at most 10 restarts within 5 minutes.
    fn default() -> Self {
        Self::new(
            Duration::from_millis(500),
            Duration::from_secs(30),
            Duration::from_secs(60),
            Duration::from_secs(300),
            10,
        )
    }
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, reset_after: Duration, window: Duration, max_restarts: usize) -> Self {
        Self {
            initial,
            max,
            reset_after,
            window,
            max_restarts,
            next: initial,
            clock: Duration::ZERO,
            exits: VecDeque::new(),
        }
    }

    /// The child exited after running `uptime`: how long to wait before restarting it, or `None`
    /// to give up.
    pub fn next_delay(&mut self, uptime: Duration) -> Option<Duration> {
        self.clock += uptime;
        if uptime >= self.reset_after {
            self.next = self.initial;
        }
        self.exits.push_back(self.clock);
        while self.exits.front().is_some_and(|t| self.clock.saturating_sub(*t) > self.window) {
            self.exits.pop_front();
        }
        if self.exits.len() > self.max_restarts {
            return None;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        self.clock += delay;
        Some(delay)
    }
}

/// `signal 9`, `exit code 1`.
pub fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("signal {sig}");
        }
    }
    match status.code() {
        Some(c) => format!("exit code {c}"),
        None => status.to_string(),
    }
}

fn unix_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

fn last_lines(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(n).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

async fn wait_listening(addr: &str, child: &mut Child, name: &str, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "{name} exited ({}) before listening on {addr}; last log lines:\n{}",
                describe(status),
                last_lines(log, 5)
            );
        }
        if Instant::now() > deadline {
            anyhow::bail!("{name} did not listen on {addr} within 60 s; see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn terminate(child: &Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    }
}

/// What every start of a child needs.
struct Launch<'a> {
    bins: PathBuf,
    cfg: &'a Config,
    config_file: Option<&'a Path>,
    sets: &'a [String],
    /// CPUs of lexical-svc and vector-svc ([`encoder_split`]).
    encoder_cpus: Option<(Vec<usize>, Vec<usize>)>,
}

/// `up.split_encoder_cpus`: lexical-svc's and vector-svc's CPUs, unless turned off, either
/// service's `cpus` is set, or this process may use fewer than 2 CPUs.
pub fn encoder_split(cfg: &Config, allowed: &[usize]) -> Option<(Vec<usize>, Vec<usize>)> {
    if !cfg.up.split_encoder_cpus || !cfg.vector.cpus.is_empty() || !cfg.lexical.cpus.is_empty() {
        return None;
    }
    codeintel_server::cpus::split_encoders(allowed)
}

impl Launch<'_> {
    /// Starts `s` logging to `log`: a fresh log on the first start, appended after a
    /// `--- restart N at <unix ms> ---` line on restart N.
    fn spawn(&self, s: &Service, log: &Path, restart: Option<u32>) -> anyhow::Result<Child> {
        let bin = self.bins.join(s.name);
        anyhow::ensure!(
            bin.is_file(),
            "{} not found next to codeintel; build the workspace (`make build`)",
            bin.display()
        );
        let mut file = match restart {
            None => std::fs::File::create(log),
            Some(_) => std::fs::OpenOptions::new().create(true).append(true).open(log),
        }
        .with_context(|| format!("cannot open {}", log.display()))?;
        if let Some(n) = restart {
            writeln!(file, "--- restart {n} at {} ---", unix_ms())?;
        }
        let mut cmd = Command::new(&bin);
        cmd.arg("--addr")
            .arg(&s.addr)
            .arg("--metrics-addr")
            .arg(&s.metrics)
            .arg("--data-root")
            .arg(&self.cfg.data.root);
        if let Some(f) = self.config_file {
            cmd.arg("--config").arg(f);
        }
        for kv in self.sets {
            cmd.arg("--set").arg(kv);
        }
        if let Some((lexical, vector)) = &self.encoder_cpus {
            let cpus = |key: &str, c: &[usize]| format!("{key}={:?}", codeintel_server::cpus::format(c));
            match s.name {
                "lexical-svc" => cmd.arg("--set").arg(cpus("lexical.cpus", lexical)),
                "vector-svc" => cmd.arg("--set").arg(cpus("vector.cpus", vector)),
                _ => &mut cmd,
            };
        }
        // Children see the same environment layer (CODEINTEL__*) and the same data root.
        cmd.stdout(Stdio::null()).stderr(file).stdin(Stdio::null()).kill_on_drop(true);
        cmd.spawn().with_context(|| format!("cannot start {}", bin.display()))
    }
}

/// One supervised service: its process while it runs, or when it restarts.
struct Slot {
    svc: Service,
    log: PathBuf,
    child: Option<Child>,
    started: Instant,
    restart_at: Option<Instant>,
    backoff: Backoff,
    restarts: u32,
    /// Whether "listening again" was printed since the last restart.
    announced: bool,
}

/// Restarts the children that exit, until one has exited too often (an error).
async fn supervise(slots: &mut [Slot], launch: &Launch<'_>) -> anyhow::Result<()> {
    loop {
        for s in slots.iter_mut() {
            let now = Instant::now();
            let Some(child) = s.child.as_mut() else {
                if s.restart_at.is_some_and(|t| now >= t) {
                    s.restart_at = None;
                    let child = launch.spawn(&s.svc, &s.log, Some(s.restarts))?;
                    println!("{} pid {} restarted (restart {})", s.svc.name, child.id().unwrap_or(0), s.restarts);
                    s.child = Some(child);
                    s.started = Instant::now();
                    s.announced = false;
                }
                continue;
            };
            if let Some(status) = child.try_wait()? {
                s.child = None;
                let uptime = now.saturating_duration_since(s.started);
                let Some(delay) = s.backoff.next_delay(uptime) else {
                    anyhow::bail!(
                        "{} exited ({}) more than {} times within {} s: giving up, stopping the mesh; \
                         last lines of {}:\n{}",
                        s.svc.name,
                        describe(status),
                        s.backoff.max_restarts,
                        s.backoff.window.as_secs(),
                        s.log.display(),
                        last_lines(&s.log, 10)
                    );
                };
                s.restarts += 1;
                println!(
                    "{} exited ({}); restarting in {:.1} s (restart {})",
                    s.svc.name,
                    describe(status),
                    delay.as_secs_f64(),
                    s.restarts
                );
                s.restart_at = Some(now + delay);
            } else if !s.announced && s.restarts > 0 {
                let probe = tokio::net::TcpStream::connect(s.svc.addr.as_str());
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(100), probe).await {
                    s.announced = true;
                    println!(
                        "{} pid {} listening again on grpc {} (restart {})",
                        s.svc.name,
                        child.id().unwrap_or(0),
                        s.svc.addr,
                        s.restarts
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn run(cfg: &Config, config_file: Option<&Path>, sets: &[String]) -> anyhow::Result<()> {
    let allowed = codeintel_server::cpus::allowed().unwrap_or_default();
    let encoder_cpus = encoder_split(cfg, &allowed);
    let launch = Launch { bins: bin_dir()?, cfg, config_file, sets, encoder_cpus };
    // An object-store data root is mirrored by each service; logs go beside the mirrors.
    let remote = codeintel_index::remote::is_url(&cfg.data.root);
    let local = if remote { cfg.data.cache.join("mirror") } else { cfg.data.root.clone() };
    let logs = local.parent().unwrap_or(&local).join("logs");
    std::fs::create_dir_all(&logs)?;
    if !remote {
        std::fs::create_dir_all(&cfg.data.root)?;
    }
    println!("data directory: {}", cfg.data.root.display());
    if let Some((lexical, vector)) = &launch.encoder_cpus {
        let f = codeintel_server::cpus::format;
        println!(
            "query encoders on their own CPUs: vector-svc {}, lexical-svc {} (up.split_encoder_cpus = false shares them all)",
            f(vector),
            f(lexical)
        );
    }
    let mut slots: Vec<Slot> = Vec::new();
    let result = async {
        for s in services(cfg) {
            let log = logs.join(format!("{}.log", s.name));
            let mut child = launch.spawn(&s, &log, None)?;
            wait_listening(&s.addr, &mut child, s.name, &log).await?;
            println!(
                "{:<12} pid {:<7} grpc {:<22} metrics {}://{}/metrics  log {}",
                s.name,
                child.id().unwrap_or(0),
                s.addr,
                if cfg.tls.serves() { "https" } else { "http" },
                s.metrics,
                log.display()
            );
            slots.push(Slot {
                svc: s,
                log,
                child: Some(child),
                started: Instant::now(),
                restart_at: None,
                backoff: Backoff::default(),
                restarts: 0,
                announced: true,
            });
        }
        println!("mesh is up: answer-svc at {} (Ctrl-C stops all; a child that dies is restarted)", cfg.answer.addr);
        tokio::select! {
            _ = codeintel_server::shutdown_signal() => Ok(()),
            r = supervise(&mut slots, &launch) => r,
        }
    }
    .await;
    for c in slots.iter().filter_map(|s| s.child.as_ref()) {
        terminate(c);
    }
    for s in slots.iter_mut() {
        let Some(c) = s.child.as_mut() else { continue };
        if tokio::time::timeout(Duration::from_secs(5), c.wait()).await.is_err() {
            eprintln!("{} did not stop in 5 s; killing it", s.svc.name);
            let _ = c.kill().await;
        }
    }
    println!("mesh stopped");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn the_encoders_get_their_own_cpus_unless_told_otherwise() {
        let mut cfg = Config::default();
        assert_eq!(encoder_split(&cfg, &[0, 1]), Some((vec![0], vec![1])));
        assert_eq!(encoder_split(&cfg, &[3]), None, "one CPU: nothing to split");
        cfg.vector.cpus = "0".into();
        assert_eq!(encoder_split(&cfg, &[0, 1]), None, "a CPU set of the user's own wins");
        let mut cfg = Config::default();
        cfg.set("up.split_encoder_cpus", "false").unwrap();
        assert_eq!(encoder_split(&cfg, &[0, 1]), None);
        // What `up` passes on parses as the child's setting.
        let mut child = Config::default();
        child.set("lexical.cpus", &format!("{:?}", codeintel_server::cpus::format(&[0, 1, 2, 5]))).unwrap();
        assert_eq!(codeintel_server::cpus::parse(&child.lexical.cpus).unwrap(), vec![0, 1, 2, 5]);
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let mut b = Backoff::default();
        let got: Vec<Duration> = (0..9).map(|_| b.next_delay(MS).expect("a restart")).collect();
        let want: Vec<Duration> = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0].into_iter().map(secs).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_long_uptime_resets_the_delay() {
        let mut b = Backoff::default();
        for _ in 0..4 {
            b.next_delay(MS).unwrap();
        }
        assert_eq!(b.next_delay(secs(59.0)), Some(secs(8.0)), "59 s up is not long enough");
        assert_eq!(b.next_delay(secs(60.0)), Some(secs(0.5)));
        assert_eq!(b.next_delay(MS), Some(secs(1.0)));
    }

    #[test]
    fn gives_up_after_too_many_exits_within_the_window() {
        let mut b = Backoff::new(secs(0.5), secs(30.0), secs(60.0), secs(300.0), 10);
        for i in 0..10 {
            assert!(b.next_delay(MS).is_some(), "restart {} was refused", i + 1);
        }
        assert_eq!(b.next_delay(MS), None, "the 11th exit within 5 minutes must give up");
    }

    #[test]
    fn exits_older_than_the_window_do_not_count() {
        // A child that dies after 200 s each time: at most two exits fall within any 5 minutes.
        let mut b = Backoff::new(secs(0.5), secs(30.0), secs(60.0), secs(300.0), 3);
        for i in 0..20 {
            assert_eq!(b.next_delay(secs(200.0)), Some(secs(0.5)), "restart {}", i + 1);
        }
        // Quick exits then pass the limit within the window.
        let refused = (0..5).map(|_| b.next_delay(MS)).position(|d| d.is_none());
        assert!(refused.is_some(), "quick exits were never refused");
    }

    #[cfg(unix)]
    #[test]
    fn describes_signals_and_exit_codes() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(describe(ExitStatus::from_raw(9)), "signal 9");
        assert_eq!(describe(ExitStatus::from_raw(1 << 8)), "exit code 1");
    }
}
