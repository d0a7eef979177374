//! Initial centroids: greedy k-means++ (as scikit-learn does it), random rows, or given.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

mod greedy;
mod prune;

pub use greedy::{greedy_seeds, SeedingRows, SeedingStep};

use crate::error::{invalid, Result};
use crate::kernel::SeedingScreen;
use crate::matrix::{weight_at, MatRef, Points, REDUCE_CHUNK};
use crate::monitor::{run_together, Monitor};
use crate::params::check_n_clusters;
use crate::sampling::weighted_sample_without_replacement;
use crate::scalar::Scalar;
use crate::strategy::{Engine, RunCandidates};

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

/// Runs over the same rows seeded in lockstep keep their state (each row's distances to a
/// step's candidates, its closest distance, weight, centre and slack) within half the rows'
/// own bytes, or this, whichever is larger.
const LOCKSTEP_MIN_BYTES: usize = 256 << 20;

/// How many runs over `points` seed in lockstep at once.
fn lockstep_group<T: Scalar>(points: Points<'_, T>, k: usize) -> usize {
    let n = points.rows();
    let per_run = n * ((candidates_per_step(k) + 1) * size_of::<T>() + 2 * size_of::<f64>() + size_of::<u32>());
    let budget = (n * points.cols() * size_of::<T>() / 2).max(LOCKSTEP_MIN_BYTES);
    (budget / per_run.max(1)).max(1)
}

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
        if samples.len() > 1 && samples.iter().all(|s| s.same_rows(&samples[0])) {
            // Runs over the same rows (a fit's `n_init`) seed in lockstep: each step reads
            // the rows once for all runs of a group.
            let group = lockstep_group(samples[0], k);
            let mut out = Vec::with_capacity(samples.len());
            for (g, rngs) in rngs.chunks_mut(group).enumerate() {
                out.extend(kmeans_plusplus_of_runs(engine, samples[0], k, rngs, first_run + g * group, &mut *monitor)?);
            }
            return Ok(out);
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

    fn candidate_potentials(&self, row_weights: &[f64], runs: Vec<SeedingStep<'_, T>>) -> Result<Vec<Vec<f64>>> {
        let d = self.points.cols();
        let rows: Vec<Vec<T>> = runs.iter().map(|run| self.points.x.gather(run.candidates)).collect();
        let screens: Vec<_> = rows
            .iter()
            .zip(&runs)
            .map(|(rows, run)| {
                let rows = MatRef::new(rows, run.candidates.len(), d)?;
                Ok(self.screen.as_ref().and_then(|screen| screen.step(rows)))
            })
            .collect::<Result<_>>()?;
        let runs = runs
            .into_iter()
            .zip(&rows)
            .zip(&screens)
            .map(|((run, rows), screen)| {
                Ok(RunCandidates {
                    closest: run.closest,
                    candidates: MatRef::new(rows, run.candidates.len(), d)?,
                    measured: run.measured,
                    screen: screen.as_deref(),
                    distances: run.distances,
                })
            })
            .collect::<Result<_>>()?;
        self.engine.candidate_potentials(self.points, row_weights, runs)
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
    let mut runs = kmeans_plusplus_of_runs(engine, points, k, std::slice::from_mut(rng), run, monitor)?;
    Ok(runs.pop().expect("one run"))
}

/// [`kmeans_plusplus`] for several runs over the same rows, run `r` drawing from `rngs[r]`,
/// their steps evaluated together.
pub fn kmeans_plusplus_of_runs<T: Scalar>(
    engine: &dyn Engine<T>,
    points: Points<'_, T>,
    k: usize,
    rngs: &mut [ChaCha8Rng],
    first_run: usize,
    monitor: Monitor<'_>,
) -> Result<Vec<Vec<T>>> {
    let row_weights: Vec<f64> = (0..points.rows()).map(|i| weight_at(points.weights, i)).collect();
    let chosen = greedy_seeds(&DenseSeeding::new(engine, points), &row_weights, k, rngs, first_run, monitor)?;
    Ok(chosen.iter().map(|rows| points.x.gather(rows)).collect())
}

#[cfg(test)]
mod tests;
