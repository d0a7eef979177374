//! The mini-batch step on the host, and the state it updates (scikit-learn's algorithm:
//! per-centre counts as learning rates, random reassignment of starved centres); the
//! steps of a whole fit as a strategy ([`MiniBatchSteps`]), host rows gathered per step.

use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::kernel::Kernel;
use crate::matrix::{normalize_rows, row_sq_norms, weighted_sum, MatRef, Points};
use crate::sampling::weighted_sample_without_replacement;
use crate::scalar::Scalar;
use crate::update::squared_shift;

/// What persists between steps (and between `partial_fit` calls).
#[derive(Debug, Clone)]
pub struct MiniBatchState<T> {
    /// `k × d`, row-major.
    pub centroids: Vec<T>,
    /// Total weight each centre has absorbed so far (its inverse is the learning rate).
    pub counts: Vec<f64>,
    /// Rows seen since centres were last considered for reassignment.
    pub n_since_last_reassign: usize,
}

impl<T: Scalar> MiniBatchState<T> {
    pub fn new(centroids: Vec<T>, k: usize) -> Self {
        Self { centroids, counts: vec![0.0; k], n_since_last_reassign: 0 }
    }

    /// Whether this step may reassign starved centres: when some centre has never been
    /// hit, or after `10 × k` rows since the last time.
    pub fn take_reassign_turn(&mut self, batch_size: usize) -> bool {
        self.n_since_last_reassign += batch_size;
        if self.counts.contains(&0.0) || self.n_since_last_reassign >= 10 * self.counts.len() {
            self.n_since_last_reassign = 0;
            return true;
        }
        false
    }
}

/// What one mini-batch step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    /// The batch's weighted inertia (to the centroids before the step).
    pub inertia: f64,
    /// Sum of the squared distances the centroids moved (0 unless asked for).
    pub shift: f64,
    /// How many starved centres moved onto batch rows.
    pub reassigned: usize,
}

/// One mini-batch step on the host: assign the batch, move each hit centre towards the mean
/// of its rows with learning rate `weight / count`, then (on a reassignment turn) move
/// starved centres onto random rows of the batch. Returns the batch's weighted inertia and
/// how many centres were reassigned.
pub fn host_minibatch_step<T: Scalar>(
    kernel: &dyn Kernel<T>,
    batch: Points<'_, T>,
    state: &mut MiniBatchState<T>,
    rng: &mut ChaCha8Rng,
    random_reassign: bool,
    reassignment_ratio: f64,
    spherical: bool,
) -> Result<(f64, usize)> {
    let (m, d) = (batch.rows(), batch.cols());
    let k = state.counts.len();
    let mut labels = vec![0u32; m];
    let mut distances = vec![T::zero(); m];
    let centroids = MatRef::new(&state.centroids, k, d)?;
    let sums = kernel.assign_accumulate(batch, centroids, &mut labels, &mut distances)?;
    let inertia = weighted_sum(&distances, batch.weights);
    for j in 0..k {
        let w = sums.weights[j];
        if w > 0.0 {
            let count = state.counts[j];
            let total = count + w;
            for (c, &s) in state.centroids[j * d..(j + 1) * d].iter_mut().zip(&sums.sums[j * d..(j + 1) * d]) {
                *c = T::of_f64((c.as_f64() * count + s) / total);
            }
            state.counts[j] = total;
        }
    }
    let reassigned = match random_reassign && reassignment_ratio > 0.0 {
        true => reassign_starved(batch.x, state, rng, reassignment_ratio)?,
        false => 0,
    };
    if spherical {
        normalize_rows(&mut state.centroids, d);
    }
    Ok((inertia, reassigned))
}

fn reassign_starved<T: Scalar>(
    xb: MatRef<'_, T>,
    state: &mut MiniBatchState<T>,
    rng: &mut ChaCha8Rng,
    reassignment_ratio: f64,
) -> Result<usize> {
    let d = xb.cols();
    let pairs = starved_reassignment(&mut state.counts, xb.rows(), rng, reassignment_ratio)?;
    for &(j, i) in &pairs {
        state.centroids[j * d..(j + 1) * d].copy_from_slice(xb.row(i));
    }
    Ok(pairs.len())
}

/// scikit-learn's reassignment of starved centres, decided on the counts: which centres
/// (counts under `reassignment_ratio × max`, at most half a batch, least-hit first) move to
/// which of the batch's `batch_rows` rows (drawn at random), as `(centre, row)` pairs. Their
/// counts are reset here; the caller moves the centres.
pub fn starved_reassignment(
    counts: &mut [f64],
    batch_rows: usize,
    rng: &mut ChaCha8Rng,
    reassignment_ratio: f64,
) -> Result<Vec<(usize, usize)>> {
    let k = counts.len();
    let max_count = counts.iter().cloned().fold(f64::MIN, f64::max);
    let mut to_reassign: Vec<bool> = counts.iter().map(|&c| c < reassignment_ratio * max_count).collect();
    // At most half a batch of centres move at once; the least-hit ones go first.
    let limit = batch_rows / 2;
    if to_reassign.iter().filter(|&&r| r).count() > limit {
        let mut by_count: Vec<usize> = (0..k).collect();
        by_count.sort_by(|&a, &b| counts[a].total_cmp(&counts[b]));
        for &j in &by_count[limit..] {
            to_reassign[j] = false;
        }
    }
    let chosen: Vec<usize> = (0..k).filter(|&j| to_reassign[j]).collect();
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    let rows = weighted_sample_without_replacement::<f64>(batch_rows, None, chosen.len(), rng)?;
    log::debug!("reassigned {} starved cluster centre(s)", chosen.len());
    // Reset their counts, but not so low that they are reassigned again at once.
    let floor = (0..k).filter(|&j| !to_reassign[j]).map(|j| counts[j]).fold(f64::INFINITY, f64::min);
    if floor.is_finite() {
        for &j in &chosen {
            counts[j] = floor;
        }
    }
    Ok(chosen.into_iter().zip(rows).collect())
}

/// The steps of one mini-batch fit over its data: where the centroids live between steps is
/// the strategy's (host memory, a device).
pub trait MiniBatchSteps<T> {
    /// One step on the rows `batch` (indices into the fit's data), reassigning starved
    /// centres when it is their turn (`turn_rows` rows count towards it: the batch size).
    /// The shift is measured only when `measure_shift`.
    fn step(
        &mut self,
        batch: &[usize],
        turn_rows: usize,
        rng: &mut ChaCha8Rng,
        measure_shift: bool,
    ) -> Result<StepOutcome>;

    /// The state after the last step, on the host.
    fn finish(self: Box<Self>) -> Result<MiniBatchState<T>>;
}

/// Mini-batch steps on the host: each batch's rows gathered, then [`host_minibatch_step`].
pub struct HostMiniBatch<'s, T> {
    pub kernel: &'s dyn Kernel<T>,
    pub x: MatRef<'s, T>,
    pub weights: Option<&'s [T]>,
    pub state: MiniBatchState<T>,
    pub reassignment_ratio: f64,
    pub spherical: bool,
}

impl<T: Scalar> MiniBatchSteps<T> for HostMiniBatch<'_, T> {
    fn step(
        &mut self,
        batch: &[usize],
        turn_rows: usize,
        rng: &mut ChaCha8Rng,
        measure_shift: bool,
    ) -> Result<StepOutcome> {
        // All rows in order (a `partial_fit` call) need no copy.
        let all = batch.len() == self.x.rows() && batch.iter().enumerate().all(|(r, &i)| r == i);
        let (rows, row_weights) = match all {
            true => (None, None),
            false => {
                (Some(self.x.gather(batch)), self.weights.map(|w| batch.iter().map(|&i| w[i]).collect::<Vec<T>>()))
            }
        };
        let xb = match &rows {
            Some(rows) => MatRef::new(rows, batch.len(), self.x.cols())?,
            None => self.x,
        };
        let wb = if all { self.weights } else { row_weights.as_deref() };
        let norms = row_sq_norms(xb);
        let points = Points { x: xb, x_sq_norms: &norms, weights: wb };
        let previous = measure_shift.then(|| self.state.centroids.clone());
        let reassign = self.state.take_reassign_turn(turn_rows);
        let (state, ratio) = (&mut self.state, self.reassignment_ratio);
        let (inertia, reassigned) =
            host_minibatch_step(self.kernel, points, state, rng, reassign, ratio, self.spherical)?;
        let shift = previous.map_or(0.0, |p| squared_shift(&self.state.centroids, &p));
        Ok(StepOutcome { inertia, shift, reassigned })
    }

    fn finish(self: Box<Self>) -> Result<MiniBatchState<T>> {
        Ok(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::cpu::CpuKernel;
    use approx::assert_relative_eq;
    use rand::SeedableRng;

    #[test]
    fn step_moves_centres_by_count_weighted_means() {
        // Centre 0 has absorbed weight 2 at (0,0); two new rows at (3,0) and (3,3) join it.
        let mut state = MiniBatchState {
            centroids: vec![0.0, 0.0, 100.0, 100.0],
            counts: vec![2.0, 1.0],
            n_since_last_reassign: 0,
        };
        let xb = vec![3.0, 0.0, 3.0, 3.0];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let batch = MatRef::new(&xb, 2, 2).unwrap();
        let norms = crate::matrix::row_sq_norms(batch);
        let points = Points { x: batch, x_sq_norms: &norms, weights: None };
        let (inertia, reassigned) =
            host_minibatch_step(&CpuKernel, points, &mut state, &mut rng, false, 0.0, false).unwrap();
        assert_eq!(reassigned, 0);
        assert_relative_eq!(inertia, 9.0 + 18.0, max_relative = 1e-12);
        assert_relative_eq!(state.centroids[0], (0.0 * 2.0 + 6.0) / 4.0);
        assert_relative_eq!(state.centroids[1], 3.0 / 4.0);
        assert_eq!(state.counts, vec![4.0, 1.0]);
        assert_eq!(&state.centroids[2..], &[100.0, 100.0]);
    }

    #[test]
    fn starved_centres_are_reassigned() {
        let mut state = MiniBatchState {
            centroids: vec![0.0, 50.0, 99.0],
            counts: vec![100.0, 0.0, 0.5],
            n_since_last_reassign: 0,
        };
        let xb = vec![1.0, 2.0, 3.0, 4.0];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(reassign_starved(MatRef::new(&xb, 4, 1).unwrap(), &mut state, &mut rng, 0.01).unwrap(), 2);
        assert!(xb.contains(&state.centroids[1]) && xb.contains(&state.centroids[2]));
        assert_eq!(state.counts, vec![100.0, 100.0, 100.0]);
        assert_eq!(state.centroids[0], 0.0);
    }
}
