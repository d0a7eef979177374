//! k-means++ candidate evaluation on the host: chunk by chunk, distances summed while in cache,
//! in an order that never depends on the thread count.

use rayon::prelude::*;

use crate::error::Result;
use crate::kernel::{Kernel, StepScreen};
use crate::matrix::{MatRef, Points};
use crate::scalar::Scalar;

/// Rows per task when summing candidate potentials: small enough to balance the threads on
/// modest data, fixed so the summation order never depends on the thread count.
const POTENTIAL_CHUNK: usize = 1024;

/// The potentials of one fixed chunk of rows (starting at row `c · POTENTIAL_CHUNK`) from
/// its candidate distances `block` (rows × candidates).
fn chunk_potentials<T: Scalar>(c: usize, block: &[T], n_trials: usize, row_weights: &[f64], closest: &[T]) -> Vec<f64> {
    let mut pots = vec![0.0f64; n_trials];
    for (r, row) in block.chunks_exact(n_trials).enumerate() {
        let i = c * POTENTIAL_CHUNK + r;
        let current = closest[i];
        for (pot, &dist) in pots.iter_mut().zip(row) {
            *pot += dist.min(current).as_f64() * row_weights[i];
        }
    }
    pots
}

/// Per-chunk potentials added in chunk order.
fn total_potentials(chunks: Vec<Vec<f64>>, n_trials: usize) -> Vec<f64> {
    let mut pots = vec![0.0f64; n_trials];
    for chunk in &chunks {
        for (p, v) in pots.iter_mut().zip(chunk) {
            *p += v;
        }
    }
    pots
}

/// Candidate evaluation on the host (see `super::Engine::candidate_potentials`): each chunk's
/// distances are computed, then summed while still in cache. With `measured` or `screen`, a
/// chunk's rows left to measure are measured together (`Kernel::pairwise_rows`); the others
/// take their `closest`.
#[allow(clippy::too_many_arguments)]
pub fn potentials_by_chunk<T: Scalar>(
    kernel: &dyn Kernel<T>,
    points: Points<'_, T>,
    row_weights: &[f64],
    closest: &[T],
    candidates: MatRef<'_, T>,
    measured: Option<&[usize]>,
    screen: Option<&dyn StepScreen<T>>,
    distances: &mut [T],
) -> Result<Vec<f64>> {
    let n_trials = candidates.rows();
    let chunks: Result<Vec<Vec<f64>>> = distances
        .par_chunks_mut(POTENTIAL_CHUNK * n_trials)
        .enumerate()
        .map(|(c, block)| {
            let start = c * POTENTIAL_CHUNK;
            let end = start + block.len() / n_trials;
            let listed =
                measured.map(|rows| &rows[rows.partition_point(|&i| i < start)..rows.partition_point(|&i| i < end)]);
            let screened = screen.map(|screen| match listed {
                Some(rows) => screen.rows_to_measure(rows, closest),
                None => screen.rows_to_measure(&(start..end).collect::<Vec<_>>(), closest),
            });
            let rows = screened.as_deref().or(listed);
            // Listed rows cost more each than a whole chunk's (a kernel may gather them): worth
            // it where most of the chunk is skipped.
            // Measuring a skipped row anyway changes nothing: its distances are at least its
            // `closest` (see `crate::init`'s pruning), so the potentials are the same.
            match rows {
                Some(rows) if 2 * rows.len() <= end - start => {
                    measure_rows(kernel, points, rows, start, closest, candidates, block)?
                }
                _ => kernel.pairwise(
                    points.x.slice_rows(start, end),
                    &points.x_sq_norms[start..end],
                    candidates,
                    block,
                )?,
            }
            Ok(chunk_potentials(c, block, n_trials, row_weights, closest))
        })
        .collect();
    Ok(total_potentials(chunks?, n_trials))
}

/// The candidate distances of the chunk starting at row `start` (`block`, rows × candidates)
/// where only `rows` are measured (one kernel call); every other row's distances are its
/// `closest`.
fn measure_rows<T: Scalar>(
    kernel: &dyn Kernel<T>,
    points: Points<'_, T>,
    rows: &[usize],
    start: usize,
    closest: &[T],
    candidates: MatRef<'_, T>,
    block: &mut [T],
) -> Result<()> {
    let n_trials = candidates.rows();
    for (r, out) in block.chunks_exact_mut(n_trials).enumerate() {
        out.fill(closest[start + r]);
    }
    if rows.is_empty() {
        return Ok(());
    }
    let mut measured = vec![T::zero(); rows.len() * n_trials];
    kernel.pairwise_rows(points.x, points.x_sq_norms, rows, candidates, &mut measured)?;
    for (&i, values) in rows.iter().zip(measured.chunks_exact(n_trials)) {
        block[(i - start) * n_trials..(i - start + 1) * n_trials].copy_from_slice(values);
    }
    Ok(())
}
