//! `codeintel up`: starts the four service binaries (found beside this one) on the configured
//! addresses, prints where they listen and where they log, and stops them all on Ctrl-C/SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

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

async fn wait_listening(addr: &str, child: &mut Child, name: &str, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            anyhow::bail!(
                "{name} exited ({status}) before listening on {addr}; last log lines:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
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

pub async fn run(cfg: &Config, config_file: Option<&Path>, sets: &[String]) -> anyhow::Result<()> {
    let bins = bin_dir()?;
    // An object-store data root is mirrored by each service; logs go beside the mirrors.
    let remote = codeintel_index::remote::is_url(&cfg.data.root);
    let local = if remote { cfg.data.cache.join("mirror") } else { cfg.data.root.clone() };
    let logs = local.parent().unwrap_or(&local).join("logs");
    std::fs::create_dir_all(&logs)?;
    if !remote {
        std::fs::create_dir_all(&cfg.data.root)?;
    }
    println!("data directory: {}", cfg.data.root.display());
    let mut children: Vec<(&'static str, Child)> = Vec::new();
    let result = async {
        for s in services(cfg) {
            let bin = bins.join(s.name);
            anyhow::ensure!(
                bin.is_file(),
                "{} not found next to codeintel; build the workspace (`make build`)",
                bin.display()
            );
            let log = logs.join(format!("{}.log", s.name));
            let file = std::fs::File::create(&log)?;
            let mut cmd = Command::new(&bin);
            cmd.arg("--addr").arg(&s.addr).arg("--metrics-addr").arg(&s.metrics).arg("--data-root").arg(&cfg.data.root);
            if let Some(f) = config_file {
                cmd.arg("--config").arg(f);
            }
            for kv in sets {
                cmd.arg("--set").arg(kv);
            }
            // Children see the same environment layer (CODEINTEL__*) and the same data root.
            cmd.stdout(Stdio::null()).stderr(file.try_clone()?).stdin(Stdio::null()).kill_on_drop(true);
            let mut child = cmd.spawn().with_context(|| format!("cannot start {}", bin.display()))?;
            wait_listening(&s.addr, &mut child, s.name, &log).await?;
            println!("{:<12} grpc {:<22} metrics http://{}/metrics  log {}", s.name, s.addr, s.metrics, log.display());
            children.push((s.name, child));
        }
        println!("mesh is up: answer-svc at {} (Ctrl-C stops all)", cfg.answer.addr);
        tokio::select! {
            _ = codeintel_server::shutdown_signal() => {}
            r = async {
                loop {
                    for (name, c) in children.iter_mut() {
                        if let Some(st) = c.try_wait()? {
                            anyhow::bail!("{name} exited unexpectedly ({st}); see its log in {}", logs.display());
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                #[allow(unreachable_code)]
                Ok::<(), anyhow::Error>(())
            } => { r?; }
        }
        Ok(())
    }
    .await;
    for (_, c) in &children {
        terminate(c);
    }
    for (name, c) in children.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(5), c.wait()).await.is_err() {
            eprintln!("{name} did not stop in 5 s; killing it");
            let _ = c.kill().await;
        }
    }
    println!("mesh stopped");
    result
}
