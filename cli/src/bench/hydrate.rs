//! `codeintel bench hydrate`: one repo's hydrations (the `fetch` behind Flight `DoGet`) from the
//! rows held in memory against the same through DuckDB over the Parquet segments, in process,
//! same tickets: latency, the memory the rows take and the time to load them.

use std::time::{Duration, Instant};

use codeintel_config::Config;
use codeintel_core::ticket::HydrateTicket;
use hydrate_svc::ChunkStore;
use serde::Serialize;

use super::Latency;

#[derive(Debug, Serialize)]
pub struct HydrateFigures {
    pub repo: String,
    pub chunks: usize,
    pub ids_per_call: usize,
    pub calls: usize,
    /// Bytes of the rows and their index, MiB.
    pub memory_mib: f64,
    /// Opening the store with the rows loaded, seconds.
    pub load_s: f64,
    pub in_memory: Latency,
    pub duckdb: Latency,
}

/// `calls` hydrations of `ids` chunk ids each (a seeded sample of the repo's live chunks) from
/// each store; the two must return the same rows.
pub fn hydrate(cfg: &Config, repo: &str, ids: usize, calls: usize) -> anyhow::Result<HydrateFigures> {
    let t = Instant::now();
    let mem = ChunkStore::with_memory(cfg, true)?;
    let load_s = t.elapsed().as_secs_f64();
    let all = mem
        .catalog
        .snapshot()
        .iter()
        .find(|l| l.manifest.repo == repo)
        .and_then(|l| l.value.rows.as_ref().map(|r| r.ids()))
        .ok_or_else(|| anyhow::anyhow!("repo {repo} is not served from {}", cfg.data.root.display()))?;
    anyhow::ensure!(!all.is_empty(), "repo {repo} has no chunks");
    let db = ChunkStore::with_memory(cfg, false)?;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let tickets: Vec<HydrateTicket> = (0..calls)
        .map(|_| HydrateTicket {
            chunk_ids: (0..ids).map(|_| all[(next() % all.len() as u64) as usize]).collect(),
            repos: vec![repo.to_string()],
            ..Default::default()
        })
        .collect();
    let rows = |s: &ChunkStore, t: &HydrateTicket| -> anyhow::Result<Vec<codeintel_core::chunk::Chunk>> {
        let mut out = Vec::new();
        for b in s.fetch(t)? {
            out.extend(codeintel_core::wire::decode(&b).map_err(anyhow::Error::msg)?);
        }
        out.sort_by_key(|c| c.chunk_id);
        Ok(out)
    };
    for t in tickets.iter().take(5) {
        anyhow::ensure!(rows(&mem, t)? == rows(&db, t)?, "the in-memory rows differ from DuckDB's");
    }
    let time = |s: &ChunkStore| -> anyhow::Result<Latency> {
        let mut samples: Vec<Duration> = Vec::with_capacity(tickets.len());
        for t in &tickets {
            let start = Instant::now();
            std::hint::black_box(s.fetch(t)?);
            samples.push(start.elapsed());
        }
        Ok(Latency::of(&mut samples))
    };
    Ok(HydrateFigures {
        repo: repo.to_string(),
        chunks: all.len(),
        ids_per_call: ids,
        calls,
        memory_mib: mem.memory_bytes() as f64 / (1 << 20) as f64,
        load_s,
        in_memory: time(&mem)?,
        duckdb: time(&db)?,
    })
}
