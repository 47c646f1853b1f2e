//! Weighted reciprocal rank fusion: `score(d) = sum_i w_i / (k + rank_i(d))`, ranks 1-based.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    pub chunk_id: u64,
    pub repo: String,
    pub score: f32,
    /// 1-based rank in each input list (0 = absent), in input order.
    pub ranks: Vec<u32>,
}

/// One retriever's ranked list (best first) with its weight.
pub struct RankedList<'a> {
    pub weight: f32,
    pub hits: &'a [(u64, String)],
}

/// Fuses ranked lists. Ties are broken by the best single rank, then by chunk id, so the
/// order is deterministic. A chunk repeated within one list counts at its first rank only.
pub fn rrf(lists: &[RankedList<'_>], k: f32) -> Vec<Fused> {
    let mut acc: HashMap<u64, Fused> = HashMap::new();
    for (li, list) in lists.iter().enumerate() {
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
            e.score += list.weight / (k + rank as f32);
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

    fn l(ids: &[u64]) -> Vec<(u64, String)> {
        ids.iter().map(|&i| (i, "r".to_string())).collect()
    }

    #[test]
    fn agreement_wins_and_scores_follow_the_formula() {
        let a = l(&[1, 2, 3]);
        let b = l(&[3, 1, 4]);
        let f = rrf(&[RankedList { weight: 1.0, hits: &a }, RankedList { weight: 1.0, hits: &b }], 60.0);
        assert_eq!(f.iter().map(|x| x.chunk_id).collect::<Vec<_>>(), vec![1, 3, 2, 4]);
        assert!((f[0].score - (1.0 / 61.0 + 1.0 / 62.0)).abs() < 1e-7);
        assert_eq!(f[0].ranks, vec![1, 2]);
        assert_eq!(f[3].ranks, vec![0, 3]);
    }

    #[test]
    fn weights_shift_the_order() {
        let a = l(&[1]);
        let b = l(&[2]);
        let f = rrf(&[RankedList { weight: 0.5, hits: &a }, RankedList { weight: 2.0, hits: &b }], 60.0);
        assert_eq!(f[0].chunk_id, 2);
        let f = rrf(&[RankedList { weight: 0.0, hits: &a }, RankedList { weight: 1.0, hits: &b }], 60.0);
        assert_eq!(f[0].chunk_id, 2);
        assert_eq!(f[1].score, 0.0);
    }

    #[test]
    fn ties_break_by_best_rank_then_id_and_empty_inputs_are_empty() {
        let a = l(&[5, 6]);
        let b = l(&[6, 5]);
        let f = rrf(&[RankedList { weight: 1.0, hits: &a }, RankedList { weight: 1.0, hits: &b }], 60.0);
        assert_eq!(f.iter().map(|x| x.chunk_id).collect::<Vec<_>>(), vec![5, 6]);
        assert!(rrf(&[], 60.0).is_empty());
        let e: Vec<(u64, String)> = Vec::new();
        assert!(rrf(&[RankedList { weight: 1.0, hits: &e }], 60.0).is_empty());
    }

    #[test]
    fn duplicates_within_a_list_count_once() {
        let a = l(&[7, 7, 8]);
        let f = rrf(&[RankedList { weight: 1.0, hits: &a }], 60.0);
        assert_eq!(f.len(), 2);
        assert!((f[0].score - 1.0 / 61.0).abs() < 1e-7);
    }

    proptest! {
        #[test]
        fn a_single_list_keeps_its_order(ids in proptest::collection::hash_set(0u64..10_000, 0..50)) {
            let ids: Vec<u64> = ids.into_iter().collect();
            let a = l(&ids);
            let f = rrf(&[RankedList { weight: 1.0, hits: &a }], 60.0);
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
            let f = rrf(&[RankedList { weight: 1.0, hits: &la }, RankedList { weight: 0.7, hits: &lb }], k);
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
