//! Yinyang's grouped bounds (Ding et al., ICML 2015) for Lloyd iterations on the host. The
//! centroids are split once into groups of near neighbours (a few Lloyd iterations on the
//! initial centroids); each row keeps, per group, a lower bound on its distance to the
//! group's centroids other than its own. An iteration measures each row's exact distance to
//! its own centroid. A group whose bound, loosened by the farthest move among its centroids,
//! exceeds that distance cannot hold a nearer centroid; in a group that may, a centroid is
//! skipped when the group's last bound, loosened by that centroid's own move, exceeds the
//! best distance so far. The centroids left are measured exactly (by differences), so the
//! labels are those of a dense pass. A row left with many to measure is searched by the
//! kernel with the others of its chunk, which renews all its bounds.
//!
//! Where Hamerly's single bound (`super::bounds`) prunes little (many features, several
//! centroids sharing one true cluster), the groups still rule out all but a few centroids.

use rayon::prelude::*;

use super::bounds::centroid_shifts;
use super::host::{DensePass, HostPass};
use crate::error::Result;
use crate::kernel::{gather_with_norms, partial_error_bound, ClusterSums, KeptRows, Kernel};
use crate::matrix::{MatRef, Points};
use crate::monitor::{for_each_chunk, KeepGoing};
use crate::scalar::Scalar;

mod rows;
use rows::{round_down, Bounds};

/// Rows a task bounds at once.
const TASK_ROWS: usize = 256;
/// Lloyd iterations that group the initial centroids.
const GROUPING_ITERATIONS: usize = 5;
/// A row with more centroids left to measure than this share of all is searched by the
/// kernel, whose products cost far less per distance than measuring one by one.
const MEASURE_SHARE: f64 = 1.0 / 4.0;
/// Relative margin for the rounding in the bounds' arithmetic (float64 distances and moves,
/// float32 bounds rounded down).
const MARGIN: f64 = 1e-9;

/// How many groups a fit of `k` centroids and `d` features gets: a tenth of the centroids
/// (as Ding et al. advise), within a memory budget of a quarter of a float32 row per row, and
/// at least two (of one centroid each where `k` is 2).
pub fn group_count(k: usize, d: usize) -> usize {
    (k / 10).min(d / 4).max(2)
}

/// What a pass spent, for the log and the choice of strategy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassCounts {
    /// Rows the bounds kept at their centroid without measuring another.
    pub settled: usize,
    /// Rows that measured some centroids one by one, and how many in all.
    pub partial: usize,
    pub measured: usize,
    /// Rows the kernel searched against every centroid.
    pub full: usize,
}

impl PassCounts {
    fn add(mut self, other: PassCounts) -> Self {
        self.settled += other.settled;
        self.partial += other.partial;
        self.measured += other.measured;
        self.full += other.full;
        self
    }

    /// The share of all row–centroid distances this pass computed.
    pub fn share(&self, n: usize, k: usize) -> f64 {
        let all = (n * k) as f64;
        if all == 0.0 {
            return 0.0;
        }
        ((self.full * k + self.measured + self.partial + self.settled) as f64 / all).min(1.0)
    }
}

pub struct GroupedPass {
    /// The most groups to form.
    wanted: usize,
    /// The group of each centroid, and each group's centroids in ascending order (formed at
    /// the first pass).
    groups: Vec<u32>,
    members: Vec<Vec<u32>>,
    /// Per row and group (`n × groups`): a lower bound on the distance (not squared) from the
    /// row to the group's centroids other than its own, at the last pass's centroids.
    lower: Vec<f32>,
    /// How far each centroid moved since the last pass (a distance), and the farthest per group.
    drift: Vec<f64>,
    group_drift: Vec<f64>,
    /// Whether `lower` and the labels describe the last pass's centroids.
    valid: bool,
    /// Every pass's counts, in order.
    pub history: Vec<PassCounts>,
}

impl GroupedPass {
    pub fn new(groups: usize) -> Self {
        Self {
            wanted: groups,
            groups: Vec::new(),
            members: Vec::new(),
            lower: Vec::new(),
            drift: Vec::new(),
            group_drift: Vec::new(),
            valid: false,
            history: Vec::new(),
        }
    }

    /// Labels and exact squared distances of every row for `centroids`, measuring only what
    /// the bounds cannot rule out (every row against every centroid when there are none yet).
    fn search<T: Scalar>(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<PassCounts> {
        if self.members.is_empty() {
            self.form_groups(kernel, centroids)?;
        }
        let (n, k, d) = (points.rows(), centroids.rows(), points.cols());
        let t = self.members.len();
        let (x, x_sq_norms) = (points.x, points.x_sq_norms);
        let step = kernel.rows_per_check(k, d).min(n).max(1);
        let mut squared = vec![T::zero(); step * t];
        let mut counts = PassCounts::default();
        // Bounds describe the centroids of the last pass, loosened by how far they moved
        // since (`moved`): without that, they are made again.
        if self.drift.len() != k {
            self.valid = false;
        }
        if !self.valid {
            self.lower.resize(n * t, 0.0);
            search_all(kernel, points, centroids, &self.members, labels, distances, &mut self.lower, keep_going)?;
            self.valid = true;
            counts.full = n;
            return Ok(counts);
        }
        let c_norms: Vec<f64> = crate::matrix::row_sq_norms(centroids).iter().map(|v| v.as_f64()).collect();
        let bounds = Bounds {
            x,
            x_sq_norms,
            centroids,
            c_norm_max: c_norms.iter().fold(0.0f64, |m, &v| m.max(v)),
            c_norms,
            error: partial_error_bound::<T>(d),
            groups: &self.groups,
            members: &self.members,
            drift: &self.drift,
            group_drift: &self.group_drift,
            most: ((k as f64 * MEASURE_SHARE) as usize).max(1),
        };
        let lower = &mut self.lower;
        let mut full = Vec::new();
        for_each_chunk(n, step, keep_going, |start, end| {
            let tasks: Vec<(Vec<usize>, PassCounts)> = lower[start * t..end * t]
                .par_chunks_mut(TASK_ROWS * t)
                .zip(labels[start..end].par_chunks_mut(TASK_ROWS))
                .zip(distances[start..end].par_chunks_mut(TASK_ROWS))
                .enumerate()
                .map(|(b, ((lower, labels), distances))| bounds.rows(start + b * TASK_ROWS, lower, labels, distances))
                .collect();
            for (rows, task) in tasks {
                full.extend(rows);
                counts = counts.add(task);
            }
            Ok(())
        })?;
        // The rows the bounds left with many centroids: searched by the kernel, gathered
        // (each kernel call has a fixed cost: few calls), or where they are most rows, all
        // rows in place.
        if 2 * full.len() > n {
            full.clear();
            search_all(kernel, points, centroids, bounds.members, labels, distances, lower, keep_going)?;
            counts = PassCounts { full: n, ..PassCounts::default() };
        }
        for_each_chunk(full.len(), step, keep_going, |start, end| {
            let rows = &full[start..end];
            let m = rows.len();
            let squared = &mut squared[..m * t];
            let (gathered, norms) = gather_with_norms(x, x_sq_norms, rows);
            let (mut l, mut dist) = (vec![0u32; m], vec![T::zero(); m]);
            let block = MatRef::new(&gathered, m, d)?;
            kernel.assign_grouped(block, &norms, centroids, bounds.members, &mut l, &mut dist, squared)?;
            for (r, &i) in rows.iter().enumerate() {
                (labels[i], distances[i]) = (l[r], dist[r]);
                store_bounds(&squared[r * t..(r + 1) * t], &mut lower[i * t..(i + 1) * t]);
            }
            Ok(())
        })?;
        self.drift.clear();
        Ok(counts)
    }

    /// Groups the centroids by a few Lloyd iterations from evenly spaced ones; groups left
    /// empty are dropped.
    fn form_groups<T: Scalar>(&mut self, kernel: &dyn Kernel<T>, centroids: MatRef<'_, T>) -> Result<()> {
        let (k, d) = (centroids.rows(), centroids.cols());
        let t = self.wanted.clamp(1, k.max(1));
        let mut centres: Vec<T> = (0..t).flat_map(|g| centroids.row(g * k / t).to_vec()).collect();
        let norms = kernel.row_sq_norms(centroids)?;
        let (mut groups, mut distances) = (vec![0u32; k], vec![T::zero(); k]);
        for iteration in 0..GROUPING_ITERATIONS {
            kernel.assign(centroids, &norms, MatRef::new(&centres, t, d)?, &mut groups, &mut distances)?;
            if iteration + 1 == GROUPING_ITERATIONS {
                break;
            }
            let mut sums = vec![0.0f64; t * d];
            let mut counts = vec![0usize; t];
            for (j, &g) in groups.iter().enumerate() {
                counts[g as usize] += 1;
                for (s, &v) in sums[g as usize * d..(g as usize + 1) * d].iter_mut().zip(centroids.row(j)) {
                    *s += v.as_f64();
                }
            }
            for (g, &count) in counts.iter().enumerate().filter(|&(_, &c)| c > 0) {
                for (c, &s) in centres[g * d..(g + 1) * d].iter_mut().zip(&sums[g * d..(g + 1) * d]) {
                    *c = T::of_f64(s / count as f64);
                }
            }
        }
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); t];
        for (j, &g) in groups.iter().enumerate() {
            members[g as usize].push(j as u32);
        }
        members.retain(|m| !m.is_empty());
        for (g, group) in members.iter().enumerate() {
            for &j in group {
                groups[j as usize] = g as u32;
            }
        }
        log::debug!("grouped bounds: {} groups of the {k} centroids", members.len());
        (self.groups, self.members) = (groups, members);
        Ok(())
    }
}

/// Every row searched by the kernel, which renews all its bounds (`lower`, `n × groups`).
#[allow(clippy::too_many_arguments)]
fn search_all<T: Scalar>(
    kernel: &dyn Kernel<T>,
    points: Points<'_, T>,
    centroids: MatRef<'_, T>,
    members: &[Vec<u32>],
    labels: &mut [u32],
    distances: &mut [T],
    lower: &mut [f32],
    keep_going: KeepGoing<'_>,
) -> Result<()> {
    let (n, t) = (points.rows(), members.len());
    let step = kernel.rows_per_check(centroids.rows(), points.cols()).min(n).max(1);
    let mut squared = vec![T::zero(); step * t];
    for_each_chunk(n, step, keep_going, |start, end| {
        let squared = &mut squared[..(end - start) * t];
        kernel.assign_grouped(
            points.x.slice_rows(start, end),
            &points.x_sq_norms[start..end],
            centroids,
            members,
            &mut labels[start..end],
            &mut distances[start..end],
            squared,
        )?;
        store_bounds(squared, &mut lower[start * t..end * t]);
        Ok(())
    })
}

/// Squared lower bounds from the kernel (`T`) as the stored distance bounds.
fn store_bounds<T: Scalar>(squared: &[T], lower: &mut [f32]) {
    for (bound, &sq) in lower.iter_mut().zip(squared) {
        *bound = round_down(sq.as_f64().max(0.0).sqrt());
    }
}

impl<T: Scalar> HostPass<T> for GroupedPass {
    fn assign_sum(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<ClusterSums> {
        let counts = self.search(kernel, points, centroids, labels, distances, keep_going)?;
        log::debug!(
            "{} of {} rows searched all centroids; {} kept theirs by the grouped bounds; {} measured {} \
             centroids ({:.1} % of all distances computed)",
            counts.full,
            points.rows(),
            counts.settled,
            counts.partial,
            counts.measured,
            100.0 * counts.share(points.rows(), centroids.rows())
        );
        self.history.push(counts);
        // Rows the bounds settled were never read: their distances are measured here, with
        // the sums (the next pass's bounds start from them).
        kernel.accumulate_measuring(points.x, points.weights, labels, centroids, distances)
    }

    /// Rows the bounds settle are measured with the sums: the caller calls `assign_sum`.
    fn measures_apart(&self) -> bool {
        false
    }

    fn assign_measure(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        _kept: Option<&KeptRows>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<()> {
        self.assign_sum(kernel, points, centroids, labels, distances, keep_going).map(drop)
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
        self.search(kernel, points, centroids, labels, distances, keep_going)?;
        Ok(())
    }

    fn moved(&mut self, old: &[T], new: &[T], d: usize, _labels: &[u32]) {
        if !self.valid {
            return;
        }
        // Inflated by the margin: a move is measured in float64 from the stored values.
        self.drift = centroid_shifts(old, new, d).into_iter().map(|s| s * (1.0 + MARGIN)).collect();
        self.group_drift =
            self.members.iter().map(|group| group.iter().fold(0.0f64, |m, &j| m.max(self.drift[j as usize]))).collect();
    }
}
