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
            let mut strip = vec![0.0f64; k * w];
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
