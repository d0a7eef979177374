//! Exact pruning of greedy k-means++ (after Raff, Ferraro and Matuszek, "Exact Acceleration of
//! K-Means++ and K-Means‖", AAAI 2021): a row `x` whose nearest chosen centre `a` lies at
//! least `2·√D(x)` from a candidate `c` cannot be nearer to `c` than to `a` (triangle
//! inequality), so its features need not be read for that step: its potential term stays
//! `D(x)`, as the unpruned pass would compute it.
//!
//! The test is made on the distances the kernel computes, with their rounding bounded: a row
//! is skipped only where the kernel's computed distance to every candidate is certain to be at
//! least the computed `D(x)`. Then `min(D(x), distance)` is `D(x)` either way and the picks,
//! potentials and sums are those of the unpruned pass, bit for bit. That also needs each
//! row's computed distances not to depend on the other rows measured with it, which the
//! kernel states ([`crate::kernel::Kernel::seeding_error_bound`]).

use rayon::prelude::*;

use crate::scalar::Scalar;

/// What pruning keeps across steps: each row's slack, a bound on the error of any squared
/// distance the kernel computes for it.
pub struct Pruning {
    slack: Vec<f64>,
    /// Rows skipped over the steps so far (for the log).
    pub skipped: usize,
    /// The next step worth testing, and how many tests in a row skipped few rows: where
    /// the test saves little it is made ever more rarely (every row is measured meanwhile,
    /// which changes no result).
    next_test: usize,
    misses: u32,
}

impl Pruning {
    /// For rows with squared norms `x_sq_norms` whose computed squared distances err by at
    /// most `bound · (‖x‖² + 2·max‖c‖²)` (`c` any row: candidates are rows).
    pub fn new<T: Scalar>(x_sq_norms: &[T], bound: f64) -> Self {
        Self { slack: crate::kernel::seeding_slack(x_sq_norms, bound), skipped: 0, next_test: 0, misses: 0 }
    }

    /// Whether step `step` is worth the test (see `next_test`).
    pub fn worth_testing(&self, step: usize) -> bool {
        step >= self.next_test
    }

    /// At step `step`, the rows (ascending) that some candidate may be nearer to than their
    /// closest centre (`assigned[i]`, an index into `chosen`, at squared distance
    /// `closest[i]`), given `gaps[j]`: the smallest squared distance from the chosen row
    /// `chosen[j]` to any of this step's candidates, as the kernel computes it.
    pub fn rows_to_measure<D: Scalar>(
        &mut self,
        step: usize,
        gaps: &[f64],
        chosen: &[usize],
        closest: &[D],
        assigned: &[u32],
    ) -> Vec<usize> {
        // The kernel's gap errs by at most the centre row's slack: take the lower bound.
        let gaps: Vec<f64> = gaps.iter().zip(chosen).map(|(&gap, &row)| (gap - self.slack[row]).max(0.0)).collect();
        let rows: Vec<usize> = (0..closest.len())
            .into_par_iter()
            .with_min_len(4096)
            .filter(|&i| {
                let gap = gaps[assigned[i] as usize];
                // True D(x) ≤ closest + slack; the computed distance to a candidate at true
                // distance ≥ (√gap − √D)² ≥ closest + slack errs by at most slack.
                !(gap >= 4.0 * (closest[i].as_f64() + self.slack[i]))
            })
            .collect();
        let skipped = closest.len() - rows.len();
        self.skipped += skipped;
        // Skipping under a quarter of the rows does not repay the test and the gathering.
        self.misses = if 4 * skipped < closest.len() { self.misses + 1 } else { 0 };
        self.next_test = step + (1 << self.misses.min(6));
        rows
    }
}
