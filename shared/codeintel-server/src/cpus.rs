//! Which CPUs a service runs on (`vector.cpus`, `lexical.cpus`), and how `codeintel up` splits a
//! host's CPUs between the two query encoders (`up.split_encoder_cpus`).
//!
//! A hybrid query runs vector-svc's embedding, lexical-svc's SPLADE encoding and BM25 side by
//! side. On a 2-core host the kernel time-slices the three, so the embedding (the longest)
//! waits for a core about half the time; with lexical-svc on one core and vector-svc on the
//! other it does not (docs/benchmarks.md has the figures).

use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

/// The CPUs of a list as `taskset -c` writes it: `0-3,8,10-11`; empty gives none. Sorted, no
/// repeats.
pub fn parse(spec: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |s: &str| {
            s.trim().parse::<usize>().map_err(|_| format!("{s:?} in the CPU list {spec:?} is not a CPU number"))
        };
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if lo > hi || hi >= CpuSet::MAX_CPU {
            return Err(format!("{part:?} in the CPU list {spec:?} is not a range of CPUs 0-{}", CpuSet::MAX_CPU - 1));
        }
        out.extend(lo..=hi);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The inverse of [`parse`]: runs of consecutive CPUs as ranges.
pub fn format(cpus: &[usize]) -> String {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &c in cpus {
        match runs.last_mut() {
            Some((_, hi)) if *hi + 1 == c => *hi = c,
            _ => runs.push((c, c)),
        }
    }
    runs.iter().map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect::<Vec<_>>().join(",")
}

/// The CPUs this thread may run on.
pub fn allowed() -> std::io::Result<Vec<usize>> {
    let set = sched_getaffinity(None)?;
    Ok((0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect())
}

/// Restricts the calling thread, and every thread it starts afterwards, to the CPUs of `spec`
/// ([`parse`]); call it in `main` before the runtime and the encoders start their threads. An
/// empty `spec` changes nothing (`Ok(None)`). CPUs this process may not use are refused, with
/// the ones it may.
pub fn pin(key: &str, spec: &str) -> anyhow::Result<Option<Vec<usize>>> {
    let cpus = parse(spec).map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
    if cpus.is_empty() {
        return Ok(None);
    }
    let may = allowed()?;
    let outside: Vec<usize> = cpus.iter().copied().filter(|c| !may.contains(c)).collect();
    anyhow::ensure!(
        outside.is_empty(),
        "{key} = {spec:?}: CPU {} is not one this process may run on (it may use {}); pick from those, or leave {key} empty",
        format(&outside),
        format(&may)
    );
    let mut set = CpuSet::new();
    for &c in &cpus {
        set.set(c);
    }
    sched_setaffinity(None, &set).map_err(|e| anyhow::anyhow!("{key} = {spec:?}: sched_setaffinity: {e}"))?;
    Ok(Some(cpus))
}

/// The service's multi-threaded runtime, on the CPUs of `spec` ([`pin`], under config key
/// `key`) when it names any; call it in `main` before any other thread starts. A pinned
/// runtime keeps the worker threads it would have had unpinned (`available_parallelism` drops
/// to the pinned count): with one worker on one CPU a hybrid Search took 11.9 ms p50 instead of
/// 5.0 (docs/benchmarks.md). The pinning is logged once tracing is set up ([`announce`]).
pub fn runtime(key: &str, spec: &str) -> anyhow::Result<(tokio::runtime::Runtime, Option<Vec<usize>>)> {
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let pinned = pin(key, spec)?;
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if pinned.is_some() {
        b.worker_threads(workers);
    }
    Ok((b.enable_all().build()?, pinned))
}

/// Logs the CPUs [`runtime`] pinned the service to, if any.
pub fn announce(key: &str, pinned: Option<&[usize]>) {
    if let Some(cpus) = pinned {
        tracing::info!(cpus = %format(cpus), "running on these CPUs only ({key})");
    }
}

/// `codeintel up`'s split of `cpus` between the query encoders: (lexical-svc's, vector-svc's),
/// lexical-svc the lower half rounded down (its SPLADE encoding and BM25 together take less
/// CPU than the embedding and FAISS), vector-svc the rest. `None` below 2 CPUs.
pub fn split_encoders(cpus: &[usize]) -> Option<(Vec<usize>, Vec<usize>)> {
    if cpus.len() < 2 {
        return None;
    }
    let (lexical, vector) = cpus.split_at(cpus.len() / 2);
    Some((lexical.to_vec(), vector.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_and_write_as_taskset_does() {
        assert_eq!(parse("0-3,8,10-11").unwrap(), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse(" 5 , 1-2 ,2").unwrap(), vec![1, 2, 5], "sorted, repeats once");
        assert_eq!(parse("").unwrap(), Vec::<usize>::new());
        assert!(parse("3-1").unwrap_err().contains("3-1"));
        assert!(parse("one").unwrap_err().contains("not a CPU number"));
        assert!(parse("0-99999").is_err());
        assert_eq!(format(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format(&[4]), "4");
        assert_eq!(format(&[]), "");
    }

    #[test]
    fn up_gives_each_encoder_its_own_half() {
        assert_eq!(split_encoders(&[0, 1]), Some((vec![0], vec![1])));
        assert_eq!(split_encoders(&[0, 1, 2]), Some((vec![0], vec![1, 2])));
        assert_eq!(split_encoders(&[2, 3, 6, 7]), Some((vec![2, 3], vec![6, 7])));
        assert_eq!(split_encoders(&[5]), None);
    }

    #[test]
    fn a_pinned_runtime_keeps_its_worker_count_and_runs_on_the_cpus() {
        std::thread::spawn(|| {
            let before = std::thread::available_parallelism().unwrap().get();
            let last = *allowed().unwrap().last().unwrap();
            let (rt, pinned) = runtime("vector.cpus", &last.to_string()).unwrap();
            assert_eq!(pinned, Some(vec![last]));
            assert_eq!(rt.metrics().num_workers(), before, "as many workers as unpinned");
            let on = rt.block_on(async { tokio::spawn(async { allowed().unwrap() }).await.unwrap() });
            assert_eq!(on, vec![last], "a worker runs on the pinned CPU only");
            let (_, none) = runtime("vector.cpus", "").unwrap();
            assert_eq!(none, None);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn pinning_restricts_the_thread_and_refuses_foreign_cpus() {
        // On a thread of its own, so the test harness's other threads keep their CPUs.
        std::thread::spawn(|| {
            let may = allowed().unwrap();
            assert!(!may.is_empty());
            assert_eq!(pin("vector.cpus", "").unwrap(), None, "empty: unchanged");
            assert_eq!(allowed().unwrap(), may);
            let last = *may.last().unwrap();
            assert_eq!(pin("vector.cpus", &last.to_string()).unwrap(), Some(vec![last]));
            assert_eq!(allowed().unwrap(), vec![last], "the thread now runs on that CPU only");
            // A thread it starts inherits the set.
            assert_eq!(std::thread::spawn(allowed).join().unwrap().unwrap(), vec![last]);
            let err = pin("lexical.cpus", &(CpuSet::MAX_CPU - 1).to_string()).unwrap_err().to_string();
            assert!(err.contains("lexical.cpus") && err.contains("may use"), "{err}");
        })
        .join()
        .unwrap();
    }
}
