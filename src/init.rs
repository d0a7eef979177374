//! Initial centroids: greedy k-means++ (as scikit-learn does it), random rows, or given.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{invalid, Error, Result};
use crate::lloyd::{check_n_clusters, Monitor, Progress, Stage};
use crate::kernel::Kernel;
use crate::matrix::{weight_at, MatRef, REDUCE_CHUNK};
use crate::scalar::Scalar;

/// How the first centroids are chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Init<T> {
    /// Greedy k-means++: `2 + ln k` D²-sampled candidates per step, the one that lowers the
    /// potential most is kept.
    KMeansPlusPlus,
    /// `k` distinct rows drawn with probability proportional to their weight.
    Random,
    /// Exactly these centroids (`k × d`, row-major).
    Given(Vec<T>),
}

/// Chooses `k` initial centroids from the rows of `x`.
#[allow(clippy::too_many_arguments)]
pub fn initial_centroids<T: Scalar, K: Kernel<T> + ?Sized>(
    kernel: &K,
    x: MatRef<'_, T>,
    x_sq_norms: &[T],
    weights: Option<&[T]>,
    k: usize,
    init: &Init<T>,
    rng: &mut ChaCha8Rng,
    run: usize,
    monitor: Monitor<'_>,
) -> Result<Vec<T>> {
    match init {
        Init::KMeansPlusPlus => kmeans_plusplus(kernel, x, x_sq_norms, weights, k, rng, run, monitor),
        Init::Random => Ok(x.gather(&weighted_sample_without_replacement(x.rows(), weights, k, rng)?)),
        Init::Given(centroids) => {
            if centroids.len() != k * x.cols() {
                return invalid(format!(
                    "init has {} values; expected n_clusters × n_features = {} × {}",
                    centroids.len(),
                    k,
                    x.cols()
                ));
            }
            Ok(centroids.clone())
        }
    }
}

/// Index of the first entry whose running sum reaches `target` (NumPy's `searchsorted`,
/// side "left", on the cumulative sum), given per-chunk totals of `values`; clipped to the
/// last index.
fn search_cumulative(values: &[f64], chunk_totals: &[f64], target: f64) -> usize {
    let mut running = 0.0;
    for (c, &total) in chunk_totals.iter().enumerate() {
        if running + total >= target {
            let start = c * REDUCE_CHUNK;
            let end = (start + REDUCE_CHUNK).min(values.len());
            for (i, &v) in values[start..end].iter().enumerate() {
                running += v;
                if running >= target {
                    return start + i;
                }
            }
            return end - 1;
        }
        running += total;
    }
    values.len() - 1
}

fn chunk_totals(values: &[f64]) -> Vec<f64> {
    values.par_chunks(REDUCE_CHUNK).map(|c| c.iter().sum()).collect()
}

/// Rows per task when summing candidate potentials: small enough to balance the threads on
/// modest data, fixed so the summation order never depends on the thread count.
const POTENTIAL_CHUNK: usize = 1024;

/// Greedy k-means++ (Arthur & Vassilvitskii; the greedy variant scikit-learn uses).
#[allow(clippy::too_many_arguments)]
pub fn kmeans_plusplus<T: Scalar, K: Kernel<T> + ?Sized>(
    kernel: &K,
    x: MatRef<'_, T>,
    x_sq_norms: &[T],
    weights: Option<&[T]>,
    k: usize,
    rng: &mut ChaCha8Rng,
    run: usize,
    monitor: Monitor<'_>,
) -> Result<Vec<T>> {
    let (n, d) = (x.rows(), x.cols());
    check_n_clusters(n, k)?;
    let n_trials = 2 + (k as f64).ln() as usize;
    let mut centroids = Vec::with_capacity(k * d);

    // First centre: one row drawn with probability proportional to its weight.
    let row_weights: Vec<f64> = (0..n).map(|i| weight_at(weights, i)).collect();
    let totals = chunk_totals(&row_weights);
    let total_weight: f64 = totals.iter().sum();
    if !(total_weight > 0.0) {
        return invalid("sample weights sum to zero");
    }
    let first = search_cumulative(&row_weights, &totals, rng.random::<f64>() * total_weight);
    // numpy's choice searches side="right"; a zero-weight row must never be picked.
    let first = (first..n).find(|&i| row_weights[i] > 0.0).unwrap_or(first);
    centroids.extend_from_slice(x.row(first));

    let mut closest = vec![T::zero(); n];
    kernel.pairwise(x, x_sq_norms, MatRef::new(x.row(first), 1, d)?, &mut closest);
    // Weighted distances: the sampling distribution and, summed, the potential.
    let mut weighted: Vec<f64> =
        closest.iter().enumerate().map(|(i, &v)| v.as_f64() * row_weights[i]).collect();
    let mut totals = chunk_totals(&weighted);
    let mut potential: f64 = totals.iter().sum();

    let mut candidate_distances = vec![T::zero(); n * n_trials];
    for step in 1..k {
        // Each step is a pass over the data: let Ctrl-C (and progress) in between.
        if !monitor(&Progress { stage: Stage::Init, iteration: step, run, inertia: potential, center_shift: 0.0 }) {
            return Err(Error::Interrupted);
        }
        let candidates: Vec<usize> = (0..n_trials)
            .map(|_| search_cumulative(&weighted, &totals, rng.random::<f64>() * potential))
            .collect();
        let candidate_rows = x.gather(&candidates);
        let candidate_rows = MatRef::new(&candidate_rows, n_trials, d)?;
        // Potential if each candidate were added, summed per fixed chunk then in order.
        let potentials = |c: usize, block: &[T]| {
            let mut pots = vec![0.0f64; n_trials];
            for (r, row) in block.chunks_exact(n_trials).enumerate() {
                let i = c * POTENTIAL_CHUNK + r;
                let current = closest[i];
                for (pot, &dist) in pots.iter_mut().zip(row) {
                    *pot += dist.min(current).as_f64() * row_weights[i];
                }
            }
            pots
        };
        let chunk_potentials: Vec<Vec<f64>> = if kernel.on_host() {
            // Each chunk's distances are summed while they are still in cache.
            candidate_distances
                .par_chunks_mut(POTENTIAL_CHUNK * n_trials)
                .enumerate()
                .map(|(c, block)| {
                    let start = c * POTENTIAL_CHUNK;
                    let end = start + block.len() / n_trials;
                    kernel.pairwise(x.slice_rows(start, end), &x_sq_norms[start..end], candidate_rows, block);
                    potentials(c, block)
                })
                .collect()
        } else {
            kernel.pairwise(x, x_sq_norms, candidate_rows, &mut candidate_distances);
            candidate_distances.par_chunks(POTENTIAL_CHUNK * n_trials).enumerate().map(|(c, block)| potentials(c, block)).collect()
        };
        let mut pots = vec![0.0f64; n_trials];
        for chunk in &chunk_potentials {
            for (p, v) in pots.iter_mut().zip(chunk) {
                *p += v;
            }
        }
        let mut best = 0;
        for t in 1..n_trials {
            if pots[t] < pots[best] {
                best = t;
            }
        }
        // Take the best candidate: update the closest distances and, in the same pass, the
        // per-chunk totals that the next draws search.
        totals = closest
            .par_chunks_mut(REDUCE_CHUNK)
            .zip(weighted.par_chunks_mut(REDUCE_CHUNK))
            .enumerate()
            .map(|(c, (closest, weighted))| {
                let mut total = 0.0f64;
                for (r, (near, w)) in closest.iter_mut().zip(weighted.iter_mut()).enumerate() {
                    let i = c * REDUCE_CHUNK + r;
                    let dist = candidate_distances[i * n_trials + best];
                    if dist < *near {
                        *near = dist;
                    }
                    *w = near.as_f64() * row_weights[i];
                    total += *w;
                }
                total
            })
            .collect();
        potential = totals.iter().sum();
        centroids.extend_from_slice(x.row(candidates[best]));
    }
    Ok(centroids)
}

/// `k` distinct indices in `0..n`, each drawn with probability proportional to its weight
/// (Efraimidis–Spirakis keys; a plain partial shuffle when unweighted).
pub fn weighted_sample_without_replacement<T: Scalar>(
    n: usize,
    weights: Option<&[T]>,
    k: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<usize>> {
    match weights {
        None => {
            if k > n {
                return invalid(format!("cannot draw {k} distinct rows from {n}"));
            }
            let mut indices: Vec<usize> = (0..n).collect();
            for i in 0..k {
                let j = rng.random_range(i..n);
                indices.swap(i, j);
            }
            indices.truncate(k);
            Ok(indices)
        }
        Some(w) => {
            let positive = w.iter().filter(|&&v| v > T::zero()).count();
            if k > positive {
                return invalid(format!(
                    "cannot draw {k} distinct rows: only {positive} have a positive sample weight"
                ));
            }
            let mut keyed: Vec<(f64, usize)> = w
                .iter()
                .enumerate()
                .filter(|(_, &v)| v > T::zero())
                .map(|(i, &v)| {
                    let u: f64 = rng.random::<f64>();
                    (u.max(f64::MIN_POSITIVE).ln() / v.as_f64(), i)
                })
                .collect();
            keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            Ok(keyed.into_iter().take(k).map(|(_, i)| i).collect())
        }
    }
}
