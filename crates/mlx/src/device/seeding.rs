//! Greedy k-means++ resident on the MLX device, for several runs at once (the `n_init`
//! candidates of a mini-batch fit seed in lockstep). Each step searches the cumulative
//! weighted distances for its candidates, measures them and keeps the one that lowers the
//! potential most, all queued on the device: nothing is read back until the chosen rows at
//! the end. The candidates are measured by the shared `seeding_distances` kernel where it runs
//! (float32 dot products of the rows as they are, skipping with pruning on the rows whose
//! centre the triangle inequality proves nearer: the same picks), else by one batched GEMM.
//! The random numbers are the host loop's (`mlx_kmeans::init`), drawn from each run's
//! generator in the same order and uploaded once, so a seed picks the same rows on every
//! engine (up to float32 running sums).

use mlx_rs::ops::indexing::{argmin_axis, IndexOp};
use mlx_rs::ops::{addmm, broadcast_to, concatenate, full, maximum, minimum, select, stack, zeros};
use mlx_rs::Array;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::shared::{seeding_rounding, SharedKernels};
use super::{eval_all, CentredData, MlxKernel};
use mlx_kmeans::error::Result;
use mlx_kmeans::init::{candidates_per_step, first_centre};
use mlx_kmeans::matrix::{weight_at, Points};
use mlx_kmeans::monitor::{report, Monitor, Progress, Stage};

/// The rows of each sample that greedy k-means++ picks, in order (see `mlx_kmeans::init`); `rngs`
/// holds each run's generator. The samples must have the same number of rows and all or none
/// sample weights. `prune`: skip what the triangle inequality proves (where the kernel runs).
pub(super) fn kmeans_plusplus(
    kernel: &MlxKernel<'_>,
    samples: &[Points<'_, f32>],
    k: usize,
    rngs: &mut [ChaCha8Rng],
    (first_run, prune): (usize, bool),
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
    let first = Array::from_slice(&first, &[b, 1]);
    let mut measure = match &kernel.seeding {
        Some(kernels) if runs * n * samples[0].cols() >= KERNEL_FROM => {
            Measure::Kernel(ByKernel::new(kernels, &data, k, prune)?)
        }
        _ => Measure::Gemm,
    };
    // `runs × n × 1`: each row's squared distance to its closest chosen centre.
    let mut closest = measure.distances(&data, &first, None)?;
    if let Measure::Kernel(by_kernel) = &mut measure {
        by_kernel.chose(&data, &first, &closest, &closest, 0)?;
    }
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
        let merged = measure.distances(&data, &candidates, Some(&closest))?;
        let best = argmin_axis(data.weighted(&merged)?.sum_axis(1, false)?, 1, true)?;
        let chosen_row = candidates.take_along_axis(&best, 1)?;
        let nearer = merged.take_along_axis(broadcast_to(best.reshape(&[b, 1, 1])?, &[b, rows, 1])?, 2)?;
        if let Measure::Kernel(by_kernel) = &mut measure {
            by_kernel.chose(&data, &chosen_row, &closest, &nearer, step)?;
        }
        closest = nearer;
        chosen.push(chosen_row);
        // Queue the step without waiting, so the graph never grows past one step.
        let mut queued = vec![&closest, chosen.last().expect("just pushed")];
        if let Measure::Kernel(by_kernel) = &measure {
            queued.extend(by_kernel.state());
        }
        mlx_rs::transforms::async_eval(queued)?;
    }
    let chosen = concatenate(&chosen, 1)?.as_type::<i32>()?;
    eval_all(&[&chosen])?;
    if let Measure::Kernel(by_kernel) = &measure {
        by_kernel.log_skipped(k, n * runs)?;
    }
    let chosen = chosen.as_slice::<i32>();
    Ok((0..runs).map(|r| chosen[r * k..(r + 1) * k].iter().map(|&i| i as usize - r * n).collect()).collect())
}

/// Rows × features (all runs) from which the kernel measures a step's candidates; below, the
/// batched GEMM does. The kernel's pruning adds a dozen small operations a step, which cost
/// more than a small sample's reads save (`benchmarks/gpu.md`, issue 35's section).
const KERNEL_FROM: usize = 1 << 26;

/// How a step measures its candidates.
enum Measure<'k> {
    /// One batched GEMM of the rows as the kernel's GEMMs take them (split where products round).
    Gemm,
    Kernel(ByKernel<'k>),
}

impl Measure<'_> {
    /// Squared distances (`runs × n × m`) from each run's rows to `m` of its rows (`runs × m`,
    /// indices in the stacked rows), each the minimum with `closest` (`runs × n × 1`) if given.
    fn distances(&mut self, data: &Batch, chosen: &Array, closest: Option<&Array>) -> Result<Array> {
        match self {
            Measure::Gemm => {
                let distances = data.distances_to(chosen)?;
                Ok(match closest {
                    Some(closest) => minimum(&distances, closest)?,
                    None => distances,
                })
            }
            Measure::Kernel(by_kernel) => by_kernel.distances(data, chosen, closest),
        }
    }
}

/// Candidates measured by `seeding_distances`, with the state its pruning keeps.
struct ByKernel<'k> {
    kernels: &'k SharedKernels,
    /// The rounding factor and the largest squared norm of a row (see the kernel's body).
    scale: Array,
    /// The rounding of a squared distance between two rows, at most (`2·scale[0]·scale[1]`).
    slack: Array,
    pruning: Option<Pruning>,
}

struct Pruning {
    /// Each run's centres in the order chosen (`runs × k × d`, zero past the last) and their
    /// squared norms (`runs × k`).
    centres: Array,
    centre_norms: Array,
    /// Each row's centre among them (`runs·n`, int32).
    assigned: Array,
    /// Candidate distances measured so far (int64, for the log).
    measured: Array,
}

impl<'k> ByKernel<'k> {
    fn new(kernels: &'k SharedKernels, data: &Batch, k: usize, prune: bool) -> Result<Self> {
        let d = data.centred.shape()[1];
        let largest = data.norms.max(None)?;
        let rounding = Array::from_f32(seeding_rounding(d as usize));
        let scale = stack(&[&rounding, &largest], 0)?;
        let slack = rounding.multiply(&largest)?.multiply(Array::from_f32(2.0))?;
        let pruning = if prune {
            Some(Pruning {
                centres: zeros::<f32>(&[data.runs, k as i32, d])?,
                centre_norms: zeros::<f32>(&[data.runs, k as i32])?,
                assigned: zeros::<i32>(&[data.runs * data.rows])?,
                measured: Array::from_slice(&[0i64], &[1]),
            })
        } else {
            None
        };
        Ok(Self { kernels, scale, slack, pruning })
    }

    /// The chosen rows' centred values (`runs × m × d`) and squared norms (`runs × m`).
    fn candidates(data: &Batch, chosen: &Array) -> Result<(Array, Array)> {
        let (m, d) = (chosen.shape()[1], data.centred.shape()[1]);
        let flat = chosen.reshape(&[-1])?;
        let rows = data.centred.take_axis(&flat, 0)?.reshape(&[data.runs, m, d])?;
        let norms = data.norms.take_axis(&flat, 0)?.reshape(&[data.runs, m])?;
        Ok((rows, norms))
    }

    fn distances(&mut self, data: &Batch, chosen: &Array, closest: Option<&Array>) -> Result<Array> {
        let m = chosen.shape()[1];
        let (cand, cnorm) = Self::candidates(data, chosen)?;
        let all = data.runs * data.rows;
        // The steps prune; the first centre's distances are all measured.
        let step = closest.is_some();
        let closest = match closest {
            Some(closest) => closest.reshape(&[all])?,
            None => full::<f32>(&[all], Array::from_f32(f32::INFINITY))?,
        };
        let pruning = self.pruning.as_mut().filter(|_| step);
        let lower = match &pruning {
            Some(pruning) => {
                // Lower bounds of the distances from each run's centres to its candidates: the
                // kernel's on the centres as rows, less the rounding of a squared distance.
                let (runs, kept, d) =
                    (pruning.centres.shape()[0], pruning.centres.shape()[1], pruning.centres.shape()[2]);
                let unbounded = full::<f32>(&[runs * kept], Array::from_f32(f32::INFINITY))?;
                let (squared, _) = self.kernels.seeding_distances(
                    &pruning.centres.reshape(&[runs * kept, d])?,
                    &pruning.centre_norms.reshape(&[runs * kept])?,
                    &cand,
                    &cnorm,
                    &unbounded,
                    None,
                    &self.scale,
                )?;
                Some(maximum(squared.subtract(&self.slack)?, Array::from_f32(0.0))?.sqrt()?.reshape(&[runs, kept, m])?)
            }
            None => None,
        };
        let prune = pruning.as_ref().zip(lower.as_ref()).map(|(p, lower)| (&p.assigned, lower));
        let (merged, measured) =
            self.kernels.seeding_distances(&data.centred, &data.norms, &cand, &cnorm, &closest, prune, &self.scale)?;
        if let Some(pruning) = pruning {
            pruning.measured = pruning.measured.add(measured.as_type::<i64>()?.sum(None)?)?;
        }
        Ok(merged.reshape(&[data.runs, data.rows, m])?)
    }

    /// Records the centre chosen at `step` (`chosen`: its row, `runs × 1`) and the rows that
    /// moved to it (`nearer`, their distances to it where smaller than `closest`).
    fn chose(&mut self, data: &Batch, chosen: &Array, closest: &Array, nearer: &Array, step: usize) -> Result<()> {
        let Some(pruning) = self.pruning.as_mut() else { return Ok(()) };
        let (rows, norms) = Self::candidates(data, chosen)?;
        let at = Array::from_int(step as i32);
        let d = rows.shape()[2];
        pruning.centres = pruning.centres.put_along_axis(full::<i32>(&[data.runs, 1, d], &at)?, &rows, 1)?;
        pruning.centre_norms = pruning.centre_norms.put_along_axis(full::<i32>(&[data.runs, 1], &at)?, &norms, 1)?;
        if step > 0 {
            let moved = nearer.lt(closest)?.reshape(&[-1])?;
            pruning.assigned = select(&moved, &at, &pruning.assigned)?;
        }
        Ok(())
    }

    /// The arrays a step leaves for the next, to queue with it.
    fn state(&self) -> Vec<&Array> {
        match &self.pruning {
            Some(p) => vec![&p.centres, &p.centre_norms, &p.assigned, &p.measured],
            None => Vec::new(),
        }
    }

    /// Logs the share of candidate distances the pruning skipped (`rows`: all runs' rows).
    fn log_skipped(&self, k: usize, rows: usize) -> Result<()> {
        let Some(pruning) = &self.pruning else { return Ok(()) };
        eval_all(&[&pruning.measured])?;
        let all = (rows * (k - 1) * candidates_per_step(k)).max(1);
        let skipped = 1.0 - pruning.measured.item_exact::<i64>() as f64 / all as f64;
        log::debug!(
            target: crate::LOG_TARGET,
            "k-means++ pruning on the device: {:.1} % of candidate distances skipped over {} steps",
            100.0 * skipped,
            k - 1
        );
        Ok(())
    }
}

/// The samples on the device, stacked: rows as the GEMMs take them (`runs·n × w`) and as
/// they are, their squared norms, and sample weights (`runs × n × 1`).
struct Batch {
    lifted: Array,
    /// The rows as they are, centred (`runs·n × d`; MLX makes it only if a kernel reads it).
    centred: Array,
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
        let centred = join(data.iter().map(|c| &c.centred).collect())?;
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
        Ok(Self { lifted, centred, norms, weights, as_centroids, runs, rows })
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
