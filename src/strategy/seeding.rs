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
fn total_potentials<'a>(chunks: impl Iterator<Item = &'a Vec<f64>>, n_trials: usize) -> Vec<f64> {
    let mut pots = vec![0.0f64; n_trials];
    for chunk in chunks {
        for (p, v) in pots.iter_mut().zip(chunk) {
            *p += v;
        }
    }
    pots
}

/// One run's share of a k-means++ step evaluated with other runs' over the same rows (see
/// `super::Engine::candidate_potentials`).
pub struct RunCandidates<'a, T> {
    /// Each row's squared distance to the run's closest chosen centre.
    pub closest: &'a [T],
    /// The run's candidates this step (`t × d`).
    pub candidates: MatRef<'a, T>,
    /// Where pruning applies: the rows (ascending) to measure; the others take `closest`.
    pub measured: Option<&'a [usize]>,
    /// The kernel's screen of this step's candidates, where it has one.
    pub screen: Option<&'a dyn StepScreen<T>>,
    /// Out: `n × t` distances.
    pub distances: &'a mut [T],
}

/// Candidate evaluation on the host (see `super::Engine::candidate_potentials`), for one or
/// more runs over the same rows: each chunk of rows is evaluated for every run in turn, so
/// it is read from memory once a step whatever the number of runs, and its distances are
/// summed while still in cache. With `measured` or `screen`, a chunk's rows left to measure
/// are measured together (`Kernel::pairwise_rows`); the others take their `closest`. Each
/// run's potentials are summed as they would be alone.
pub fn potentials_by_chunk<T: Scalar>(
    kernel: &dyn Kernel<T>,
    points: Points<'_, T>,
    row_weights: &[f64],
    mut runs: Vec<RunCandidates<'_, T>>,
) -> Result<Vec<Vec<f64>>> {
    let n_chunks = points.rows().div_ceil(POTENTIAL_CHUNK);
    // Per chunk, each run's block of distances (taken out of the runs, which the chunks read).
    let mut blocks: Vec<Vec<&mut [T]>> = (0..n_chunks).map(|_| Vec::with_capacity(runs.len())).collect();
    for run in &mut runs {
        let t = run.candidates.rows();
        for (chunk, block) in blocks.iter_mut().zip(std::mem::take(&mut run.distances).chunks_mut(POTENTIAL_CHUNK * t))
        {
            chunk.push(block);
        }
    }
    let chunks: Vec<Vec<Vec<f64>>> = blocks
        .into_par_iter()
        .enumerate()
        .map(|(c, blocks)| {
            runs.iter()
                .zip(blocks)
                .map(|(run, block)| chunk_of_run(kernel, points, row_weights, c, run, block))
                .collect()
        })
        .collect::<Result<_>>()?;
    Ok((0..runs.len())
        .map(|r| total_potentials(chunks.iter().map(|chunk| &chunk[r]), runs[r].candidates.rows()))
        .collect())
}

/// One run's distances and potentials on chunk `c` (`block`: its rows × candidates; the
/// run's own `distances` are taken out by then).
fn chunk_of_run<T: Scalar>(
    kernel: &dyn Kernel<T>,
    points: Points<'_, T>,
    row_weights: &[f64],
    c: usize,
    run: &RunCandidates<'_, T>,
    block: &mut [T],
) -> Result<Vec<f64>> {
    let (closest, candidates) = (run.closest, run.candidates);
    let n_trials = candidates.rows();
    let start = c * POTENTIAL_CHUNK;
    let end = start + block.len() / n_trials;
    let listed =
        run.measured.map(|rows| &rows[rows.partition_point(|&i| i < start)..rows.partition_point(|&i| i < end)]);
    let screened = run.screen.map(|screen| match listed {
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
        _ => kernel.pairwise(points.x.slice_rows(start, end), &points.x_sq_norms[start..end], candidates, block)?,
    }
    Ok(chunk_potentials(c, block, n_trials, row_weights, closest))
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
