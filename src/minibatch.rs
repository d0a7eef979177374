//! Mini-batch k-means, following scikit-learn's `MiniBatchKMeans`: per-centre counts as
//! learning rates, random reassignment of starved centres, early stopping on the smoothed
//! batch inertia, `init_size` sampling and `n_init` judged on a validation sample.
//!
//! The loop ([`fit`]) is written once over [`MiniBatchRows`]: dense rows through an engine
//! ([`DenseRows`], host or device) or sparse rows (`crate::sparse::SparseRows`).

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::init::{initial_centroids_of_runs, Init};
use crate::kernel::assign_in_chunks;
use crate::matrix::{normalize_rows, row_sq_norms, weighted_sum, MatRef, Points};
use crate::monitor::{report, Convergence, KeepGoing, Monitor, Progress, Stage};
use crate::params::{check_n_clusters, check_weights, MiniBatchParams};
use crate::scalar::Scalar;
pub use crate::strategy::MiniBatchState;
use crate::strategy::{Engine, MiniBatchSteps, StepOutcome};

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

/// Initial centroids for each run, chosen on `init_size` rows drawn at random (with
/// replacement, as scikit-learn does) by the run's generator `rngs[r]`, or on all rows when
/// `init_size >= n`. k-means++ seeds all runs at once where the engine can.
pub fn init_on_samples<T: Scalar>(
    engine: &dyn Engine<T>,
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    k: usize,
    init: Init<'_, T>,
    init_size: usize,
    rngs: &mut [ChaCha8Rng],
    monitor: Monitor<'_>,
) -> Result<Vec<Vec<T>>> {
    let (n, d) = (x.rows(), x.cols());
    if init_size < n {
        let indices: Vec<Vec<usize>> = rngs.iter_mut().map(|rng| random_indices(rng, n, init_size)).collect();
        let rows: Vec<Vec<T>> = indices.iter().map(|idx| x.gather(idx)).collect();
        let sample_weights: Vec<Option<Vec<T>>> = indices.iter().map(|idx| gather_weights(weights, idx)).collect();
        let matrices: Vec<MatRef<'_, T>> = rows.iter().map(|r| MatRef::new(r, init_size, d)).collect::<Result<_>>()?;
        let norms: Vec<Vec<T>> = matrices.iter().map(|&m| row_sq_norms(m)).collect();
        let samples: Vec<Points<'_, T>> = (0..rows.len())
            .map(|r| Points { x: matrices[r], x_sq_norms: &norms[r], weights: sample_weights[r].as_deref() })
            .collect();
        initial_centroids_of_runs(engine, &samples, k, init, rngs, 0, monitor)
    } else {
        let norms = engine.kernel().row_sq_norms(x)?;
        let samples = vec![Points { x, x_sq_norms: &norms, weights }; rngs.len()];
        initial_centroids_of_runs(engine, &samples, k, init, rngs, 0, monitor)
    }
}

fn ms(since: std::time::Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// `size` row indices in `0..n`, drawn with replacement (as scikit-learn draws batches).
pub(crate) fn random_indices(rng: &mut ChaCha8Rng, n: usize, size: usize) -> Vec<usize> {
    (0..size).map(|_| rng.random_range(0..n)).collect()
}

fn gather_weights<T: Scalar>(weights: Option<&[T]>, indices: &[usize]) -> Option<Vec<T>> {
    weights.map(|w| indices.iter().map(|&i| w[i]).collect())
}

/// Weighted inertia of a centroid set (`k × d`) on rows chosen beforehand.
pub type Scorer<'s, T> = Box<dyn Fn(&[T]) -> Result<f64> + 's>;

/// The rows a mini-batch fit draws from, and what the loop asks of them.
pub trait MiniBatchRows<T: Scalar> {
    fn rows(&self) -> usize;
    fn cols(&self) -> usize;
    fn weights(&self) -> Option<&[T]>;
    /// scikit-learn's tolerance scale: the mean over features of the variance.
    fn mean_feature_variance(&self) -> Result<f64>;
    /// Initial centroids for each run, chosen on `init_size` rows drawn at random (with
    /// replacement, as scikit-learn does) by the run's generator `rngs[r]`, or on all rows
    /// when `init_size` reaches the number of rows.
    fn initial_centroids(
        &self,
        k: usize,
        init: Init<'_, T>,
        init_size: usize,
        rngs: &mut [ChaCha8Rng],
        monitor: Monitor<'_>,
    ) -> Result<Vec<Vec<T>>>;
    /// Scores centroid sets (`k × d`) on the rows `indices`: their weighted inertia there.
    fn scorer<'s>(&'s self, indices: &[usize]) -> Result<Scorer<'s, T>>;
    /// The steps of a fit from `state`.
    fn steps<'s>(
        &'s self,
        state: MiniBatchState<T>,
        reassignment_ratio: f64,
        spherical: bool,
    ) -> Result<Box<dyn MiniBatchSteps<T> + 's>>;
    /// Every row's nearest centroid, its squared distance, and the weighted inertia.
    fn labels(&self, centroids: &[T], keep_going: KeepGoing<'_>) -> Result<(Vec<u32>, Vec<T>, f64)>;
}

/// Dense rows, worked on by an engine (host kernels, or a device that holds the data).
pub struct DenseRows<'a, T> {
    pub engine: &'a dyn Engine<T>,
    pub x: MatRef<'a, T>,
    pub weights: Option<&'a [T]>,
}

impl<T: Scalar> MiniBatchRows<T> for DenseRows<'_, T> {
    fn rows(&self) -> usize {
        self.x.rows()
    }

    fn cols(&self) -> usize {
        self.x.cols()
    }

    fn weights(&self) -> Option<&[T]> {
        self.weights
    }

    fn mean_feature_variance(&self) -> Result<f64> {
        self.engine.kernel().mean_feature_variance(self.x)
    }

    fn initial_centroids(
        &self,
        k: usize,
        init: Init<'_, T>,
        init_size: usize,
        rngs: &mut [ChaCha8Rng],
        monitor: Monitor<'_>,
    ) -> Result<Vec<Vec<T>>> {
        init_on_samples(self.engine, self.x, self.weights, k, init, init_size, rngs, monitor)
    }

    fn scorer<'s>(&'s self, indices: &[usize]) -> Result<Scorer<'s, T>> {
        let (m, d) = (indices.len(), self.cols());
        let rows = self.x.gather(indices);
        let weights = gather_weights(self.weights, indices);
        let norms = row_sq_norms(MatRef::new(&rows, m, d)?);
        let kernel = self.engine.kernel();
        Ok(Box::new(move |centroids: &[T]| {
            let (mut labels, mut distances) = (vec![0u32; m], vec![T::zero(); m]);
            let centroids = MatRef::new(centroids, centroids.len() / d.max(1), d)?;
            kernel.assign(MatRef::new(&rows, m, d)?, &norms, centroids, &mut labels, &mut distances)?;
            Ok(weighted_sum(&distances, weights.as_deref()))
        }))
    }

    fn steps<'s>(
        &'s self,
        state: MiniBatchState<T>,
        reassignment_ratio: f64,
        spherical: bool,
    ) -> Result<Box<dyn MiniBatchSteps<T> + 's>> {
        self.engine.minibatch(self.x, self.weights, state, reassignment_ratio, spherical)
    }

    fn labels(&self, centroids: &[T], keep_going: KeepGoing<'_>) -> Result<(Vec<u32>, Vec<T>, f64)> {
        let (n, d) = (self.rows(), self.cols());
        let kernel = self.engine.kernel();
        let norms = kernel.row_sq_norms(self.x)?;
        let (mut labels, mut approx) = (vec![0u32; n], vec![T::zero(); n]);
        let centroids = MatRef::new(centroids, centroids.len() / d.max(1), d)?;
        assign_in_chunks(kernel, self.x, &norms, None, centroids, &mut labels, &mut approx, keep_going)?;
        let (distances, inertia) = kernel.labelled_sq_distances(self.x, self.weights, centroids, &labels)?;
        Ok((labels, distances, inertia))
    }
}

/// `rows.initial_centroids`, unit norm when `spherical`.
fn seeded_runs<T: Scalar>(
    rows: &dyn MiniBatchRows<T>,
    k: usize,
    init: Init<'_, T>,
    init_size: usize,
    spherical: bool,
    rngs: &mut [ChaCha8Rng],
    monitor: Monitor<'_>,
) -> Result<Vec<Vec<T>>> {
    let mut runs = rows.initial_centroids(k, init, init_size, rngs, monitor)?;
    if spherical {
        for centroids in &mut runs {
            normalize_rows(centroids, rows.cols());
        }
    }
    Ok(runs)
}

/// How the first `partial_fit` chooses its centroids.
pub struct Seeding {
    pub n_clusters: usize,
    pub batch_size: usize,
    pub init_size: Option<usize>,
    pub seed: u64,
    pub spherical: bool,
}

/// The centroids a first `partial_fit` starts from, chosen on `init_size` sampled rows.
pub fn first_centroids<T: Scalar>(
    rows: &dyn MiniBatchRows<T>,
    init: Init<'_, T>,
    seeding: &Seeding,
    monitor: Monitor<'_>,
) -> Result<Vec<T>> {
    let (n, k) = (rows.rows(), seeding.n_clusters);
    check_n_clusters(n, k)?;
    check_weights(rows.weights(), n)?;
    let init_size = resolve_init_size(seeding.init_size, seeding.batch_size.clamp(1, n), k, n);
    let mut rng = [ChaCha8Rng::seed_from_u64(seeding.seed)];
    let mut runs = seeded_runs(rows, k, init, init_size, seeding.spherical, &mut rng, monitor)?;
    Ok(runs.pop().expect("one run"))
}

/// The scalars of one `partial_fit` step.
pub struct PartialStep {
    pub n_since_last_reassign: usize,
    pub batch_size: usize,
    pub reassignment_ratio: f64,
    pub seed: u64,
    pub spherical: bool,
}

/// `partial_fit`'s one step over all of `rows`: the state after it, and how many centres
/// it reassigned.
pub fn partial_step<T: Scalar>(
    rows: &dyn MiniBatchRows<T>,
    state: MiniBatchState<T>,
    step: &PartialStep,
) -> Result<(MiniBatchState<T>, usize)> {
    check_weights(rows.weights(), rows.rows())?;
    let mut rng = ChaCha8Rng::seed_from_u64(step.seed);
    let mut steps = rows.steps(state, step.reassignment_ratio, step.spherical)?;
    let all: Vec<usize> = (0..rows.rows()).collect();
    let outcome = steps.step(&all, step.batch_size, &mut rng, false)?;
    Ok((steps.finish()?, outcome.reassigned))
}

/// A full mini-batch fit over `rows`.
pub fn fit<T: Scalar>(
    rows: &dyn MiniBatchRows<T>,
    params: &MiniBatchParams,
    init: Init<'_, T>,
    monitor: Monitor<'_>,
) -> Result<MiniBatchFit<T>> {
    let (n, k) = (rows.rows(), params.n_clusters);
    params.check(n)?;
    check_weights(rows.weights(), n)?;
    let batch_size = params.batch_size.min(n);
    let init_size = resolve_init_size(params.init_size, batch_size, k, n);
    let tol = if params.tol > 0.0 { params.tol * rows.mean_feature_variance()? } else { 0.0 };
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let started = std::time::Instant::now();

    // Validation sample on which the n_init candidates are compared.
    let validation = rows.scorer(&random_indices(&mut rng, n, init_size))?;

    // Each run draws its sample and seeds from a generator of its own, so that the runs can
    // seed at once on a device and still draw what they would one after the other.
    let mut rngs: Vec<ChaCha8Rng> =
        (0..params.n_init).map(|_| ChaCha8Rng::seed_from_u64(rng.random::<u64>())).collect();
    let runs = seeded_runs(rows, k, init, init_size, params.spherical, &mut rngs, monitor)?;
    let mut best: Option<(f64, Vec<T>)> = None;
    for (run, centroids) in runs.into_iter().enumerate() {
        let inertia = validation(&centroids)?;
        log::debug!("init {run}: validation inertia {inertia:.6e}, {:.1} ms since the start", ms(started));
        report(monitor, Progress { stage: Stage::Candidate, iteration: 0, run, inertia, center_shift: f64::NAN })?;
        if best.as_ref().is_none_or(|(b, _)| inertia < *b) {
            best = Some((inertia, centroids));
        }
    }
    drop(validation);
    let state = MiniBatchState::new(best.expect("n_init >= 1 was checked").1, k);
    let mut steps = rows.steps(state, params.reassignment_ratio, params.spherical)?;

    let n_steps = ((params.max_iter as u128 * n as u128) / batch_size as u128).max(1) as usize;
    let mut ewa_inertia: Option<f64> = None;
    let mut ewa_min: Option<f64> = None;
    let mut no_improvement = 0usize;
    let mut history = Vec::new();
    let mut steps_done = 0;
    for step in 1..=n_steps {
        steps_done = step;
        let batch_idx = random_indices(&mut rng, n, batch_size);
        let StepOutcome { inertia, shift, reassigned } = steps.step(&batch_idx, batch_size, &mut rng, tol > 0.0)?;
        if reassigned > 0 {
            let moved = Progress {
                stage: Stage::Reassigned(reassigned),
                iteration: step,
                run: 0,
                inertia,
                center_shift: shift,
            };
            report(monitor, moved)?;
        }
        let batch_inertia = inertia / batch_size as f64;
        history.push(batch_inertia);
        report(
            monitor,
            Progress { stage: Stage::Iteration, iteration: step, run: 0, inertia: batch_inertia, center_shift: shift },
        )?;
        // The first step's inertia reflects the initialisation only.
        if step == 1 {
            continue;
        }
        let alpha = (batch_size as f64 * 2.0 / (n as f64 + 1.0)).min(1.0);
        let ewa = ewa_inertia.map_or(batch_inertia, |e| e * (1.0 - alpha) + batch_inertia * alpha);
        ewa_inertia = Some(ewa);
        if tol > 0.0 && shift <= tol {
            log::debug!("converged (small centre change) at step {step}/{n_steps}");
            report(monitor, Progress::converged(Convergence::Tolerance, step, 0, shift))?;
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
            report(monitor, Progress::converged(Convergence::NoImprovement, step, 0, shift))?;
            break;
        }
    }
    let state = steps.finish()?;
    log::debug!("{steps_done} steps done, {:.1} ms since the start", ms(started));
    let n_iter = (steps_done * batch_size).div_ceil(n);
    let (labels, distances, inertia) = if params.compute_labels {
        let (labels, distances, inertia) =
            rows.labels(&state.centroids, &mut || monitor(&Progress::block(steps_done, 0)))?;
        (Some(labels), Some(distances), inertia)
    } else {
        let mean = ewa_inertia.unwrap_or_else(|| history.last().copied().unwrap_or(0.0));
        (None, None, mean * n as f64)
    };
    log::debug!("labels and inertia done, {:.1} ms since the start", ms(started));
    Ok(MiniBatchFit {
        state,
        labels,
        distances,
        inertia,
        n_steps: steps_done,
        n_iter,
        batch_size,
        init_size,
        inertia_history: history,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_size_rule() {
        assert_eq!(resolve_init_size(None, 1024, 500, 100_000), 3072);
        assert_eq!(resolve_init_size(None, 100, 500, 100_000), 1500);
        assert_eq!(resolve_init_size(Some(10), 100, 50, 100_000), 150);
        assert_eq!(resolve_init_size(None, 1024, 500, 2000), 2000);
    }
}
