//! Lloyd iterations that stay on the MLX device. Each step is one MLX graph and one
//! evaluation: distances, nearest centroids (near ties decided on the device where it can be
//! proven, `ties.rs`), per-cluster sums, the centroid update, and seven scalars (inertia,
//! whether labels changed, empty clusters, centre shift, rows the device left undecided, and
//! the near-tie counts its buffers are fitted to), which are all that comes back to the
//! host. A step with undecided rows (rare: only the MLX-ops path has them) is made again
//! after the host decides those rows exactly. On a CUDA
//! GPU whose memory is managed, every array read on the host costs page migrations; keeping labels, distances, sums and centroids on the device removes them.
//! Empty clusters are repaired on the device too (`lloyd/repair.rs`), by the shared policy.
//! The loop runs in the kernel's centred coordinates (data far from the origin is shifted by
//! its mean); centroids and sums are shifted back whenever they reach the host.
//! Short steps are queued one ahead: while the device runs a step, the host builds the next
//! from its (not yet computed) centroids and queues it before waiting for the first one's
//! scalars, so the device does not idle while the host builds graphs and reads numbers (about
//! a millisecond a step: `benchmarks/gpu.md`). A queued step whose centroids the loop does not keep (empty
//! clusters repaired) is dropped, a whole pass of device time lost; so steps are queued ahead
//! only when the second step (the first runs compilation) took less than
//! [`QUEUE_AHEAD_BELOW`]. One queued past the last step gives the final labels and distances.

use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::ops::{concatenate, maximum, select, stack};
use mlx_rs::transforms::async_eval;
use mlx_rs::Array;
use std::time::{Duration, Instant};

use super::cuda::{ClusterMeans, Halves, LloydKernels};
use super::kernel::{cluster_sums, Nearest};
use super::ties::{settle_on_device, settle_rest, Capacity, Exact, Settled, TieRows};
use super::{
    blocks, eval_all, finish_centroids, fold_sums, lift_centroid_array, partial_distances, rows_per_block,
    uncentred_host, CentredData, MlxKernel,
};
use mlx_kmeans::error::Result;
use mlx_kmeans::kernel::{assign_in_chunks, Kernel};
use mlx_kmeans::matrix::{weighted_sum, MatRef, Points};
use mlx_kmeans::monitor::KeepGoing;
use mlx_kmeans::strategy::{Assignment, LloydStep, StepReport};

mod repair;

/// Labels (`n`, uint32), squared distances (`n`), per-cluster sums (`k × d`) and weights
/// (`k`), and means (`k × d`) of one pass, on the device.
type Pass = (Array, Array, Array, Array, Array);

/// Steps faster than this are queued one ahead (unless the configuration decides). A step
/// that empties clusters costs the step queued after it, so the time a step gains (the host's
/// share of a step) must outweigh a whole step's time every time clusters are repaired: once
/// or twice in 10–25 steps of `benchmarks/gpu.py`'s fits.
const QUEUE_AHEAD_BELOW: Duration = Duration::from_millis(16);

/// One step queued on the device: its pass, the centroids it moves to (centred; where the
/// pass left clusters empty, the centroids it started from), its scalars (inertia, whether
/// labels changed, empty clusters, centre shift, rows the device left undecided, rows
/// flagged with two centroids in their band, the other flagged rows the pair buffer left)
/// and, on the MLX-ops path, its near ties as the device left them.
struct Queued {
    pass: Pass,
    updated: Array,
    scalars: Array,
    ties: Option<Settled>,
}

impl Queued {
    fn outputs(&self) -> Vec<&Array> {
        let (labels, distances, sums, weights, means) = &self.pass;
        let mut outputs = vec![&self.scalars, &self.updated, labels, distances, sums, weights, means];
        if let Some(ties) = &self.ties {
            outputs.extend([&ties.unproven, &ties.untried, &ties.in_band]);
        }
        outputs
    }
}

pub(super) struct MlxLloyd<'s, 'a> {
    kernel: &'s MlxKernel<'a>,
    /// The data on the host (for the empty-cluster repair and final assignment).
    points: Points<'s, f32>,
    /// The data centred (see `MlxKernel`'s shift) and as the GEMMs take it, the centred
    /// rows' squared norms (`n`), and sample weights (`n`).
    plain: Array,
    rows: Array,
    x_norms: Array,
    weights: Option<Array>,
    /// What centred the data: on the device (`1 × d`) and on the host.
    shift: Option<Array>,
    /// On a CUDA GPU: the custom kernels, and the weights as they take them (ones if none).
    cuda: Option<(&'s LloydKernels, Array)>,
    /// The rows as the fused kernel takes them, made once (when it is used).
    halves: Option<Halves>,
    /// Centred, like the data.
    centroids: Array,
    spherical: bool,
    /// The last step's pass.
    last: Option<Pass>,
    /// The next step, queued from the centroids the last one moved to (see the module
    /// documentation), and whether steps are queued ahead (`None`: not decided yet).
    ahead: Option<Queued>,
    queue_ahead: Option<bool>,
    /// Steps taken, and `max_iter`: none is queued past it.
    steps: usize,
    max_iter: usize,
    /// Rows flagged as near ties in each step taken on the MLX-ops path: those with two
    /// centroids in their band, and the rest. Step `q`'s buffers for them are fitted to step
    /// `q − 2`'s counts (every slot costs work, filled or not): the last counts known when a
    /// step is queued ahead, so a fit gives the same results, bit for bit, whether or not
    /// its steps are queued ahead.
    flagged_counts: Vec<(usize, usize)>,
}

impl<'s, 'a> MlxLloyd<'s, 'a> {
    pub(super) fn new(
        kernel: &'s MlxKernel<'a>,
        points: Points<'s, f32>,
        data: CentredData,
        centroids: &[f32],
        (spherical, max_iter): (bool, usize),
    ) -> Result<Self> {
        let CentredData { centred: plain, lifted: rows, norms: x_norms, shift } = data;
        let (n, d) = (plain.shape()[0], points.cols());
        let weights = points.weights.map(|w| Array::from_slice(w, &[n]));
        let centroids = kernel.centred_centroids(MatRef::new(centroids, centroids.len() / d, d)?)?;
        let cuda = match &kernel.kernels {
            Some(kernels) => Some((kernels, weights.clone().map_or_else(|| mlx_rs::ops::ones::<f32>(&[n]), Ok)?)),
            None => None,
        };
        let halves = match kernel.fused_kernels() {
            Some(kernels) => Some(kernels.halves(&plain, &x_norms)?),
            None => None,
        };
        Ok(Self {
            kernel,
            points,
            plain,
            rows,
            x_norms,
            weights,
            shift,
            cuda,
            halves,
            centroids,
            spherical,
            last: None,
            ahead: None,
            queue_ahead: kernel.queue_ahead,
            steps: 0,
            max_iter,
            flagged_counts: Vec::new(),
        })
    }

    fn k(&self) -> usize {
        self.centroids.shape()[0] as usize
    }

    /// Every row's nearest centroid among `centroids` (centred) and exact squared distance:
    /// by the fused kernel, or from the distance matrix by blocks of rows.
    fn cuda_nearest(&self, kernels: &LloydKernels, centroids: &Array) -> Result<(Array, Array)> {
        let (c, c_norms) = lift_centroid_array(centroids.clone(), self.k(), self.kernel.split)?;
        if let Some(halves) = &self.halves {
            let products = self.kernel.fused_products();
            return kernels.nearest_fused(&self.plain, &self.x_norms, halves, (centroids, &c_norms), products);
        }
        let n = self.x_norms.shape()[0] as usize;
        let step = rows_per_block(self.k());
        let tolerance = self.kernel.gemm_error_bound(self.plain.shape()[1] as usize);
        let (mut labels, mut distances) = (Vec::new(), Vec::new());
        for (start, end) in blocks(n, step) {
            let (block, block_norms) = self.block(start, end);
            let plain = rows_of(&self.plain, start, end);
            let partial = partial_distances(&block, &c, &c_norms)?;
            let (best, dist) = kernels.nearest(&partial, &block_norms, &plain, centroids, &c_norms, tolerance)?;
            labels.push(best);
            distances.push(dist);
        }
        Ok((join(labels)?, join(distances)?))
    }

    /// The same with MLX ops only, block by block: labels by a GEMM and an argmin, near ties
    /// decided on the device where it can be proven (`ties.rs`); all lazy, in the step's graph.
    fn ops_nearest(&self, centroids: &Array) -> Result<Settled> {
        let k = self.k();
        let (c, c_norms) = lift_centroid_array(centroids.clone(), k, self.kernel.split)?;
        let n = self.x_norms.shape()[0] as usize;
        let (mut labels, mut distances, mut in_band, mut second) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (start, end) in blocks(n, rows_per_block(k)) {
            let (block, block_norms) = self.block(start, end);
            let nearest = self.kernel.nearest_in_band(&block, &block_norms, &c, &c_norms)?;
            labels.push(nearest.labels);
            distances.push(nearest.distances);
            in_band.push(nearest.in_band);
            second.push(nearest.second);
        }
        let nearest = Nearest {
            labels: join(labels)?,
            distances: join(distances)?,
            in_band: join(in_band)?,
            second: second.into_iter().collect::<Option<Vec<_>>>().map(join).transpose()?,
        };
        let rows = TieRows { lifted: &self.rows, centred: &self.plain, c: &c, c_norms: &c_norms, centroids };
        // This step is number `self.steps + 1`: its buffers are fitted to step `self.steps − 1`.
        let fitted = self.steps.checked_sub(2).and_then(|i| self.flagged_counts.get(i));
        let d = self.points.cols();
        let capacity = fitted.map(|&(pairs, rest)| Capacity::fitted(pairs, rest, n, k, d));
        settle_on_device(&rows, nearest, self.shift.is_none(), capacity)
    }

    /// Per-cluster sums, weights and means of the rows by `labels`: by the shared kernels
    /// where they passed their check, else with MLX ops (one-hot GEMMs by blocks of rows).
    fn ops_sums(&self, labels: &Array) -> Result<(Array, Array, Array)> {
        let (k, d) = (self.k(), self.points.cols());
        if let Some(kernels) = &self.kernel.shared {
            let ones;
            let weights = match &self.weights {
                Some(w) => w,
                None => {
                    ones = mlx_rs::ops::ones::<f32>(&[self.x_norms.shape()[0]])?;
                    &ones
                }
            };
            return kernels.cluster_means(&self.plain, weights, labels, k);
        }
        let n = self.x_norms.shape()[0] as usize;
        let (mut sums, mut totals) = (None::<Array>, None::<Array>);
        let split = self.kernel.split;
        for (start, end) in blocks(n, rows_per_block(k)) {
            let block_weights = self.weights.as_ref().map(|w| rows_of(w, start, end));
            let (s, w) = cluster_sums(
                &self.block(start, end).0,
                &rows_of(labels, start, end),
                block_weights.as_ref(),
                k,
                split,
            )?;
            let s = fold_sums(s, d, split)?;
            sums = Some(match sums {
                Some(total) => total.add(&s)?,
                None => s,
            });
            totals = Some(match totals {
                Some(total) => total.add(&w)?,
                None => w,
            });
        }
        let (sums, weights) = (sums.expect("n >= 1 rows"), totals.expect("n >= 1 rows"));
        let column = weights.reshape(&[k as i32, 1])?;
        let means = sums.divide(&maximum(&column, Array::from_f32(f32::MIN_POSITIVE))?)?;
        Ok((sums, weights, means))
    }

    /// Rows `start..end` as the GEMMs take them, and their squared norms.
    fn block(&self, start: usize, end: usize) -> (Array, Array) {
        (rows_of(&self.rows, start, end), rows_of(&self.x_norms, start, end))
    }

    /// One step from `centroids` (centred), queued on the device: `previous` are the labels
    /// of the step before it.
    fn queue_step(&self, centroids: &Array, previous: Option<&Array>) -> Result<Queued> {
        match &self.cuda {
            Some((kernels, weights)) => {
                let (labels, distances) = self.cuda_nearest(kernels, centroids)?;
                let ClusterMeans { sums, weights, means } =
                    kernels.cluster_means(&self.plain, weights, &labels, self.k())?;
                self.queue_update(centroids, previous, (labels, distances, sums, weights, means), None)
            }
            None => {
                let ties = self.ops_nearest(centroids)?;
                let (sums, weights, means) = self.ops_sums(&ties.labels)?;
                let pass = (ties.labels.clone(), ties.distances.clone(), sums, weights, means);
                self.queue_update(centroids, previous, pass, Some(ties))
            }
        }
    }

    /// The update and scalars of a pass from `centroids`, queued on the device; `ties`: the
    /// near ties as the device left them, on the MLX-ops path.
    fn queue_update(
        &self,
        centroids: &Array,
        previous: Option<&Array>,
        pass: Pass,
        ties: Option<Settled>,
    ) -> Result<Queued> {
        let (labels, distances, _, weights, means) = &pass;
        let weighted = match &self.weights {
            Some(w) => distances.multiply(w)?,
            None => distances.clone(),
        };
        let inertia = weighted.sum(false)?;
        let changed = match previous {
            Some(previous) => previous.ne(labels)?.any(false)?.as_type::<f32>()?,
            None => Array::from_f32(1.0),
        };
        let occupied = weights.gt(Array::from_f32(0.0))?;
        let empty = occupied.logical_not()?.as_type::<f32>()?.sum(false)?;
        let updated = self.updated_centroids(centroids, means, weights)?;
        let shift = updated.subtract(centroids)?.square()?.sum(false)?;
        let zero = Array::from_f32(0.0);
        let (unproven, pairs, rest) = match &ties {
            Some(ties) => (&ties.unproven_count, &ties.pair_count, &ties.rest_count),
            None => (&zero, &zero, &zero),
        };
        let scalars = stack(&[&inertia, &changed, &empty, &shift, unproven, pairs, rest], 0)?;
        let queued = Queued { pass, updated, scalars, ties };
        async_eval(queued.outputs())?;
        Ok(queued)
    }

    /// `queued` (evaluated, from the current centroids) made again with every near tie
    /// decided (`ties::settle_rest`: on the device again if they overflowed its buffer, then
    /// on the host), and evaluated.
    fn settled_on_host(&self, queued: Queued) -> Result<Queued> {
        let ties = queued.ties.expect("only the MLX-ops path leaves rows undecided");
        let (labels, distances) = self.settle_rest(ties, &self.centroids)?;
        let n = labels.len() as i32;
        let (labels, distances) = (Array::from_slice(&labels, &[n]), Array::from_slice(&distances, &[n]));
        let (sums, weights, means) = self.ops_sums(&labels)?;
        let previous = self.last.as_ref().map(|pass| &pass.0);
        let queued = self.queue_update(&self.centroids, previous, (labels, distances, sums, weights, means), None)?;
        eval_all(&queued.outputs())?;
        Ok(queued)
    }

    /// Every near tie of an evaluated pass from `centroids` (centred) decided: host labels
    /// and squared distances.
    fn settle_rest(&self, ties: Settled, centroids: &Array) -> Result<(Vec<u32>, Vec<f32>)> {
        let (c, c_norms) = lift_centroid_array(centroids.clone(), self.k(), self.kernel.split)?;
        let rows = TieRows { lifted: &self.rows, centred: &self.plain, c: &c, c_norms: &c_norms, centroids };
        let x = self.points.x;
        let exact = Exact { row: &|i| x.row(i) };
        let host_centroids = &mut || uncentred_host(centroids, self.shift.as_ref());
        settle_rest(&rows, ties, &exact, host_centroids)
    }

    /// One pass and the update on the device: the step's scalars, and the number of empty
    /// clusters (then the centroids are left where they were). The step was queued by the
    /// one before, else it is queued now; when steps are queued ahead, the next one is queued
    /// before this one is waited for.
    fn device_step(&mut self) -> Result<(StepReport, usize)> {
        let started = Instant::now();
        let queued = match self.ahead.take() {
            Some(queued) => queued,
            None => self.queue_step(&self.centroids, self.last.as_ref().map(|pass| &pass.0))?,
        };
        self.steps += 1;
        if self.queue_ahead == Some(true) && self.steps < self.max_iter {
            self.ahead = Some(self.queue_step(&queued.updated, Some(&queued.pass.0))?);
        }
        eval_all(&queued.outputs())?;
        let mut queued = queued;
        if queued.ties.is_some() {
            let values = queued.scalars.as_slice::<f32>();
            self.flagged_counts.push((values[5] as usize, values[6] as usize));
        }
        if queued.scalars.as_slice::<f32>()[4] > 0.0 {
            // The step queued after this one started from centroids that change now.
            self.ahead = None;
            queued = self.settled_on_host(queued)?;
        }
        if self.queue_ahead.is_none() && self.steps == 2 {
            let took = started.elapsed();
            let short = took < QUEUE_AHEAD_BELOW;
            self.queue_ahead = Some(short);
            let verdict = if short { "queued one ahead" } else { "each waited for" };
            log::debug!(target: crate::LOG_TARGET, "a Lloyd step took {:.2} ms: next steps {verdict}", took.as_secs_f64() * 1e3);
        }
        let values = queued.scalars.as_slice::<f32>().to_vec();
        let empty_clusters = values[2] as usize;
        if empty_clusters == 0 {
            self.centroids = queued.updated;
        } else {
            // Queued from centroids the repair replaces.
            self.ahead = None;
        }
        self.last = Some(queued.pass);
        let report =
            StepReport { inertia: values[0] as f64, center_shift: values[3] as f64, labels_changed: values[1] != 0.0 };
        Ok((report, empty_clusters))
    }

    /// The centroids after a pass from `centroids`: each cluster's mean where it has weight,
    /// else where it was; unit norm when spherical.
    fn updated_centroids(&self, centroids: &Array, means: &Array, weights: &Array) -> Result<Array> {
        let occupied = weights.gt(Array::from_f32(0.0))?.reshape(&[self.k() as i32, 1])?;
        let updated = select(&occupied, means, centroids)?;
        finish_centroids(updated, self.spherical, self.shift.as_ref())
    }

    /// The last step's labels and squared distances on the host.
    fn last_assignment(&self, labels: &mut [u32], distances: &mut [f32]) {
        let (l, dist, ..) = self.last.as_ref().expect("a step ran");
        copy_to_host(l, dist, labels, distances);
    }

    /// The centroids as the user sees them (shifted back).
    fn host_centroids(&self) -> Result<Vec<f32>> {
        uncentred_host(&self.centroids, self.shift.as_ref())
    }
}

/// Rows `start..end` of `a` (along its first axis): `a` itself when that is all of it.
fn rows_of(a: &Array, start: usize, end: usize) -> Array {
    if start == 0 && end == a.shape()[0] as usize {
        return a.clone();
    }
    let range = start as i32..end as i32;
    if a.ndim() == 2 {
        a.index((range, ..))
    } else {
        a.index(range)
    }
}

/// Evaluated device labels (uint32) and squared distances (float32) into host buffers.
fn copy_to_host(device_labels: &Array, device_distances: &Array, labels: &mut [u32], distances: &mut [f32]) {
    labels.copy_from_slice(device_labels.as_slice::<u32>());
    distances.copy_from_slice(device_distances.as_slice::<f32>());
}

/// One array from per-block pieces along the first axis.
fn join(mut pieces: Vec<Array>) -> Result<Array> {
    if pieces.len() == 1 {
        return Ok(pieces.pop().expect("one piece"));
    }
    Ok(concatenate(&pieces, 0)?)
}

impl LloydStep<f32> for MlxLloyd<'_, '_> {
    fn step(&mut self, _keep_going: KeepGoing<'_>) -> Result<StepReport> {
        let (report, empty_clusters) = self.device_step()?;
        if empty_clusters == 0 {
            return Ok(report);
        }
        let updated = self.repaired_centroids()?;
        let shift = updated.subtract(&self.centroids)?.square()?.sum(false)?;
        eval_all(&[&updated, &shift])?;
        self.centroids = updated;
        Ok(StepReport { center_shift: shift.item_exact::<f32>() as f64, ..report })
    }

    fn finish(mut self: Box<Self>, labels_current: bool, keep_going: KeepGoing<'_>) -> Result<Assignment<f32>> {
        let (n, d) = (self.points.rows(), self.points.cols());
        let centroids = self.host_centroids()?;
        let (mut labels, mut distances) = (vec![0u32; n], vec![0f32; n]);
        // A step queued past the last one started from the final centroids: its labels are
        // theirs (exact, as every pass's), and on CUDA its distances too.
        if let Some((kernels, _)) = &self.cuda {
            let ahead = self.ahead.as_ref().map(|queued| (&queued.pass.0, &queued.pass.1));
            // Exact labels and distances (by differences) on the device.
            let (l, dist) = match ahead {
                Some((l, dist)) => (l.clone(), dist.clone()),
                None => self.cuda_nearest(kernels, &self.centroids)?,
            };
            eval_all(&[&l, &dist])?;
            copy_to_host(&l, &dist, &mut labels, &mut distances);
            let inertia = weighted_sum(&distances, self.points.weights);
            return Ok(Assignment { centroids, labels, distances, inertia });
        }
        let current = MatRef::new(&centroids, centroids.len() / d, d)?;
        if let Some(mut queued) = self.ahead.take() {
            // The queued step's own near ties, settled as in every step.
            eval_all(&queued.outputs())?;
            let ties = queued.ties.take().expect("the MLX-ops path keeps its near ties");
            (labels, _) = self.settle_rest(ties, &self.centroids)?;
        } else if labels_current {
            self.last_assignment(&mut labels, &mut distances);
        } else {
            let (x, norms) = (self.points.x, self.points.x_sq_norms);
            assign_in_chunks(self.kernel, x, norms, None, current, &mut labels, &mut distances, keep_going)?;
        }
        let (distances, inertia) =
            self.kernel.labelled_sq_distances(self.points.x, self.points.weights, current, &labels)?;
        Ok(Assignment { centroids, labels, distances, inertia })
    }
}
