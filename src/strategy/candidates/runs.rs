//! Runs of the rows by label for the lists' passes: labels whose rows' lists overlap run
//! together, so that one kernel call serves them.

use rayon::prelude::*;

use super::{distinct_centroids, CandidatePass, NEAREST};

/// Labels run together while their centroids number at most this (the cpu kernel's products
/// take centroids 32 at a time).
const BATCH_CENTROIDS: usize = 32;

impl CandidatePass {
    /// Runs of the rows by label (labels whose lists overlap run together).
    pub(super) fn regroup(&mut self, labels: &[u32], k: usize) {
        let mut by_label = vec![0usize; k + 1];
        for &label in labels {
            by_label[label as usize + 1] += 1;
        }
        for j in 0..k {
            by_label[j + 1] += by_label[j];
        }
        let mut rows = vec![0usize; labels.len()];
        let mut next = by_label.clone();
        for (i, &label) in labels.iter().enumerate() {
            rows[next[label as usize]] = i;
            next[label as usize] += 1;
        }
        // Each label's centroids: its rows' lists.
        let nearest = &self.nearest;
        let sets: Vec<Vec<u32>> = (0..k)
            .into_par_iter()
            .map_init(
                || vec![usize::MAX; k],
                |marks, a| {
                    let rows = &rows[by_label[a]..by_label[a + 1]];
                    let listed = rows.iter().flat_map(|&i| nearest[i * NEAREST..(i + 1) * NEAREST].iter().copied());
                    distinct_centroids(listed, k, marks, a)
                },
            )
            .collect();
        // Labels whose sets overlap run together while their union stays within a batch (one
        // kernel call for them): a label's rivals first.
        let mut taken = vec![false; k];
        let (mut members, mut starts) = (Vec::new(), vec![0]);
        for a in 0..k {
            if taken[a] || by_label[a + 1] == by_label[a] {
                continue;
            }
            let mut union = sets[a].clone();
            let mut batch = vec![a];
            taken[a] = true;
            let mut at = 0;
            while at < union.len() {
                let b = union[at] as usize;
                at += 1;
                if taken[b] || by_label[b + 1] == by_label[b] {
                    continue;
                }
                let joined = union_of_sorted(&union, &sets[b]);
                if joined.len() <= BATCH_CENTROIDS {
                    (union, at) = (joined, 0);
                    taken[b] = true;
                    batch.push(b);
                }
            }
            for &label in &batch {
                members.extend_from_slice(&rows[by_label[label]..by_label[label + 1]]);
            }
            starts.push(members.len());
        }
        (self.layout, self.in_runs) = (Some(members.clone()), false);
        (self.members, self.starts) = (members, starts);
        self.laid_out = Some(labels.to_vec());
    }
}

/// The union of two ascending lists without repeats, ascending.
fn union_of_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut joined = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        joined.push(x.min(y));
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    joined.extend_from_slice(&a[i..]);
    joined.extend_from_slice(&b[j..]);
    joined
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Against a sorted, deduplicated concatenation: lists of every overlap, empty ones too.
    #[test]
    fn the_union_of_two_sorted_lists_is_sorted_without_repeats() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..500 {
            let mut list = |most: u32| -> Vec<u32> {
                let len = rng.random_range(0..12);
                let mut v: Vec<u32> = (0..len).map(|_| rng.random_range(0..most)).collect();
                v.sort_unstable();
                v.dedup();
                v
            };
            let (a, b) = (list(20), list(40));
            let mut want: Vec<u32> = a.iter().chain(&b).copied().collect();
            want.sort_unstable();
            want.dedup();
            assert_eq!(union_of_sorted(&a, &b), want, "{a:?} ∪ {b:?}");
        }
    }
}
