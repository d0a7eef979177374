//! The Lloyd loop, written once for every kernel and float type, and `n_init` restarts.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::bounds::Bounds;
use crate::error::{invalid, Error, Result};
use crate::init::{initial_centroids, Init};
use crate::kernel::{assign_accumulate_in_chunks, assign_in_chunks, ClusterSums, Kernel};
use crate::matrix::{exact_sq_distance, weighted_sum, MatRef};
use crate::scalar::Scalar;

/// Which phase of a fit a [`Progress`] report comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Choosing initial centroids (k-means++ steps).
    Init,
    /// A Lloyd iteration or a mini-batch step.
    Iteration,
    /// Between chunks of rows inside one pass over the data (a chance to stop, nothing to report).
    Block,
}

/// What the loop reports during a fit; the monitor returns `false` to stop it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub stage: Stage,
    /// 1-based iteration (or k-means++ step) number within the current run.
    pub iteration: usize,
    /// Which of the `n_init` runs this is (0-based).
    pub run: usize,
    /// Weighted inertia of the assignment made in this iteration (before the update).
    pub inertia: f64,
    /// Sum over centroids of the squared distance each one moved.
    pub center_shift: f64,
}

/// A callback between iterations: progress display, Ctrl-C checks. `false` stops the fit.
pub type Monitor<'a> = &'a mut dyn FnMut(&Progress) -> bool;

/// Parameters of a full k-means fit.
#[derive(Debug, Clone)]
pub struct KMeansParams<T> {
    pub n_clusters: usize,
    pub init: Init<T>,
    pub n_init: usize,
    pub max_iter: usize,
    /// Relative tolerance: the fit stops when the squared centre shift falls below
    /// `tol × mean feature variance` (scikit-learn's convention).
    pub tol: f64,
    pub seed: u64,
    /// Keep centroids at unit norm (for cosine similarity on normalised data).
    pub spherical: bool,
    /// Skip distance computations that bounds prove useless, where the kernel gains from it
    /// (same labels as dense passes, see [`crate::bounds`]).
    pub prune: bool,
}

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
/// inertia. Usable on its own, e.g. per partition of a distributed dataset.
pub struct Step<T> {
    pub labels: Vec<u32>,
    pub distances: Vec<T>,
    pub sums: ClusterSums,
    pub inertia: f64,
}

pub fn lloyd_step<T: Scalar, K: Kernel<T> + ?Sized>(
    kernel: &K,
    x: MatRef<'_, T>,
    x_sq_norms: &[T],
    weights: Option<&[T]>,
    centroids: MatRef<'_, T>,
) -> Step<T> {
    let n = x.rows();
    let mut labels = vec![0u32; n];
    let mut distances = vec![T::zero(); n];
    let sums = kernel.assign_accumulate(x, x_sq_norms, weights, centroids, &mut labels, &mut distances);
    let inertia = weighted_sum(&distances, weights);
    Step { labels, distances, sums, inertia }
}

/// `k` must lie in `1..=n`.
pub fn check_n_clusters(n: usize, k: usize) -> Result<()> {
    if k == 0 {
        return invalid("n_clusters must be at least 1");
    }
    if k > n {
        return invalid(format!("n_samples={n} should be >= n_clusters={k}"));
    }
    Ok(())
}

pub fn check_weights<T: Scalar>(weights: Option<&[T]>, n: usize) -> Result<()> {
    if let Some(w) = weights {
        if w.len() != n {
            return invalid(format!("sample_weight has {} entries; expected {n}", w.len()));
        }
        if w.iter().any(|&v| !(v >= T::zero()) || !v.is_finite()) {
            return invalid("sample_weight must be finite and non-negative");
        }
        if !(w.iter().map(|v| v.as_f64()).sum::<f64>() > 0.0) {
            return invalid("sample_weight sums to zero");
        }
    }
    Ok(())
}

/// Runs `n_init` initialisations, each followed by Lloyd iterations; keeps the lowest inertia.
pub fn fit<T: Scalar, K: Kernel<T> + ?Sized>(
    kernel: &K,
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    params: &KMeansParams<T>,
    monitor: Monitor<'_>,
) -> Result<KMeansFit<T>> {
    let (n, k) = (x.rows(), params.n_clusters);
    check_n_clusters(n, k)?;
    if params.max_iter == 0 || params.n_init == 0 {
        return invalid("max_iter and n_init must be at least 1");
    }
    if !(params.tol >= 0.0) {
        return invalid("tol must be non-negative");
    }
    check_weights(weights, n)?;
    let x_sq_norms = kernel.row_sq_norms(x);
    let tol = if params.tol > 0.0 { params.tol * kernel.mean_feature_variance(x) } else { 0.0 };
    let mut seeds = ChaCha8Rng::seed_from_u64(params.seed);
    let mut best: Option<KMeansFit<T>> = None;
    for run in 0..params.n_init {
        let mut rng = ChaCha8Rng::seed_from_u64(seeds.random::<u64>());
        let mut centroids =
            initial_centroids(kernel, x, &x_sq_norms, weights, k, &params.init, &mut rng, run, monitor)?;
        if params.spherical {
            normalize_rows(&mut centroids, x.cols());
        }
        let result = lloyd(kernel, x, &x_sq_norms, weights, centroids, params, tol, run, monitor)?;
        log::debug!("run {run}: inertia {:.6e} after {} iterations", result.inertia, result.n_iter);
        if best.as_ref().is_none_or(|b| result.inertia < b.inertia) {
            best = Some(result);
        }
    }
    Ok(best.expect("n_init >= 1"))
}

/// Lloyd iterations from the given centroids (`params.max_iter`, `spherical`, `prune`), with
/// scikit-learn's stopping rules: stop when labels no longer change (strict convergence) or
/// the squared centre shift is `<= tol` (absolute).
#[allow(clippy::too_many_arguments)]
pub fn lloyd<T: Scalar, K: Kernel<T> + ?Sized>(
    kernel: &K,
    x: MatRef<'_, T>,
    x_sq_norms: &[T],
    weights: Option<&[T]>,
    mut centroids: Vec<T>,
    params: &KMeansParams<T>,
    tol: f64,
    run: usize,
    monitor: Monitor<'_>,
) -> Result<KMeansFit<T>> {
    let (n, d) = (x.rows(), x.cols());
    let k = centroids.len() / d;
    let (max_iter, spherical) = (params.max_iter, params.spherical);
    // Bounds pay off once there are several centroids and rows to spare per centroid.
    let mut bounds = (params.prune && kernel.on_host() && k > 1 && n >= 4 * k).then(|| Bounds::new(n));
    let mut labels = vec![0u32; n];
    let mut labels_old = vec![u32::MAX; n];
    let mut distances = vec![T::zero(); n];
    let mut strict_convergence = false;
    let mut n_iter = 0;
    let mut history = Vec::new();
    // A kernel with device state runs whole iterations there; scalars cross per iteration.
    let mut device = if bounds.is_none() { kernel.device_lloyd(x, weights, &centroids, spherical) } else { None };
    let started = std::time::Instant::now();
    for iteration in 1..=max_iter {
        n_iter = iteration;
        let (inertia, center_shift, labels_changed) = if let Some(device) = device.as_mut() {
            let step = device.step();
            if step.empty_clusters == 0 {
                (step.inertia, step.center_shift, step.labels_changed)
            } else {
                // Rare: repair on the host, as below, and continue from there.
                let (mut sums, current) = (device.sums(), device.centroids());
                device.assignment(&mut labels, &mut distances);
                relocate_empty_clusters(x, weights, &labels, &current, &mut sums);
                let updated = average(&sums, &current, d, spherical);
                device.set_centroids(&updated);
                (step.inertia, squared_shift(&updated, &current), step.labels_changed)
            }
        } else {
            let current = MatRef::new(&centroids, k, d)?;
            let block = Progress { stage: Stage::Block, iteration, run, inertia: f64::NAN, center_shift: f64::NAN };
            let dense = bounds.as_mut().is_none_or(|b| b.dense_now());
            let bounded = if dense { None } else { bounds.as_mut() };
            let mut sums = match bounded {
                Some(bounds) => {
                    let searched = bounds
                        .assign(kernel, x, x_sq_norms, current, &mut labels, &mut distances, &mut || monitor(&block))
                        .ok_or(Error::Interrupted)?;
                    log::debug!("iteration {iteration}: {searched} of {n} rows searched all centroids");
                    kernel.accumulate(x, weights, &labels, k)
                }
                None => assign_accumulate_in_chunks(kernel, x, x_sq_norms, weights, current, &mut labels, &mut distances, &mut || monitor(&block))
                    .ok_or(Error::Interrupted)?,
            };
            relocate_empty_clusters(x, weights, &labels, &centroids, &mut sums);
            let updated = average(&sums, &centroids, d, spherical);
            let center_shift = squared_shift(&updated, &centroids);
            if let Some(bounds) = bounds.as_mut() {
                bounds.moved(&centroids, &updated, d, &labels);
            }
            centroids = updated;
            let changed = labels != labels_old;
            labels_old.copy_from_slice(&labels);
            (weighted_sum(&distances, weights), center_shift, changed)
        };
        history.push(inertia);
        log::debug!("iteration {iteration}: inertia {inertia:.6e}, {:.1} ms since the first", started.elapsed().as_secs_f64() * 1e3);
        if !monitor(&Progress { stage: Stage::Iteration, iteration, run, inertia, center_shift }) {
            return Err(Error::Interrupted);
        }
        if !labels_changed {
            strict_convergence = true;
            log::debug!("converged at iteration {iteration}: strict convergence");
            break;
        }
        if center_shift <= tol {
            log::debug!("converged at iteration {iteration}: center shift {center_shift:.3e} within tolerance {tol:.3e}");
            break;
        }
    }
    let mut exact = false;
    if let Some(device) = device {
        centroids = device.centroids();
        exact = device.exact_assignment(&mut labels, &mut distances);
        if strict_convergence && !exact {
            device.assignment(&mut labels, &mut distances);
        }
    }
    let final_centroids = MatRef::new(&centroids, k, d)?;
    if !strict_convergence && !exact {
        // One more assignment so the labels match the returned centroids.
        let block = Progress { stage: Stage::Block, iteration: n_iter, run, inertia: f64::NAN, center_shift: f64::NAN };
        let keep_going = &mut || monitor(&block);
        let done = match bounds.as_mut().filter(|b| b.valid()) {
            Some(bounds) => bounds.assign(kernel, x, x_sq_norms, final_centroids, &mut labels, &mut distances, keep_going).is_some(),
            None => assign_in_chunks(kernel, x, x_sq_norms, final_centroids, &mut labels, &mut distances, keep_going),
        };
        if !done {
            return Err(Error::Interrupted);
        }
    }
    let (distances, inertia) = if exact {
        let inertia = weighted_sum(&distances, weights);
        (distances, inertia)
    } else {
        kernel.labelled_sq_distances(x, weights, final_centroids, &labels)
    };
    log::debug!("{n_iter} iterations and final labels in {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
    Ok(KMeansFit { centroids, labels, distances, inertia, n_iter, inertia_history: history })
}

/// Sum over centroids of the squared distance each one moved.
fn squared_shift<T: Scalar>(updated: &[T], previous: &[T]) -> f64 {
    updated.iter().zip(previous).map(|(&a, &b)| (a.as_f64() - b.as_f64()).powi(2)).sum()
}

/// Divides each cluster's sum by its weight; a cluster with no weight keeps its centroid.
fn average<T: Scalar>(sums: &ClusterSums, previous: &[T], d: usize, spherical: bool) -> Vec<T> {
    let mut out = previous.to_vec();
    for (j, &w) in sums.weights.iter().enumerate() {
        if w > 0.0 {
            for (o, &s) in out[j * d..(j + 1) * d].iter_mut().zip(&sums.sums[j * d..(j + 1) * d]) {
                *o = T::of_f64(s / w);
            }
        }
    }
    if spherical {
        normalize_rows(&mut out, d);
    }
    out
}

/// Scales every row to unit Euclidean norm (zero rows stay zero).
pub fn normalize_rows<T: Scalar>(values: &mut [T], d: usize) {
    for row in values.chunks_exact_mut(d) {
        let norm = row.iter().map(|v| v.as_f64().powi(2)).sum::<f64>().sqrt();
        if norm > 0.0 {
            for v in row {
                *v = T::of_f64(v.as_f64() / norm);
            }
        }
    }
}

/// Empty-cluster repair (scikit-learn's policy): each cluster with no weight takes over the
/// positive-weight row that lies farthest from its current centroid (farthest first, ties by
/// lowest row index); that row's sums move from its old cluster to the empty one. Labels are
/// left as they are; the next assignment settles them. Distances are measured exactly (by
/// differences, in float64) against `centroids`, the centroids that gave `labels`, so every
/// backend ranks the rows alike: the expanded form would misorder rows by cancellation.
pub(crate) fn relocate_empty_clusters<T: Scalar>(
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    labels: &[u32],
    centroids: &[T],
    sums: &mut ClusterSums,
) -> usize {
    let empty: Vec<usize> = (0..sums.weights.len()).filter(|&j| !(sums.weights[j] > 0.0)).collect();
    if empty.is_empty() {
        return 0;
    }
    let d = x.cols();
    // The `wanted` farthest positive-weight rows, farthest first, in one parallel pass that
    // keeps a short list per task (no per-row buffer: the data may be huge).
    let wanted = empty.len();
    let farther = |a: &(f64, usize), b: &(f64, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    let keep = |mut top: Vec<(f64, usize)>, item: (f64, usize)| {
        if top.len() < wanted || farther(&item, top.last().expect("full list")).is_lt() {
            let at = top.partition_point(|t| farther(t, &item).is_lt());
            top.insert(at, item);
            top.truncate(wanted);
        }
        top
    };
    let candidates: Vec<usize> = (0..x.rows())
        .into_par_iter()
        .filter(|&i| weights.is_none_or(|w| w[i] > T::zero()))
        .map(|i| (exact_sq_distance(x.row(i), &centroids[labels[i] as usize * d..(labels[i] as usize + 1) * d]), i))
        .fold(Vec::new, keep)
        .reduce(Vec::new, |a, b| b.into_iter().fold(a, keep))
        .into_iter()
        .map(|(_, i)| i)
        .collect();
    let take = candidates.len();
    if take == 0 {
        return 0;
    }
    for (&cluster, &i) in empty.iter().zip(&candidates) {
        let w = weights.map_or(1.0, |w| w[i].as_f64());
        let old = labels[i] as usize;
        let row = x.row(i);
        for (p, &v) in row.iter().enumerate() {
            sums.sums[old * d + p] -= v.as_f64() * w;
            sums.sums[cluster * d + p] = v.as_f64() * w;
        }
        let before = sums.weights[old];
        sums.weights[old] -= w;
        // Cancellation can leave a sliver of weight behind: treat it as empty.
        if sums.weights[old] <= 1e-12 * before {
            sums.weights[old] = 0.0;
        }
        sums.weights[cluster] = w;
    }
    log::debug!("relocated {take} empty cluster(s) to the farthest points");
    take
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::cpu::CpuKernel;
    use approx::assert_relative_eq;
    use rand::{RngExt, SeedableRng};

    /// `centres.len()` well separated blobs of `per` points each in 2-D.
    fn blobs(centres: &[[f64; 2]], per: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = Vec::new();
        for c in centres {
            for _ in 0..per {
                x.push(c[0] + rng.random::<f64>() - 0.5);
                x.push(c[1] + rng.random::<f64>() - 0.5);
            }
        }
        x
    }

    fn params(k: usize, init: Init<f64>) -> KMeansParams<f64> {
        KMeansParams { n_clusters: k, init, n_init: 1, max_iter: 100, tol: 0.0, seed: 7, spherical: false, prune: true }
    }

    #[test]
    fn recovers_blob_means_with_kmeanspp() {
        let centres = [[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]];
        let x = blobs(&centres, 50, 1);
        let xm = MatRef::new(&x, 150, 2).unwrap();
        let fit = fit(&CpuKernel, xm, None, &params(3, Init::KMeansPlusPlus), &mut |_| true).unwrap();
        for (b, _) in centres.iter().enumerate() {
            // Every blob is one cluster, and its centroid is the blob's mean.
            let label = fit.labels[b * 50];
            assert!(fit.labels[b * 50..(b + 1) * 50].iter().all(|&l| l == label));
            for p in 0..2 {
                let mean: f64 = (b * 50..(b + 1) * 50).map(|i| x[i * 2 + p]).sum::<f64>() / 50.0;
                assert_relative_eq!(fit.centroids[label as usize * 2 + p], mean, max_relative = 1e-12);
            }
        }
        let recomputed: f64 = fit.distances.iter().sum();
        assert_relative_eq!(fit.inertia, recomputed, max_relative = 1e-12);
    }

    #[test]
    fn empty_cluster_takes_the_farthest_point() {
        let x = vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 10.0, 10.0];
        let xm = MatRef::new(&x, 4, 2).unwrap();
        // The second centroid is far from every row: it starts empty.
        let init = Init::Given(vec![0.0, 0.0, 1000.0, 1000.0]);
        let fit = fit(&CpuKernel, xm, None, &params(2, init), &mut |_| true).unwrap();
        assert_eq!(fit.labels, vec![0, 0, 0, 1]);
        assert_relative_eq!(fit.centroids[2], 10.0);
        assert_relative_eq!(fit.centroids[0], 1.0 / 3.0, max_relative = 1e-12);
    }

    #[test]
    fn bit_identical_at_one_and_two_threads() {
        let centres: Vec<[f64; 2]> = (0..20).map(|i| [i as f64 * 3.0, (i % 4) as f64 * 3.0]).collect();
        let x = blobs(&centres, 700, 2);
        let xm = MatRef::new(&x, 14000, 2).unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| fit(&CpuKernel, xm, None, &params(20, Init::KMeansPlusPlus), &mut |_| true).unwrap())
        };
        let (one, two) = (run(1), run(2));
        assert_eq!(one.labels, two.labels);
        assert_eq!(one.centroids, two.centroids);
        assert_eq!(one.inertia.to_bits(), two.inertia.to_bits());
    }

    /// Bounds skip searches but change no result: overlapping blobs in 8-D, where labels
    /// keep moving for many iterations, fit with and without them from the same seeds.
    #[test]
    fn bounds_give_the_dense_result() {
        let (n, d) = (6000, 8);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let means: Vec<f64> = (0..40 * d).map(|_| rng.random::<f64>() * 6.0).collect();
        let x: Vec<f64> = (0..n)
            .flat_map(|i| (0..d).map(move |p| (i, p)).collect::<Vec<_>>())
            .map(|(i, p)| means[(i % 40) * d + p] + rng.random::<f64>() * 2.0 - 1.0)
            .collect();
        let xm = MatRef::new(&x, n, d).unwrap();
        for seed in 0..3 {
            let mut p = params(50, Init::KMeansPlusPlus);
            p.seed = seed;
            let pruned = fit(&CpuKernel, xm, None, &p, &mut |_| true).unwrap();
            p.prune = false;
            let dense = fit(&CpuKernel, xm, None, &p, &mut |_| true).unwrap();
            assert!(dense.n_iter > 5, "the fit should take several iterations");
            assert_eq!(pruned.labels, dense.labels);
            assert_eq!(pruned.n_iter, dense.n_iter);
            for (a, b) in pruned.centroids.iter().zip(&dense.centroids) {
                assert_relative_eq!(a, b, max_relative = 1e-12, epsilon = 1e-12);
            }
            assert_relative_eq!(pruned.inertia, dense.inertia, max_relative = 1e-12);
        }
    }

    #[test]
    fn monitor_can_stop_the_fit() {
        let x = blobs(&[[0.0, 0.0], [5.0, 5.0]], 20, 3);
        let xm = MatRef::new(&x, 40, 2).unwrap();
        let result = fit(&CpuKernel, xm, None, &params(2, Init::Random), &mut |_| false);
        assert_eq!(result.unwrap_err(), Error::Interrupted);
    }

    #[test]
    fn bad_arguments_are_errors_not_panics() {
        let x = vec![0.0; 8];
        let xm = MatRef::new(&x, 4, 2).unwrap();
        assert!(fit(&CpuKernel, xm, None, &params(5, Init::KMeansPlusPlus), &mut |_| true).is_err());
        assert!(fit(&CpuKernel, xm, None, &params(2, Init::Given(vec![0.0; 3])), &mut |_| true).is_err());
        assert!(fit(&CpuKernel, xm, Some(&[1.0, -1.0, 1.0, 1.0]), &params(2, Init::Random), &mut |_| true).is_err());
        assert!(MatRef::new(&x, 3, 2).is_err());
    }
}
