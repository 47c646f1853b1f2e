//! Fusing the retrievers' ranked lists into one.
//!
//! - Weighted reciprocal rank fusion (RRF): `score(d) = sum_i w_i / (k + rank_i(d))`, ranks
//!   1-based. Uses ranks only, so a retriever's confidence is lost: a chunk first in one list
//!   by a wide margin ties with one that is first by a hair.
//! - Distribution-based score fusion (DBSF, as in Qdrant): each list's scores are mapped to
//!   [0, 1] between mean - 3 sd and mean + 3 sd of that list's first `stats_depth` scores
//!   (`answer.dbsf_depth`), then `score(d) = sum_i w_i * norm_i(d)`. Scales as different as
//!   cosine and BM25 become comparable, and a clear winner of one retriever keeps its lead.
//!   Statistics of the head of a list rather than all of it measure how far a hit stands out
//!   from its real competitors, not from the long tail that every query drags in.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    pub chunk_id: u64,
    pub repo: String,
    pub score: f32,
    /// 1-based rank in each input list (0 = absent), in input order.
    pub ranks: Vec<u32>,
}

/// One retriever's ranked list (best first) with its weight and its own scores (same length
/// as `hits`; higher is better).
pub struct RankedList<'a> {
    pub weight: f32,
    pub hits: &'a [(u64, String)],
    pub scores: &'a [f32],
}

/// How ranked lists are fused (`answer.fusion`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    Rrf {
        k: f32,
    },
    /// `stats_depth`: how many of each list's first scores give its mean and spread (0: all).
    Dbsf {
        stats_depth: usize,
    },
}

impl Method {
    /// From configuration: `rrf` (with `answer.rrf_k`) or `dbsf` (with `answer.dbsf_depth`).
    pub fn from_config(name: &str, rrf_k: f32, dbsf_depth: u32) -> Option<Self> {
        match name {
            "rrf" => Some(Self::Rrf { k: rrf_k }),
            "dbsf" => Some(Self::Dbsf { stats_depth: dbsf_depth as usize }),
            _ => None,
        }
    }

    /// The name shown in traces and `limits`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Rrf { .. } => "rrf",
            Self::Dbsf { .. } => "dbsf",
        }
    }
}

/// Fuses ranked lists with `method`. Ties are broken by the best single rank, then by chunk
/// id, so the order is deterministic. A chunk repeated within one list counts at its first
/// rank only.
pub fn fuse(lists: &[RankedList<'_>], method: Method) -> Vec<Fused> {
    match method {
        Method::Rrf { k } => rrf(lists, k),
        Method::Dbsf { stats_depth } => dbsf(lists, stats_depth),
    }
}

/// Weighted reciprocal rank fusion (see the module docs).
pub fn rrf(lists: &[RankedList<'_>], k: f32) -> Vec<Fused> {
    accumulate(lists, |_, pos| 1.0 / (k + pos as f32 + 1.0))
}

/// Distribution-based score fusion (see the module docs), each list's mean and spread taken
/// over its first `stats_depth` scores (0: all of them). A list whose scores are all equal (one
/// hit, say) maps them to 1.
pub fn dbsf(lists: &[RankedList<'_>], stats_depth: usize) -> Vec<Fused> {
    let bounds: Vec<(f32, f32)> = lists
        .iter()
        .map(|l| {
            let head = match stats_depth {
                0 => l.scores,
                d => &l.scores[..d.min(l.scores.len())],
            };
            let n = head.len().max(1) as f64;
            let mean = head.iter().map(|&s| s as f64).sum::<f64>() / n;
            let var = head.iter().map(|&s| (s as f64 - mean).powi(2)).sum::<f64>() / n;
            let sd = var.sqrt();
            ((mean - 3.0 * sd) as f32, (6.0 * sd) as f32)
        })
        .collect();
    accumulate(lists, |li, pos| {
        let (lo, width) = bounds[li];
        if width > 0.0 {
            ((lists[li].scores[pos] - lo) / width).clamp(0.0, 1.0)
        } else {
            1.0
        }
    })
}

/// Sums `weight * contribution(list index, position)` per chunk over the lists.
fn accumulate(lists: &[RankedList<'_>], contribution: impl Fn(usize, usize) -> f32) -> Vec<Fused> {
    let mut acc: HashMap<u64, Fused> = HashMap::new();
    for (li, list) in lists.iter().enumerate() {
        debug_assert_eq!(list.hits.len(), list.scores.len(), "one score per hit");
        for (pos, (id, repo)) in list.hits.iter().enumerate() {
            let rank = pos as u32 + 1;
            let e = acc.entry(*id).or_insert_with(|| Fused {
                chunk_id: *id,
                repo: repo.clone(),
                score: 0.0,
                ranks: vec![0; lists.len()],
            });
            if e.ranks[li] != 0 {
                continue;
            }
            e.ranks[li] = rank;
            e.score += list.weight * contribution(li, pos);
        }
    }
    let mut v: Vec<Fused> = acc.into_values().collect();
    let best = |f: &Fused| f.ranks.iter().copied().filter(|&r| r > 0).min().unwrap_or(u32::MAX);
    v.sort_by(|a, b| b.score.total_cmp(&a.score).then(best(a).cmp(&best(b))).then(a.chunk_id.cmp(&b.chunk_id)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    static ZEROS: [f32; 256] = [0.0; 256];

    /// A list for rank-only fusion (its scores are not read).
    fn rl(weight: f32, hits: &[(u64, String)]) -> RankedList<'_> {
        RankedList { weight, hits, scores: &ZEROS[..hits.len()] }
    }

    fn l(ids: &[u64]) -> Vec<(u64, String)> {
        ids.iter().map(|&i| (i, "r".to_string())).collect()
    }

    #[test]
    fn agreement_wins_and_scores_follow_the_formula() {
        let a = l(&[1, 2, 3]);
        let b = l(&[3, 1, 4]);
        let f = rrf(&[rl(1.0, &a), rl(1.0, &b)], 60.0);
        assert_eq!(f.iter().map(|x| x.chunk_id).collect::<Vec<_>>(), vec![1, 3, 2, 4]);
        assert!((f[0].score - (1.0 / 61.0 + 1.0 / 62.0)).abs() < 1e-7);
        assert_eq!(f[0].ranks, vec![1, 2]);
        assert_eq!(f[3].ranks, vec![0, 3]);
    }

    #[test]
    fn weights_shift_the_order() {
        let a = l(&[1]);
        let b = l(&[2]);
        let f = rrf(&[rl(0.5, &a), rl(2.0, &b)], 60.0);
        assert_eq!(f[0].chunk_id, 2);
        let f = rrf(&[rl(0.0, &a), rl(1.0, &b)], 60.0);
        assert_eq!(f[0].chunk_id, 2);
        assert_eq!(f[1].score, 0.0);
    }

    #[test]
    fn ties_break_by_best_rank_then_id_and_empty_inputs_are_empty() {
        let a = l(&[5, 6]);
        let b = l(&[6, 5]);
        let f = rrf(&[rl(1.0, &a), rl(1.0, &b)], 60.0);
        assert_eq!(f.iter().map(|x| x.chunk_id).collect::<Vec<_>>(), vec![5, 6]);
        assert!(rrf(&[], 60.0).is_empty());
        let e: Vec<(u64, String)> = Vec::new();
        assert!(rrf(&[rl(1.0, &e)], 60.0).is_empty());
    }

    #[test]
    fn duplicates_within_a_list_count_once() {
        let a = l(&[7, 7, 8]);
        let f = rrf(&[rl(1.0, &a)], 60.0);
        assert_eq!(f.len(), 2);
        assert!((f[0].score - 1.0 / 61.0).abs() < 1e-7);
    }

    #[test]
    fn dbsf_scores_follow_the_formula_and_keep_score_gaps_that_ranks_lose() {
        // Lexical's first hit (chunk 3) leads its list by a wide margin; chunk 2 is second in
        // both lists.
        let (a, sa) = (l(&[1, 2, 3, 4, 5, 6]), [0.9f32, 0.5, 0.49, 0.48, 0.47, 0.46]);
        let (b, sb) = (l(&[3, 2, 7, 8, 9, 10]), [10.0f32, 4.0, 3.9, 3.8, 3.7, 3.6]);
        let lists =
            [RankedList { weight: 1.0, hits: &a, scores: &sa }, RankedList { weight: 1.0, hits: &b, scores: &sb }];
        let f = dbsf(&lists, 0);
        let norm = |x: f32, s: &[f32]| {
            let n = s.len() as f32;
            let m = s.iter().sum::<f32>() / n;
            let sd = (s.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / n).sqrt();
            ((x - (m - 3.0 * sd)) / (6.0 * sd)).clamp(0.0, 1.0)
        };
        let score = |f: &[Fused], id| f.iter().find(|x| x.chunk_id == id).unwrap().score;
        assert!((score(&f, 1) - norm(0.9, &sa)).abs() < 1e-5);
        assert!((score(&f, 3) - norm(0.49, &sa) - norm(10.0, &sb)).abs() < 1e-5);
        assert_eq!(f[0].chunk_id, 3, "{f:?}");
        assert!(score(&f, 3) - score(&f, 2) > 0.3, "the margin counts: {f:?}");
        // Rank fusion sees ranks (3, 1) and (2, 2) as nearly the same.
        let r = rrf(&lists, 60.0);
        assert!((score(&r, 3) - score(&r, 2)).abs() < 1e-4, "{r:?}");
        // One hit, or all scores equal: each counts fully.
        let one = dbsf(&[RankedList { weight: 0.5, hits: &a[..1], scores: &sa[..1] }], 0);
        assert_eq!(one[0].score, 0.5);
        assert_eq!(Method::from_config("dbsf", 60.0, 30), Some(Method::Dbsf { stats_depth: 30 }));
        assert_eq!(Method::from_config("rrf", 10.0, 30), Some(Method::Rrf { k: 10.0 }));
        assert_eq!(Method::from_config("linear", 60.0, 30), None);
    }

    #[test]
    fn dbsf_statistics_come_from_the_head_of_each_list() {
        // Two hits close at the top of a list with a long, low tail.
        let a = l(&(1..=10).collect::<Vec<_>>());
        let sa = [0.90f32, 0.88, 0.40, 0.39, 0.38, 0.37, 0.36, 0.35, 0.34, 0.33];
        let lists = [RankedList { weight: 1.0, hits: &a, scores: &sa }];
        let score = |f: &[Fused], id| f.iter().find(|x| x.chunk_id == id).unwrap().score;
        let (all, head) = (dbsf(&lists, 0), dbsf(&lists, 2));
        let norm = |x: f32, s: &[f32]| {
            let n = s.len() as f32;
            let m = s.iter().sum::<f32>() / n;
            let sd = (s.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / n).sqrt();
            ((x - (m - 3.0 * sd)) / (6.0 * sd)).clamp(0.0, 1.0)
        };
        assert!((score(&head, 1) - norm(0.90, &sa[..2])).abs() < 1e-5, "{head:?}");
        assert!((score(&head, 2) - norm(0.88, &sa[..2])).abs() < 1e-5, "{head:?}");
        // Against its closest rival the first hit's lead is large; against the tail, small.
        assert!(score(&head, 1) - score(&head, 2) > score(&all, 1) - score(&all, 2) + 0.1, "{all:?} {head:?}");
        // The tail falls below the head's range: 0, ties broken by rank.
        assert_eq!(score(&head, 5), 0.0);
        assert_eq!(head.iter().map(|f| f.chunk_id).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
        // A depth beyond the list is the whole list.
        assert_eq!(dbsf(&lists, 50), all);
    }

    proptest! {
        #[test]
        fn dbsf_ignores_each_lists_scale_and_offset(
            sa in proptest::collection::vec(-5.0f32..5.0, 1..30),
            sb in proptest::collection::vec(0.0f32..50.0, 1..30),
            scale in 0.1f32..100.0,
            shift in -100.0f32..100.0,
            depth in 0usize..40,
        ) {
            let a: Vec<(u64, String)> = (0..sa.len() as u64).map(|i| (i, "r".into())).collect();
            let b: Vec<(u64, String)> = (0..sb.len() as u64).map(|i| (i * 3, "r".into())).collect();
            let sb2: Vec<f32> = sb.iter().map(|s| s * scale + shift).collect();
            let f1 = dbsf(&[RankedList { weight: 1.0, hits: &a, scores: &sa }, RankedList { weight: 0.7, hits: &b, scores: &sb }], depth);
            let f2 = dbsf(&[RankedList { weight: 1.0, hits: &a, scores: &sa }, RankedList { weight: 0.7, hits: &b, scores: &sb2 }], depth);
            for (x, y) in f1.iter().zip(&f2) {
                prop_assert!((x.score - y.score).abs() < 1e-3, "{} vs {}", x.score, y.score);
            }
            for w in f1.windows(2) {
                prop_assert!(w[0].score >= w[1].score);
            }
        }

        #[test]
        fn a_single_list_keeps_its_order(ids in proptest::collection::hash_set(0u64..10_000, 0..50)) {
            let ids: Vec<u64> = ids.into_iter().collect();
            let a = l(&ids);
            let f = rrf(&[rl(1.0, &a)], 60.0);
            prop_assert_eq!(f.iter().map(|x| x.chunk_id).collect::<Vec<_>>(), ids);
        }

        #[test]
        fn fused_is_a_permutation_of_the_union_sorted_by_score(
            a in proptest::collection::hash_set(0u64..200, 0..40),
            b in proptest::collection::hash_set(0u64..200, 0..40),
            k in 1.0f32..100.0,
        ) {
            let (a, b): (Vec<u64>, Vec<u64>) = (a.into_iter().collect(), b.into_iter().collect());
            let (la, lb) = (l(&a), l(&b));
            let f = rrf(&[rl(1.0, &la), rl(0.7, &lb)], k);
            let mut union: Vec<u64> = a.iter().chain(b.iter()).copied().collect();
            union.sort_unstable();
            union.dedup();
            let mut got: Vec<u64> = f.iter().map(|x| x.chunk_id).collect();
            got.sort_unstable();
            prop_assert_eq!(got, union);
            for w in f.windows(2) {
                prop_assert!(w[0].score >= w[1].score);
            }
        }
    }
}
