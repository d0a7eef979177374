//! Mini-batch k-means, following scikit-learn's `MiniBatchKMeans`: per-centre counts as
//! learning rates, random reassignment of starved centres, early stopping on the smoothed
//! batch inertia, `init_size` sampling and `n_init` judged on a validation sample.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{invalid, Error, Result};
use crate::init::{initial_centroids, weighted_sample_without_replacement, Init};
use crate::kernel::Kernel;
use crate::lloyd::{check_n_clusters, check_weights, normalize_rows, Monitor, Progress, Stage};
use crate::matrix::{row_sq_norms, weighted_sum, MatRef};
use crate::scalar::Scalar;

#[derive(Debug, Clone)]
pub struct MiniBatchParams<T> {
    pub n_clusters: usize,
    pub init: Init<T>,
    pub n_init: usize,
    /// Passes over the data: the fit runs at most `max_iter × n / batch_size` steps.
    pub max_iter: usize,
    pub batch_size: usize,
    /// Rows sampled for initialisation; `None`: `3 × batch_size` (at least `3 × k`).
    pub init_size: Option<usize>,
    /// Relative tolerance on the squared centre change per step (0 disables it).
    pub tol: f64,
    /// Stop after this many steps without improvement of the smoothed batch inertia.
    pub max_no_improvement: Option<usize>,
    pub reassignment_ratio: f64,
    pub seed: u64,
    pub compute_labels: bool,
    pub spherical: bool,
}

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
        if self.counts.iter().any(|&c| c == 0.0) || self.n_since_last_reassign >= 10 * self.counts.len() {
            self.n_since_last_reassign = 0;
            return true;
        }
        false
    }
}

#[derive(Debug, Clone)]
pub struct MiniBatchFit<T> {
    pub state: MiniBatchState<T>,
    /// Labels and distances of all rows, when `compute_labels` was asked for.
    pub labels: Option<Vec<u32>>,
    pub distances: Option<Vec<T>>,
    /// Full-data inertia when labels were computed, else the smoothed batch inertia × n.
    pub inertia: f64,
    pub n_steps: usize,
    pub n_iter: usize,
    pub batch_size: usize,
    pub init_size: usize,
    /// Mean batch inertia of each step.
    pub inertia_history: Vec<f64>,
}

/// scikit-learn's `init_size` rule.
pub fn resolve_init_size(init_size: Option<usize>, batch_size: usize, k: usize, n: usize) -> usize {
    let size = match init_size {
        None if 3 * batch_size < k => 3 * k,
        None => 3 * batch_size,
        Some(s) if s < k => {
            log::warn!("init_size={s} should be larger than n_clusters={k}; using {}", 3 * k);
            3 * k
        }
        Some(s) => s,
    };
    size.min(n)
}

/// One mini-batch step on the rows `xb`: assign, move each hit centre towards the mean of
/// its rows with learning rate `weight / count`, then (on a reassignment turn) move starved
/// centres onto random rows of the batch. Returns the batch's weighted inertia.
pub fn minibatch_step<T: Scalar, K: Kernel<T> + ?Sized>(
    kernel: &K,
    xb: MatRef<'_, T>,
    weights: Option<&[T]>,
    state: &mut MiniBatchState<T>,
    rng: &mut ChaCha8Rng,
    random_reassign: bool,
    reassignment_ratio: f64,
    spherical: bool,
) -> Result<f64> {
    let (m, d) = (xb.rows(), xb.cols());
    let k = state.counts.len();
    let norms = row_sq_norms(xb);
    let mut labels = vec![0u32; m];
    let mut distances = vec![T::zero(); m];
    let centroids = MatRef::new(&state.centroids, k, d)?;
    let sums = kernel.assign_accumulate(xb, &norms, weights, centroids, &mut labels, &mut distances);
    let inertia = weighted_sum(&distances, weights);
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
    if random_reassign && reassignment_ratio > 0.0 {
        reassign_starved(xb, state, rng, reassignment_ratio)?;
    }
    if spherical {
        normalize_rows(&mut state.centroids, d);
    }
    Ok(inertia)
}

fn reassign_starved<T: Scalar>(
    xb: MatRef<'_, T>,
    state: &mut MiniBatchState<T>,
    rng: &mut ChaCha8Rng,
    reassignment_ratio: f64,
) -> Result<()> {
    let (m, d) = (xb.rows(), xb.cols());
    let k = state.counts.len();
    let max_count = state.counts.iter().cloned().fold(f64::MIN, f64::max);
    let mut to_reassign: Vec<bool> = state.counts.iter().map(|&c| c < reassignment_ratio * max_count).collect();
    // At most half a batch of centres move at once; the least-hit ones go first.
    let limit = m / 2;
    if to_reassign.iter().filter(|&&r| r).count() > limit {
        let mut by_count: Vec<usize> = (0..k).collect();
        by_count.sort_by(|&a, &b| state.counts[a].total_cmp(&state.counts[b]));
        for &j in &by_count[limit..] {
            to_reassign[j] = false;
        }
    }
    let chosen: Vec<usize> = (0..k).filter(|&j| to_reassign[j]).collect();
    if chosen.is_empty() {
        return Ok(());
    }
    let rows = weighted_sample_without_replacement::<T>(m, None, chosen.len(), rng)?;
    for (&j, &i) in chosen.iter().zip(&rows) {
        state.centroids[j * d..(j + 1) * d].copy_from_slice(xb.row(i));
    }
    log::debug!("reassigned {} starved cluster centre(s)", chosen.len());
    // Reset their counts, but not so low that they are reassigned again at once.
    let floor = (0..k).filter(|&j| !to_reassign[j]).map(|j| state.counts[j]).fold(f64::INFINITY, f64::min);
    if floor.is_finite() {
        for &j in &chosen {
            state.counts[j] = floor;
        }
    }
    Ok(())
}

/// Initial centroids chosen on `init_size` rows drawn at random (with replacement, as
/// scikit-learn does), or on all rows when `init_size >= n`.
#[allow(clippy::too_many_arguments)]
pub fn init_on_sample<T: Scalar, K: Kernel<T> + ?Sized>(
    kernel: &K,
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    k: usize,
    init: &Init<T>,
    init_size: usize,
    spherical: bool,
    rng: &mut ChaCha8Rng,
    run: usize,
    monitor: Monitor<'_>,
) -> Result<Vec<T>> {
    let (n, d) = (x.rows(), x.cols());
    let mut centroids = if init_size < n {
        let idx = random_indices(rng, n, init_size);
        let rows = x.gather(&idx);
        let sample = MatRef::new(&rows, idx.len(), d)?;
        let w = gather_weights(weights, &idx);
        initial_centroids(kernel, sample, &row_sq_norms(sample), w.as_deref(), k, init, rng, run, monitor)?
    } else {
        initial_centroids(kernel, x, &row_sq_norms(x), weights, k, init, rng, run, monitor)?
    };
    if spherical {
        normalize_rows(&mut centroids, d);
    }
    Ok(centroids)
}

fn random_indices(rng: &mut ChaCha8Rng, n: usize, size: usize) -> Vec<usize> {
    (0..size).map(|_| rng.random_range(0..n)).collect()
}

fn gather_weights<T: Scalar>(weights: Option<&[T]>, indices: &[usize]) -> Option<Vec<T>> {
    weights.map(|w| indices.iter().map(|&i| w[i]).collect())
}

/// A full mini-batch fit.
pub fn fit<T: Scalar, K: Kernel<T> + ?Sized>(
    kernel: &K,
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    params: &MiniBatchParams<T>,
    monitor: Monitor<'_>,
) -> Result<MiniBatchFit<T>> {
    let (n, d, k) = (x.rows(), x.cols(), params.n_clusters);
    check_n_clusters(n, k)?;
    if params.batch_size == 0 || params.max_iter == 0 || params.n_init == 0 {
        return invalid("batch_size, max_iter and n_init must be at least 1");
    }
    if !(params.reassignment_ratio >= 0.0) || !(params.tol >= 0.0) {
        return invalid("reassignment_ratio and tol must be non-negative");
    }
    check_weights(weights, n)?;
    let batch_size = params.batch_size.min(n);
    let init_size = resolve_init_size(params.init_size, batch_size, k, n);
    let tol = if params.tol > 0.0 { params.tol * kernel.mean_feature_variance(x) } else { 0.0 };
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);

    // Validation sample on which the n_init candidates are compared.
    let valid_idx = random_indices(&mut rng, n, init_size);
    let x_valid = x.gather(&valid_idx);
    let x_valid = MatRef::new(&x_valid, init_size, d)?;
    let w_valid = gather_weights(weights, &valid_idx);
    let valid_norms = row_sq_norms(x_valid);

    let mut best: Option<(f64, Vec<T>)> = None;
    for run in 0..params.n_init {
        let centroids = init_on_sample(kernel, x, weights, k, &params.init, init_size, params.spherical, &mut rng, run, monitor)?;
        let mut labels = vec![0u32; init_size];
        let mut distances = vec![T::zero(); init_size];
        kernel.assign(x_valid, &valid_norms, MatRef::new(&centroids, k, d)?, &mut labels, &mut distances);
        let inertia = weighted_sum(&distances, w_valid.as_deref());
        log::debug!("init {run}: validation inertia {inertia:.6e}");
        if best.as_ref().is_none_or(|(b, _)| inertia < *b) {
            best = Some((inertia, centroids));
        }
    }
    let mut state = MiniBatchState::new(best.expect("n_init >= 1").1, k);

    let n_steps = ((params.max_iter as u128 * n as u128) / batch_size as u128).max(1) as usize;
    let mut ewa_inertia: Option<f64> = None;
    let mut ewa_min: Option<f64> = None;
    let mut no_improvement = 0usize;
    let mut history = Vec::new();
    let mut steps_done = 0;
    for step in 1..=n_steps {
        steps_done = step;
        let batch_idx = random_indices(&mut rng, n, batch_size);
        let xb = x.gather(&batch_idx);
        let xb = MatRef::new(&xb, batch_size, d)?;
        let wb = gather_weights(weights, &batch_idx);
        let previous = if tol > 0.0 { Some(state.centroids.clone()) } else { None };
        let reassign = state.take_reassign_turn(batch_size);
        let batch_inertia = minibatch_step(kernel, xb, wb.as_deref(), &mut state, &mut rng, reassign, params.reassignment_ratio, params.spherical)?
            / batch_size as f64;
        let shift: f64 = previous.map_or(0.0, |p| {
            p.iter().zip(&state.centroids).map(|(&a, &b)| (a.as_f64() - b.as_f64()).powi(2)).sum()
        });
        history.push(batch_inertia);
        if !monitor(&Progress { stage: Stage::Iteration, iteration: step, run: 0, inertia: batch_inertia, center_shift: shift }) {
            return Err(Error::Interrupted);
        }
        // The first step's inertia reflects the initialisation only.
        if step == 1 {
            continue;
        }
        let alpha = (batch_size as f64 * 2.0 / (n as f64 + 1.0)).min(1.0);
        let ewa = ewa_inertia.map_or(batch_inertia, |e| e * (1.0 - alpha) + batch_inertia * alpha);
        ewa_inertia = Some(ewa);
        if tol > 0.0 && shift <= tol {
            log::debug!("converged (small centre change) at step {step}/{n_steps}");
            break;
        }
        if ewa_min.is_none_or(|m| ewa < m) {
            no_improvement = 0;
            ewa_min = Some(ewa);
        } else {
            no_improvement += 1;
        }
        if params.max_no_improvement.is_some_and(|limit| no_improvement >= limit) {
            log::debug!("converged (no improvement of smoothed inertia) at step {step}/{n_steps}");
            break;
        }
    }
    let n_iter = (steps_done * batch_size).div_ceil(n);
    let (labels, distances, inertia) = if params.compute_labels {
        let norms = kernel.row_sq_norms(x);
        let mut labels = vec![0u32; n];
        let mut approx = vec![T::zero(); n];
        let centroids = MatRef::new(&state.centroids, k, d)?;
        kernel.assign(x, &norms, centroids, &mut labels, &mut approx);
        let (distances, inertia) = kernel.labelled_sq_distances(x, weights, centroids, &labels);
        (Some(labels), Some(distances), inertia)
    } else {
        let mean = ewa_inertia.unwrap_or_else(|| history.last().copied().unwrap_or(0.0));
        (None, None, mean * n as f64)
    };
    Ok(MiniBatchFit { state, labels, distances, inertia, n_steps: steps_done, n_iter, batch_size, init_size, inertia_history: history })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::cpu::CpuKernel;
    use approx::assert_relative_eq;

    #[test]
    fn step_moves_centres_by_count_weighted_means() {
        // Centre 0 has absorbed weight 2 at (0,0); two new rows at (3,0) and (3,3) join it.
        let mut state = MiniBatchState { centroids: vec![0.0, 0.0, 100.0, 100.0], counts: vec![2.0, 1.0], n_since_last_reassign: 0 };
        let xb = vec![3.0, 0.0, 3.0, 3.0];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let inertia = minibatch_step(&CpuKernel, MatRef::new(&xb, 2, 2).unwrap(), None, &mut state, &mut rng, false, 0.0, false).unwrap();
        assert_relative_eq!(inertia, 9.0 + 18.0, max_relative = 1e-12);
        assert_relative_eq!(state.centroids[0], (0.0 * 2.0 + 6.0) / 4.0);
        assert_relative_eq!(state.centroids[1], 3.0 / 4.0);
        assert_eq!(state.counts, vec![4.0, 1.0]);
        assert_eq!(&state.centroids[2..], &[100.0, 100.0]);
    }

    #[test]
    fn init_size_rule() {
        assert_eq!(resolve_init_size(None, 1024, 500, 100_000), 3072);
        assert_eq!(resolve_init_size(None, 100, 500, 100_000), 1500);
        assert_eq!(resolve_init_size(Some(10), 100, 50, 100_000), 150);
        assert_eq!(resolve_init_size(None, 1024, 500, 2000), 2000);
    }

    #[test]
    fn starved_centres_are_reassigned() {
        let mut state = MiniBatchState { centroids: vec![0.0, 50.0, 99.0], counts: vec![100.0, 0.0, 0.5], n_since_last_reassign: 0 };
        let xb = vec![1.0, 2.0, 3.0, 4.0];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        reassign_starved(MatRef::new(&xb, 4, 1).unwrap(), &mut state, &mut rng, 0.01).unwrap();
        assert!(xb.contains(&state.centroids[1]) && xb.contains(&state.centroids[2]));
        assert_eq!(state.counts, vec![100.0, 100.0, 100.0]);
        assert_eq!(state.centroids[0], 0.0);
    }
}
