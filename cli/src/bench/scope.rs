//! `codeintel bench scope`: session scope lookups through Redis, with and without the L1 cache.

use std::time::{Duration, Instant};

use serde::Serialize;
use vector_svc::synthetic;

use super::Latency;

#[derive(Debug, Serialize)]
pub struct ScopeFigures {
    pub sessions: usize,
    pub lookups: usize,
    pub concurrency: usize,
    pub with_l1: Latency,
    pub with_l1_hit_ratio: f64,
    pub without_l1: Latency,
}

/// Scope lookups against a real Redis (`redis_url`) from `concurrency` tasks, sessions chosen
/// with a skew (a few hot sessions, a long tail), through the store answer-svc uses: once with
/// its in-process cache and once without.
pub async fn scope(
    redis_url: &str,
    sessions: usize,
    lookups: usize,
    concurrency: usize,
) -> anyhow::Result<ScopeFigures> {
    use answer_svc::session::{RedisOptions, RedisStore, SessionStore};
    use codeintel_core::proto::v1::Scope;
    use std::sync::Arc;
    let opts = RedisOptions {
        url: redis_url.to_string(),
        ttl_s: 3600,
        cache_entries: 256,
        cache_ttl: Duration::from_millis(5000),
        invalidation_timeout: Duration::from_millis(250),
    };
    let writer = SessionStore::Redis(RedisStore::connect(opts.clone(), &prometheus::Registry::new()).await?);
    for i in 0..sessions {
        let s =
            Scope { languages: vec!["rust".into()], include_globs: vec![format!("src/m{i}/**")], ..Default::default() };
        writer.set(&format!("bench-{i}"), s).await?;
    }
    let run = |cache_entries: usize| {
        let opts = RedisOptions { cache_entries, ..opts.clone() };
        async move {
            let registry = prometheus::Registry::new();
            let store = Arc::new(SessionStore::Redis(RedisStore::connect(opts, &registry).await?));
            let per_task = lookups / concurrency.max(1);
            let mut tasks = Vec::new();
            for t in 0..concurrency {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let mut rng = synthetic::Rng::new(t as u64 + 1);
                    let mut lat = Vec::with_capacity(per_task);
                    for _ in 0..per_task {
                        let i = (sessions as f64 * rng.unit().powi(3)) as usize;
                        let started = Instant::now();
                        store.get(&format!("bench-{i}")).await?;
                        lat.push(started.elapsed());
                    }
                    Ok::<_, anyhow::Error>(lat)
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await??);
            }
            let count = |source: &str| {
                registry
                    .gather()
                    .iter()
                    .flat_map(|f| f.get_metric().to_vec())
                    .filter(|m| m.get_label().iter().any(|l| l.value() == source))
                    .map(|m| m.get_counter().get_value())
                    .sum::<f64>()
            };
            let ratio = count("l1") / (count("l1") + count("redis")).max(1.0);
            Ok::<_, anyhow::Error>((Latency::of(&mut all), ratio))
        }
    };
    let (with_l1, with_l1_hit_ratio) = run(256).await?;
    let (without_l1, _) = run(0).await?;
    Ok(ScopeFigures { sessions, lookups, concurrency, with_l1, with_l1_hit_ratio, without_l1 })
}
