//! Greedy k-means++ for one or more runs over the same rows, whatever the rows are (dense
//! through an engine, sparse): the draws, the choice of the best candidate and the pruning's
//! bookkeeping; the rows evaluate each step's candidates.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::prune;
use super::{candidates_per_step, chunk_totals, first_centre, search_cumulative};
use crate::error::Result;
use crate::matrix::REDUCE_CHUNK;
use crate::monitor::{report, Monitor, Progress, Stage};
use crate::params::check_n_clusters;
use crate::scalar::Scalar;

/// What greedy k-means++ asks of the rows it seeds from; distances are of type `D` (the
/// data's type for dense rows, float64 for sparse ones).
pub trait SeedingRows<D: Scalar>: Sync {
    /// Squared distances from every row to row `row`, into `out`.
    fn distances_to(&self, row: usize, out: &mut [D]) -> Result<()>;
    /// For each run's step over these rows (`runs`, see [`SeedingStep`]): the squared
    /// distances from every row to each of its `candidates` (`t` of them), into
    /// `distances[i · t + c]`, and each candidate's potential `Σ w·min(closest, d)`. With
    /// `measured` (ascending rows), only those rows are measured; every other row's distances
    /// are set to its `closest` (no candidate can be nearer: see `prune`).
    fn candidate_potentials(&self, row_weights: &[f64], runs: Vec<SeedingStep<'_, D>>) -> Result<Vec<Vec<f64>>>;
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

/// One run's step of greedy k-means++ (see [`SeedingRows::candidate_potentials`]).
pub struct SeedingStep<'a, D> {
    /// Each row's squared distance to the run's closest chosen centre.
    pub closest: &'a [D],
    /// The rows drawn as this step's candidates.
    pub candidates: &'a [usize],
    /// Where pruning applies: the rows (ascending) to measure.
    pub measured: Option<&'a [usize]>,
    /// Out: `n × candidates` distances.
    pub distances: &'a mut [D],
}

/// Greedy k-means++ (Arthur & Vassilvitskii; the greedy variant scikit-learn uses) for one
/// or more runs over the same rows, run `r` drawing from `rngs[r]`: the first row drawn by
/// weight, then each step draws `2 + ln k` candidates by D² sampling and keeps the one that
/// lowers the potential most. The runs' steps are evaluated together (the rows read once a
/// step for all of them); each run's picks are those it makes alone. Returns each run's
/// chosen rows' indices.
pub fn greedy_seeds<D: Scalar>(
    rows: &dyn SeedingRows<D>,
    row_weights: &[f64],
    k: usize,
    rngs: &mut [ChaCha8Rng],
    first_run: usize,
    monitor: Monitor<'_>,
) -> Result<Vec<Vec<usize>>> {
    check_n_clusters(row_weights.len(), k)?;
    let n_trials = candidates_per_step(k);
    let mut runs =
        rngs.iter_mut().map(|rng| GreedyRun::start(rows, row_weights, n_trials, rng)).collect::<Result<Vec<_>>>()?;
    for step in 1..k {
        // Each step is a pass over the data: let Ctrl-C (and progress) in between.
        let inertia = runs[0].potential;
        report(monitor, Progress { stage: Stage::Init, iteration: step, run: first_run, inertia, center_shift: 0.0 })?;
        for (run, rng) in runs.iter_mut().zip(rngs.iter_mut()) {
            run.draw(rows, step, rng)?;
        }
        let steps = runs
            .iter_mut()
            .map(|run| SeedingStep {
                closest: &run.closest,
                candidates: &run.candidates,
                measured: run.measured.as_deref(),
                distances: &mut run.candidate_distances,
            })
            .collect();
        let potentials = rows.candidate_potentials(row_weights, steps)?;
        for (run, potentials) in runs.iter_mut().zip(potentials) {
            run.take(step, &potentials, row_weights);
        }
    }
    for (r, run) in runs.iter().enumerate() {
        if let Some(pruning) = &run.pruning {
            // Steps left untested measured every row.
            let all = (row_weights.len() * (k - 1)).max(1);
            log::debug!(
                "k-means++ pruning (run {}): {:.1} % of candidate distances skipped over {} steps",
                first_run + r,
                100.0 * pruning.skipped as f64 / all as f64,
                k - 1
            );
        }
    }
    Ok(runs.into_iter().map(|run| run.chosen).collect())
}

/// One run of [`greedy_seeds`]: its centres so far and each row's distance to the nearest.
struct GreedyRun<D> {
    chosen: Vec<usize>,
    closest: Vec<D>,
    /// Weighted distances: the sampling distribution and, summed, the potential.
    weighted: Vec<f64>,
    totals: Vec<f64>,
    potential: f64,
    pruning: Option<prune::Pruning>,
    /// Each row's nearest chosen centre (its index in `chosen`): what pruning tests against.
    assigned: Vec<u32>,
    /// This step's candidates, the rows to measure (with pruning) and their distances.
    candidates: Vec<usize>,
    measured: Option<Vec<usize>>,
    candidate_distances: Vec<D>,
}

impl<D: Scalar> GreedyRun<D> {
    fn start(rows: &dyn SeedingRows<D>, row_weights: &[f64], n_trials: usize, rng: &mut ChaCha8Rng) -> Result<Self> {
        let n = row_weights.len();
        let chosen = vec![first_centre(row_weights, rng)?];
        let mut closest = vec![D::zero(); n];
        rows.distances_to(chosen[0], &mut closest)?;
        let weighted: Vec<f64> = closest.iter().zip(row_weights).map(|(&v, &w)| v.as_f64() * w).collect();
        let totals = chunk_totals(&weighted);
        let potential = totals.iter().sum();
        Ok(Self {
            chosen,
            closest,
            weighted,
            totals,
            potential,
            pruning: rows.pruning(),
            assigned: vec![0u32; n],
            candidates: Vec::with_capacity(n_trials),
            measured: None,
            candidate_distances: vec![D::zero(); n * n_trials],
        })
    }

    /// Step `step`'s candidates, by D² sampling, and the rows pruning leaves to measure.
    fn draw(&mut self, rows: &dyn SeedingRows<D>, step: usize, rng: &mut ChaCha8Rng) -> Result<()> {
        let n_trials = self.candidate_distances.len() / self.closest.len();
        self.candidates = (0..n_trials)
            .map(|_| search_cumulative(&self.weighted, &self.totals, rng.random::<f64>() * self.potential))
            .collect();
        self.measured = match self.pruning.as_mut().filter(|pruning| pruning.worth_testing(step)) {
            Some(pruning) => {
                let gaps = rows.nearest_candidate_distances(&self.chosen, &self.candidates)?;
                Some(pruning.rows_to_measure(step, &gaps, &self.chosen, &self.closest, &self.assigned))
            }
            None => None,
        };
        Ok(())
    }

    /// Takes the candidate with the lowest potential: updates the closest distances (and,
    /// when pruning, the nearest centres) and, in the same pass, the per-chunk totals the
    /// next draws search.
    fn take(&mut self, step: usize, potentials: &[f64], row_weights: &[f64]) {
        let n_trials = potentials.len();
        let mut best = 0;
        for t in 1..n_trials {
            if potentials[t] < potentials[best] {
                best = t;
            }
        }
        let distances = &self.candidate_distances;
        self.totals = self
            .closest
            .par_chunks_mut(REDUCE_CHUNK)
            .zip(self.weighted.par_chunks_mut(REDUCE_CHUNK))
            .zip(self.assigned.par_chunks_mut(REDUCE_CHUNK))
            .enumerate()
            .map(|(c, ((closest, weighted), assigned))| {
                let mut total = 0.0f64;
                for (r, (near, w)) in closest.iter_mut().zip(weighted.iter_mut()).enumerate() {
                    let i = c * REDUCE_CHUNK + r;
                    let dist = distances[i * n_trials + best];
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
        self.potential = self.totals.iter().sum();
        self.chosen.push(self.candidates[best]);
    }
}
