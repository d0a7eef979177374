//! The pure-Rust CPU kernel: rayon over fixed row blocks, a GEMM per block against
//! panels of centroids, and the argmin fused in, so no `n × k` matrix is ever allocated.

use gemm::Parallelism;
use rayon::prelude::*;

use super::simd::{self, Dots};
use super::{ClusterSums, KeptRows, Kernel, SeedingScreen};
use crate::error::Result;
use crate::matrix::{exact_sq_distance, row_sq_norms, MatRef};
use crate::scalar::Scalar;

/// Rows per block. Fixed (never derived from the thread count) so results are reproducible.
const ROW_BLOCK: usize = 128;
/// Centroids per GEMM panel: bounds the per-thread buffer to `ROW_BLOCK × COL_PANEL`.
const COL_PANEL: usize = 1024;
/// Fewest centroids and features for which the SIMD kernels run.
const SIMD_MIN: usize = 16;

#[derive(Debug, Default, Clone, Copy)]
pub struct CpuKernel;

/// Minimum over `j` of `c_norms[j] − 2·dots[j]`, its first index, and whether another `j`
/// comes within `band` of it (a near tie). Eight independent lanes (minimum and index per
/// lane) let the compiler vectorise the scan; they are merged with ties going to the lowest
/// index, so the result equals a plain left-to-right scan. A lane whose minimum lies beyond
/// the band holds nothing within it, so only the winner's own lane is scanned again.
#[inline]
fn argmin_partial<T: Scalar>(dots: &[T], c_norms: &[T], band: T) -> (T, usize, bool) {
    const LANES: usize = 8;
    let two = T::one() + T::one();
    let mut best = [T::infinity(); LANES];
    // Indices kept in `T` (exact: a panel has at most COL_PANEL columns) so that their
    // update is a vector blend, not one conditional move per lane.
    let mut best_at = [T::zero(); LANES];
    let lane_offsets: [T; LANES] = std::array::from_fn(|l| T::of_f64(l as f64));
    let full = dots.len() / LANES * LANES;
    for base in (0..full).step_by(LANES) {
        let d = &dots[base..base + LANES];
        let c = &c_norms[base..base + LANES];
        let base_t = T::of_f64(base as f64);
        for l in 0..LANES {
            let v = c[l] - two * d[l];
            let better = v < best[l];
            best[l] = if better { v } else { best[l] };
            best_at[l] = if better { base_t + lane_offsets[l] } else { best_at[l] };
        }
    }
    let best_j: [usize; LANES] = std::array::from_fn(|l| best_at[l].as_f64() as usize);
    let mut value = T::infinity();
    let mut index = 0usize;
    for l in 0..LANES {
        if best[l] < value || (best[l] == value && best_j[l] < index) {
            value = best[l];
            index = best_j[l];
        }
    }
    for j in full..dots.len() {
        let v = c_norms[j] - two * dots[j];
        if v < value {
            value = v;
            index = j;
        }
    }
    let limit = value + band;
    let partial = |j: usize| c_norms[j] - two * dots[j];
    let other_lane = full > 0 && (0..LANES).any(|l| best_j[l] != index && best[l] <= limit);
    let tail = (full..dots.len()).any(|j| j != index && partial(j) <= limit);
    let own_lane = index < full && (index % LANES..full).step_by(LANES).any(|j| j != index && partial(j) <= limit);
    (value, index, other_lane || tail || own_lane)
}

/// Minimum over `j` of `c_norms[j] − 2·dots[j]`, its first index, and the second-smallest
/// value (equal to the smallest on a tie). Eight independent lanes let the compiler vectorise
/// the scan; they are merged with ties going to the lowest index, as a left-to-right scan.
/// Branch-free per lane: `second ← min(second, max(best, v))`, `best ← min(best, v)`.
#[inline(always)]
pub(super) fn argmin2_partial<T: Scalar>(dots: &[T], c_norms: &[T]) -> (T, usize, T) {
    const LANES: usize = 8;
    let two = T::one() + T::one();
    let mut best = [T::infinity(); LANES];
    let mut second = [T::infinity(); LANES];
    // Indices in `T`, as in `argmin_partial`.
    let mut best_at = [T::zero(); LANES];
    let lane_offsets: [T; LANES] = std::array::from_fn(|l| T::of_f64(l as f64));
    let full = dots.len() / LANES * LANES;
    for base in (0..full).step_by(LANES) {
        let d = &dots[base..base + LANES];
        let c = &c_norms[base..base + LANES];
        let base_t = T::of_f64(base as f64);
        for l in 0..LANES {
            let v = c[l] - two * d[l];
            let better = v < best[l];
            let displaced = if better { best[l] } else { v };
            second[l] = if displaced < second[l] { displaced } else { second[l] };
            best[l] = if better { v } else { best[l] };
            best_at[l] = if better { base_t + lane_offsets[l] } else { best_at[l] };
        }
    }
    let best_j: [usize; LANES] = std::array::from_fn(|l| best_at[l].as_f64() as usize);
    let (mut value, mut index, mut runner_up) = (T::infinity(), 0usize, T::infinity());
    let mut take = |v: T, j: usize, s: T| {
        if v < value || (v == value && j < index) {
            runner_up = if value < s { value } else { s };
            value = v;
            index = j;
        } else {
            runner_up = if v < runner_up { v } else { runner_up };
        }
        runner_up = if s < runner_up { s } else { runner_up };
    };
    for l in 0..LANES {
        take(best[l], best_j[l], second[l]);
    }
    for j in full..dots.len() {
        take(c_norms[j] - two * dots[j], j, T::infinity());
    }
    (value, index, runner_up)
}

/// `out (m × n, row stride ldo) = a (m × d) · bᵀ` where `b` is `n × d`, both row-major.
pub(super) fn dot_rows<T: Scalar>(a: MatRef<'_, T>, b: MatRef<'_, T>, out: &mut [T], ldo: usize) {
    let (m, n, d) = (a.rows(), b.rows(), a.cols());
    debug_assert!(out.len() >= (m - 1) * ldo + n);
    // SAFETY: the pointers and strides describe in-bounds row-major buffers checked above;
    // `gemm` reads `a`, `b` and writes only the m×n window of `out`.
    unsafe {
        gemm::gemm(
            m,
            n,
            d,
            out.as_mut_ptr(),
            1,
            ldo as isize,
            false,
            a.as_slice().as_ptr(),
            1,
            d as isize,
            b.as_slice().as_ptr(),
            d as isize,
            1,
            T::zero(),
            T::one(),
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// Nearest centroid of each row of `rows`, with the second-nearest partial distance (with
/// `TOP2`) or, without it, only whether a near tie needs [`settle_block`]: then `second` gets
/// the best partial distance for such a row and infinity for the others (checking the band
/// costs less than tracking a runner-up). One GEMM per
/// panel of centroids into `dots`, then a scan of `‖c‖² − 2·x·c`. Leaves partial distances
/// (without `‖x‖²`) in `distances` and `second`.
fn scan_block<T: Scalar, const TOP2: bool>(
    rows: MatRef<'_, T>,
    bands: &[f64],
    centroids: MatRef<'_, T>,
    c_norms: &[T],
    dots: &mut [T],
    labels: &mut [u32],
    distances: &mut [T],
    second: &mut [T],
) {
    let (m, k) = (rows.rows(), centroids.rows());
    let panel = COL_PANEL.min(k);
    distances.fill(T::infinity());
    labels.fill(0);
    second.fill(T::infinity());
    let mut near = [false; ROW_BLOCK];
    for j0 in (0..k).step_by(panel) {
        let kc = panel.min(k - j0);
        dot_rows(rows, centroids.slice_rows(j0, j0 + kc), dots, kc);
        for r in 0..m {
            let (row_dots, row_norms) = (&dots[r * kc..(r + 1) * kc], &c_norms[j0..j0 + kc]);
            if TOP2 {
                let (best, best_j, runner_up) = argmin2_partial(row_dots, row_norms);
                // Strictly smaller: ties keep the earlier panel; the loser becomes a runner-up.
                if best < distances[r] {
                    let previous = distances[r];
                    second[r] = if runner_up < previous { runner_up } else { previous };
                    distances[r] = best;
                    labels[r] = (j0 + best_j) as u32;
                } else {
                    let cand = if best < runner_up { best } else { runner_up };
                    second[r] = if cand < second[r] { cand } else { second[r] };
                }
            } else {
                let band = T::of_f64(bands[r]);
                let (best, best_j, close) = argmin_partial(row_dots, row_norms, band);
                if best < distances[r] {
                    // Another centroid of this panel, or the best of earlier ones, is close.
                    near[r] = close || distances[r] <= best + band;
                    distances[r] = best;
                    labels[r] = (j0 + best_j) as u32;
                } else {
                    near[r] |= best <= distances[r] + band;
                }
            }
        }
    }
    if !TOP2 {
        for r in 0..m {
            second[r] = if near[r] { distances[r] } else { T::infinity() };
        }
    }
}

/// After [`scan_block`]: decides near ties exactly. A row whose runner-up partial distance
/// lies within its band (the GEMM's error bound on its partial distances) of the best is assigned again by exact float64
/// distances to the centroids in that band (their dots come from one more GEMM of that row),
/// so labels are the exact nearest centroids of the given values. Distances become squared
/// distances (exact for those rows); `second` becomes a runner-up squared distance (for a
/// decided row, its own distance: still a lower bound on every other centroid's).
fn settle_block<T: Scalar>(
    rows: MatRef<'_, T>,
    x_sq_norms: &[T],
    bands: &[f64],
    centroids: MatRef<'_, T>,
    c_norms: &[T],
    dots: &mut [T],
    labels: &mut [u32],
    distances: &mut [T],
    second: &mut [T],
) {
    let k = centroids.rows();
    let two = T::one() + T::one();
    let panel = COL_PANEL.min(k);
    for r in 0..rows.rows() {
        let (x, band) = (rows.row(r), bands[r]);
        if second[r].as_f64() - distances[r].as_f64() <= band {
            let best = distances[r].as_f64();
            let (mut chosen, mut chosen_distance) = (labels[r], f64::INFINITY);
            for j0 in (0..k).step_by(panel) {
                let kc = panel.min(k - j0);
                dot_rows(rows.slice_rows(r, r + 1), centroids.slice_rows(j0, j0 + kc), dots, kc);
                for (j, &dot) in dots[..kc].iter().enumerate() {
                    if (c_norms[j0 + j] - two * dot).as_f64() <= best + band {
                        let exact = exact_sq_distance(x, centroids.row(j0 + j));
                        if exact < chosen_distance {
                            (chosen, chosen_distance) = ((j0 + j) as u32, exact);
                        }
                    }
                }
            }
            labels[r] = chosen;
            distances[r] = T::of_f64(chosen_distance);
            second[r] = distances[r];
        } else {
            let clamp = |v: T| if v > T::zero() { v } else { T::zero() };
            distances[r] = clamp(distances[r] + x_sq_norms[r]);
            second[r] = clamp(second[r] + x_sq_norms[r]);
        }
    }
}

/// Dot products `x_r · c_j` (`out`, rows × `c_norms.len()`) to squared distances
/// `‖x_r‖² + ‖c_j‖² − 2 x_r·c_j`, clamped at zero.
fn dots_to_sq_distances<T: Scalar>(x_sq_norms: &[T], c_norms: &[T], out: &mut [T]) {
    let two = T::one() + T::one();
    for (row, &xn) in out.chunks_exact_mut(c_norms.len()).zip(x_sq_norms) {
        for (v, &cn) in row.iter_mut().zip(c_norms) {
            let d = xn + cn - two * *v;
            *v = if d > T::zero() { d } else { T::zero() };
        }
    }
}

/// Dot products of a few centroids (k-means++ candidates) on the SIMD kernel for them, in
/// float32 where `T` is; false where they were not computed.
fn thin_dots<T: Scalar>(x: MatRef<'_, T>, centroids: MatRef<'_, T>, out: &mut [T]) -> bool {
    match (x.as_f32(), centroids.as_f32(), T::as_f32s_mut(out)) {
        (Some(rows), Some(centres), Some(out)) => simd::thin_dots(rows, centres, out),
        _ => false,
    }
}

/// The float32 assignment on the SIMD kernels this CPU has, where the shapes are large
/// enough to gain (see [`super::simd`]); false if it did not run.
fn on_simd_kernels<T: Scalar>(
    x: MatRef<'_, T>,
    x_sq_norms: &[T],
    which: Which<'_>,
    centroids: MatRef<'_, T>,
    labels: &mut [u32],
    distances: &mut [T],
    extra: Extra<'_, T>,
    measure: bool,
) -> bool {
    let (k, d) = (centroids.rows(), x.cols());
    let Some(kind) = Dots::chosen() else {
        return false;
    };
    if k < SIMD_MIN || d < SIMD_MIN {
        return false;
    }
    let (Some(rows), Some(norms), Some(centres), Some(distances)) =
        (x.as_f32(), T::as_f32s(x_sq_norms), centroids.as_f32(), T::as_f32s_mut(distances))
    else {
        return false;
    };
    let extra = match extra {
        Extra::None => simd::Extra::None,
        Extra::RunnerUp(second) => match T::as_f32s_mut(second) {
            Some(second) => simd::Extra::RunnerUp(second),
            None => return false,
        },
        Extra::Groups { members, lower } => match T::as_f32s_mut(lower) {
            Some(lower) => simd::Extra::Groups { members, lower },
            None => return false,
        },
        Extra::Nearest { t, nearest, beyond, second } => match (T::as_f32s_mut(beyond), T::as_f32s_mut(second)) {
            (Some(beyond), Some(second)) => simd::Extra::Nearest { t, nearest, beyond, second },
            _ => return false,
        },
    };
    let rows = match which {
        Which::All => simd::Rows::All(rows),
        Which::Listed(listed, kept) => simd::Rows::Listed(rows, listed, kept),
        Which::Kept(kept, first) => simd::Rows::Kept(rows, kept, first),
    };
    simd::assign_rows(kind, rows, norms, centres, labels, distances, extra, measure);
    true
}

/// Which rows of `x` an assignment on the SIMD kernels takes, and from where (see
/// [`simd::Rows`]).
enum Which<'a> {
    All,
    /// Listed rows, from the rows the kernel kept (every row of `x`) where given.
    Listed(&'a [usize], Option<&'a simd::RoundedRows>),
    Kept(&'a simd::RoundedRows, usize),
}

impl<'a> Which<'a> {
    /// Every row, from the rows the kernel kept where they are given and its own.
    fn of(kept: Option<(&'a KeptRows, usize)>) -> Self {
        match kept.and_then(|(kept, first)| Some((kept.get::<simd::RoundedRows>()?, first))) {
            Some((kept, first)) => Which::Kept(kept, first),
            None => Which::All,
        }
    }
}

/// `assign_top2` of the listed `rows` of `x`: on the SIMD kernels where they run (from the
/// `kept` rows where given; without `measure`, distances are upper bounds within the error
/// bound), else on the rows gathered.
#[allow(clippy::too_many_arguments)]
fn listed_top2<T: Scalar>(
    kernel: &CpuKernel,
    (x, x_sq_norms, rows): (MatRef<'_, T>, &[T], &[usize]),
    kept: Option<&simd::RoundedRows>,
    measure: bool,
    centroids: MatRef<'_, T>,
    labels: &mut [u32],
    distances: &mut [T],
    second: &mut [T],
) -> Result<()> {
    let extra = Extra::RunnerUp(&mut *second);
    if on_simd_kernels(x, x_sq_norms, Which::Listed(rows, kept), centroids, labels, distances, extra, measure) {
        return Ok(());
    }
    super::assign_top2_of_gathered(kernel, x, x_sq_norms, rows, centroids, labels, distances, second)
}

/// [`simd::Extra`] in the data's float type.
enum Extra<'a, T> {
    None,
    RunnerUp(&'a mut [T]),
    Groups { members: &'a [Vec<u32>], lower: &'a mut [T] },
    Nearest { t: usize, nearest: &'a mut [u32], beyond: &'a mut [T], second: &'a mut [T] },
}

/// Labels (the exact nearest centroids, ties to the lowest index), squared distances, and
/// with `TOP2` runner-up squared distances in `second` (which may be empty otherwise): on
/// the SIMD kernels where they run (from `kept` rows where given; without `measure`, exact
/// distances only where near ties need them), else by [`gemm_blocks`].
#[allow(clippy::too_many_arguments)]
fn assign_blocks<T: Scalar, const TOP2: bool>(
    x: MatRef<'_, T>,
    x_sq_norms: &[T],
    kept: Option<(&KeptRows, usize)>,
    measure: bool,
    centroids: MatRef<'_, T>,
    labels: &mut [u32],
    distances: &mut [T],
    second: &mut [T],
) {
    let extra = if TOP2 { Extra::RunnerUp(&mut *second) } else { Extra::None };
    if !on_simd_kernels(x, x_sq_norms, Which::of(kept), centroids, labels, distances, extra, measure) {
        gemm_blocks::<T, TOP2>(x, x_sq_norms, centroids, labels, distances, second);
    }
}

/// [`assign_blocks`] on the `gemm` crate: [`scan_block`] and [`settle_block`] over fixed row
/// blocks in parallel.
fn gemm_blocks<T: Scalar, const TOP2: bool>(
    x: MatRef<'_, T>,
    x_sq_norms: &[T],
    centroids: MatRef<'_, T>,
    labels: &mut [u32],
    distances: &mut [T],
    second: &mut [T],
) {
    let c_norms = row_sq_norms(centroids);
    let c_norm_max = c_norms.iter().fold(0.0f64, |m, v| m.max(v.as_f64()));
    let bound = super::partial_error_bound::<T>(x.cols());
    let panel = COL_PANEL.min(centroids.rows());
    // One runner-up slice per row block with `TOP2`; without it, a scratch block each.
    let blocks = labels.len().div_ceil(ROW_BLOCK);
    let seconds: Vec<&mut [T]> = if TOP2 {
        second.chunks_mut(ROW_BLOCK).collect()
    } else {
        (0..blocks).map(|_| <&mut [T]>::default()).collect()
    };
    labels
        .par_chunks_mut(ROW_BLOCK)
        .zip(distances.par_chunks_mut(ROW_BLOCK))
        .zip(seconds.into_par_iter())
        .enumerate()
        .for_each_init(
            || vec![T::zero(); ROW_BLOCK * panel],
            |dots, (b, ((block_labels, block_distances), block_second))| {
                let mut scratch = [T::zero(); ROW_BLOCK];
                let block_second = if TOP2 { block_second } else { &mut scratch[..block_labels.len()] };
                let start = b * ROW_BLOCK;
                let rows = x.slice_rows(start, start + block_labels.len());
                let norms = &x_sq_norms[start..start + block_labels.len()];
                // Each row's band: the GEMM's error bound on its partial distances.
                let mut bands = [0.0f64; ROW_BLOCK];
                for (band, &xn) in bands.iter_mut().zip(norms) {
                    *band = bound * (xn.as_f64() + 2.0 * c_norm_max);
                }
                scan_block::<T, TOP2>(
                    rows,
                    &bands,
                    centroids,
                    &c_norms,
                    dots,
                    block_labels,
                    block_distances,
                    block_second,
                );
                settle_block(
                    rows,
                    norms,
                    &bands,
                    centroids,
                    &c_norms,
                    dots,
                    block_labels,
                    block_distances,
                    block_second,
                );
            },
        );
}

impl<T: Scalar> Kernel<T> for CpuKernel {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn seeding_error_bound(&self, d: usize) -> Option<f64> {
        // `pairwise` rounds like a partial distance, then adds the row's own norm (itself
        // rounded over d features) and rounds twice more: twice the partial bound covers it.
        // Each row's dot products are summed alone (the thin kernel row by row; the GEMM in a
        // fixed order per output): tests/test_seeding_pruning.py checks, on every kernel, that
        // measuring a subset of rows changes no pick.
        Some(2.0 * crate::kernel::partial_error_bound::<T>(d) + 8.0 * T::epsilon().as_f64())
    }

    fn seeding_screen(
        &self,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        forced: Option<bool>,
    ) -> Option<Box<dyn SeedingScreen<T>>> {
        let slack = super::seeding_slack(x_sq_norms, Kernel::<T>::seeding_error_bound(self, x.cols())?);
        let screen = simd::screen::Screen::new(x.as_f32()?, slack, forced)?;
        Some(Box::new(screen))
    }

    fn assign(
        &self,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
    ) -> Result<()> {
        assign_blocks::<T, false>(x, x_sq_norms, None, true, centroids, labels, distances, &mut []);
        Ok(())
    }

    fn assign_top2(
        &self,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        second: &mut [T],
    ) -> Result<()> {
        assign_blocks::<T, true>(x, x_sq_norms, None, true, centroids, labels, distances, second);
        Ok(())
    }

    fn assign_top2_rows(
        &self,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        rows: &[usize],
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        second: &mut [T],
    ) -> Result<()> {
        listed_top2(self, (x, x_sq_norms, rows), None, true, centroids, labels, distances, second)
    }

    fn assign_top2_rows_labels(
        &self,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        rows: &[usize],
        kept: Option<&KeptRows>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        second: &mut [T],
    ) -> Result<()> {
        let kept = kept.and_then(|kept| kept.get::<simd::RoundedRows>());
        listed_top2(self, (x, x_sq_norms, rows), kept, false, centroids, labels, distances, second)
    }

    fn assign_nearest_labels(
        &self,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        rows: Option<&[usize]>,
        kept: Option<(&KeptRows, usize)>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        (nearest, beyond, second): (&mut [u32], &mut [T], &mut [T]),
    ) -> Result<bool> {
        let t = nearest.len() / labels.len().max(1);
        let m = labels.len();
        assert!(nearest.len() == t * m && beyond.len() == m && second.len() == m, "t nearest and two bounds a row");
        let which = match rows {
            Some(rows) => Which::Listed(rows, kept.filter(|k| k.1 == 0).and_then(|k| k.0.get::<simd::RoundedRows>())),
            None => Which::of(kept),
        };
        let extra = Extra::Nearest { t, nearest, beyond, second };
        Ok(on_simd_kernels(x, x_sq_norms, which, centroids, labels, distances, extra, false))
    }

    fn keep_rows(&self, x: MatRef<'_, T>, spreads: Option<(&[T], &mut [f64])>) -> Option<KeptRows> {
        if x.cols() < SIMD_MIN {
            return None;
        }
        let spreads = match spreads {
            Some((centre, spreads)) => Some((T::as_f32s(centre)?, spreads)),
            None => None,
        };
        simd::RoundedRows::with_spreads(Dots::chosen()?, x.as_f32()?, spreads).map(KeptRows::new)
    }

    fn lay_out_kept(&self, kept: &mut KeptRows, x: MatRef<'_, T>, order: &[usize]) -> bool {
        match (kept.get_mut::<simd::RoundedRows>(), x.as_f32()) {
            (Some(kept), Some(x)) => kept.lay_out(x, order),
            _ => false,
        }
    }

    fn labelled_sq_distance_bounds(
        &self,
        (kept, rows): (&KeptRows, &[usize]),
        centroids: MatRef<'_, T>,
        labels: &[u32],
        out: &mut [f64],
    ) -> bool {
        match (kept.get::<simd::RoundedRows>(), centroids.as_f32()) {
            (Some(kept), Some(centroids)) => kept.labelled_sq_distance_bounds(rows, centroids, labels, out),
            _ => false,
        }
    }

    fn assign_labels(
        &self,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        kept: Option<(&KeptRows, usize)>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
    ) -> Result<()> {
        assign_blocks::<T, false>(x, x_sq_norms, kept, false, centroids, labels, distances, &mut []);
        Ok(())
    }

    fn assign_top2_labels(
        &self,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        kept: Option<(&KeptRows, usize)>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        second: &mut [T],
    ) -> Result<()> {
        assign_blocks::<T, true>(x, x_sq_norms, kept, false, centroids, labels, distances, second);
        Ok(())
    }

    fn moves_rows(&self) -> bool {
        true
    }

    fn accumulate_measuring(
        &self,
        x: MatRef<'_, T>,
        weights: Option<&[T]>,
        labels: &[u32],
        centroids: MatRef<'_, T>,
        distances: &mut [T],
    ) -> Result<ClusterSums> {
        Ok(super::accumulate_and_measure(x, weights, labels, centroids, distances))
    }

    fn assign_grouped(
        &self,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        centroids: MatRef<'_, T>,
        members: &[Vec<u32>],
        labels: &mut [u32],
        distances: &mut [T],
        lower: &mut [T],
    ) -> Result<()> {
        let extra = Extra::Groups { members, lower: &mut *lower };
        if on_simd_kernels(x, x_sq_norms, Which::All, centroids, labels, distances, extra, true) {
            return Ok(());
        }
        self.assign(x, x_sq_norms, centroids, labels, distances)?;
        super::group_bounds_by_pairwise(self, x, x_sq_norms, centroids, members, labels, lower)
    }

    fn pairwise(&self, x: MatRef<'_, T>, x_sq_norms: &[T], centroids: MatRef<'_, T>, out: &mut [T]) -> Result<()> {
        let k = centroids.rows();
        let c_norms = row_sq_norms(centroids);
        // Few centroids (k-means++ candidates): bigger row blocks, fewer GEMM calls.
        let rows = if k <= 32 { 4 * ROW_BLOCK } else { ROW_BLOCK };
        out.par_chunks_mut(rows * k).enumerate().for_each(|(b, block_out)| {
            let start = b * rows;
            let m = block_out.len() / k;
            let block = x.slice_rows(start, start + m);
            if !thin_dots(block, centroids, block_out) {
                dot_rows(block, centroids, block_out, k);
            }
            dots_to_sq_distances(&x_sq_norms[start..start + m], &c_norms, block_out);
        });
        Ok(())
    }

    fn pairwise_rows(
        &self,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        rows: &[usize],
        centroids: MatRef<'_, T>,
        out: &mut [T],
    ) -> Result<()> {
        let listed = match (x.as_f32(), centroids.as_f32(), T::as_f32s_mut(out)) {
            (Some(x), Some(centres), Some(out)) => simd::thin_dots_of_rows(x, rows, centres, out),
            _ => false,
        };
        if !listed {
            // The same values by the gathered rows (each row's dots are summed alone).
            return super::pairwise_of_gathered(self, x, x_sq_norms, rows, centroids, out);
        }
        let norms: Vec<T> = rows.iter().map(|&i| x_sq_norms[i]).collect();
        dots_to_sq_distances(&norms, &row_sq_norms(centroids), out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::accumulate_by_cluster;
    use approx::assert_relative_eq;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_matrix(rows: usize, cols: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..rows * cols).map(|_| rng.random::<f64>() * 10.0 - 5.0).collect()
    }

    fn brute_sq(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
    }

    /// Rows at midpoints between pairs of centroids (plus noise far below float32's GEMM
    /// error), on a large common offset that makes `‖x‖² + ‖c‖² − 2x·c` cancel: the labels
    /// must still be the exact nearest centroids of the float32 values (ties to the lowest
    /// index) and the distances the exact ones, rounded once.
    #[test]
    fn near_ties_are_decided_exactly() {
        let (n, k, d) = (2000, 40, 96);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let c: Vec<f32> = (0..k * d).map(|_| 100.0 + rng.random::<f32>()).collect();
        let mut x = vec![0f32; n * d];
        for i in 0..n {
            let (a, b) = (rng.random_range(0..k), rng.random_range(0..k));
            for p in 0..d {
                let mid = 0.5 * (c[a * d + p] as f64 + c[b * d + p] as f64);
                x[i * d + p] = (mid + 1e-6 * (rng.random::<f64>() - 0.5)) as f32;
            }
        }
        let (xm, cm) = (MatRef::new(&x, n, d).unwrap(), MatRef::new(&c, k, d).unwrap());
        let (mut labels, mut dist) = (vec![0u32; n], vec![0f32; n]);
        CpuKernel.assign(xm, &row_sq_norms(xm), cm, &mut labels, &mut dist).unwrap();
        // The `gemm` crate's path (where the SIMD kernels ran above) decides the same way.
        let (mut gemm_labels, mut gemm_dist) = (vec![0u32; n], vec![0f32; n]);
        gemm_blocks::<f32, false>(xm, &row_sq_norms(xm), cm, &mut gemm_labels, &mut gemm_dist, &mut []);
        assert_eq!(gemm_labels, labels);
        assert_eq!(gemm_dist, dist);
        let mut flips = 0;
        for i in 0..n {
            let exact: Vec<f64> = (0..k).map(|j| exact_sq_distance(xm.row(i), cm.row(j))).collect();
            let best = (0..k).fold(0, |b, j| if exact[j] < exact[b] { j } else { b });
            flips += usize::from(labels[i] as usize != best);
            assert_eq!(dist[i], exact[labels[i] as usize] as f32, "row {i}");
        }
        assert_eq!(flips, 0, "{flips} of {n} rows not at their exact nearest centroid");
        // The top-2 search settles the same way.
        let (mut l2, mut d2, mut second) = (vec![0u32; n], vec![0f32; n], vec![0f32; n]);
        CpuKernel.assign_top2(xm, &row_sq_norms(xm), cm, &mut l2, &mut d2, &mut second).unwrap();
        assert_eq!(l2, labels);
        assert!(second.iter().zip(&d2).all(|(s, d)| s >= d));
        gemm_blocks::<f32, true>(xm, &row_sq_norms(xm), cm, &mut l2, &mut d2, &mut second);
        assert_eq!(l2, labels);
        assert!(second.iter().zip(&d2).all(|(s, d)| s >= d));
    }

    /// Sizes that cross the row-block (128) and centroid-panel (1024) boundaries.
    #[test]
    fn assign_matches_brute_force_f64_and_f32() {
        let (n, k, d) = (300, 1100, 7);
        let x = random_matrix(n, d, 1);
        let c = random_matrix(k, d, 2);
        let xm = MatRef::new(&x, n, d).unwrap();
        let cm = MatRef::new(&c, k, d).unwrap();
        let mut labels = vec![0u32; n];
        let mut dist = vec![0.0f64; n];
        CpuKernel.assign(xm, &row_sq_norms(xm), cm, &mut labels, &mut dist).unwrap();
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let c32: Vec<f32> = c.iter().map(|&v| v as f32).collect();
        let xm32 = MatRef::new(&x32, n, d).unwrap();
        let mut labels32 = vec![0u32; n];
        let mut dist32 = vec![0.0f32; n];
        CpuKernel
            .assign(xm32, &row_sq_norms(xm32), MatRef::new(&c32, k, d).unwrap(), &mut labels32, &mut dist32)
            .unwrap();
        for i in 0..n {
            let all: Vec<f64> = (0..k).map(|j| brute_sq(xm.row(i), cm.row(j))).collect();
            let best = (0..k).min_by(|&a, &b| all[a].total_cmp(&all[b])).unwrap();
            assert_eq!(labels[i] as usize, best, "row {i}");
            assert_relative_eq!(dist[i], all[best], max_relative = 1e-9, epsilon = 1e-9);
            // float32 may pick a near-tie; its distance must still be the minimum to 1e-4.
            assert!((all[labels32[i] as usize] - all[best]).abs() <= 1e-4 * (1.0 + all[best]));
            assert_relative_eq!(dist32[i] as f64, all[best], max_relative = 1e-3, epsilon = 1e-3);
        }
    }

    /// The kernel's top-2 search and the trait's default (through `pairwise`) against brute
    /// force, across the centroid-panel boundary and with exact ties.
    #[test]
    fn assign_top2_matches_brute_force() {
        struct Dense;
        impl Kernel<f64> for Dense {
            fn name(&self) -> &'static str {
                "dense"
            }
            fn assign(
                &self,
                x: MatRef<'_, f64>,
                n: &[f64],
                c: MatRef<'_, f64>,
                l: &mut [u32],
                d: &mut [f64],
            ) -> Result<()> {
                CpuKernel.assign(x, n, c, l, d)
            }
            fn pairwise(&self, x: MatRef<'_, f64>, n: &[f64], c: MatRef<'_, f64>, out: &mut [f64]) -> Result<()> {
                CpuKernel.pairwise(x, n, c, out)
            }
        }
        let (n, d) = (300, 6);
        for k in [1, 2, 9, 1100] {
            let x = random_matrix(n, d, 10 + k as u64);
            let mut c = random_matrix(k, d, 20 + k as u64);
            if k > 2 {
                // A duplicated centroid: its twin is the runner-up at the same distance.
                let twin = c[..d].to_vec();
                c[d..2 * d].copy_from_slice(&twin);
            }
            let (xm, cm) = (MatRef::new(&x, n, d).unwrap(), MatRef::new(&c, k, d).unwrap());
            let norms = row_sq_norms(xm);
            for kernel in [&CpuKernel as &dyn Kernel<f64>, &Dense] {
                let (mut labels, mut dist, mut second) = (vec![0u32; n], vec![0.0; n], vec![0.0; n]);
                kernel.assign_top2(xm, &norms, cm, &mut labels, &mut dist, &mut second).unwrap();
                for i in 0..n {
                    let mut all: Vec<f64> = (0..k).map(|j| brute_sq(xm.row(i), cm.row(j))).collect();
                    assert!((all[labels[i] as usize] - dist[i]).abs() <= 1e-9 * (1.0 + dist[i]), "k={k} row {i}");
                    all.sort_by(f64::total_cmp);
                    assert_relative_eq!(dist[i], all[0], max_relative = 1e-9, epsilon = 1e-9);
                    let expected = if k > 1 { all[1] } else { f64::INFINITY };
                    assert_relative_eq!(second[i], expected, max_relative = 1e-9, epsilon = 1e-9);
                }
            }
        }
    }

    #[test]
    fn pairwise_matches_brute_force() {
        let (n, k, d) = (260, 33, 5);
        let x = random_matrix(n, d, 3);
        let c = random_matrix(k, d, 4);
        let xm = MatRef::new(&x, n, d).unwrap();
        let cm = MatRef::new(&c, k, d).unwrap();
        let mut out = vec![0.0f64; n * k];
        CpuKernel.pairwise(xm, &row_sq_norms(xm), cm, &mut out).unwrap();
        for i in 0..n {
            for j in 0..k {
                assert_relative_eq!(
                    out[i * k + j],
                    brute_sq(xm.row(i), cm.row(j)),
                    max_relative = 1e-9,
                    epsilon = 1e-9
                );
            }
        }
    }

    /// Each cluster's sums equal the plain sums of its rows in row order, bit for bit (float64
    /// of float32 rows, and float64 rows), for feature counts that cut strips unevenly and on
    /// one thread or several.
    #[test]
    fn accumulate_adds_each_clusters_rows_in_row_order_on_any_thread_count() {
        fn check<T: Scalar>(x: &[T], n: usize, d: usize, k: usize, threads: usize) {
            let xm = MatRef::new(x, n, d).unwrap();
            let labels: Vec<u32> = (0..n).map(|i| ((i * 7919) % k) as u32).collect();
            let weights: Vec<T> = (0..n).map(|i| T::of_f64(0.5 + (i % 3) as f64)).collect();
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let sums = pool.install(|| accumulate_by_cluster(xm, Some(&weights), &labels, k));
            // The same sums measuring each row's distance to its centroid on the way.
            let centroids: Vec<T> = (0..k * d).map(|e| T::of_f64((e % 7) as f64 * 0.3 - 1.0)).collect();
            let cm = MatRef::new(&centroids, k, d).unwrap();
            let mut distances = vec![T::zero(); n];
            let measured =
                pool.install(|| crate::kernel::accumulate_and_measure(xm, Some(&weights), &labels, cm, &mut distances));
            assert_eq!(measured, sums, "d={d} threads={threads}");
            for i in 0..n {
                let exact = exact_sq_distance(xm.row(i), cm.row(labels[i] as usize));
                assert_relative_eq!(distances[i].as_f64(), T::of_f64(exact).as_f64(), max_relative = 1e-6);
                if T::epsilon().as_f64() < 1e-10 {
                    assert_relative_eq!(distances[i].as_f64(), exact, max_relative = 1e-13);
                }
            }
            let (mut expected, mut expected_weights) = (vec![0.0f64; k * d], vec![0.0f64; k]);
            for i in 0..n {
                let (j, w) = (labels[i] as usize, weights[i].as_f64());
                expected_weights[j] += w;
                for p in 0..d {
                    expected[j * d + p] += x[i * d + p].as_f64() * w;
                }
            }
            assert_eq!(sums.weights, expected_weights, "d={d} threads={threads}");
            assert_eq!(sums.sums, expected, "d={d} threads={threads}");
        }
        for (n, k, d) in [(5000, 9, 3), (3000, 7, 16), (2000, 5, 70), (1000, 4, 131), (0, 3, 20)] {
            let x = random_matrix(n, d, 5);
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            for threads in [1, 3, 8] {
                check(&x, n, d, k, threads);
                check(&x32, n, d, k, threads);
            }
        }
    }
}
