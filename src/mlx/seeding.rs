//! Greedy k-means++ resident on the MLX device. Each step searches the cumulative weighted
//! distances for its candidates, measures them with one GEMM and keeps the one that lowers
//! the potential most, all queued on the device: nothing is read back until the chosen rows
//! at the end. The random numbers are the host loop's (`crate::init`), drawn in the same order
//! and uploaded per step, so a seed consumes the same stream on every engine.

use mlx_rs::ops::indexing::{argmin_axis, IndexOp};
use mlx_rs::ops::{concatenate, maximum, minimum};
use mlx_rs::Array;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::{eval_all, partial_distances, CentredData, MlxKernel};
use crate::error::Result;
use crate::init::{candidates_per_step, first_centre};
use crate::matrix::{weight_at, Points};
use crate::monitor::{report, Monitor, Progress, Stage};
use crate::params::check_n_clusters;

/// The rows of `points` that greedy k-means++ picks, in order (see `crate::init`).
pub(super) fn kmeans_plusplus(
    kernel: &MlxKernel<'_>,
    points: Points<'_, f32>,
    k: usize,
    rng: &mut ChaCha8Rng,
    run: usize,
    monitor: Monitor<'_>,
) -> Result<Vec<usize>> {
    let n = points.rows();
    check_n_clusters(n, k)?;
    let row_weights: Vec<f64> = (0..n).map(|i| weight_at(points.weights, i)).collect();
    let first = first_centre(&row_weights, rng)?;
    let data = kernel.device_data(points.x)?;
    let rows = n as i32;
    let d = data.centred.shape()[1];
    let weights = points.weights.map(|w| Array::from_slice(w, &[rows, 1]));
    let x_norms = data.norms.reshape(&[rows, 1])?;
    // Candidates are rows of the data: their lifted form as centroids is a fixed reordering of
    // the columns of the rows' lifted form (`[hi, hi, lo]` to `[hi, lo, hi]`), and their squared
    // norms are the rows' own. Few operations per step: each one costs a launch on a GPU.
    let as_centroids: Option<Array> = kernel.split.then(|| {
        let order: Vec<i32> = (0..d).chain(2 * d..3 * d).chain(d..2 * d).collect();
        Array::from_slice(&order, &[3 * d])
    });
    // Squared distances (`n × m`) from every row to the rows `chosen` (`m`, int32).
    let distances_to = |chosen: &Array| -> Result<Array> {
        let mut c = data.lifted.take_axis(chosen, 0)?;
        if let Some(order) = &as_centroids {
            c = c.take_axis(order, 1)?;
        }
        let c_norms = data.norms.take_axis(chosen, 0)?.reshape(&[1, -1])?;
        let partial = partial_distances(&data.lifted, &c, &c_norms)?;
        Ok(maximum(partial.add(&x_norms)?, Array::from_f32(0.0))?)
    };
    let weighted = |a: &Array| -> Result<Array> {
        Ok(match &weights {
            Some(w) => a.multiply(w)?,
            None => a.clone(),
        })
    };
    let first = Array::from_slice(&[first as i32], &[1]);
    // `n × 1` throughout: each row's squared distance to its closest chosen centre.
    let mut closest = distances_to(&first)?;
    let mut chosen = vec![first];
    let n_trials = candidates_per_step(k);
    // The draws do not depend on the data: all of them, in the host loop's order, uploaded once.
    let draws: Vec<f32> = (0..(k - 1) * n_trials).map(|_| rng.random::<f64>() as f32).collect();
    let draws = Array::from_slice(&draws, &[k.saturating_sub(1) as i32, n_trials as i32, 1]);
    for step in 1..k {
        // Progress and Ctrl-C between steps; the potential stays on the device.
        let progress = Progress { stage: Stage::Init, iteration: step, run, inertia: f64::NAN, center_shift: 0.0 };
        report(monitor, progress)?;
        let cumulative = weighted(&closest)?.reshape(&[1, rows])?.cumsum(1, None, None)?;
        let targets = draws.index(step as i32 - 1).multiply(cumulative.index((.., rows - 1..rows)))?;
        // NumPy's searchsorted (side "left"): how many running sums lie below each target.
        // A target never exceeds the total (a draw is below 1), so the count is a row.
        let candidates = cumulative.lt(&targets)?.sum_axis(1, false)?;
        let merged = minimum(&distances_to(&candidates)?, &closest)?;
        let best = argmin_axis(weighted(&merged)?.sum_axis(0, false)?, 0, true)?;
        closest = merged.take_axis(&best, 1)?;
        chosen.push(candidates.take_axis(&best, 0)?);
        // Queue the step without waiting, so the graph never grows past one step.
        mlx_rs::transforms::async_eval([&closest, chosen.last().expect("just pushed")])?;
    }
    let chosen = concatenate(&chosen, 0)?.as_type::<i32>()?;
    eval_all(&[&chosen])?;
    Ok(chosen.as_slice::<i32>().iter().map(|&i| i as usize).collect())
}

impl MlxKernel<'_> {
    /// `x` as the device loops take it: the resident data when `x` is all of it, else a copy
    /// (centred by the kernel's shift, lifted for the GEMMs, with squared norms).
    pub(super) fn device_data(&self, x: crate::matrix::MatRef<'_, f32>) -> Result<CentredData> {
        if let Some(resident) = self.whole_centred(x) {
            return Ok(resident);
        }
        let centred = self.centre(&super::to_mlx(x))?;
        let norms = centred.square()?.sum_axis(1, false)?;
        Ok(CentredData {
            lifted: self.lift_rows(centred.clone())?,
            centred,
            norms,
            shift: self.shift_values().map(<[f32]>::to_vec),
        })
    }
}
