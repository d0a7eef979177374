//! The kernels the k-means loop is written against: a backend provides a [`Kernel`] of
//! primitive operations on blocks of rows (the pure-Rust one is `cpu`; MLX's lives in
//! the MLX plugin, `crates/mlx/src/device/`). The loop (`crate::lloyd`), the initialisation and the mini-batch steps are
//! shared, and where their steps run is chosen by a strategy (`crate::strategy`).

mod accumulate;
pub mod cpu;
pub mod exact;
pub mod products;
pub mod simd;

pub use accumulate::{accumulate_and_measure, accumulate_by_cluster, move_rows, Move};

use rayon::prelude::*;

use crate::error::Result;
use crate::matrix::{sq_distance, weight_at, MatRef, Points, REDUCE_CHUNK};
use crate::monitor::{for_each_chunk, KeepGoing};
use crate::scalar::Scalar;

/// The primitive operations whose cost grows with the data: assignment to the nearest
/// centroid (with or without the runner-up), all pairwise distances, per-cluster sums, and
/// the per-row statistics of the data. Every one returns `Result`: a backend library that
/// fails reports an error, never a panic.
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
    ) -> Result<()>;

    /// [`assign`](Kernel::assign)'s labels, with each row's squared distance only an upper
    /// bound within the kernel's error bound of the exact one, up to its rounding to `T` (a
    /// kernel that decides most rows from computed products may skip measuring them): for a
    /// Lloyd pass that takes its inertia from the cluster sums. The default is `assign`.
    /// With `kept` (rows this kernel kept of a matrix `x` is rows `first..` of,
    /// [`keep_rows`](Kernel::keep_rows)), the products read them instead of `x`.
    fn assign_labels(
        &self,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        _kept: Option<(&KeptRows, usize)>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
    ) -> Result<()> {
        self.assign(x, x_sq_norms, centroids, labels, distances)
    }

    /// [`assign_labels`](Kernel::assign_labels) with each row's runner-up bound in `second`,
    /// as [`assign_top2`](Kernel::assign_top2) gives it. The default is `assign_top2`.
    #[allow(clippy::too_many_arguments)]
    fn assign_top2_labels(
        &self,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        _kept: Option<(&KeptRows, usize)>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        second: &mut [T],
    ) -> Result<()> {
        self.assign_top2(x, x_sq_norms, centroids, labels, distances, second)
    }

    /// The rows of `x` in the form this kernel's products read them, kept for passes over the
    /// same rows ([`assign_labels`](Kernel::assign_labels)); `None` where it reads them as
    /// they are. The cpu kernel's bfloat16 kinds keep the rows rounded once: half the bytes
    /// of float32 (a copy of half the data's size), and no rounding per pass.
    ///
    /// With `spreads` (a centre and one entry per row), each row's `matrix::sq_distance` to
    /// the centre is measured in the same pass over the rows, where rows are kept.
    fn keep_rows(&self, _x: MatRef<'_, T>, _spreads: Option<(&[T], &mut [f64])>) -> Option<KeptRows> {
        None
    }

    /// The `kept` rows of `x` laid out in `order` (a permutation of the rows), so that listed
    /// rows given in that order are read where they lie instead of copied; passes over every
    /// row in its own order then read `x` again. False (nothing changed) where the kernel does
    /// not lay out its rows.
    fn lay_out_kept(&self, _kept: &mut KeptRows, _x: MatRef<'_, T>, _order: &[usize]) -> bool {
        false
    }

    /// Upper bounds on each row's squared distance to its labelled centroid (the rows `rows`
    /// of `kept`, one per label) into `out`, read from the rows as the kernel kept them: within
    /// the bound, cheaper than measuring the rows. False where the kernel gives none (the
    /// caller measures the rows).
    fn labelled_sq_distance_bounds(
        &self,
        _kept: (&KeptRows, &[usize]),
        _centroids: MatRef<'_, T>,
        _labels: &[u32],
        _out: &mut [f64],
    ) -> bool {
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
    ) -> Result<()> {
        const BLOCK: usize = 4096;
        let k = centroids.rows();
        let mut all = vec![T::zero(); x.rows().min(BLOCK) * k];
        for start in (0..x.rows()).step_by(BLOCK) {
            let end = (start + BLOCK).min(x.rows());
            let block = &mut all[..(end - start) * k];
            self.pairwise(x.slice_rows(start, end), &x_sq_norms[start..end], centroids, block)?;
            for (r, row) in block.chunks_exact(k).enumerate() {
                let (mut best, mut runner_up, mut label) = (T::infinity(), T::infinity(), 0u32);
                for (j, &v) in row.iter().enumerate() {
                    if v < best {
                        (runner_up, best, label) = (best, v, j as u32);
                    } else if v < runner_up {
                        runner_up = v;
                    }
                }
                (labels[start + r], distances[start + r], second[start + r]) = (label, best, runner_up);
            }
        }
        Ok(())
    }

    /// [`assign`](Kernel::assign), plus for every row and every group of centroids
    /// (`members[g]`: group `g`'s centroids) a lower bound on the row's squared distance to the
    /// group's centroids other than the row's own, row-major into `lower`
    /// (`x.rows() × members.len()`; infinite for a group with no other centroid). The default
    /// bounds them from [`pairwise`](Kernel::pairwise), within [`partial_error_bound`].
    #[allow(clippy::too_many_arguments)]
    fn assign_grouped(
        &self,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        centroids: MatRef<'_, T>,
        members: &[Vec<u32>],
        labels: &mut [u32],
        distances: &mut [T],
        lower: &mut [T],
    ) -> Result<()> {
        self.assign(x, x_sq_norms, centroids, labels, distances)?;
        group_bounds_by_pairwise(self, x, x_sq_norms, centroids, members, labels, lower)
    }

    /// Squared distances from every row of `x` to every row of `centroids`,
    /// written row-major into `out` (`x.rows() × centroids.rows()`), clamped at zero.
    fn pairwise(&self, x: MatRef<'_, T>, x_sq_norms: &[T], centroids: MatRef<'_, T>, out: &mut [T]) -> Result<()>;

    /// [`assign_top2`](Kernel::assign_top2) of the rows `rows` of `x`: `labels`, `distances`
    /// and `second` hold one entry per entry of `rows`; `x_sq_norms` are every row's. The
    /// default gathers the rows first.
    #[allow(clippy::too_many_arguments)]
    fn assign_top2_rows(
        &self,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        rows: &[usize],
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        second: &mut [T],
    ) -> Result<()> {
        assign_top2_of_gathered(self, x, x_sq_norms, rows, centroids, labels, distances, second)
    }

    /// Labels (as [`assign_labels`](Kernel::assign_labels) gives them, distances only upper
    /// bounds within the kernel's error bound) of the rows `rows` of `x` (every row where
    /// `None`), read from the rows the kernel kept where `kept` gives them (`kept`: the rows
    /// `x` is rows `first..` of, as in `assign_labels`; listed rows only with `first` zero),
    /// and per row the `t` centroids of least computed distance (`nearest`, `t` per row,
    /// `u32::MAX` past the last centroid), a lower bound on its squared distance to every
    /// other centroid (`beyond`) and one on its squared distance to every centroid but its
    /// own (`second`, as [`assign_top2_labels`](Kernel::assign_top2_labels) gives it). False
    /// where the kernel gives none (nothing is written); the default gives none.
    #[allow(clippy::too_many_arguments)]
    fn assign_nearest_labels(
        &self,
        _x: MatRef<'_, T>,
        _x_sq_norms: &[T],
        _rows: Option<&[usize]>,
        _kept: Option<(&KeptRows, usize)>,
        _centroids: MatRef<'_, T>,
        _labels: &mut [u32],
        _distances: &mut [T],
        (_nearest, _beyond, _second): (&mut [u32], &mut [T], &mut [T]),
    ) -> Result<bool> {
        Ok(false)
    }

    /// [`assign_top2_rows`](Kernel::assign_top2_rows) with distances only upper bounds within
    /// the kernel's error bound (as [`assign_top2_labels`](Kernel::assign_top2_labels) gives
    /// them), from the rows the kernel kept (`kept`: every row of `x`) where given. The
    /// default is `assign_top2_rows`.
    #[allow(clippy::too_many_arguments)]
    fn assign_top2_rows_labels(
        &self,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        rows: &[usize],
        _kept: Option<&KeptRows>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        second: &mut [T],
    ) -> Result<()> {
        self.assign_top2_rows(x, x_sq_norms, rows, centroids, labels, distances, second)
    }

    /// [`pairwise`](Kernel::pairwise) of the rows `rows` of `x` (`rows.len() × k` into `out`),
    /// each row's values as `pairwise` gives them where the kernel promises rows independent
    /// ([`seeding_error_bound`](Kernel::seeding_error_bound)). The default gathers the rows.
    fn pairwise_rows(
        &self,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        rows: &[usize],
        centroids: MatRef<'_, T>,
        out: &mut [T],
    ) -> Result<()> {
        pairwise_of_gathered(self, x, x_sq_norms, rows, centroids, out)
    }

    /// Per-cluster weighted sums (`k × d`, f64) and total weights of the rows in each cluster.
    /// The default sums each cluster's rows in row order, so the result does not depend on
    /// the number of threads.
    fn accumulate(&self, x: MatRef<'_, T>, weights: Option<&[T]>, labels: &[u32], k: usize) -> Result<ClusterSums> {
        Ok(accumulate_by_cluster(x, weights, labels, k))
    }

    /// Whether a Lloyd loop may keep the cluster sums between passes and [`move_rows`] whose
    /// labels changed instead of summing every row again: only where the rows are in host
    /// memory and the kernel's own sums are the default's (a device kernel sums where its
    /// data lives).
    fn moves_rows(&self) -> bool {
        false
    }

    /// [`accumulate`](Kernel::accumulate), plus each row's exact squared distance (by
    /// differences, in float64) to its labelled centroid of `centroids` into `distances`. The
    /// default makes two passes; the cpu kernel's one, reading each row once.
    fn accumulate_measuring(
        &self,
        x: MatRef<'_, T>,
        weights: Option<&[T]>,
        labels: &[u32],
        centroids: MatRef<'_, T>,
        distances: &mut [T],
    ) -> Result<ClusterSums> {
        let sums = self.accumulate(x, weights, labels, centroids.rows())?;
        distances.copy_from_slice(&self.labelled_sq_distances(x, weights, centroids, labels)?.0);
        Ok(sums)
    }

    /// [`assign`](Kernel::assign) into `labels` and `distances`, then
    /// [`accumulate`](Kernel::accumulate) by those labels. A backend that holds the data on a
    /// device overrides it to do both in one pass, with one round trip.
    fn assign_accumulate(
        &self,
        points: Points<'_, T>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
    ) -> Result<ClusterSums> {
        self.assign(points.x, points.x_sq_norms, centroids, labels, distances)?;
        self.accumulate(points.x, points.weights, labels, centroids.rows())
    }

    /// Squared norm of every row of `x`. A kernel that holds `x` on a device computes them
    /// there, so that the host never reads (and, in managed memory, migrates) the data.
    fn row_sq_norms(&self, x: MatRef<'_, T>) -> Result<Vec<T>> {
        Ok(crate::matrix::row_sq_norms(x))
    }

    /// Mean over features of the per-feature variance (scales `tol`); see `row_sq_norms`.
    fn mean_feature_variance(&self, x: MatRef<'_, T>) -> Result<f64> {
        Ok(crate::matrix::mean_feature_variance(x))
    }

    /// Exact squared distance from each row to its labelled centroid and the weighted total
    /// (the reported inertia); see `row_sq_norms`.
    fn labelled_sq_distances(
        &self,
        x: MatRef<'_, T>,
        weights: Option<&[T]>,
        centroids: MatRef<'_, T>,
        labels: &[u32],
    ) -> Result<(Vec<T>, f64)> {
        Ok(labelled_sq_distances(x, weights, centroids, labels))
    }

    /// For k-means++ pruning: a bound on the error of [`pairwise`](Kernel::pairwise)'s squared
    /// distances over `d` features, relative to `‖x‖² + 2 max ‖c‖²`, where each row's
    /// distances do not depend on the other rows of the call (so measuring a subset of rows
    /// gives the same values). `None` (the default): no such promise, no pruning.
    fn seeding_error_bound(&self, _d: usize) -> Option<f64> {
        None
    }

    /// For k-means++ on rows `x` (squared norms `x_sq_norms`): a cheaper first look at each
    /// step's candidates than measuring them ([`SeedingScreen`]), where the kernel has one;
    /// `forced`: the seeding switch `screen` (`None`: where the kernel finds it pays).
    fn seeding_screen(
        &self,
        _x: MatRef<'_, T>,
        _x_sq_norms: &[T],
        _forced: Option<bool>,
    ) -> Option<Box<dyn SeedingScreen<T>>> {
        None
    }

    /// Rows per kernel call when a pass over the data is split so that Ctrl-C is noticed
    /// within a fraction of a second (see [`rows_per_check`](crate::monitor::rows_per_check));
    /// a faster device takes more.
    fn rows_per_check(&self, k: usize, d: usize) -> usize {
        crate::monitor::rows_per_check(k, d)
    }
}

/// A first look at greedy k-means++'s candidates, cheaper than measuring them: it names the
/// rows that some candidate may be nearer to (by the distances [`Kernel::pairwise`]
/// computes) than their closest centre; only those need measuring, the others keep their
/// closest distance, as measuring them would (see `crate::init`).
pub trait SeedingScreen<T: Scalar>: Sync {
    /// The screen of one step's `candidates`; `None` where the screen skips this step (it
    /// backs off where it saved little).
    fn step(&self, candidates: MatRef<'_, T>) -> Option<Box<dyn StepScreen<T> + '_>>;
}

/// One step's [`SeedingScreen`].
pub trait StepScreen<T: Scalar>: Sync {
    /// Of `rows` (ascending), those whose computed squared distance to some candidate may be
    /// below their `closest` (indexed by row).
    fn rows_to_measure(&self, rows: &[usize], closest: &[T]) -> Vec<usize>;
}

/// [`Kernel::pairwise`] of the rows `rows` of `x`, gathered first: the default
/// [`Kernel::pairwise_rows`], and a kernel's own where it cannot read the rows in place.
pub fn pairwise_of_gathered<T: Scalar, K: Kernel<T> + ?Sized>(
    kernel: &K,
    x: MatRef<'_, T>,
    x_sq_norms: &[T],
    rows: &[usize],
    centroids: MatRef<'_, T>,
    out: &mut [T],
) -> Result<()> {
    let (gathered, norms) = gather_with_norms(x, x_sq_norms, rows);
    kernel.pairwise(MatRef::new(&gathered, rows.len(), x.cols())?, &norms, centroids, out)
}

/// The rows `rows` of `x` copied out, with their squared norms.
pub fn gather_with_norms<T: Scalar>(x: MatRef<'_, T>, x_sq_norms: &[T], rows: &[usize]) -> (Vec<T>, Vec<T>) {
    (x.gather(rows), rows.iter().map(|&i| x_sq_norms[i]).collect())
}

/// The default [`Kernel::assign_top2_rows`]: the rows gathered, then `assign_top2`.
#[allow(clippy::too_many_arguments)]
pub fn assign_top2_of_gathered<T: Scalar, K: Kernel<T> + ?Sized>(
    kernel: &K,
    x: MatRef<'_, T>,
    x_sq_norms: &[T],
    rows: &[usize],
    centroids: MatRef<'_, T>,
    labels: &mut [u32],
    distances: &mut [T],
    second: &mut [T],
) -> Result<()> {
    let (gathered, norms) = gather_with_norms(x, x_sq_norms, rows);
    kernel.assign_top2(MatRef::new(&gathered, rows.len(), x.cols())?, &norms, centroids, labels, distances, second)
}

/// The default [`Kernel::assign_grouped`]'s bounds: each row's pairwise distances, the
/// smallest per group (the row's own centroid left out), less their error bound.
pub fn group_bounds_by_pairwise<T: Scalar, K: Kernel<T> + ?Sized>(
    kernel: &K,
    x: MatRef<'_, T>,
    x_sq_norms: &[T],
    centroids: MatRef<'_, T>,
    members: &[Vec<u32>],
    labels: &[u32],
    lower: &mut [T],
) -> Result<()> {
    const BLOCK: usize = 1024;
    let (n, k, t) = (x.rows(), centroids.rows(), members.len());
    if n == 0 || t == 0 {
        return Ok(());
    }
    let mut groups = vec![0u32; k];
    for (g, group) in members.iter().enumerate() {
        for &j in group {
            groups[j as usize] = g as u32;
        }
    }
    let c_norm_max = crate::matrix::row_sq_norms(centroids).iter().fold(0.0f64, |m, v| m.max(v.as_f64()));
    let error = partial_error_bound::<T>(x.cols());
    // Shrunk by a unit of `T` more, so that rounding to `T` cannot lift a bound.
    let shrink = 1.0 - 2.0 * T::epsilon().as_f64();
    let mut all = vec![T::zero(); n.min(BLOCK) * k];
    for start in (0..n).step_by(BLOCK) {
        let end = (start + BLOCK).min(n);
        let block = &mut all[..(end - start) * k];
        kernel.pairwise(x.slice_rows(start, end), &x_sq_norms[start..end], centroids, block)?;
        block.par_chunks(k).zip(lower[start * t..end * t].par_chunks_mut(t)).enumerate().for_each(
            |(r, (row, bounds))| {
                let i = start + r;
                bounds.fill(T::infinity());
                for (j, (&v, &g)) in row.iter().zip(&groups).enumerate() {
                    if j != labels[i] as usize && v < bounds[g as usize] {
                        bounds[g as usize] = v;
                    }
                }
                let slack = error * (x_sq_norms[i].as_f64() + 2.0 * c_norm_max);
                for b in bounds.iter_mut().filter(|b| b.is_finite()) {
                    *b = T::of_f64(((b.as_f64() - slack) * shrink).max(0.0));
                }
            },
        );
    }
    Ok(())
}

/// For k-means++ pruning and screening: each row's bound on the error of the squared
/// distances a kernel computes for it, from its squared norm and the kernel's
/// [`Kernel::seeding_error_bound`] (candidates are rows, so `max ‖c‖²` is the largest row's).
pub fn seeding_slack<T: Scalar>(x_sq_norms: &[T], bound: f64) -> Vec<f64> {
    let largest = x_sq_norms.iter().fold(0.0f64, |m, v| m.max(v.as_f64()));
    x_sq_norms.iter().map(|v| bound * (v.as_f64() + 2.0 * largest)).collect()
}

/// A bound on the rounding error of a partial distance `‖c‖² − 2x·c` computed in `T` over
/// `d` features (a GEMM in any summation order, then the norms), relative to
/// `‖x‖² + 2 max ‖c‖²`: the dot product errs by at most `d·u·Σ|x_i c_i|` with
/// `Σ|x_i c_i| ≤ (‖x‖² + ‖c‖²) / 2`, the norm by `d·u·‖c‖²`, and a few roundings follow
/// (`u` is the unit roundoff). Rows whose two best partial distances are closer than this are
/// decided again exactly.
pub fn partial_error_bound<T: Scalar>(d: usize) -> f64 {
    (2 * d + 8) as f64 * T::epsilon().as_f64() / 2.0
}

/// [`partial_error_bound`] of float32 products (not TF32) on rows and centroids re-centred in
/// float32 first: each coordinate is rounded once more (four units more).
pub fn centred_f32_error_bound(d: usize) -> f64 {
    partial_error_bound::<f32>(d) + 4.0 * f32::EPSILON as f64 / 2.0
}

/// Rows a kernel kept of a matrix ([`Kernel::keep_rows`]), in whatever form it reads them.
pub struct KeptRows(Box<dyn std::any::Any + Send + Sync>);

impl KeptRows {
    pub fn new<R: std::any::Any + Send + Sync>(rows: R) -> Self {
        Self(Box::new(rows))
    }

    /// The rows as the kernel that kept them made them.
    pub fn get<R: std::any::Any>(&self) -> Option<&R> {
        self.0.downcast_ref()
    }

    pub fn get_mut<R: std::any::Any>(&mut self) -> Option<&mut R> {
        self.0.downcast_mut()
    }
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

/// [`Kernel::assign_accumulate`] over chunks of rows, asking `keep_going` between chunks.
pub fn assign_accumulate_in_chunks<T: Scalar, K: Kernel<T> + ?Sized>(
    kernel: &K,
    points: Points<'_, T>,
    centroids: MatRef<'_, T>,
    labels: &mut [u32],
    distances: &mut [T],
    keep_going: KeepGoing<'_>,
) -> Result<ClusterSums> {
    let (n, k, d) = (points.rows(), centroids.rows(), points.cols());
    let step = kernel.rows_per_check(k, d);
    if step >= n {
        return kernel.assign_accumulate(points, centroids, labels, distances);
    }
    let mut total = ClusterSums::zeros(k, d);
    for_each_chunk(n, step, keep_going, |start, end| {
        let sums = kernel.assign_accumulate(
            points.slice_rows(start, end),
            centroids,
            &mut labels[start..end],
            &mut distances[start..end],
        )?;
        total.add(&sums);
        Ok(())
    })?;
    Ok(total)
}

/// [`Kernel::assign_labels`] over chunks of rows (of `kept`, rows the kernel kept of `x`,
/// where given), asking `keep_going` between chunks: labels, with distances only within the
/// kernel's error bound.
pub fn assign_in_chunks<T: Scalar, K: Kernel<T> + ?Sized>(
    kernel: &K,
    x: MatRef<'_, T>,
    x_sq_norms: &[T],
    kept: Option<&KeptRows>,
    centroids: MatRef<'_, T>,
    labels: &mut [u32],
    distances: &mut [T],
    keep_going: KeepGoing<'_>,
) -> Result<()> {
    let step = kernel.rows_per_check(centroids.rows(), x.cols());
    for_each_chunk(x.rows(), step, keep_going, |start, end| {
        kernel.assign_labels(
            x.slice_rows(start, end),
            &x_sq_norms[start..end],
            kept.map(|kept| (kept, start)),
            centroids,
            &mut labels[start..end],
            &mut distances[start..end],
        )
    })
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
                let sq = sq_distance(x.row(i), centroid);
                *out = T::of_f64(sq);
                total += sq * weight_at(weights, i);
            }
            total
        })
        .collect();
    (distances, partials.iter().sum())
}
