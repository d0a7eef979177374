//! The centroid update every strategy shares: means of the clusters' rows, with empty
//! clusters repaired first, and how far the centroids moved.

use rayon::prelude::*;

use crate::kernel::ClusterSums;
use crate::matrix::{normalize_rows, sq_distance, weight_at, MatRef};
use crate::scalar::Scalar;

/// Sum over centroids of the squared distance each one moved.
pub fn squared_shift<T: Scalar>(updated: &[T], previous: &[T]) -> f64 {
    updated.iter().zip(previous).map(|(&a, &b)| (a.as_f64() - b.as_f64()).powi(2)).sum()
}

/// Divides each cluster's sum by its weight; a cluster with no weight keeps its centroid.
pub fn average<T: Scalar>(sums: &ClusterSums, previous: &[T], d: usize, spherical: bool) -> Vec<T> {
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

/// A pass's inertia from its cluster sums, for passes that do not measure each row's
/// distance: `Σ_j Σ_{i∈j} w_i‖x_i − c_j‖² = Σ_j (Q_j − 2(c_j − μ)·(S_j − W_j μ) + W_j‖c_j − μ‖²)`,
/// with `Q_j` the cluster's weighted `‖x_i − μ‖²` (each row's, in float64, kept) about a
/// centre `μ` among the rows, so that an offset common to all rows cancels before the
/// subtraction. It is exact up to rounding relative to the spread of the rows about `μ`.
pub struct InertiaBySums {
    /// `μ`, in the data's type: any point serves, so long as every term is taken about it.
    centre: Vec<f64>,
    spreads: Vec<f64>,
}

impl InertiaBySums {
    /// About the mean of `centroids` (they lie among the rows): one pass over the rows.
    pub fn new<T: Scalar>(x: MatRef<'_, T>, centroids: &[T]) -> Self {
        let centre = Self::centre(centroids, x.cols());
        let spreads = (0..x.rows()).into_par_iter().with_min_len(256).map(|i| sq_distance(x.row(i), &centre)).collect();
        Self::of_spreads(&centre, spreads)
    }

    /// The centre [`InertiaBySums::new`] takes: the mean of `centroids` (`d` wide), in their type.
    pub fn centre<T: Scalar>(centroids: &[T], d: usize) -> Vec<T> {
        let k = centroids.len() / d.max(1);
        let mut mean = vec![0.0f64; d];
        for row in centroids.chunks_exact(d.max(1)) {
            mean.iter_mut().zip(row).for_each(|(c, &v)| *c += v.as_f64());
        }
        mean.iter().map(|&c| T::of_f64(c / k.max(1) as f64)).collect()
    }

    /// From each row's `sq_distance` to `centre` (as [`InertiaBySums::new`] takes them,
    /// measured elsewhere in the same pass over the rows).
    pub fn of_spreads<T: Scalar>(centre: &[T], spreads: Vec<f64>) -> Self {
        Self { centre: centre.iter().map(|c| c.as_f64()).collect(), spreads }
    }

    /// The inertia of `labels` against `centroids` (those the labels were chosen for), from
    /// `sums`, the sums of those labels.
    pub fn inertia<T: Scalar>(
        &self,
        sums: &ClusterSums,
        centroids: &[T],
        labels: &[u32],
        weights: Option<&[T]>,
    ) -> f64 {
        let d = self.centre.len();
        let mut spread = vec![0.0f64; sums.weights.len()];
        for (i, &label) in labels.iter().enumerate() {
            spread[label as usize] += weight_at(weights, i) * self.spreads[i];
        }
        let total: f64 = (0..sums.weights.len())
            .map(|j| {
                let w = sums.weights[j];
                let (mut cross, mut own) = (0.0f64, 0.0f64);
                for p in 0..d {
                    let offset = centroids[j * d + p].as_f64() - self.centre[p];
                    cross += offset * (sums.sums[j * d + p] - w * self.centre[p]);
                    own += offset * offset;
                }
                spread[j] - 2.0 * cross + w * own
            })
            .sum();
        total.max(0.0)
    }

    /// The rows' weighted spread about the centre: what the rounding of
    /// [`InertiaBySums::inertia`] is relative to.
    pub fn spread<T: Scalar>(&self, weights: Option<&[T]>) -> f64 {
        self.spreads.iter().enumerate().map(|(i, spread)| weight_at(weights, i) * spread).sum()
    }
}

/// Empty-cluster repair (scikit-learn's policy): each cluster with no weight takes over the
/// positive-weight row that lies farthest from its current centroid (farthest first, ties by
/// lowest row index); that row's sums move from its old cluster to the empty one. When every
/// row lies on its centroid there is nothing to gain, and nothing moves. Labels are
/// left as they are; the next assignment settles them. Distances are measured exactly (by
/// differences, in float64) against `centroids`, the centroids that gave `labels`, so every
/// backend ranks the rows alike: the expanded form would misorder rows by cancellation.
/// With `upper` (each row's squared distance to its centroid as the pass gave it: exact, or
/// an upper bound), only the rows whose bound reaches the farthest ones are measured
/// ([`farthest_rows_within`]).
pub fn relocate_empty_clusters<T: Scalar>(
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    labels: &[u32],
    centroids: &[T],
    upper: Option<&[T]>,
    sums: &mut ClusterSums,
) -> usize {
    let empty = empty_clusters(sums);
    if empty.is_empty() {
        return 0;
    }
    let farthest = match upper {
        Some(upper) => farthest_rows_within(x, weights, labels, centroids, empty.len(), upper),
        None => farthest_rows(x, weights, labels, centroids, empty.len()),
    };
    let rows = farthest
        .into_iter()
        .map(|(distance, i)| (distance, labels[i] as usize, weights.map_or(1.0, |w| w[i].as_f64()), x.row(i)));
    take_farthest(sums, x.cols(), &empty, rows)
}

/// The clusters with no weight, in order.
pub fn empty_clusters(sums: &ClusterSums) -> Vec<usize> {
    (0..sums.weights.len()).filter(|&j| !(sums.weights[j] > 0.0)).collect()
}

/// The repair's moves, wherever the farthest rows were found: `farthest` (farthest first,
/// each `(exact squared distance, label, weight, values)`) go to the `empty` clusters in
/// order. Returns how many moved.
pub fn take_farthest<'v, T: Scalar + 'v>(
    sums: &mut ClusterSums,
    d: usize,
    empty: &[usize],
    farthest: impl IntoIterator<Item = (f64, usize, f64, &'v [T])>,
) -> usize {
    let mut rows = farthest.into_iter().peekable();
    // Every row sits on its centroid (more clusters than distinct rows): moving one would
    // only swap equal centres, and the fit would never settle (scikit-learn skips it too).
    if rows.peek().is_none_or(|&(distance, ..)| !(distance > 0.0)) {
        return 0;
    }
    let mut moved = 0;
    for (&cluster, (_, old, w, values)) in empty.iter().zip(rows) {
        move_row(sums, d, old, cluster, w, values.iter().enumerate());
        moved += 1;
    }
    log::debug!("relocated {moved} empty cluster(s) to the farthest points");
    moved
}

/// Moves a row (its `(feature, value)` entries, weight `w`) from cluster `old`'s sums to
/// empty cluster `cluster`'s, which then hold that row alone.
pub fn move_row<'v, T: Scalar + 'v>(
    sums: &mut ClusterSums,
    d: usize,
    old: usize,
    cluster: usize,
    w: f64,
    entries: impl Iterator<Item = (usize, &'v T)>,
) {
    sums.sums[cluster * d..(cluster + 1) * d].fill(0.0);
    for (p, &v) in entries {
        sums.sums[old * d + p] -= v.as_f64() * w;
        sums.sums[cluster * d + p] += v.as_f64() * w;
    }
    let before = sums.weights[old];
    sums.weights[old] -= w;
    // Cancellation can leave a sliver of weight behind: treat it as empty.
    if sums.weights[old] <= 1e-12 * before {
        sums.weights[old] = 0.0;
    }
    sums.weights[cluster] = w;
}

/// The `wanted` positive-weight rows farthest from their labelled centroid, farthest first
/// (ties by lowest row index), with their exact squared distances (by differences, in
/// float64). One parallel pass that keeps a short list per task (no per-row buffer: the
/// data may be huge).
pub fn farthest_rows<T: Scalar>(
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    labels: &[u32],
    centroids: &[T],
    wanted: usize,
) -> Vec<(f64, usize)> {
    let rows = (0..x.rows()).into_par_iter().filter(|&i| weights.is_none_or(|w| w[i] > T::zero()));
    farthest_of(rows, wanted, |i| own_sq_distance(x, labels, centroids, i))
}

/// [`farthest_rows`] where `upper` bounds each row's squared distance from above (up to its
/// rounding to `T`): the `wanted` rows of largest bound are measured, and then only the rows
/// whose bound reaches the least of those distances (no other row can be farther). Where a
/// measured distance exceeds its bound, every row is measured instead (and the fault logged).
pub fn farthest_rows_within<T: Scalar>(
    x: MatRef<'_, T>,
    weights: Option<&[T]>,
    labels: &[u32],
    centroids: &[T],
    wanted: usize,
    upper: &[T],
) -> Vec<(f64, usize)> {
    assert_eq!(upper.len(), x.rows(), "one bound per row");
    let counts = |i: usize| weights.is_none_or(|w| w[i] > T::zero());
    // The bound widened by its rounding to `T`.
    let bound = |i: usize| upper[i].as_f64() * (1.0 + 4.0 * T::epsilon().as_f64()) + f64::MIN_POSITIVE;
    let faulty = |measured: &[(f64, usize)]| {
        let fault = measured.iter().find(|&&(distance, i)| !(distance <= bound(i)));
        if let Some(&(distance, i)) = fault {
            log::warn!(
                "row {i} lies {distance:e} from its centroid, beyond the pass's bound {:e}: every row measured",
                bound(i)
            );
        }
        fault.is_some()
    };
    let by_bound = farthest_of((0..x.rows()).into_par_iter().filter(|&i| counts(i)), wanted, bound);
    let first: Vec<(f64, usize)> =
        by_bound.iter().map(|&(_, i)| (own_sq_distance(x, labels, centroids, i), i)).collect();
    let Some(threshold) = first.iter().map(|&(distance, _)| distance).reduce(f64::min) else {
        return Vec::new();
    };
    if faulty(&first) {
        return farthest_rows(x, weights, labels, centroids, wanted);
    }
    let reaching: Vec<usize> = (0..x.rows()).into_par_iter().filter(|&i| counts(i) && bound(i) >= threshold).collect();
    let measured: Vec<(f64, usize)> =
        reaching.par_iter().map(|&i| (own_sq_distance(x, labels, centroids, i), i)).collect();
    if faulty(&measured) {
        return farthest_rows(x, weights, labels, centroids, wanted);
    }
    // `reaching` ascends, so ties among positions go to the lowest row as well.
    let top = farthest_of((0..measured.len()).into_par_iter(), wanted, |at| measured[at].0);
    top.into_iter().map(|(_, at)| measured[at]).collect()
}

/// The exact squared distance (by differences, in float64) from row `i` to its centroid.
fn own_sq_distance<T: Scalar>(x: MatRef<'_, T>, labels: &[u32], centroids: &[T], i: usize) -> f64 {
    let (d, label) = (x.cols(), labels[i] as usize);
    sq_distance(x.row(i), &centroids[label * d..(label + 1) * d])
}

/// The `wanted` items of largest `value` (ties by lowest item), each with its value, largest
/// first: one parallel pass that keeps a short list per task.
fn farthest_of<I, V>(items: impl ParallelIterator<Item = I>, wanted: usize, value: V) -> Vec<(f64, I)>
where
    I: Ord + Copy + Send,
    V: Fn(I) -> f64 + Sync + Send,
{
    if wanted == 0 {
        return Vec::new();
    }
    let farther = |a: &(f64, I), b: &(f64, I)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    let keep = |mut top: Vec<(f64, I)>, item: (f64, I)| {
        if top.len() < wanted || farther(&item, top.last().expect("full list")).is_lt() {
            let at = top.partition_point(|t| farther(t, &item).is_lt());
            top.insert(at, item);
            top.truncate(wanted);
        }
        top
    };
    items.map(|i| (value(i), i)).fold(Vec::new, keep).reduce(Vec::new, |a, b| b.into_iter().fold(a, keep))
}

#[cfg(test)]
mod tests;
