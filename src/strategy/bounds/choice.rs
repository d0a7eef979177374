//! Whether Hamerly's bounds pay in an in-memory fit (`algorithm="auto"`), decided pass by
//! pass from what they save. A dense pass measures a fixed sample of rows against every
//! centroid; at the next pass, the sample says which rows bounds made then would have left to
//! search now. Below a share, the pass makes the bounds (a full search that keeps each row's
//! runner-up), and bounded passes follow while each takes less time than the last full
//! search. One that takes longer sets the share at which the bounds would have broken even,
//! and the next try waits for an estimate below it. Each estimate above the share doubles
//! the dense passes to the next, unless estimates cost under 2 % of a full search (the
//! sample's distances cost a few percent of a small pass on matrix tiles).
//! Which passes run changes no label.

use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::kernel::Kernel;
use crate::matrix::{row_sq_norms, sq_distance, MatRef, Points};
use crate::scalar::Scalar;

use super::Farthest;

/// Sampled rows: at most one in this many, ...
const SAMPLE_EVERY: usize = 64;
/// ... between these counts (the estimate's standard error stays a few percent, and the
/// sample's distances a small share of a pass).
const SAMPLE_MIN: usize = 32;
const SAMPLE_MAX: usize = 256;
/// The estimated share of rows left to search below which a fit first makes its bounds.
const FIRST_TRY_SHARE: f64 = 0.75;
/// After bounds lost, the next try waits for an estimate below this part of the share at
/// which they would have broken even (estimates and timings are noisy).
const MARGIN: f64 = 0.8;
/// Most dense passes between two estimates.
const WAIT_MAX: usize = 7;
/// An estimate costing under this share of a full search never waits.
const CHEAP_SHARE: f64 = 0.02;

/// The sample's state at the last dense pass, loosened since by the centroids' moves.
struct Observed {
    labels: Vec<u32>,
    /// A lower bound (a distance) on each sampled row's distance to every centroid other
    /// than its own.
    lower: Vec<f64>,
}

pub struct Choice {
    sample: Vec<usize>,
    observed: Option<Observed>,
    /// Bounds are made when the estimated share of rows to search is at most this.
    try_share: f64,
    /// Dense passes before the sample is measured again, and the wait after the next estimate.
    wait: usize,
    next_wait: usize,
    /// What the last estimate cost (measuring the sample and estimating).
    cost: Duration,
    /// The time of the last pass that searched every row, and whether it measured every
    /// distance and summed the clusters (passes compare only with passes of their kind).
    full: Option<(Duration, bool)>,
}

impl Choice {
    pub fn new(n: usize) -> Self {
        let count = (n / SAMPLE_EVERY).clamp(SAMPLE_MIN, SAMPLE_MAX).min(n);
        // One row at random from each of `count` equal runs: rows often come in runs of one
        // cluster, or cycle through clusters (where evenly spaced rows would see only a few).
        let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
        let sample = (0..count)
            .map(|s| {
                let (start, end) = (s * n / count, (s + 1) * n / count);
                start + rng.random_range(0..end - start)
            })
            .collect();
        Self {
            sample,
            observed: None,
            try_share: FIRST_TRY_SHARE,
            wait: 0,
            next_wait: 1,
            cost: Duration::ZERO,
            full: None,
        }
    }

    /// Whether the sample holds a dense pass's state (to be loosened as centroids move).
    pub fn observed(&self) -> bool {
        self.observed.is_some()
    }

    /// Before a pass without bounds: whether it should make them, from the sample's state at
    /// the last pass and the current `centroids`.
    pub fn try_bounds<T: Scalar>(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        centroids: MatRef<'_, T>,
    ) -> Result<bool> {
        let Some(share) = self.estimate(kernel, points, centroids)? else {
            return Ok(false);
        };
        let bounds = share <= self.try_share;
        let cheap = self.full.is_some_and(|(full, _)| self.cost.as_secs_f64() < CHEAP_SHARE * full.as_secs_f64());
        if !bounds && !cheap {
            self.wait = self.next_wait;
            self.next_wait = (2 * self.next_wait + 1).min(WAIT_MAX);
        }
        log::debug!(
            "bounds would leave {:.0} % of rows to search (sampled; made below {:.0} %): {}",
            100.0 * share,
            100.0 * self.try_share,
            if bounds { "making them" } else { "dense pass" }
        );
        Ok(bounds)
    }

    /// The share of the sample that bounds made at the last pass would leave to search for
    /// `centroids` (Hamerly's tests, as `super::BoundedPass` makes them); `None` without a
    /// sample's state (consumed).
    fn estimate<T: Scalar>(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        centroids: MatRef<'_, T>,
    ) -> Result<Option<f64>> {
        let Some(observed) = self.observed.take() else {
            return Ok(None);
        };
        let start = Instant::now();
        let half_gaps = owners_half_gaps(kernel, centroids, &observed.labels)?;
        let left = (self.sample.iter().zip(&observed.labels).zip(&observed.lower))
            .filter(|((&i, &label), &lower)| {
                let own = sq_distance(points.x.row(i), centroids.row(label as usize)).sqrt();
                let gap = half_gaps.binary_search_by_key(&label, |&(j, _)| j).map_or(0.0, |at| half_gaps[at].1);
                own > gap.max(lower)
            })
            .count();
        self.cost += start.elapsed();
        Ok(Some(left as f64 / self.sample.len() as f64))
    }

    /// After a pass that searched every row (`measured`: it measured every distance and
    /// summed the clusters), which took `time`.
    pub fn searched_all(&mut self, time: Duration, measured: bool) {
        self.full = Some((time, measured));
    }

    /// After a dense pass: the sample's labels and runner-ups for `centroids`, for the next
    /// pass's estimate (unless the estimates wait).
    pub fn observe<T: Scalar>(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        centroids: MatRef<'_, T>,
    ) -> Result<()> {
        if self.wait > 0 {
            self.wait -= 1;
            return Ok(());
        }
        let start = Instant::now();
        let m = self.sample.len();
        let (mut labels, mut distances, mut second) = (vec![0u32; m], vec![T::zero(); m], vec![T::zero(); m]);
        let (x, norms) = (points.x, points.x_sq_norms);
        kernel.assign_top2_rows(x, norms, &self.sample, centroids, &mut labels, &mut distances, &mut second)?;
        let lower = second.iter().map(|s| s.as_f64().max(0.0).sqrt()).collect();
        self.observed = Some(Observed { labels, lower });
        self.cost = start.elapsed();
        Ok(())
    }

    /// After a bounded pass that searched `share` of the rows in `time` (`measured` as in
    /// [`Choice::searched_all`]): whether the bounds are kept for the next pass.
    pub fn bounded(&mut self, time: Duration, measured: bool, share: f64) -> bool {
        let Some((full, _)) = self.full.filter(|&(_, kind)| kind == measured) else {
            return true;
        };
        let ratio = time.as_secs_f64() / full.as_secs_f64().max(1e-9);
        let keep = ratio < 1.0;
        if !keep {
            // A pass costs about a fixed part plus the share searched times a full search:
            // the bounds break even at `share + 1 − ratio`.
            self.try_share = self.try_share.min(MARGIN * (share + 1.0 - ratio)).max(0.0);
            self.next_wait = 1;
        }
        log::debug!(
            "a bounded pass took {:.2}× the last full search ({:.0} % of rows searched): {}",
            ratio,
            100.0 * share,
            if keep { "keeping the bounds" } else { "dense passes follow" }
        );
        keep
    }

    /// The centroids moved (`shifts`, distances, one per centroid): loosens the sample's
    /// lower bounds as the rows' own are.
    pub fn moved(&mut self, shifts: &[f64]) {
        if let Some(observed) = self.observed.as_mut() {
            let farthest = Farthest::of(shifts);
            for (lower, &label) in observed.lower.iter_mut().zip(&observed.labels) {
                *lower = (*lower - farthest.other_than(label)).max(0.0);
            }
        }
    }
}

/// Half the distance from each centroid among `labels` to its nearest other centroid, by
/// centroid (ascending).
fn owners_half_gaps<T: Scalar>(
    kernel: &dyn Kernel<T>,
    centroids: MatRef<'_, T>,
    labels: &[u32],
) -> Result<Vec<(u32, f64)>> {
    let mut owners = labels.to_vec();
    owners.sort_unstable();
    owners.dedup();
    let rows: Vec<T> = owners.iter().flat_map(|&j| centroids.row(j as usize).iter().copied()).collect();
    let rows = MatRef::new(&rows, owners.len(), centroids.cols())?;
    let gaps = super::half_gaps_of(kernel, centroids, (rows, &row_sq_norms(rows)), |r| owners[r] as usize)?;
    Ok(owners.into_iter().zip(gaps).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::cpu::CpuKernel;
    use crate::strategy::bounds::centroid_shifts;

    /// Overlapping blobs (`k` of them, spread `spread`) in `d` dimensions, and `k` rows as
    /// centroids.
    fn data(n: usize, d: usize, k: usize, spread: f64, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let means: Vec<f64> = (0..k * d).map(|_| rng.random::<f64>() * 4.0).collect();
        let x: Vec<f64> =
            (0..n * d).map(|e| means[((e / d) % k) * d + e % d] + spread * (rng.random::<f64>() - 0.5)).collect();
        let centroids = (0..k).flat_map(|j| x[j * 31 * d..(j * 31 + 1) * d].to_vec()).collect();
        (x, centroids)
    }

    /// Every row's nearest and second-nearest squared distances, by differences in float64.
    fn top2(x: &[f64], c: &[f64], d: usize) -> Vec<(u32, f64, f64)> {
        x.chunks_exact(d)
            .map(|row| {
                let dist: Vec<f64> =
                    c.chunks_exact(d).map(|cj| row.iter().zip(cj).map(|(a, b)| (a - b) * (a - b)).sum()).collect();
                let best = (0..dist.len()).min_by(|&a, &b| dist[a].total_cmp(&dist[b])).unwrap();
                let second = (0..dist.len()).filter(|&j| j != best).map(|j| dist[j]).fold(f64::INFINITY, f64::min);
                (best as u32, dist[best], second)
            })
            .collect()
    }

    /// The sample's estimate is the share of all rows that Hamerly's tests, made from the full
    /// search of one pass, leave to search in the next (computed here for every row, in
    /// float64), within the sampling error.
    #[test]
    fn the_estimate_is_the_share_bounds_leave() {
        let (n, d, k) = (16384, 12, 40);
        // Rows cycle through the blobs; the spreads leave about 13 %, 65 % and 94 % to search.
        for (spread, seed) in [(2.0, 1), (1.5, 2), (2.5, 3)] {
            let (x, c0) = data(n, d, k, spread, seed);
            let xm = MatRef::new(&x, n, d).unwrap();
            let norms = row_sq_norms(xm);
            let points = Points { x: xm, x_sq_norms: &norms, weights: None };
            let mut choice = Choice::new(n);
            let c0m = MatRef::new(&c0, k, d).unwrap();
            choice.observe(&CpuKernel as &dyn Kernel<f64>, points, c0m).unwrap();
            // One Lloyd update.
            let first = top2(&x, &c0, d);
            let mut c1 = vec![0.0; k * d];
            let mut counts = vec![0.0; k];
            for (row, &(label, _, _)) in x.chunks_exact(d).zip(&first) {
                counts[label as usize] += 1.0;
                c1[label as usize * d..][..d].iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
            for j in 0..k {
                c1[j * d..][..d].iter_mut().for_each(|s| *s = if counts[j] > 0.0 { *s / counts[j] } else { c0[j * d] });
            }
            let shifts = centroid_shifts(&c0, &c1, d);
            choice.moved(&shifts);
            let estimate = choice.estimate(&CpuKernel, points, MatRef::new(&c1, k, d).unwrap()).unwrap().unwrap();
            let gaps: Vec<f64> = top2(&c1, &c1, d).iter().map(|&(_, _, second)| 0.5 * second.sqrt()).collect();
            let left = (x.chunks_exact(d).zip(&first))
                .filter(|(row, &(label, _, second))| {
                    let j = label as usize;
                    let farthest = (0..k).filter(|&o| o != j).map(|o| shifts[o]).fold(0.0, f64::max);
                    let own: f64 =
                        row.iter().zip(&c1[j * d..][..d]).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
                    own > gaps[j].max(second.sqrt() - farthest)
                })
                .count();
            let share = left as f64 / n as f64;
            assert!((estimate - share).abs() < 0.1, "spread {spread}: estimated {estimate}, all rows {share}");
            assert!(choice.estimate(&CpuKernel, points, c0m).unwrap().is_none(), "an estimate uses the state up");
        }
    }

    /// Bounds stay while a bounded pass takes less time than the last full search of its
    /// kind; one that takes longer sets the next try's share below its break-even share.
    #[test]
    fn bounds_stay_while_they_save_time() {
        let ms = Duration::from_millis;
        let mut choice = Choice::new(10_000);
        // No full search of the kind to compare with: kept.
        assert!(choice.bounded(ms(500), false, 0.9));
        choice.searched_all(ms(100), false);
        assert!(choice.bounded(ms(80), false, 0.3));
        assert_eq!(choice.try_share, FIRST_TRY_SHARE);
        // A pass of the other kind is not compared.
        assert!(choice.bounded(ms(150), true, 0.3));
        // 1.2× the full search with half the rows searched: even at 30 %, tried below 24 %.
        assert!(!choice.bounded(ms(120), false, 0.5));
        assert!((choice.try_share - MARGIN * 0.3).abs() < 1e-12);
        // A pass far slower leaves no share worth a try.
        assert!(!choice.bounded(ms(400), false, 0.5));
        assert_eq!(choice.try_share, 0.0);
    }

    /// Each estimate above the share doubles the dense passes before the sample is measured
    /// again (1, 3, 7, then 7); estimates that cost under 2 % of a full search never wait.
    #[test]
    fn estimates_wait_longer_after_each_miss() {
        let (n, d, k) = (4096, 8, 30);
        let (x, c) = data(n, d, k, 40.0, 5);
        let xm = MatRef::new(&x, n, d).unwrap();
        let norms = row_sq_norms(xm);
        let points = Points { x: xm, x_sq_norms: &norms, weights: None };
        let cm = MatRef::new(&c, k, d).unwrap();
        let kernel: &dyn Kernel<f64> = &CpuKernel;
        let mut choice = Choice::new(n);
        // Centroids that never move leave no row to search: below any share but a negative one.
        choice.try_share = -1.0;
        let mut observed_at = Vec::new();
        for pass in 0..24 {
            if choice.try_bounds(kernel, points, cm).unwrap() {
                panic!("no share is below a negative one");
            }
            choice.observe(kernel, points, cm).unwrap();
            if choice.observed() {
                observed_at.push(pass);
            }
        }
        assert_eq!(observed_at, [0, 2, 6, 14, 22]);
        // Full searches that take far longer than the estimates: every dense pass measures.
        let mut choice = Choice::new(n);
        choice.try_share = -1.0;
        choice.searched_all(Duration::from_secs(3600), false);
        for _ in 0..5 {
            assert!(!choice.try_bounds(kernel, points, cm).unwrap());
            choice.observe(kernel, points, cm).unwrap();
            assert!(choice.observed());
        }
    }
}
