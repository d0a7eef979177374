//! Near ties told apart by each pair's own error bound, before any row is read again.

use super::scans::sq_difference_f32;
use super::{Bound, PerCentroid, Row};
use crate::matrix::MatRef;

/// Rules out the candidates (other than the best computed, `best_at`) that its pair bound
/// sets apart: in the difference of two partial distances the row's rounding `ξ` enters as
/// `2ξ·(c_j − c_best)`, at most `2‖ξ‖·‖c_j − c_best‖`, where the two centroids' own bounds
/// count `2‖ξ‖·(‖c_j‖ + ‖c_best‖)`; for centroids near each other (the near ties) the pair's
/// bound is about half theirs. A candidate whose partial distance less its own bound and
/// less that part of the pair's exceeds `limit` (as `scans::for_each_possible` takes it) is truly
/// farther than the best. Returns a lower bound on the squared distance to those ruled out
/// (infinite for none).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn rule_out_by_pairs(
    row: &Row<'_>,
    best_at: usize,
    limit: f64,
    own: PerCentroid,
    c_norms: &[f32],
    centroids: MatRef<'_, f32>,
    bound: &Bound,
    candidates: &mut Vec<(usize, f32)>,
) -> f64 {
    let residual = row.norms.1;
    let mut ruled_out = f64::INFINITY;
    if candidates.len() < 2 || residual <= 0.0 {
        return ruled_out;
    }
    let c_best = centroids.row(best_at);
    // By hand rather than `retain`, whose closure would not be compiled for AVX-512F.
    let mut kept = 0;
    for at in 0..candidates.len() {
        let j = candidates[at].0;
        let keep = j == best_at || {
            // An upper bound on `‖c_j − c_best‖`.
            // SAFETY: AVX-512F is enabled in `settle_block`, where this function is inlined.
            let apart = (unsafe { sq_difference_f32(centroids.row(j), c_best) } as f64
                * super::super::inflation(c_best.len()))
            .sqrt()
                * (1.0 + 1e-6);
            let norms = bound.widths[j] as f64 + bound.widths[best_at] as f64;
            let spared = (2.0 * residual * (norms - apart)).max(0.0) * (1.0 - 1e-6);
            // The partial distance as the kernel computed it, unrounded (its bound covers both).
            let lowered = c_norms[j] as f64 - 2.0 * row.dots[j] as f64 - own.of(bound, j, c_norms[j]);
            let keep = lowered + spared <= limit;
            if !keep {
                ruled_out = ruled_out.min(lowered + row.x_sq);
            }
            keep
        };
        if keep {
            candidates[kept] = candidates[at];
            kept += 1;
        }
    }
    candidates.truncate(kept);
    ruled_out
}
