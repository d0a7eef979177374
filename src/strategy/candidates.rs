//! Bounds from each row's nearest centroids (several bounds a row, as in Drake and Hamerly's
//! "Accelerated k-means with adaptive distance bounds", 2012, kept as a list instead). A
//! full search keeps, per row, the few centroids of least computed distance and a lower
//! bound on its distance to every other centroid. The rows are then taken in runs by label
//! (labels whose lists overlap share a run). Each pass first keeps unread the rows whose own
//! distance's bound lies below their bound on every other centroid (Hamerly's test); it
//! searches the others run by run against the union of their lists and the centroids that
//! moved farthest since (which every run measures), on the kernel's products from the rows
//! it kept. A row keeps the nearest of those when its distance lies below its bound less the
//! farthest any centroid outside the run's set has moved since the bound was made; any other
//! row is searched against every centroid (renewing its list and bound). So the labels are
//! those of a dense pass.
//!
//! Where many centroids share one true cluster and many features blur Hamerly's single
//! bound (`super::bounds`), a row's rivals are a handful of centroids: a run's union is a
//! dozen or two, and most rows settle with a few per cent of a dense pass's products.

use rayon::prelude::*;

use super::bounds::{centroid_shifts, BoundedPass, Farthest};
use super::host::{DensePass, HostPass};
use crate::error::Result;
use crate::kernel::{partial_error_bound, ClusterSums, KeptRows, Kernel};
use crate::matrix::{row_sq_norms, MatRef, Points};
use crate::monitor::{for_each_chunk, KeepGoing};
use crate::scalar::Scalar;

/// Centroids each row keeps from its last full search.
const NEAREST: usize = 8;
/// Centroids added a pass to those every row measures: the farthest movers.
const FAR_STEP: usize = 8;
/// At most this many such centroids; then the moves of the others loosen the bounds.
const FAR_MOST: usize = 16;
/// Fewest centroids a group is searched against (the cpu kernel's products need 16).
const GROUP_MIN: usize = 16;
/// When more than this share of the rows needs a full search, the next pass searches all.
const FAIL_SHARE: f64 = 0.5;
/// Dense passes before the first lists: centroids move far in a fit's first steps.
const DENSE_FIRST: usize = 4;

pub struct CandidatePass {
    /// `n × NEAREST`: each row's centroids of least computed distance at its last full search.
    nearest: Vec<u32>,
    /// Lower bound (a distance) on each row's distance to any centroid not in its list, when
    /// the list was made.
    beyond: Vec<f64>,
    /// Centroids every row measures (ascending): those that moved farthest since the lists.
    far: Vec<u32>,
    /// Per row, an upper bound on its distance to its own centroid and a lower bound on its
    /// distance to every other (distances, loosened by the moves since the last pass): rows
    /// with the first below the second keep their label unread.
    own: Vec<f64>,
    lower: Vec<f64>,
    /// The labels the runs were laid out by.
    laid_out: Option<Vec<u32>>,
    /// The step at which each row's list and bound were made (counted from the last full
    /// search of every row).
    since: Vec<u32>,
    /// Per step since then, how far each centroid has moved in all (a distance; the first
    /// entry zeros): what loosens a bound made at that step.
    paths: Vec<Vec<f64>>,
    /// Whether the lists and bounds describe the current centroids.
    valid: bool,
    /// Dense passes left before the lists are made (the first passes move centroids most).
    dense_left: usize,
    /// How long the last search of every row (making the lists) took: a pass from the lists
    /// that takes longer than `switch_ratio` times it hands the fit to Hamerly's bounds.
    full: Option<std::time::Duration>,
    switch_ratio: f64,
    /// The predicted share of rows settling below which a pass makes the lists again.
    settling_floor: f64,
    /// Hamerly's bounds, where the kernel keeps no rows or gives no lists.
    hamerly: Option<BoundedPass>,
    /// The rows in runs (by their labels when the lists were made), each run searched
    /// against its own centroids: the rows of run `g` are `members[starts[g]..starts[g + 1]]`.
    members: Vec<usize>,
    starts: Vec<usize>,
    /// The runs' order of the rows, for the kept rows to be laid out in (`HostPass::layout`).
    layout: Option<Vec<usize>>,
    /// Whether the kept rows lie in the runs' order (`members`).
    in_runs: bool,
}

/// A pass from the lists slower than this share of the last full search hands the fit to
/// Hamerly's bounds (where the lists save nothing).
const SWITCH_RATIO: f64 = 1.0;

/// The predicted share of rows settling from the lists below which a pass makes them again.
const SETTLING_FLOOR: f64 = 1.0 - FAIL_SHARE;

#[cfg(test)]
thread_local! {
    /// [`SWITCH_RATIO`] and [`SETTLING_FLOOR`] for passes made on this thread (tests force
    /// the hand-over, or lists made again at every pass).
    pub(crate) static TEST_SWITCH_RATIO: std::cell::Cell<f64> = const { std::cell::Cell::new(SWITCH_RATIO) };
    pub(crate) static TEST_SETTLING_FLOOR: std::cell::Cell<f64> = const { std::cell::Cell::new(SETTLING_FLOOR) };
}

fn switch_ratio() -> f64 {
    #[cfg(test)]
    return TEST_SWITCH_RATIO.with(std::cell::Cell::get);
    #[cfg(not(test))]
    SWITCH_RATIO
}

fn settling_floor() -> f64 {
    #[cfg(test)]
    return TEST_SETTLING_FLOOR.with(std::cell::Cell::get);
    #[cfg(not(test))]
    SETTLING_FLOOR
}

impl CandidatePass {
    pub fn new(n: usize) -> Self {
        Self {
            nearest: vec![u32::MAX; n * NEAREST],
            beyond: vec![0.0; n],
            far: Vec::new(),
            own: vec![f64::INFINITY; n],
            lower: vec![0.0; n],
            laid_out: None,
            since: vec![0; n],
            paths: Vec::new(),
            valid: false,
            dense_left: DENSE_FIRST,
            full: None,
            switch_ratio: switch_ratio(),
            settling_floor: settling_floor(),
            hamerly: None,
            members: Vec::new(),
            starts: Vec::new(),
            layout: None,
            in_runs: false,
        }
    }

    /// Hamerly's bounds from here on (chosen as `algorithm="auto"` chooses them).
    fn hamerly(&mut self) -> &mut BoundedPass {
        let n = self.beyond.len();
        if !self.members.is_empty() {
            // The kept rows back in their own order, which Hamerly's dense passes read.
            self.layout = Some((0..n).collect());
        }
        self.in_runs = false;
        (self.nearest, self.members, self.starts, self.laid_out) = (Vec::new(), Vec::new(), Vec::new(), None);
        self.hamerly.get_or_insert_with(|| BoundedPass::chosen(n))
    }

    /// A full search of every row that makes the lists; false where the kernel gives none.
    #[allow(clippy::too_many_arguments)]
    fn make<T: Scalar>(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        kept: &KeptRows,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<bool> {
        let (x, norms, n) = (points.x, points.x_sq_norms, points.rows());
        let (mut beyond, mut second) = (vec![T::zero(); n], vec![T::zero(); n]);
        let mut given = true;
        let step = kernel.rows_per_check(centroids.rows(), x.cols()).min(n).next_multiple_of(64);
        // Where the kept rows lie in the runs' order, each chunk lists the rows in that order
        // (read where they lie, not rounded again from the rows) and its results are moved to
        // the rows' places.
        let in_runs = self.in_runs.then_some(&self.members);
        for_each_chunk(n, step, keep_going, |start, end| {
            if let (true, Some(order)) = (given, in_runs) {
                let rows = &order[start..end];
                let listed = ListedSearch::of(kernel, points, rows, kept, centroids)?;
                given = listed.given;
                for (r, &i) in rows.iter().enumerate() {
                    (labels[i], distances[i]) = (listed.labels[r], listed.upper[r]);
                    (beyond[i], second[i]) = (listed.beyond[r], listed.second[r]);
                    self.nearest[i * NEAREST..(i + 1) * NEAREST].copy_from_slice(listed.nearest(r));
                }
            } else if given {
                let nearest = &mut self.nearest[start * NEAREST..end * NEAREST];
                let lists = (nearest, &mut beyond[start..end], &mut second[start..end]);
                given = kernel.assign_nearest_labels(
                    x.slice_rows(start, end),
                    &norms[start..end],
                    None,
                    Some((kept, start)),
                    centroids,
                    &mut labels[start..end],
                    &mut distances[start..end],
                    lists,
                )?;
            }
            Ok(())
        })?;
        if given {
            // The runs stay while most rows keep the label they were laid out by (a run's
            // centroids are its rows' lists, whatever their labels).
            let stale = match &self.laid_out {
                Some(then) => then.iter().zip(labels.iter()).filter(|(a, b)| a != b).count() * 5 > n,
                None => true,
            };
            if stale {
                self.regroup(labels, centroids.rows());
            }
            self.beyond.par_iter_mut().zip(&beyond).for_each(|(b, &sq)| *b = sq.as_f64().max(0.0).sqrt());
            self.since.fill(0);
            // Hamerly's test from the search's own bounds.
            let slack = Slack::of(centroids, x.cols());
            (self.own.par_iter_mut().enumerate()).for_each(|(i, own)| *own = slack.raised(distances[i], norms[i]));
            self.lower.par_iter_mut().zip(&second).for_each(|(lower, &sq)| *lower = sq.as_f64().max(0.0).sqrt());
            self.paths = vec![vec![0.0; centroids.rows()]];
            self.far.clear();
            self.valid = true;
        }
        Ok(given)
    }

    /// The farthest any centroid outside `set` (ascending) has moved since step `at`.
    fn moved_outside(&self, at: u32, set: &[u32]) -> f64 {
        let (now, then) = (self.paths.last().expect("paths from the lists' making"), &self.paths[at as usize]);
        let outside = (0..now.len()).filter(|&j| set.binary_search(&(j as u32)).is_err());
        outside.fold(0.0f64, |m, j| m.max(now[j] - then[j]))
    }

    /// The share of rows sure to settle among their own lists: their own distance's bound
    /// below their lists' bound less the farthest move since among the centroids other than
    /// the far movers (a run's test leaves out the moves of its own centroids too).
    fn settling_share(&self) -> f64 {
        if self.paths.is_empty() {
            return 0.0;
        }
        let moved: Vec<f64> = (0..self.paths.len() as u32).map(|at| self.moved_outside(at, &self.far)).collect();
        let settling = (self.own.par_iter().zip(&self.beyond).zip(&self.since))
            .filter(|((own, beyond), since)| **own < **beyond - moved[**since as usize])
            .count();
        settling as f64 / self.own.len().max(1) as f64
    }
}

/// A full search of listed rows (from the kept rows) with their lists of nearest centroids:
/// per listed row its label, an upper bound on its distance, its list, the bound on every
/// centroid outside the list and the runner-up's bound; `given` false where the kernel
/// gives no lists.
struct ListedSearch<T> {
    labels: Vec<u32>,
    upper: Vec<T>,
    nearest: Vec<u32>,
    beyond: Vec<T>,
    second: Vec<T>,
    given: bool,
}

impl<T: Scalar> ListedSearch<T> {
    fn of(
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        rows: &[usize],
        kept: &KeptRows,
        centroids: MatRef<'_, T>,
    ) -> Result<Self> {
        let m = rows.len();
        let (mut labels, mut upper) = (vec![0u32; m], vec![T::zero(); m]);
        let (mut nearest, mut beyond, mut second) =
            (vec![u32::MAX; m * NEAREST], vec![T::zero(); m], vec![T::zero(); m]);
        let given = kernel.assign_nearest_labels(
            points.x,
            points.x_sq_norms,
            Some(rows),
            Some((kept, 0)),
            centroids,
            &mut labels,
            &mut upper,
            (&mut nearest, &mut beyond, &mut second),
        )?;
        Ok(Self { labels, upper, nearest, beyond, second, given })
    }

    /// The list of listed row `r`.
    fn nearest(&self, r: usize) -> &[u32] {
        &self.nearest[r * NEAREST..(r + 1) * NEAREST]
    }
}

/// Rounding in a pass's distances, which are upper bounds only up to their rounding to the
/// float type: each row's own distance bound is raised by it (the margin the bounded passes
/// of `super::bounds` take).
struct Slack {
    error: f64,
    c_norm_max: f64,
}

impl Slack {
    fn of<T: Scalar>(centroids: MatRef<'_, T>, d: usize) -> Self {
        let c_norm_max = row_sq_norms(centroids).iter().fold(0.0f64, |m, v| m.max(v.as_f64()));
        Self { error: partial_error_bound::<T>(d), c_norm_max }
    }

    /// A distance (not squared) at least the row's, from its squared distance `upper`.
    fn raised<T: Scalar>(&self, upper: T, x_sq_norm: T) -> f64 {
        (upper.as_f64() + self.error * (x_sq_norm.as_f64() + 2.0 * self.c_norm_max)).max(0.0).sqrt()
    }
}

/// The centroids below `k` that `listed` names, each once, ascending. Rows' lists name the
/// same centroids many times: each is taken once by marking it with `stamp` in `marks` (one
/// entry per centroid, none holding `stamp` on entry), and only the distinct ones are sorted.
fn distinct_centroids(listed: impl Iterator<Item = u32>, k: usize, marks: &mut [usize], stamp: usize) -> Vec<u32> {
    let mut distinct = Vec::new();
    for j in listed.filter(|&j| (j as usize) < k) {
        if marks[j as usize] != stamp {
            marks[j as usize] = stamp;
            distinct.push(j);
        }
    }
    distinct.sort_unstable();
    distinct
}

mod runs;
mod search;

impl<T: Scalar> HostPass<T> for CandidatePass {
    fn assign_sum(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<ClusterSums> {
        // Passes that sum every row read it anyway: Hamerly's bounds, from its own distance.
        self.hamerly().assign_sum(kernel, points, centroids, labels, distances, keep_going)
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
        let kept = match (self.hamerly.is_some(), kept) {
            (false, Some(kept)) => kept,
            _ => return self.hamerly().assign_measure(kernel, points, kept, centroids, labels, distances, keep_going),
        };
        if self.dense_left > 0 {
            self.dense_left -= 1;
            return DensePass.assign_measure(kernel, points, Some(kept), centroids, labels, distances, keep_going);
        }
        if self.valid && self.settling_share() < self.settling_floor {
            // Most rows would fail the lists' test: searching all rows again costs less.
            self.valid = false;
        }
        if self.valid {
            let started = std::time::Instant::now();
            self.search(kernel, points, kept, centroids, labels, distances, keep_going)?;
            if let Some(full) = self.full {
                let ratio = started.elapsed().as_secs_f64() / full.as_secs_f64().max(1e-9);
                let keep = ratio < self.switch_ratio;
                log::debug!(
                    "a pass from the lists took {ratio:.2}× the last full search: {}",
                    if keep { "keeping the lists" } else { "Hamerly's bounds follow" }
                );
                if !keep {
                    self.hamerly();
                }
            }
            return Ok(());
        }
        let started = std::time::Instant::now();
        if !self.make(kernel, points, kept, centroids, labels, distances, keep_going)? {
            log::debug!("the kernel gives no lists of nearest centroids: Hamerly's bounds");
            let hamerly = self.hamerly();
            return hamerly.assign_measure(kernel, points, Some(kept), centroids, labels, distances, keep_going);
        }
        self.full = Some(started.elapsed());
        log::debug!("each row's {NEAREST} nearest centroids listed");
        Ok(())
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
        if let Some(hamerly) = self.hamerly.as_mut() {
            return hamerly.assign(kernel, points, kept, centroids, labels, distances, keep_going);
        }
        match kept {
            Some(kept) if self.valid => self.search(kernel, points, kept, centroids, labels, distances, keep_going),
            _ => DensePass.assign(kernel, points, kept, centroids, labels, distances, keep_going),
        }
    }

    fn layout(&mut self) -> Option<Vec<usize>> {
        self.layout.take()
    }

    fn laid_out(&mut self, done: bool) {
        // Laid out in the runs' order (not back in the rows' own, after a hand-over).
        self.in_runs = done && self.hamerly.is_none() && !self.members.is_empty();
    }

    fn moved(&mut self, old: &[T], new: &[T], d: usize, labels: &[u32]) {
        if let Some(hamerly) = self.hamerly.as_mut() {
            return HostPass::<T>::moved(hamerly, old, new, d, labels);
        }
        if !self.valid {
            return;
        }
        let shifts = centroid_shifts(old, new, d);
        // The farthest movers join the centroids every row measures, while there is room.
        let mut movers: Vec<u32> = (0..shifts.len() as u32)
            .filter(|j| shifts[*j as usize] > 0.0 && self.far.binary_search(j).is_err())
            .collect();
        movers.sort_unstable_by(|a, b| shifts[*b as usize].total_cmp(&shifts[*a as usize]));
        let room = FAR_MOST.saturating_sub(self.far.len()).min(FAR_STEP);
        self.far.extend(movers.iter().take(room));
        self.far.sort_unstable();
        let farthest = Farthest::of(&shifts);
        (self.own.par_iter_mut().zip(self.lower.par_iter_mut()).zip(labels.par_iter())).for_each(
            |((own, lower), &label)| {
                *own += shifts[label as usize] * (1.0 + 1e-9);
                *lower = (*lower - farthest.other_than(label) * (1.0 + 1e-9)).max(0.0);
            },
        );
        let paths: Vec<f64> = self
            .paths
            .last()
            .map_or(shifts.clone(), |last| last.iter().zip(&shifts).map(|(path, shift)| path + shift).collect());
        self.paths.push(paths);
    }
}
