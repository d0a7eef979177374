//! Triangle-inequality bounds for Lloyd iterations (Hamerly's variant: one lower bound per
//! row). Each iteration bounds every row's distance to its own centroid: exactly (by
//! differences, one pass over the row), or where the pass need not measure rows, by the
//! bound the row kept from the last pass (loosened by its centroid's move), or where it has
//! none from the row as the kernel kept it; a row keeps its label without a search when
//! that distance is at most half the gap from its centroid to the nearest other centroid,
//! or at most a lower bound on its distance to every other centroid. The bound is the
//! distance to the runner-up at the row's last full search, loosened by how far centroids
//! have moved since. Rows the bounds cannot settle get the full search, so labels equal
//! those of a dense pass.

mod choice;

use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::host::{DensePass, HostPass};
use crate::error::Result;
use crate::kernel::{partial_error_bound, ClusterSums, KeptRows, Kernel};
use crate::matrix::{row_sq_norms, sq_distance, MatRef, Points, REDUCE_CHUNK};
use crate::monitor::{for_each_chunk, KeepGoing};
use crate::scalar::Scalar;
use choice::Choice;

pub struct BoundedPass {
    /// Lower bound (a distance, not squared) on each row's distance to any centroid other
    /// than its own.
    lower: Vec<f64>,
    /// Upper bound (a distance) on each row's distance to its own centroid, from the last pass
    /// (the row as the kernel kept it, or its search), loosened by how far that centroid has
    /// moved since; infinite where none is known (before bounded passes, measured passes).
    upper: Vec<f64>,
    /// Whether `lower` (and the labels) describe the current centroids.
    valid: bool,
    /// Whether the next pass is the fit's first: a dense one (it moves centroids most).
    first: bool,
    /// Whether bounds pay, chosen as the fit runs (`None`: bounds in every pass after the first).
    choice: Option<Choice>,
}

/// How one pass of an in-memory fit searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Every row, without bounds.
    Dense,
    /// Every row, keeping each one's runner-up: the bounds are made.
    Make,
    /// The rows the bounds leave.
    Bounded,
}

/// When a fit tries its bounds: dense passes to make before the bounds are tried (again),
/// and how many tries in a row have left most rows to search. While centroids move far
/// (early iterations from random rows), bounds prune little and their bookkeeping costs;
/// each failed try doubles the wait. Fits over chunks keep it (in-memory ones choose by
/// [`Choice`]).
#[derive(Debug, Clone, Copy)]
pub struct BoundsSchedule {
    dense_left: usize,
    failures: u32,
}

impl BoundsSchedule {
    /// The first iteration moves centroids most: it is a dense pass.
    pub fn new() -> Self {
        Self { dense_left: 1, failures: 0 }
    }

    /// Whether this iteration should be a plain dense pass (then the bounds go stale).
    pub fn dense_now(&mut self) -> bool {
        if self.dense_left == 0 {
            return false;
        }
        self.dense_left -= 1;
        true
    }

    /// After a pass that tested bounds made earlier: `searched` of `n` rows needed the full
    /// search.
    pub fn tested(&mut self, searched: usize, n: usize) {
        if 2 * searched > n {
            self.failures += 1;
            self.dense_left = 2 << self.failures.min(16);
        } else {
            self.failures = 0;
        }
    }
}

impl Default for BoundsSchedule {
    fn default() -> Self {
        Self::new()
    }
}

impl BoundedPass {
    /// Bounds in every pass after the first (`algorithm="elkan"`).
    pub fn new(n: usize) -> Self {
        Self { lower: vec![0.0; n], upper: vec![f64::INFINITY; n], valid: false, first: true, choice: None }
    }

    /// Bounds where they save time, chosen as the fit runs (`algorithm="auto"`).
    pub fn chosen(n: usize) -> Self {
        Self { choice: Some(Choice::new(n)), ..Self::new(n) }
    }

    /// A chunk's pass in a fit over chunks (`bindings::chunks`): from the lower bounds its
    /// last pass left (and already loosened), or, with none, a full search that makes them.
    pub fn resume(lower: Option<Vec<f64>>, n: usize) -> Self {
        let valid = lower.is_some();
        let upper = vec![f64::INFINITY; n];
        Self { lower: lower.unwrap_or_else(|| vec![0.0; n]), upper, valid, first: false, choice: None }
    }

    /// The lower bounds, for the chunk's next pass.
    pub fn into_lower(self) -> Vec<f64> {
        self.lower
    }

    /// Labels, squared distances and per-cluster sums for `centroids`, searching only the
    /// rows the bounds cannot settle (all rows when there are no bounds yet); `half_gaps`
    /// as [`centroid_half_gaps`] gives them, computed once for all chunks of a pass. Returns
    /// the sums and how many rows needed a full search.
    #[allow(clippy::too_many_arguments)]
    pub fn chunk_pass<T: Scalar>(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        centroids: MatRef<'_, T>,
        half_gaps: &[f64],
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<(ClusterSums, usize)> {
        let searched = self.bounded_assign(
            kernel,
            points.x,
            points.x_sq_norms,
            centroids,
            Some(half_gaps),
            (None, true),
            labels,
            distances,
            keep_going,
        )?;
        Ok((kernel.accumulate(points.x, points.weights, labels, centroids.rows())?, searched))
    }

    /// How this pass searches (a dense pass leaves the bounds stale).
    fn plan<T: Scalar>(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        centroids: MatRef<'_, T>,
    ) -> Result<Plan> {
        if std::mem::take(&mut self.first) {
            return Ok(Plan::Dense);
        }
        if self.valid {
            return Ok(Plan::Bounded);
        }
        let make = match self.choice.as_mut() {
            Some(choice) => choice.try_bounds(kernel, points, centroids)?,
            None => true,
        };
        Ok(if make { Plan::Make } else { Plan::Dense })
    }

    /// After a pass made by `plan` in `time` (`measured`: it measured every distance and
    /// summed the clusters; `searched`: the rows it searched in full): what the choice learns.
    fn planned<T: Scalar>(
        &mut self,
        plan: Plan,
        (time, measured, searched): (Duration, bool, usize),
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        centroids: MatRef<'_, T>,
    ) -> Result<()> {
        let Some(choice) = self.choice.as_mut() else {
            return Ok(());
        };
        match plan {
            Plan::Dense => {
                choice.searched_all(time, measured);
                choice.observe(kernel, points, centroids)?;
            }
            Plan::Make => choice.searched_all(time, measured),
            Plan::Bounded => self.valid = choice.bounded(time, measured, searched as f64 / points.rows() as f64),
        }
        Ok(())
    }

    /// Labels and squared distances of every row for `centroids`, searching only the rows
    /// the bounds cannot settle; returns how many rows needed a full search.
    #[allow(clippy::too_many_arguments)]
    fn bounded_assign<T: Scalar>(
        &mut self,
        kernel: &dyn Kernel<T>,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        centroids: MatRef<'_, T>,
        known_gaps: Option<&[f64]>,
        (kept, measure): (Option<&KeptRows>, bool),
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<usize> {
        let (n, k, d) = (x.rows(), centroids.rows(), x.cols());
        let mut search = vec![true; n];
        let tested = self.valid;
        let c_norms = row_sq_norms(centroids);
        let c_norm_max = c_norms.iter().fold(0.0f64, |m, v| m.max(v.as_f64()));
        // Rounding in the gaps and lower bounds (made from partial distances): the same
        // margin within which the kernel decides near ties again.
        let error = partial_error_bound::<T>(d);
        let slack_of = |i: usize| error * (x_sq_norms[i].as_f64() + 2.0 * c_norm_max);
        if tested {
            let measured;
            let half_gaps = match known_gaps {
                Some(gaps) => gaps,
                None => {
                    measured = centroid_half_gaps(kernel, centroids, &c_norms)?;
                    &measured
                }
            };
            let bound_of = |i: usize| half_gaps[labels[i] as usize].max(self.lower[i]);
            // A pass that need not measure its rows bounds each row's own distance by the bound
            // it kept from the last pass (loosened since): a row it leaves is searched (a new
            // bound from its kept row seldom settles it, and costs a read of the row); a row
            // with no bound yet gets one from the rows the kernel kept (half the bytes).
            let kept = kept.filter(|_| !measure);
            let unsure: Vec<usize> = match kept {
                Some(_) => {
                    (0..n).into_par_iter().with_min_len(REDUCE_CHUNK).filter(|&i| self.upper[i].is_infinite()).collect()
                }
                None => Vec::new(),
            };
            let unsure_labels: Vec<u32> = unsure.iter().map(|&i| labels[i]).collect();
            let mut own_bounds = vec![0.0; unsure.len()];
            let kept_bounds = kept.is_some_and(|kept| {
                kernel.labelled_sq_distance_bounds((kept, &unsure), centroids, &unsure_labels, &mut own_bounds)
            });
            if kept_bounds {
                for (&i, &own) in unsure.iter().zip(&own_bounds) {
                    self.upper[i] = own.sqrt();
                }
                search
                    .par_iter_mut()
                    .zip(&self.upper)
                    .enumerate()
                    .with_min_len(REDUCE_CHUNK)
                    .for_each(|(i, (needs, &upper))| *needs = !(upper * upper + slack_of(i) <= bound_of(i).powi(2)));
                // Settled by the bound kept: its square stands for the distance.
                distances.par_iter_mut().zip(&self.upper).for_each(|(dist, &upper)| *dist = T::of_f64(upper * upper));
            } else {
                self.upper.fill(f64::INFINITY);
                search.par_chunks_mut(REDUCE_CHUNK).zip(distances.par_chunks_mut(REDUCE_CHUNK)).enumerate().for_each(
                    |(c, (search, distances))| {
                        for (r, (needs, dist)) in search.iter_mut().zip(distances.iter_mut()).enumerate() {
                            let i = c * REDUCE_CHUNK + r;
                            // By differences: exact up to the final rounding, like the kernel's.
                            let own = sq_distance(x.row(i), centroids.row(labels[i] as usize));
                            *dist = T::of_f64(own);
                            *needs = !(own + slack_of(i) <= bound_of(i).powi(2));
                        }
                    },
                );
            }
        } else {
            self.upper.fill(f64::INFINITY);
        }
        let step = kernel.rows_per_check(k, d).min(n);
        let mut searched = 0;
        let mut second = vec![T::zero(); step];
        let (lower, upper) = (&mut self.lower, &mut self.upper);
        for_each_chunk(n, step, keep_going, |start, end| {
            let rows: Vec<usize> = (start..end).filter(|&i| search[i]).collect();
            searched += rows.len();
            if 8 * rows.len() > 7 * (end - start) {
                // Nearly all unsettled: search the whole chunk in place (no list of rows).
                let second = &mut second[..end - start];
                let (rows, norms) = (x.slice_rows(start, end), &x_sq_norms[start..end]);
                let (labels, distances) = (&mut labels[start..end], &mut distances[start..end]);
                if measure {
                    kernel.assign_top2(rows, norms, centroids, labels, distances, second)?;
                } else {
                    let kept = kept.map(|kept| (kept, start));
                    kernel.assign_top2_labels(rows, norms, kept, centroids, labels, distances, second)?;
                }
                for (lower, &s) in lower[start..end].iter_mut().zip(second.iter()) {
                    *lower = s.as_f64().sqrt();
                }
                // A searched row's distance bounds it next: an upper bound where not measured,
                // exact or within the kernel's float32 error otherwise (the slack covers it).
                for (r, (upper, dist)) in upper[start..end].iter_mut().zip(distances.iter()).enumerate() {
                    *upper = (dist.as_f64() + slack_of(start + r)).sqrt();
                }
            } else if !rows.is_empty() {
                let m = rows.len();
                let (mut l, mut dist) = (vec![0u32; m], vec![T::zero(); m]);
                let second = &mut second[..m];
                if measure {
                    kernel.assign_top2_rows(x, x_sq_norms, &rows, centroids, &mut l, &mut dist, second)?;
                } else {
                    kernel.assign_top2_rows_labels(x, x_sq_norms, &rows, kept, centroids, &mut l, &mut dist, second)?;
                }
                for (r, &i) in rows.iter().enumerate() {
                    (labels[i], distances[i], lower[i]) = (l[r], dist[r], second[r].as_f64().sqrt());
                    upper[i] = (dist[r].as_f64() + slack_of(i)).sqrt();
                }
            }
            Ok(())
        })?;
        self.valid = true;
        Ok(searched)
    }

    /// A scheduled bounded pass: labels and distances of every row, searching the rows the
    /// bounds cannot settle (`how`: the rows the kernel kept, and whether searched rows'
    /// distances must be exact).
    #[allow(clippy::too_many_arguments)]
    fn measure<T: Scalar>(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        centroids: MatRef<'_, T>,
        how: (Option<&KeptRows>, bool),
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<usize> {
        let (x, x_sq_norms) = (points.x, points.x_sq_norms);
        let searched =
            self.bounded_assign(kernel, x, x_sq_norms, centroids, None, how, labels, distances, keep_going)?;
        log::debug!("{searched} of {} rows searched all centroids", points.rows());
        Ok(searched)
    }

    /// The centroids moved from `old` to `new` (`k × d` each): loosen every row's lower
    /// bound (and the choice's sample's) by the farthest move among the centroids other than
    /// its own.
    fn loosen<T: Scalar>(&mut self, old: &[T], new: &[T], d: usize, labels: &[u32]) {
        let sampled = self.choice.as_ref().is_some_and(Choice::observed);
        if !(self.valid || sampled) {
            return;
        }
        let shifts = centroid_shifts(old, new, d);
        self.loosen_by(&shifts, labels);
        if let Some(choice) = self.choice.as_mut() {
            choice.moved(&shifts);
        }
    }

    /// Loosens every row's lower bound by the farthest move (`shifts`: how far each
    /// centroid moved, a distance) among the centroids other than its own.
    pub fn loosen_by(&mut self, shifts: &[f64], labels: &[u32]) {
        if !self.valid {
            return;
        }
        let farthest = Farthest::of(shifts);
        self.lower.par_iter_mut().zip(labels.par_iter()).for_each(|(lower, &label)| {
            *lower = (*lower - farthest.other_than(label)).max(0.0);
        });
        // A row's own centroid moved at most its shift away (infinite bounds stay so).
        self.upper.par_iter_mut().zip(labels.par_iter()).for_each(|(upper, &label)| *upper += shifts[label as usize]);
    }
}

impl<T: Scalar> HostPass<T> for BoundedPass {
    fn assign_sum(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<ClusterSums> {
        let plan = self.plan(kernel, points, centroids)?;
        let start = Instant::now();
        let (sums, searched) = if plan == Plan::Dense {
            (DensePass.assign_sum(kernel, points, centroids, labels, distances, keep_going)?, points.rows())
        } else {
            let searched = self.measure(kernel, points, centroids, (None, true), labels, distances, keep_going)?;
            (kernel.accumulate(points.x, points.weights, labels, centroids.rows())?, searched)
        };
        self.planned(plan, (start.elapsed(), true, searched), kernel, points, centroids)?;
        Ok(sums)
    }

    fn assign_measure(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        kept: Option<&KeptRows>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<()> {
        let plan = self.plan(kernel, points, centroids)?;
        let start = Instant::now();
        let searched = if plan == Plan::Dense {
            DensePass.assign_measure(kernel, points, kept, centroids, labels, distances, keep_going)?;
            points.rows()
        } else {
            // The caller takes the inertia from the sums: rows need not be measured.
            self.measure(kernel, points, centroids, (kept, false), labels, distances, keep_going)?
        };
        self.planned(plan, (start.elapsed(), false, searched), kernel, points, centroids)
    }

    fn assign(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        kept: Option<&KeptRows>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<()> {
        if !self.valid {
            return DensePass.assign(kernel, points, kept, centroids, labels, distances, keep_going);
        }
        // Labels only: the caller measures every row's distance after.
        self.bounded_assign(
            kernel,
            points.x,
            points.x_sq_norms,
            centroids,
            None,
            (kept, false),
            labels,
            distances,
            keep_going,
        )?;
        Ok(())
    }

    fn moved(&mut self, old: &[T], new: &[T], d: usize, labels: &[u32]) {
        self.loosen(old, new, d, labels);
    }
}

/// The two largest moves among the centroids, and which centroid made the largest.
pub(super) struct Farthest {
    first: f64,
    runner_up: f64,
    farthest: usize,
}

impl Farthest {
    pub(super) fn of(shifts: &[f64]) -> Self {
        let mut two = Self { first: 0.0, runner_up: 0.0, farthest: usize::MAX };
        for (j, &s) in shifts.iter().enumerate() {
            if s > two.first {
                (two.runner_up, two.first, two.farthest) = (two.first, s, j);
            } else if s > two.runner_up {
                two.runner_up = s;
            }
        }
        two
    }

    /// The largest move of a centroid other than `label`.
    pub(super) fn other_than(&self, label: u32) -> f64 {
        if label as usize == self.farthest {
            self.runner_up
        } else {
            self.first
        }
    }
}

/// How far each centroid moved from `old` to `new` (`k × d` each): a distance, not squared.
pub fn centroid_shifts<T: Scalar>(old: &[T], new: &[T], d: usize) -> Vec<f64> {
    old.chunks_exact(d)
        .zip(new.chunks_exact(d))
        .map(|(a, b)| a.iter().zip(b).map(|(&u, &v)| (u.as_f64() - v.as_f64()).powi(2)).sum::<f64>().sqrt())
        .collect()
}

/// Half the distance from each centroid to its nearest other centroid (infinite for one).
pub fn centroid_half_gaps<T: Scalar>(
    kernel: &dyn Kernel<T>,
    centroids: MatRef<'_, T>,
    c_norms: &[T],
) -> Result<Vec<f64>> {
    half_gaps_of(kernel, centroids, (centroids, c_norms), |j| j)
}

/// [`centroid_half_gaps`] of the centroids `of` (with their squared norms), `of`'s row `r`
/// being centroid `index(r)`: each searches the centroids, and its gap is the kernel's
/// runner-up bound where it finds itself, else the distance to the twin it found.
fn half_gaps_of<T: Scalar>(
    kernel: &dyn Kernel<T>,
    centroids: MatRef<'_, T>,
    (of, of_norms): (MatRef<'_, T>, &[T]),
    index: impl Fn(usize) -> usize,
) -> Result<Vec<f64>> {
    let m = of.rows();
    let (mut nearest, mut distances, mut second) = (vec![0u32; m], vec![T::zero(); m], vec![T::zero(); m]);
    kernel.assign_top2(of, of_norms, centroids, &mut nearest, &mut distances, &mut second)?;
    Ok((0..m)
        .map(|r| {
            let other = if nearest[r] as usize == index(r) { second[r] } else { distances[r] };
            0.5 * other.as_f64().max(0.0).sqrt()
        })
        .collect())
}

#[cfg(test)]
mod tests;
