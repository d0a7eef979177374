//! Per-cluster sums of the rows, deterministic for any thread count, and the same pass
//! measuring each row's distance to its centroid.

use rayon::prelude::*;

use super::ClusterSums;
use crate::matrix::{add_scaled, sq_distance, weight_at, MatRef};
use crate::scalar::Scalar;

/// Fewest columns in a strip of [`accumulate_by_cluster`]: a cache line of float32 values.
const MIN_STRIP: usize = 16;

/// Deterministic per-cluster sums: each cluster adds its rows in row order, for any thread
/// count. The rows are read once, in order (a pass over the data, not a gather per
/// cluster); each task takes a strip of columns, so their sums never overlap.
pub fn accumulate_by_cluster<T: Scalar>(
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    labels: &[u32],
    k: usize,
) -> ClusterSums {
    accumulate_in_strips(x, weights, labels, k, None)
}

/// [`accumulate_by_cluster`], plus each row's exact squared distance to its labelled centroid
/// (by differences, in float64: each strip's share, summed in strip order) into `distances`,
/// in the same pass over the rows.
pub fn accumulate_and_measure<T: Scalar>(
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    labels: &[u32],
    centroids: MatRef<'_, T>,
    distances: &mut [T],
) -> ClusterSums {
    accumulate_in_strips(x, weights, labels, centroids.rows(), Some((centroids, distances)))
}

fn accumulate_in_strips<T: Scalar>(
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    labels: &[u32],
    k: usize,
    measure: Option<(MatRef<'_, T>, &mut [T])>,
) -> ClusterSums {
    let (n, d) = (x.rows(), x.cols());
    let mut cluster_weights = vec![0.0f64; k];
    for (i, &label) in labels.iter().enumerate() {
        cluster_weights[label as usize] += weight_at(weights, i);
    }
    let mut sums = vec![0.0f64; k * d];
    if d == 0 || k == 0 {
        if let Some((_, distances)) = measure {
            distances.fill(T::zero());
        }
        return ClusterSums { sums, weights: cluster_weights };
    }
    // About one strip per thread: only a partition, each value's sum is the same for any.
    let width = d.div_ceil((d / MIN_STRIP).clamp(1, rayon::current_num_threads()));
    let starts: Vec<usize> = (0..d).step_by(width).collect();
    let centroids = measure.as_ref().map(|(c, _)| *c);
    let strips: Vec<(Vec<f64>, Vec<f64>)> = starts
        .par_iter()
        .map(|&c0| {
            let w = width.min(d - c0);
            // Zeros written, not `vec!`'s calloc: fresh pages mapped to the shared zero page
            // on the first read fault again on the first write, each with a TLB shootdown.
            let mut strip = Vec::with_capacity(k * w);
            strip.resize(k * w, 0.0f64);
            let mut shares = vec![0.0f64; if centroids.is_some() { n } else { 0 }];
            for (i, &label) in labels.iter().enumerate() {
                let at = label as usize * w;
                let row = &x.row(i)[c0..c0 + w];
                add_scaled(&mut strip[at..at + w], row, weight_at(weights, i));
                if let Some(centroids) = centroids {
                    shares[i] = sq_distance(row, &centroids.row(label as usize)[c0..c0 + w]);
                }
            }
            (strip, shares)
        })
        .collect();
    if let Some((_, distances)) = measure {
        distances.par_iter_mut().enumerate().for_each(|(i, out)| {
            *out = T::of_f64(strips.iter().map(|(_, shares)| shares[i]).sum::<f64>());
        });
    }
    for (&c0, (strip, _)) in starts.iter().zip(&strips) {
        let w = strip.len() / k;
        for (sum, part) in sums.chunks_exact_mut(d).zip(strip.chunks_exact(w)) {
            sum[c0..c0 + w].copy_from_slice(part);
        }
    }
    ClusterSums { sums, weights: cluster_weights }
}

/// A row whose label changed between two passes: from cluster `old` to cluster `new`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub row: usize,
    pub old: u32,
    pub new: u32,
}

/// Fewest clusters per task of [`move_rows`] (a task owns their sums).
const MOVE_BLOCK: usize = 16;

/// Tasks per thread of [`move_rows`]: each reads the whole list of moves, so their number
/// is kept to a few a thread (which partition it is changes no sum).
const MOVE_TASKS_PER_THREAD: usize = 4;

/// The sums of the last pass's labels (`sums`) made the sums of `labels` by moving only the
/// rows whose labels changed (`moves`, in ascending rows): each moved row is subtracted from
/// its old cluster and added to its new one, in row order, for any thread count. Weights are
/// summed again from `labels` in row order (as [`accumulate_by_cluster`] sums them), and a
/// cluster left with no weight gets sums of exactly zero, so no rounding residue survives.
pub fn move_rows<T: Scalar>(
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    labels: &[u32],
    moves: &[Move],
    sums: &mut ClusterSums,
) {
    let (d, k) = (x.cols(), sums.weights.len());
    debug_assert_eq!(sums.sums.len(), k * d);
    sums.weights.iter_mut().for_each(|w| *w = 0.0);
    for (i, &label) in labels.iter().enumerate() {
        sums.weights[label as usize] += weight_at(weights, i);
    }
    if d == 0 || moves.is_empty() {
        return;
    }
    let cluster_weights = &sums.weights;
    let per_task = MOVE_BLOCK.max(k.div_ceil(MOVE_TASKS_PER_THREAD * rayon::current_num_threads()));
    sums.sums.par_chunks_mut(per_task * d).enumerate().for_each(|(b, block)| {
        let first = b * per_task;
        let owned = first..first + block.len() / d;
        let row_of = |j: u32| (j as usize - first) * d;
        for m in moves {
            let (old, new) = (m.old as usize, m.new as usize);
            if !owned.contains(&old) && !owned.contains(&new) {
                continue;
            }
            let (row, w) = (x.row(m.row), weight_at(weights, m.row));
            if owned.contains(&old) {
                let at = row_of(m.old);
                add_scaled(&mut block[at..at + d], row, -w);
            }
            if owned.contains(&new) {
                let at = row_of(m.new);
                add_scaled(&mut block[at..at + d], row, w);
            }
        }
        for (j, sum) in owned.zip(block.chunks_exact_mut(d)) {
            if !(cluster_weights[j] > 0.0) {
                sum.fill(0.0);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Sums kept from one labelling and moved to another against sums made afresh: weights
    /// bit-equal, sums within float64 rounding of each cluster's absolute total, a cluster
    /// emptied by the moves exactly zero, and the same bits on one thread and three.
    #[test]
    fn moved_sums_equal_fresh_sums() {
        fn check<T: Scalar>(seed: u64) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            // Enough clusters that one thread and three split them into different tasks.
            let (n, d, k) = (700, 37, 200);
            let x: Vec<T> = (0..n * d).map(|_| T::of_f64(rng.random::<f64>() * 200.0 - 100.0)).collect();
            let weights: Vec<T> =
                (0..n).map(|i| T::of_f64(if i % 9 == 0 { 0.0 } else { rng.random::<f64>() * 3.0 })).collect();
            let xm = MatRef::new(&x, n, d).unwrap();
            // The last cluster starts empty; all of cluster 0 moves away, and 15 % of other
            // rows move.
            let last = k as u32 - 1;
            let before: Vec<u32> = (0..n).map(|_| rng.random_range(0..last)).collect();
            let after: Vec<u32> = (before.iter())
                .map(|&l| if l == 0 || rng.random::<f64>() < 0.15 { rng.random_range(1..=last) } else { l })
                .collect();
            let moves: Vec<Move> = (0..n)
                .filter(|&i| before[i] != after[i])
                .map(|i| Move { row: i, old: before[i], new: after[i] })
                .collect();
            let fresh = accumulate_by_cluster(xm, Some(&weights), &after, k);
            let moved_on = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut sums = accumulate_by_cluster(xm, Some(&weights), &before, k);
                pool.install(|| move_rows(xm, Some(&weights), &after, &moves, &mut sums));
                sums
            };
            let moved = moved_on(1);
            assert_eq!(moved, moved_on(3));
            assert_eq!(moved.weights, fresh.weights);
            assert!(fresh.weights[0] == 0.0 && moved.sums[..d].iter().all(|&v| v == 0.0));
            for j in 0..k {
                let rows: Vec<usize> = (0..n).filter(|&i| before[i] as usize == j || after[i] as usize == j).collect();
                for p in 0..d {
                    let magnitude: f64 =
                        rows.iter().map(|&i| (x[i * d + p].as_f64() * weights[i].as_f64()).abs()).sum();
                    let (got, want) = (moved.sums[j * d + p], fresh.sums[j * d + p]);
                    assert!((got - want).abs() <= 1e-13 * magnitude, "cluster {j} feature {p}: {got} vs {want}");
                }
            }
        }
        check::<f32>(3);
        check::<f64>(4);
    }
}
