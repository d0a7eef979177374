//! The kernels the k-means loop is written against. A backend provides a [`Kernel`];
//! everything else (initialisation, the Lloyd loop, mini-batch steps) is shared.

pub mod cpu;
#[cfg(all(feature = "mlx", any(target_os = "linux", target_os = "macos")))]
pub mod mlx;

use rayon::prelude::*;

use crate::matrix::{weight_at, MatRef, REDUCE_CHUNK};
use crate::scalar::Scalar;

/// The two operations whose cost grows with n·k·d.
pub trait Kernel<T: Scalar>: Sync {
    /// Short name for logs and results ("cpu", "mlx", ...).
    fn name(&self) -> &'static str;

    /// For every row of `x`, the index of its nearest centroid and the squared distance
    /// to it (ties go to the lowest index). `x_sq_norms` are the rows' squared norms.
    fn assign(
        &self,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
    );

    /// Squared norm of every row of `x`. A kernel that holds `x` on a device computes them
    /// there, so that the host never reads (and, in managed memory, migrates) the data.
    fn row_sq_norms(&self, x: MatRef<'_, T>) -> Vec<T> {
        crate::matrix::row_sq_norms(x)
    }

    /// Mean over features of the per-feature variance (scales `tol`); see `row_sq_norms`.
    fn mean_feature_variance(&self, x: MatRef<'_, T>) -> f64 {
        crate::matrix::mean_feature_variance(x)
    }

    /// Exact squared distance from each row to its labelled centroid and the weighted total
    /// (the reported inertia); see `row_sq_norms`.
    fn labelled_sq_distances(
        &self,
        x: MatRef<'_, T>,
        weights: Option<&[T]>,
        centroids: MatRef<'_, T>,
        labels: &[u32],
    ) -> (Vec<T>, f64) {
        labelled_sq_distances(x, weights, centroids, labels)
    }

    /// Whole Lloyd iterations on the kernel's device for the data `x`, starting from
    /// `centroids` (`k × d`): centroids, labels and distances stay there and each iteration
    /// reports scalars only. `None` (the default) when the kernel has no such device state.
    fn device_lloyd<'s>(
        &'s self,
        _x: MatRef<'_, T>,
        _weights: Option<&[T]>,
        _centroids: &[T],
        _spherical: bool,
    ) -> Option<Box<dyn DeviceLloyd<T> + 's>> {
        None
    }

    /// Whether this kernel computes on the host CPU, where a call costs little: the Lloyd
    /// loop then skips rows whose bounds prove they keep their centroid (`crate::bounds`),
    /// and k-means++ fuses each block's candidate distances with their sums. A device that
    /// computes every distance in one dense pass gains from neither.
    fn on_host(&self) -> bool {
        false
    }

    /// [`assign`](Kernel::assign), plus each row's squared distance to its second-nearest
    /// centroid in `second` (infinite when there is one centroid).
    fn assign_top2(
        &self,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        second: &mut [T],
    ) {
        let k = centroids.rows();
        let mut all = vec![T::zero(); x.rows().min(4096) * k];
        for (c, start) in (0..x.rows()).step_by(4096).enumerate() {
            let end = (start + 4096).min(x.rows());
            let block = &mut all[..(end - start) * k];
            self.pairwise(x.slice_rows(start, end), &x_sq_norms[start..end], centroids, block);
            for (r, row) in block.chunks_exact(k).enumerate() {
                let i = c * 4096 + r;
                let (mut best, mut runner_up, mut label) = (T::infinity(), T::infinity(), 0u32);
                for (j, &v) in row.iter().enumerate() {
                    if v < best {
                        (runner_up, best, label) = (best, v, j as u32);
                    } else if v < runner_up {
                        runner_up = v;
                    }
                }
                (labels[i], distances[i], second[i]) = (label, best, runner_up);
            }
        }
    }

    /// Squared distances from every row of `x` to every row of `centroids`,
    /// written row-major into `out` (`x.rows() × centroids.rows()`), clamped at zero.
    fn pairwise(&self, x: MatRef<'_, T>, x_sq_norms: &[T], centroids: MatRef<'_, T>, out: &mut [T]);

    /// Per-cluster weighted sums (`k × d`, f64) and total weights of the rows in each cluster.
    /// The default sums each cluster's rows in row order, so the result does not depend on
    /// the number of threads.
    fn accumulate(
        &self,
        x: MatRef<'_, T>,
        weights: Option<&[T]>,
        labels: &[u32],
        k: usize,
    ) -> ClusterSums {
        accumulate_by_cluster(x, weights, labels, k)
    }

    /// Rows per kernel call when a pass over the data is split so that Ctrl-C is noticed
    /// within a fraction of a second (see [`rows_per_check`]); a faster device takes more.
    fn rows_per_check(&self, k: usize, d: usize) -> usize {
        rows_per_check(k, d)
    }

    /// One step's kernel work: [`assign`](Kernel::assign) into `labels` and `distances`, then
    /// [`accumulate`](Kernel::accumulate) by those labels. A backend that holds the data on a
    /// device overrides it to do both in one pass, with one round trip.
    fn assign_accumulate(
        &self,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        weights: Option<&[T]>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
    ) -> ClusterSums {
        self.assign(x, x_sq_norms, centroids, labels, distances);
        self.accumulate(x, weights, labels, centroids.rows())
    }
}

/// What one device-resident Lloyd iteration reports to the loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceStep {
    /// Weighted inertia of the assignment made in this iteration (before the update).
    pub inertia: f64,
    /// Whether any label differs from the previous iteration's (true on the first).
    pub labels_changed: bool,
    /// Squared distance the centroids moved, summed (NaN when `empty_clusters > 0`).
    pub center_shift: f64,
    /// Clusters left without weight: the centroids were then not moved; the loop repairs
    /// them on the host and hands the result back through [`DeviceLloyd::set_centroids`].
    pub empty_clusters: usize,
}

/// Lloyd state held on a device (see [`Kernel::device_lloyd`]).
/// A bound on the rounding error of a partial distance `‖c‖² − 2x·c` computed in `T` over
/// `d` features (a GEMM in any summation order, then the norms), relative to
/// `‖x‖² + 2 max ‖c‖²`: the dot product errs by at most `d·u·Σ|x_i c_i|` with
/// `Σ|x_i c_i| ≤ (‖x‖² + ‖c‖²) / 2`, the norm by `d·u·‖c‖²`, and a few roundings follow
/// (`u` is the unit roundoff). Rows whose two best partial distances are closer than this are
/// decided again exactly.
pub fn partial_error_bound<T: Scalar>(d: usize) -> f64 {
    (2 * d + 8) as f64 * T::epsilon().as_f64() / 2.0
}

pub trait DeviceLloyd<T> {
    /// Assigns every row to its nearest centroid, then moves each centroid to the weighted
    /// mean of its rows (normalised when spherical), unless a cluster is empty.
    fn step(&mut self) -> DeviceStep;
    /// The last step's per-cluster sums, and its labels and squared distances, on the host.
    fn sums(&self) -> ClusterSums;
    fn assignment(&self, labels: &mut [u32], distances: &mut [T]);
    /// Assigns every row to the current centroids on the device and writes labels and exact
    /// squared distances (by differences) on the host. Returns `false`, writing nothing,
    /// where the device has no exact assignment; the caller then assigns through the kernel.
    fn exact_assignment(&self, labels: &mut [u32], distances: &mut [T]) -> bool;
    /// The current centroids on the host, and replacing them.
    fn centroids(&self) -> Vec<T>;
    fn set_centroids(&mut self, centroids: &[T]);
}

/// Per-cluster weighted coordinate sums and weights.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSums {
    /// `k × d`, row-major.
    pub sums: Vec<f64>,
    /// Total sample weight in each cluster.
    pub weights: Vec<f64>,
}

impl ClusterSums {
    pub fn zeros(k: usize, d: usize) -> Self {
        Self { sums: vec![0.0; k * d], weights: vec![0.0; k] }
    }

    fn add(&mut self, other: &ClusterSums) {
        self.sums.iter_mut().zip(&other.sums).for_each(|(a, b)| *a += b);
        self.weights.iter_mut().zip(&other.weights).for_each(|(a, b)| *a += b);
    }
}

/// Distance work (2·rows·k·d flops) between two interrupt checks within one pass over the
/// data: a fraction of a second on one core, so Ctrl-C is answered quickly on any size.
const FLOPS_PER_CHECK: usize = 1 << 33;

/// Rows per kernel call when a pass is split for interrupt checks (fixed by the shapes, never
/// by the thread count, so results stay reproducible).
pub fn rows_per_check(k: usize, d: usize) -> usize {
    (FLOPS_PER_CHECK / (2 * k * d).max(1)).max(4096)
}

/// [`Kernel::assign_accumulate`] over chunks of rows, asking `keep_going` between chunks;
/// `None` when it answers `false`.
#[allow(clippy::too_many_arguments)]
pub fn assign_accumulate_in_chunks<T: Scalar, K: Kernel<T> + ?Sized>(
    kernel: &K,
    x: MatRef<'_, T>,
    x_sq_norms: &[T],
    weights: Option<&[T]>,
    centroids: MatRef<'_, T>,
    labels: &mut [u32],
    distances: &mut [T],
    keep_going: &mut dyn FnMut() -> bool,
) -> Option<ClusterSums> {
    let (n, k, d) = (x.rows(), centroids.rows(), x.cols());
    let step = kernel.rows_per_check(k, d);
    if step >= n {
        return Some(kernel.assign_accumulate(x, x_sq_norms, weights, centroids, labels, distances));
    }
    let mut total = ClusterSums::zeros(k, d);
    for start in (0..n).step_by(step) {
        let end = (start + step).min(n);
        let sums = kernel.assign_accumulate(
            x.slice_rows(start, end),
            &x_sq_norms[start..end],
            weights.map(|w| &w[start..end]),
            centroids,
            &mut labels[start..end],
            &mut distances[start..end],
        );
        total.add(&sums);
        if end < n && !keep_going() {
            return None;
        }
    }
    Some(total)
}

/// [`Kernel::assign`] over chunks of rows, asking `keep_going` between chunks; `false` when
/// it answers `false`.
pub fn assign_in_chunks<T: Scalar, K: Kernel<T> + ?Sized>(
    kernel: &K,
    x: MatRef<'_, T>,
    x_sq_norms: &[T],
    centroids: MatRef<'_, T>,
    labels: &mut [u32],
    distances: &mut [T],
    keep_going: &mut dyn FnMut() -> bool,
) -> bool {
    let (n, step) = (x.rows(), kernel.rows_per_check(centroids.rows(), x.cols()));
    for start in (0..n).step_by(step.max(1)) {
        let end = (start + step).min(n);
        let rows = x.slice_rows(start, end);
        kernel.assign(rows, &x_sq_norms[start..end], centroids, &mut labels[start..end], &mut distances[start..end]);
        if end < n && !keep_going() {
            return false;
        }
    }
    true
}

/// Deterministic per-cluster sums: rows are bucketed by label (a stable counting sort),
/// then each cluster adds its own rows in row order, clusters in parallel.
pub fn accumulate_by_cluster<T: Scalar>(
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    labels: &[u32],
    k: usize,
) -> ClusterSums {
    let d = x.cols();
    let mut offsets = vec![0usize; k + 1];
    for &label in labels {
        offsets[label as usize + 1] += 1;
    }
    for j in 0..k {
        offsets[j + 1] += offsets[j];
    }
    let mut cursor = offsets.clone();
    let mut order = vec![0usize; labels.len()];
    for (i, &label) in labels.iter().enumerate() {
        let slot = &mut cursor[label as usize];
        order[*slot] = i;
        *slot += 1;
    }
    let mut sums = vec![0.0f64; k * d];
    let mut cluster_weights = vec![0.0f64; k];
    sums.par_chunks_mut(d).zip(cluster_weights.par_iter_mut()).enumerate().for_each(
        |(j, (sum, weight))| {
            for &i in &order[offsets[j]..offsets[j + 1]] {
                let w = weight_at(weights, i);
                *weight += w;
                for (s, &v) in sum.iter_mut().zip(x.row(i)) {
                    *s += v.as_f64() * w;
                }
            }
        },
    );
    ClusterSums { sums, weights: cluster_weights }
}

/// Exact squared distance (by differences, in f64) from each row to its labelled
/// centroid, and the weighted total: the inertia that is reported to users.
pub fn labelled_sq_distances<T: Scalar>(
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    centroids: MatRef<'_, T>,
    labels: &[u32],
) -> (Vec<T>, f64) {
    let mut distances = vec![T::zero(); x.rows()];
    let partials: Vec<f64> = distances
        .par_chunks_mut(REDUCE_CHUNK)
        .enumerate()
        .map(|(c, chunk)| {
            let offset = c * REDUCE_CHUNK;
            let mut total = 0.0f64;
            for (j, out) in chunk.iter_mut().enumerate() {
                let i = offset + j;
                let centroid = centroids.row(labels[i] as usize);
                let sq: f64 = x
                    .row(i)
                    .iter()
                    .zip(centroid)
                    .map(|(&a, &b)| {
                        let diff = a.as_f64() - b.as_f64();
                        diff * diff
                    })
                    .sum();
                *out = T::of_f64(sq);
                total += sq * weight_at(weights, i);
            }
            total
        })
        .collect();
    (distances, partials.iter().sum())
}
