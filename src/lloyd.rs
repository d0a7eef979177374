//! The Lloyd loop, written once for every backend and float type, and `n_init` restarts.
//! Where each iteration runs is the engine's strategy (`crate::strategy`), chosen once per
//! run; the loop only counts iterations, reports progress and applies the stopping rules.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::init::{initial_centroids_of_runs, Init};
use crate::kernel::{assign_accumulate_in_chunks, ClusterSums, Kernel};
use crate::matrix::{normalize_rows, weighted_sum, MatRef, Points};
use crate::monitor::{report, Convergence, KeepGoing, Monitor, Progress, Stage};
use crate::params::{check_weights, KMeansParams};
use crate::scalar::Scalar;
use crate::strategy::{Engine, LloydStep};

/// The outcome of a fit: the best of the `n_init` runs.
#[derive(Debug, Clone)]
pub struct KMeansFit<T> {
    /// `k × d`, row-major.
    pub centroids: Vec<T>,
    pub labels: Vec<u32>,
    /// Squared distance from each row to its centroid.
    pub distances: Vec<T>,
    /// Weighted sum of `distances`, in f64.
    pub inertia: f64,
    pub n_iter: usize,
    /// Inertia of each iteration of the returned run.
    pub inertia_history: Vec<f64>,
}

/// One Lloyd step on a block of rows: labels, distances, per-cluster sums and the block's
/// inertia. Usable on its own: each chunk's pass of a fit over chunks (`bindings::chunks`).
pub struct Step<T> {
    pub labels: Vec<u32>,
    pub distances: Vec<T>,
    pub sums: ClusterSums,
    pub inertia: f64,
}

pub fn lloyd_step<T: Scalar, K: Kernel<T> + ?Sized>(
    kernel: &K,
    points: Points<'_, T>,
    centroids: MatRef<'_, T>,
    keep_going: KeepGoing<'_>,
) -> Result<Step<T>> {
    let n = points.rows();
    let mut labels = vec![0u32; n];
    let mut distances = vec![T::zero(); n];
    let sums = assign_accumulate_in_chunks(kernel, points, centroids, &mut labels, &mut distances, keep_going)?;
    let inertia = weighted_sum(&distances, points.weights);
    Ok(Step { labels, distances, sums, inertia })
}

/// Runs `n_init` initialisations, each followed by Lloyd iterations; keeps the lowest inertia.
pub fn fit<T: Scalar>(
    engine: &dyn Engine<T>,
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    params: &KMeansParams,
    init: Init<'_, T>,
    monitor: Monitor<'_>,
) -> Result<KMeansFit<T>> {
    let n = x.rows();
    params.check(n)?;
    check_weights(weights, n)?;
    let kernel = engine.kernel();
    let x_sq_norms = kernel.row_sq_norms(x)?;
    let points = Points { x, x_sq_norms: &x_sq_norms, weights };
    let tol = if params.tol > 0.0 { params.tol * kernel.mean_feature_variance(x)? } else { 0.0 };
    // Every run's initial centroids first: k-means++ runs seed in lockstep, reading the rows
    // once a step for all of them. Each run draws from its own generator as it would alone.
    let mut rngs = run_generators(params);
    let seeding = std::time::Instant::now();
    let samples = vec![points; params.n_init];
    let mut initial =
        initial_centroids_of_runs(engine, &samples, params.n_clusters, init, &mut rngs, 0, &mut *monitor)?;
    log::debug!("initial centroids of {} runs in {:.1} ms", params.n_init, seeding.elapsed().as_secs_f64() * 1e3);
    best_of(params.n_init, |run| {
        let mut centroids = std::mem::take(&mut initial[run]);
        if params.spherical {
            normalize_rows(&mut centroids, x.cols());
        }
        let steps = engine.lloyd(points, centroids, params)?;
        lloyd(steps, params.max_iter, || Ok(tol), run, &mut *monitor)
    })
}

/// Each of the `params.n_init` runs' generator, drawn from the seed.
pub fn run_generators(params: &KMeansParams) -> Vec<ChaCha8Rng> {
    let mut seeds = ChaCha8Rng::seed_from_u64(params.seed);
    (0..params.n_init).map(|_| ChaCha8Rng::seed_from_u64(seeds.random::<u64>())).collect()
}

/// `params.n_init` runs, each with its own generator (drawn from the seed), by `run`; keeps
/// the one with the lowest inertia (the first of equals).
pub fn best_of_runs<T>(
    params: &KMeansParams,
    mut run: impl FnMut(usize, &mut ChaCha8Rng) -> Result<KMeansFit<T>>,
) -> Result<KMeansFit<T>> {
    let mut rngs = run_generators(params);
    best_of(params.n_init, |index| run(index, &mut rngs[index]))
}

/// Runs `0..n_runs` by `run`; keeps the one with the lowest inertia (the first of equals).
fn best_of<T>(n_runs: usize, mut run: impl FnMut(usize) -> Result<KMeansFit<T>>) -> Result<KMeansFit<T>> {
    let mut best: Option<KMeansFit<T>> = None;
    for index in 0..n_runs {
        let result = run(index)?;
        log::debug!("run {index}: inertia {:.6e} after {} iterations", result.inertia, result.n_iter);
        if best.as_ref().is_none_or(|b| result.inertia < b.inertia) {
            best = Some(result);
        }
    }
    Ok(best.expect("n_init >= 1 was checked"))
}

/// Lloyd iterations by `steps`, with scikit-learn's stopping rules: stop when labels no
/// longer change (strict convergence) or the squared centre shift is `<= tol` (absolute).
/// `tol` is asked for once, after the first step: a fit over chunks learns the feature
/// variance it is relative to in its first pass over the data.
pub fn lloyd<T: Scalar>(
    mut steps: Box<dyn LloydStep<T> + '_>,
    max_iter: usize,
    tol: impl FnOnce() -> Result<f64>,
    run: usize,
    monitor: Monitor<'_>,
) -> Result<KMeansFit<T>> {
    let started = std::time::Instant::now();
    let (mut n_iter, mut strict_convergence, mut history) = (0, false, Vec::new());
    let (mut tol, mut absolute_tol) = (Some(tol), 0.0);
    for iteration in 1..=max_iter {
        n_iter = iteration;
        let step = steps.step(&mut || monitor(&Progress::block(iteration, run)))?;
        if let Some(tol) = tol.take() {
            absolute_tol = tol()?;
        }
        let tol = absolute_tol;
        history.push(step.inertia);
        log::debug!(
            "iteration {iteration}: inertia {:.6e}, {:.1} ms since the first",
            step.inertia,
            started.elapsed().as_secs_f64() * 1e3
        );
        let progress = Progress {
            stage: Stage::Iteration,
            iteration,
            run,
            inertia: step.inertia,
            center_shift: step.center_shift,
        };
        report(monitor, progress)?;
        if !step.labels_changed {
            strict_convergence = true;
            log::debug!("converged at iteration {iteration}: strict convergence");
            report(monitor, Progress::converged(Convergence::Strict, iteration, run, step.center_shift))?;
            break;
        }
        if step.center_shift <= tol {
            log::debug!(
                "converged at iteration {iteration}: center shift {:.3e} within tolerance {tol:.3e}",
                step.center_shift
            );
            report(monitor, Progress::converged(Convergence::Tolerance, iteration, run, step.center_shift))?;
            break;
        }
    }
    let last = steps.finish(strict_convergence, &mut || monitor(&Progress::block(n_iter, run)))?;
    log::debug!("{n_iter} iterations and final labels in {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
    Ok(KMeansFit {
        centroids: last.centroids,
        labels: last.labels,
        distances: last.distances,
        inertia: last.inertia,
        n_iter,
        inertia_history: history,
    })
}

#[cfg(test)]
mod tests;
