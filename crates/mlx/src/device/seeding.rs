//! Greedy k-means++ resident on the MLX device, for several runs at once (the `n_init`
//! candidates of a mini-batch fit seed in lockstep, one batched GEMM per step). Each step
//! searches the cumulative weighted distances for its candidates, measures them with one GEMM
//! and keeps the one that lowers the potential most, all queued on the device: nothing is
//! read back until the chosen rows at the end. The random numbers are the host loop's
//! (`mlx_kmeans::init`), drawn from each run's generator in the same order and uploaded once, so a
//! seed picks the same rows on every engine (up to float32 running sums).

use mlx_rs::ops::indexing::{argmin_axis, IndexOp};
use mlx_rs::ops::{addmm, broadcast_to, concatenate, maximum, minimum, stack};
use mlx_rs::Array;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::{eval_all, CentredData, MlxKernel};
use mlx_kmeans::error::Result;
use mlx_kmeans::init::{candidates_per_step, first_centre};
use mlx_kmeans::matrix::{weight_at, Points};
use mlx_kmeans::monitor::{report, Monitor, Progress, Stage};

/// The rows of each sample that greedy k-means++ picks, in order (see `mlx_kmeans::init`); `rngs`
/// holds each run's generator. The samples must have the same number of rows and all or none
/// sample weights.
pub(super) fn kmeans_plusplus(
    kernel: &MlxKernel<'_>,
    samples: &[Points<'_, f32>],
    k: usize,
    rngs: &mut [ChaCha8Rng],
    first_run: usize,
    monitor: Monitor<'_>,
) -> Result<Vec<Vec<usize>>> {
    let (runs, n) = (samples.len(), samples[0].rows());
    let n_trials = candidates_per_step(k);
    // Per run: the first centre (as the host draws it), then every step's draws.
    let mut first = Vec::with_capacity(runs);
    let mut draws = vec![0f32; runs * (k - 1) * n_trials];
    for (r, (sample, rng)) in samples.iter().zip(rngs.iter_mut()).enumerate() {
        let row_weights: Vec<f64> = (0..n).map(|i| weight_at(sample.weights, i)).collect();
        first.push((r * n + first_centre(&row_weights, rng)?) as i32);
        for step in 0..k - 1 {
            for t in 0..n_trials {
                draws[(step * runs + r) * n_trials + t] = rng.random::<f64>() as f32;
            }
        }
    }
    // (With k = 1 there are no steps, and no draws to upload.)
    let draws = (k > 1).then(|| Array::from_slice(&draws, &[(k - 1) as i32, runs as i32, n_trials as i32, 1]));
    let data = Batch::new(kernel, samples)?;
    let (b, rows) = (runs as i32, n as i32);
    // `runs × n × 1`: each row's squared distance to its closest chosen centre.
    let first = Array::from_slice(&first, &[b, 1]);
    let mut closest = data.distances_to(&first)?;
    let mut chosen = vec![first];
    let row_offsets = Array::from_iter((0..runs).map(|r| (r * n) as i32), &[b, 1]);
    for step in 1..k {
        // Progress and Ctrl-C between steps; the potentials stay on the device.
        let progress =
            Progress { stage: Stage::Init, iteration: step, run: first_run, inertia: f64::NAN, center_shift: 0.0 };
        report(monitor, progress)?;
        let cumulative = data.weighted(&closest)?.reshape(&[b, 1, rows])?.cumsum(2, None, None)?;
        let targets = draws.as_ref().expect("k > 1").index(step as i32 - 1).multiply(cumulative.index((
            ..,
            ..,
            rows - 1..rows,
        )))?;
        // NumPy's searchsorted (side "left"): how many running sums lie below each target.
        // A target never exceeds the total (a draw is below 1), so the count is a row.
        let candidates = cumulative.lt(&targets)?.sum_axis(2, false)?.add(&row_offsets)?;
        let merged = minimum(&data.distances_to(&candidates)?, &closest)?;
        let best = argmin_axis(data.weighted(&merged)?.sum_axis(1, false)?, 1, true)?;
        closest = merged.take_along_axis(broadcast_to(best.reshape(&[b, 1, 1])?, &[b, rows, 1])?, 2)?;
        chosen.push(candidates.take_along_axis(&best, 1)?);
        // Queue the step without waiting, so the graph never grows past one step.
        mlx_rs::transforms::async_eval([&closest, chosen.last().expect("just pushed")])?;
    }
    let chosen = concatenate(&chosen, 1)?.as_type::<i32>()?;
    eval_all(&[&chosen])?;
    let chosen = chosen.as_slice::<i32>();
    Ok((0..runs).map(|r| chosen[r * k..(r + 1) * k].iter().map(|&i| i as usize - r * n).collect()).collect())
}

/// The samples on the device, stacked: rows as the GEMMs take them (`runs·n × w`), their
/// squared norms, and sample weights (`runs × n × 1`).
struct Batch {
    lifted: Array,
    norms: Array,
    weights: Option<Array>,
    /// Candidates are rows of the data: their lifted form as centroids is a fixed reordering
    /// of the columns of the rows' (`[hi, hi, lo]` to `[hi, lo, hi]`) when splitting.
    as_centroids: Option<Array>,
    runs: i32,
    rows: i32,
}

impl Batch {
    fn new(kernel: &MlxKernel<'_>, samples: &[Points<'_, f32>]) -> Result<Self> {
        let (runs, rows) = (samples.len() as i32, samples[0].rows() as i32);
        let data: Vec<CentredData> = samples.iter().map(|s| kernel.device_data(s.x)).collect::<Result<_>>()?;
        let d = data[0].centred.shape()[1];
        let join = |arrays: Vec<&Array>| -> Result<Array> {
            Ok(if arrays.len() == 1 { arrays[0].clone() } else { concatenate(&arrays, 0)? })
        };
        let lifted = join(data.iter().map(|c| &c.lifted).collect())?;
        let norms = join(data.iter().map(|c| &c.norms).collect())?;
        let weights = match samples[0].weights {
            Some(_) => {
                let values: Vec<Array> =
                    samples.iter().map(|s| Array::from_slice(s.weights.expect("all or none"), &[rows])).collect();
                Some(stack(&values, 0)?.reshape(&[runs, rows, 1])?)
            }
            None => None,
        };
        let as_centroids = kernel.split.then(|| {
            let order: Vec<i32> = (0..d).chain(2 * d..3 * d).chain(d..2 * d).collect();
            Array::from_slice(&order, &[3 * d])
        });
        Ok(Self { lifted, norms, weights, as_centroids, runs, rows })
    }

    /// Squared distances (`runs × n × m`) from each run's rows to `m` of its rows, given by
    /// their indices in the stacked rows (`runs × m`).
    fn distances_to(&self, chosen: &Array) -> Result<Array> {
        let m = chosen.shape()[1];
        let mut c = self.lifted.take_axis(chosen.reshape(&[-1])?, 0)?;
        if let Some(order) = &self.as_centroids {
            c = c.take_axis(order, 1)?;
        }
        let width = c.shape()[1];
        let c = c.reshape(&[self.runs, m, width])?;
        let c_norms = self.norms.take_axis(chosen.reshape(&[-1])?, 0)?.reshape(&[self.runs, 1, m])?;
        let x = self.lifted.reshape(&[self.runs, self.rows, width])?;
        let x_norms = self.norms.reshape(&[self.runs, self.rows, 1])?;
        // ‖c‖² − 2 x·c in the GEMM's epilogue, then ‖x‖².
        let partial = addmm(&c_norms, &x, c.transpose_axes(&[0, 2, 1])?, -2.0, 1.0)?;
        Ok(maximum(partial.add(&x_norms)?, Array::from_f32(0.0))?)
    }

    fn weighted(&self, a: &Array) -> Result<Array> {
        Ok(match &self.weights {
            Some(w) => a.multiply(w)?,
            None => a.clone(),
        })
    }
}
