//! Initial centroids: greedy k-means++ (as scikit-learn does it), random rows, or given.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

mod prune;

use crate::error::{invalid, Result};
use crate::kernel::SeedingScreen;
use crate::matrix::{weight_at, MatRef, Points, REDUCE_CHUNK};
use crate::monitor::{report, run_together, Monitor, Progress, Stage};
use crate::params::check_n_clusters;
use crate::sampling::weighted_sample_without_replacement;
use crate::scalar::Scalar;
use crate::strategy::Engine;

/// How the first centroids are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init<'a, T> {
    /// Greedy k-means++: `2 + ln k` D²-sampled candidates per step, the one that lowers the
    /// potential most is kept.
    KMeansPlusPlus,
    /// `k` distinct rows drawn with probability proportional to their weight.
    Random,
    /// Exactly these centroids (`k × d`, row-major).
    Given(&'a [T]),
}

/// Chooses `k` initial centroids from the rows of `points`.
pub fn initial_centroids<T: Scalar>(
    engine: &dyn Engine<T>,
    points: Points<'_, T>,
    k: usize,
    init: Init<'_, T>,
    rng: &mut ChaCha8Rng,
    run: usize,
    monitor: Monitor<'_>,
) -> Result<Vec<T>> {
    let mut centroids = initial_centroids_of_runs(engine, &[points], k, init, std::slice::from_mut(rng), run, monitor)?;
    Ok(centroids.pop().expect("one run"))
}

/// Largest sample (bytes of rows) whose runs' k-means++ seedings run at once.
const TOGETHER_BYTES: usize = 64 << 20;

/// Initial centroids for several runs, run `r` chosen from `samples[r]` with `rngs[r]`:
/// k-means++ by the engine's own strategy for all runs at once where it has one.
pub fn initial_centroids_of_runs<T: Scalar>(
    engine: &dyn Engine<T>,
    samples: &[Points<'_, T>],
    k: usize,
    init: Init<'_, T>,
    rngs: &mut [ChaCha8Rng],
    first_run: usize,
    monitor: Monitor<'_>,
) -> Result<Vec<Vec<T>>> {
    if matches!(init, Init::KMeansPlusPlus) {
        for sample in samples {
            check_n_clusters(sample.rows(), k)?;
        }
        if let Some(chosen) = engine.kmeans_plusplus(samples, k, rngs, first_run, monitor)? {
            return Ok(samples.iter().zip(&chosen).map(|(s, rows)| s.x.gather(rows)).collect());
        }
        if samples.len() > 1 && samples.iter().all(|s| s.rows() * s.cols() * size_of::<T>() <= TOGETHER_BYTES) {
            // Small samples (mini-batch `init_size` rows) keep both threads busier one seeding
            // a thread than shared; each run's picks do not depend on the threads.
            let tasks: Vec<_> = samples
                .iter()
                .zip(rngs.iter_mut())
                .enumerate()
                .map(|(r, (&points, rng))| {
                    move |monitor: Monitor<'_>| kmeans_plusplus(engine, points, k, rng, first_run + r, monitor)
                })
                .collect();
            return run_together(tasks, monitor);
        }
    }
    let mut out = Vec::with_capacity(samples.len());
    for (r, (&points, rng)) in samples.iter().zip(rngs.iter_mut()).enumerate() {
        let x = points.x;
        out.push(match init {
            Init::KMeansPlusPlus => kmeans_plusplus(engine, points, k, rng, first_run + r, monitor)?,
            Init::Random => x.gather(&weighted_sample_without_replacement(x.rows(), points.weights, k, rng)?),
            Init::Given(centroids) => {
                if centroids.len() != k * x.cols() {
                    return invalid(format!(
                        "init has {} values; expected n_clusters × n_features = {} × {}",
                        centroids.len(),
                        k,
                        x.cols()
                    ));
                }
                centroids.to_vec()
            }
        });
    }
    Ok(out)
}

/// Index of the first entry whose running sum reaches `target` (NumPy's `searchsorted`,
/// side "left", on the cumulative sum), given per-chunk totals of `values`; clipped to the
/// last index.
pub(crate) fn search_cumulative(values: &[f64], chunk_totals: &[f64], target: f64) -> usize {
    let mut running = 0.0;
    for (c, &total) in chunk_totals.iter().enumerate() {
        if running + total >= target {
            let start = c * REDUCE_CHUNK;
            let end = (start + REDUCE_CHUNK).min(values.len());
            for (i, &v) in values[start..end].iter().enumerate() {
                running += v;
                if running >= target {
                    return start + i;
                }
            }
            return end - 1;
        }
        running += total;
    }
    values.len() - 1
}

pub(crate) fn chunk_totals(values: &[f64]) -> Vec<f64> {
    values.par_chunks(REDUCE_CHUNK).map(|c| c.iter().sum()).collect()
}

/// Candidates drawn per greedy k-means++ step: `2 + ln k`, as scikit-learn draws.
pub fn candidates_per_step(k: usize) -> usize {
    2 + (k as f64).ln() as usize
}

/// The first k-means++ centre: a row drawn with probability proportional to its weight (one
/// draw from `rng`, as every engine's k-means++ starts).
pub fn first_centre(row_weights: &[f64], rng: &mut ChaCha8Rng) -> Result<usize> {
    let totals = chunk_totals(row_weights);
    let total_weight: f64 = totals.iter().sum();
    if !(total_weight > 0.0) {
        return invalid("sample weights sum to zero");
    }
    let first = search_cumulative(row_weights, &totals, rng.random::<f64>() * total_weight);
    // numpy's choice searches side="right"; a zero-weight row must never be picked.
    Ok((first..row_weights.len()).find(|&i| row_weights[i] > 0.0).unwrap_or(first))
}

/// What greedy k-means++ asks of the rows it seeds from; distances are of type `D` (the
/// data's type for dense rows, float64 for sparse ones).
pub trait SeedingRows<D: Scalar>: Sync {
    /// Squared distances from every row to row `row`, into `out`.
    fn distances_to(&self, row: usize, out: &mut [D]) -> Result<()>;
    /// For the rows `candidates` (`t` of them): the squared distances from every row to each,
    /// into `distances[i · t + c]`, and each candidate's potential `Σ w·min(closest, d)`.
    /// With `measured` (ascending rows), only those rows are measured; every other row's
    /// distances are set to its `closest` (no candidate can be nearer: see `prune`).
    fn candidate_potentials(
        &self,
        row_weights: &[f64],
        closest: &[D],
        candidates: &[usize],
        measured: Option<&[usize]>,
        distances: &mut [D],
    ) -> Result<Vec<f64>>;
    /// Exact pruning's state where these rows allow it (their computed distances bounded in
    /// error and independent of the rows measured with them); `None`: every row is measured.
    fn pruning(&self) -> Option<prune::Pruning> {
        None
    }
    /// For pruning: each of the rows `centres`' smallest squared distance to any of the rows
    /// `candidates`, as the kernel computes it (within the pruning's slack of the true one).
    /// The default, zero, lets no row be skipped.
    fn nearest_candidate_distances(&self, centres: &[usize], _candidates: &[usize]) -> Result<Vec<f64>> {
        Ok(vec![0.0; centres.len()])
    }
}

/// Greedy k-means++ (Arthur & Vassilvitskii; the greedy variant scikit-learn uses): the
/// first row drawn by weight, then each step draws `2 + ln k` candidates by D² sampling and
/// keeps the one that lowers the potential most. Returns the chosen rows' indices.
pub fn greedy_seeds<D: Scalar>(
    rows: &dyn SeedingRows<D>,
    row_weights: &[f64],
    k: usize,
    rng: &mut ChaCha8Rng,
    run: usize,
    monitor: Monitor<'_>,
) -> Result<Vec<usize>> {
    let n = row_weights.len();
    check_n_clusters(n, k)?;
    let n_trials = candidates_per_step(k);
    let mut chosen = vec![first_centre(row_weights, rng)?];
    let mut closest = vec![D::zero(); n];
    rows.distances_to(chosen[0], &mut closest)?;
    // Weighted distances: the sampling distribution and, summed, the potential.
    let mut weighted: Vec<f64> = closest.iter().zip(row_weights).map(|(&v, &w)| v.as_f64() * w).collect();
    let mut totals = chunk_totals(&weighted);
    let mut potential: f64 = totals.iter().sum();

    let mut pruning = rows.pruning();
    // Each row's nearest chosen centre (its index in `chosen`): what pruning tests against.
    let mut assigned = vec![0u32; n];
    let mut candidate_distances = vec![D::zero(); n * n_trials];
    for step in 1..k {
        // Each step is a pass over the data: let Ctrl-C (and progress) in between.
        report(monitor, Progress { stage: Stage::Init, iteration: step, run, inertia: potential, center_shift: 0.0 })?;
        let candidates: Vec<usize> =
            (0..n_trials).map(|_| search_cumulative(&weighted, &totals, rng.random::<f64>() * potential)).collect();
        let measured = match pruning.as_mut().filter(|pruning| pruning.worth_testing(step)) {
            Some(pruning) => {
                let gaps = rows.nearest_candidate_distances(&chosen, &candidates)?;
                Some(pruning.rows_to_measure(step, &gaps, &chosen, &closest, &assigned))
            }
            None => None,
        };
        let pots = rows.candidate_potentials(
            row_weights,
            &closest,
            &candidates,
            measured.as_deref(),
            &mut candidate_distances,
        )?;
        let mut best = 0;
        for t in 1..n_trials {
            if pots[t] < pots[best] {
                best = t;
            }
        }
        // Take the best candidate: update the closest distances (and, when pruning, the
        // nearest centres) and, in the same pass, the per-chunk totals the next draws search.
        totals = closest
            .par_chunks_mut(REDUCE_CHUNK)
            .zip(weighted.par_chunks_mut(REDUCE_CHUNK))
            .zip(assigned.par_chunks_mut(REDUCE_CHUNK))
            .enumerate()
            .map(|(c, ((closest, weighted), assigned))| {
                let mut total = 0.0f64;
                for (r, (near, w)) in closest.iter_mut().zip(weighted.iter_mut()).enumerate() {
                    let i = c * REDUCE_CHUNK + r;
                    let dist = candidate_distances[i * n_trials + best];
                    if dist < *near {
                        *near = dist;
                        assigned[r] = step as u32;
                    }
                    *w = near.as_f64() * row_weights[i];
                    total += *w;
                }
                total
            })
            .collect();
        potential = totals.iter().sum();
        chosen.push(candidates[best]);
    }
    if let Some(pruning) = &pruning {
        // Steps left untested measured every row.
        let all = (n * (k - 1)).max(1);
        log::debug!(
            "k-means++ pruning: {:.1} % of candidate distances skipped over {} steps",
            100.0 * pruning.skipped as f64 / all as f64,
            k - 1
        );
    }
    Ok(chosen)
}

/// Dense rows seeded through an engine's kernels, with the kernel's screen where it has one
/// and pruning is on.
struct DenseSeeding<'a, T> {
    engine: &'a dyn Engine<T>,
    points: Points<'a, T>,
    screen: Option<Box<dyn SeedingScreen<T>>>,
}

impl<'a, T: Scalar> DenseSeeding<'a, T> {
    fn new(engine: &'a dyn Engine<T>, points: Points<'a, T>) -> Self {
        let options = engine.seeding();
        let screen = options
            .prune
            .then(|| engine.kernel().seeding_screen(points.x, points.x_sq_norms, options.screen))
            .flatten();
        Self { engine, points, screen }
    }
}

impl<T: Scalar> SeedingRows<T> for DenseSeeding<'_, T> {
    fn distances_to(&self, row: usize, out: &mut [T]) -> Result<()> {
        let (x, d) = (self.points.x, self.points.cols());
        self.engine.kernel().pairwise(x, self.points.x_sq_norms, MatRef::new(x.row(row), 1, d)?, out)
    }

    fn candidate_potentials(
        &self,
        row_weights: &[f64],
        closest: &[T],
        candidates: &[usize],
        measured: Option<&[usize]>,
        distances: &mut [T],
    ) -> Result<Vec<f64>> {
        let rows = self.points.x.gather(candidates);
        let rows = MatRef::new(&rows, candidates.len(), self.points.cols())?;
        let screen = self.screen.as_ref().and_then(|screen| screen.step(rows));
        self.engine.candidate_potentials(
            self.points,
            row_weights,
            closest,
            rows,
            measured,
            screen.as_deref(),
            distances,
        )
    }

    fn pruning(&self) -> Option<prune::Pruning> {
        if !self.engine.seeding().prune {
            return None;
        }
        let bound = self.engine.kernel().seeding_error_bound(self.points.cols())?;
        Some(prune::Pruning::new(self.points.x_sq_norms, bound))
    }

    fn nearest_candidate_distances(&self, centres: &[usize], candidates: &[usize]) -> Result<Vec<f64>> {
        let (x, d, t) = (self.points.x, self.points.cols(), candidates.len());
        let rows = x.gather(candidates);
        let mut distances = vec![T::zero(); centres.len() * t];
        self.engine.kernel().pairwise_rows(
            x,
            self.points.x_sq_norms,
            centres,
            MatRef::new(&rows, t, d)?,
            &mut distances,
        )?;
        Ok(distances.chunks(t).map(|row| row.iter().fold(f64::INFINITY, |m, v| m.min(v.as_f64()))).collect())
    }
}

/// Greedy k-means++ on dense rows, each step's candidates evaluated through the engine's
/// strategy ([`greedy_seeds`]).
pub fn kmeans_plusplus<T: Scalar>(
    engine: &dyn Engine<T>,
    points: Points<'_, T>,
    k: usize,
    rng: &mut ChaCha8Rng,
    run: usize,
    monitor: Monitor<'_>,
) -> Result<Vec<T>> {
    let row_weights: Vec<f64> = (0..points.rows()).map(|i| weight_at(points.weights, i)).collect();
    let chosen = greedy_seeds(&DenseSeeding::new(engine, points), &row_weights, k, rng, run, monitor)?;
    Ok(points.x.gather(&chosen))
}

#[cfg(test)]
mod tests;
