//! Greedy k-means++ on sparse rows, as on dense ones (`crate::init`): `2 + ln k` candidates a
//! step, drawn by D² sampling, the one that lowers the potential most is kept. A candidate's
//! distances to all rows are one pass over the nonzeros.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{CsrIndex, CsrRef};
use crate::error::Result;
use crate::init::{candidates_per_step, chunk_totals, first_centre, search_cumulative};
use crate::matrix::weight_at;
use crate::monitor::{report, Monitor, Progress, Stage};
use crate::params::check_n_clusters;
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
    let n = x.rows();
    check_n_clusters(n, k)?;
    let row_weights: Vec<f64> = (0..n).map(|i| weight_at(weights, i)).collect();
    let first = x.dense_row(first_centre(&row_weights, rng)?);
    let mut closest = distances_to(x, norms, &first);
    let mut centroids = first;
    for step in 1..k {
        let weighted: Vec<f64> = closest.iter().zip(&row_weights).map(|(c, w)| c * w).collect();
        let totals = chunk_totals(&weighted);
        let potential: f64 = totals.iter().sum();
        report(monitor, Progress { stage: Stage::Init, iteration: step, run, inertia: potential, center_shift: 0.0 })?;
        let mut best: Option<(f64, Vec<T>, Vec<f64>)> = None;
        for _ in 0..candidates_per_step(k) {
            let row = x.dense_row(search_cumulative(&weighted, &totals, rng.random::<f64>() * potential));
            let near: Vec<f64> = distances_to(x, norms, &row).iter().zip(&closest).map(|(&a, &b)| a.min(b)).collect();
            let candidate_potential: f64 = near.iter().zip(&row_weights).map(|(d, w)| d * w).sum();
            if best.as_ref().is_none_or(|b| candidate_potential < b.0) {
                best = Some((candidate_potential, row, near));
            }
        }
        let (_, row, near) = best.expect("at least two candidates a step");
        centroids.extend_from_slice(&row);
        closest = near;
    }
    Ok(centroids)
}
