//! Greedy k-means++ on sparse rows: the loop of `crate::init::greedy_seeds`, with a
//! candidate's distances to all rows in one pass over the nonzeros.

use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{CsrIndex, CsrRef};
use crate::error::Result;
use crate::init::{greedy_seeds, SeedingRows, SeedingStep};
use crate::matrix::weight_at;
use crate::monitor::Monitor;
use crate::scalar::Scalar;

/// Squared distances (`‖x‖² + ‖c‖² − 2x·c`, float64, at least 0) from every row to `centre`.
fn distances_to<T: Scalar, I: CsrIndex>(x: CsrRef<'_, T, I>, norms: &[f64], centre: &[T]) -> Vec<f64> {
    let c_norm: f64 = centre.iter().map(|v| v.as_f64().powi(2)).sum();
    (0..x.rows())
        .into_par_iter()
        .map(|i| {
            let (indices, values) = x.row(i);
            let dot: f64 = indices.iter().zip(values).map(|(&j, &v)| v.as_f64() * centre[j.at()].as_f64()).sum();
            (norms[i] + c_norm - 2.0 * dot).max(0.0)
        })
        .collect()
}

/// Sparse rows (squared norms `norms`) as greedy k-means++ seeds from them.
struct SparseSeeding<'a, T, I> {
    x: CsrRef<'a, T, I>,
    norms: &'a [f64],
}

impl<T: Scalar, I: CsrIndex> SeedingRows<f64> for SparseSeeding<'_, T, I> {
    fn distances_to(&self, row: usize, out: &mut [f64]) -> Result<()> {
        out.copy_from_slice(&distances_to(self.x, self.norms, &self.x.dense_row(row)));
        Ok(())
    }

    fn candidate_potentials(&self, row_weights: &[f64], runs: Vec<SeedingStep<'_, f64>>) -> Result<Vec<Vec<f64>>> {
        // Sparse rows are not pruned (no `pruning()`): every row is measured.
        let mut potentials = Vec::with_capacity(runs.len());
        for run in runs {
            debug_assert!(run.measured.is_none());
            let t = run.candidates.len();
            let mut run_potentials = Vec::with_capacity(t);
            for (c, &row) in run.candidates.iter().enumerate() {
                let to_candidate = distances_to(self.x, self.norms, &self.x.dense_row(row));
                run_potentials.push(
                    to_candidate.iter().zip(run.closest).zip(row_weights).map(|((&a, &b), w)| a.min(b) * w).sum(),
                );
                for (i, v) in to_candidate.into_iter().enumerate() {
                    run.distances[i * t + c] = v;
                }
            }
            potentials.push(run_potentials);
        }
        Ok(potentials)
    }
}

/// `k` initial centroids (`k × d`, row-major) from sparse rows `x` (squared norms `norms`).
pub fn kmeans_plusplus<T: Scalar, I: CsrIndex>(
    x: CsrRef<'_, T, I>,
    norms: &[f64],
    weights: Option<&[T]>,
    k: usize,
    rng: &mut ChaCha8Rng,
    run: usize,
    monitor: Monitor<'_>,
) -> Result<Vec<T>> {
    let row_weights: Vec<f64> = (0..x.rows()).map(|i| weight_at(weights, i)).collect();
    let chosen = greedy_seeds(&SparseSeeding { x, norms }, &row_weights, k, std::slice::from_mut(rng), run, monitor)?;
    Ok(chosen[0].iter().flat_map(|&i| x.dense_row(i)).collect())
}
