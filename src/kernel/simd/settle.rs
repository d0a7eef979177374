//! Deciding each row from its computed dot products: the error bound of the partial
//! distances, and the exact re-check of every centroid within twice that bound of the best.

mod pairs;
mod scans;

use super::{Dots, Extra, Packed};
use crate::matrix::{exact_sq_distance, MatRef};
use pairs::rule_out_by_pairs;
pub(super) use scans::argmin2;
pub(crate) use scans::dot_f32;
use scans::{for_each_possible, for_each_within, lane_minima, nth_least};

/// One block of rows with their dot products, for [`settle_block`].
pub(super) struct Block<'a> {
    pub rows: Source<'a>,
    pub norms: &'a [f32],
    /// Upper bounds on the norm of each (rounded) row and of its rounding residual.
    pub rounded: &'a [f64],
    pub residual: &'a [f64],
    pub dots: &'a [f32],
    pub padded: usize,
    /// Each row's least partial distance, its centroid and the runner-up, where the kernel
    /// scanned them already (as [`argmin2`] gives them).
    pub firsts: Option<&'a [(f32, usize, f32)]>,
}

/// Where a block's float32 rows lie: in a matrix of their own, or listed rows of one.
#[derive(Clone, Copy)]
pub(super) enum Source<'a> {
    Rows(MatRef<'a, f32>),
    Listed(MatRef<'a, f32>, &'a [usize]),
}

impl<'a> Source<'a> {
    #[inline(always)]
    fn row(&self, r: usize) -> &'a [f32] {
        match *self {
            Source::Rows(rows) => rows.row(r),
            Source::Listed(x, listed) => x.row(listed[r]),
        }
    }
}

/// `value` (a squared distance's lower bound) as a float32 no larger, never negative.
#[inline(always)]
fn round_down(value: f64) -> f32 {
    let rounded = value.max(0.0) as f32;
    if rounded as f64 > value {
        rounded.next_down().max(0.0)
    } else {
        rounded
    }
}

/// [`settle_row`] for every row of a block: labels, distances (exact, or with `measure`
/// false upper bounds within the error bound, exact only where near ties need them) and the
/// bounds asked for (`extra`: the block's share).
/// Compiled for AVX-512F, which every kind implies, so that the float64 re-checks and the
/// scans run on wide vectors (the crate's baseline is SSE2).
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn settle_block(
    block: &Block<'_>,
    c_norms: &[f32],
    centroids: MatRef<'_, f32>,
    bound: &Bound,
    labels: &mut [u32],
    distances: &mut [f32],
    extra: &mut Extra<'_>,
    measure: bool,
) {
    let k = centroids.rows();
    let mut candidates = Vec::new();
    let mut partials: Vec<f32> = Vec::new();
    // The rows of near ties are read where they lie, without prefetching: asking for them
    // ahead cost more than it saved (`benchmarks/README.md`).
    for r in 0..labels.len() {
        let row_dots = &block.dots[r * block.padded..r * block.padded + k];
        let first = match block.firsts {
            Some(firsts) => firsts[r],
            // SAFETY: this function runs with AVX-512F; `c_norms` holds a value per dot.
            None => unsafe { argmin2(row_dots, &c_norms[..k]) },
        };
        let x_sq = block.norms[r] as f64;
        let error = bound.of_row(block.rounded[r], block.residual[r], x_sq);
        let row =
            Row { x: block.rows.row(r), dots: row_dots, x_sq, error, norms: (block.rounded[r], block.residual[r]) };
        let (label, distance, runner_up) = settle_row(&row, first, c_norms, centroids, bound, measure, &mut candidates);
        labels[r] = label;
        distances[r] = distance as f32;
        match extra {
            Extra::None => {}
            // Rounded down, so that it stays a lower bound, and never below the row's own
            // distance where that is measured (a runner-up is at least as far, up to
            // rounding; an unmeasured distance is an upper bound, which a runner-up that only
            // the pair bound ruled out may lie below).
            Extra::RunnerUp(second) => {
                second[r] = if measure { round_down(runner_up).max(distances[r]) } else { round_down(runner_up) }
            }
            Extra::Nearest { t, nearest, beyond, second } => {
                let nearest = &mut nearest[r * *t..(r + 1) * *t];
                beyond[r] = least_partials(row_dots, &c_norms[..k], error, x_sq, nearest);
                // As `RunnerUp` gives it (without `measure`).
                second[r] = round_down(runner_up);
            }
            Extra::Groups { members, lower } => {
                // The row's partial distances as `argmin2` computes them, its own left out.
                partials.clear();
                partials.extend(row_dots.iter().zip(c_norms).map(|(&d, &c)| c - 2.0 * d));
                // Overflow anywhere (an infinite or not-a-number partial): every bound is zero.
                let overflow = partials.iter().any(|p| !p.is_finite());
                partials[label as usize] = f32::INFINITY;
                let t = members.len();
                for (group, bound) in members.iter().zip(&mut lower[r * t..(r + 1) * t]) {
                    let nearest = group.iter().fold(f32::INFINITY, |m, &j| m.min(partials[j as usize]));
                    *bound = match (overflow, nearest == f32::INFINITY) {
                        (true, _) => 0.0,
                        (false, true) => f32::INFINITY,
                        (false, false) => round_down(nearest as f64 - error + x_sq),
                    };
                }
            }
        }
    }
}

/// The `nearest.len()` centroids of least computed partial distance (`c_norms − 2·dots`)
/// into `nearest` (`u32::MAX` past the last centroid), and a lower bound on the squared
/// distance to every other: the next least partial less the row's error bound, plus `‖x‖²`
/// (infinite with no other; zero where a partial or the bound is not finite).
#[inline(always)]
fn least_partials(dots: &[f32], c_norms: &[f32], error: f64, x_sq: f64, nearest: &mut [u32]) -> f32 {
    const LANES: usize = 16;
    let t = nearest.len();
    assert!(t < LANES, "fewer nearest centroids a row than {LANES}");
    nearest.fill(u32::MAX);
    if dots.len() <= t {
        nearest[..dots.len()].iter_mut().enumerate().for_each(|(j, n)| *n = j as u32);
        return if error.is_finite() { f32::INFINITY } else { 0.0 };
    }
    // Each lane's least partial: the `t + 1`-th least of those is at least the `t + 1`-th
    // least of all, so every partial up to it holds the `t + 1` least.
    // SAFETY: settling runs with AVX-512F; `c_norms` holds a value per dot.
    let lanes = unsafe { lane_minima(dots, c_norms) };
    let Some(lanes) = lanes.filter(|_| error.is_finite()) else {
        return 0.0;
    };
    // SAFETY: as above; every lane is finite or infinite.
    let limit = unsafe { nth_least(&lanes, t) };
    // Every partial up to the limit (few pass; at least `t + 1`), visited in increasing index:
    // the `t + 1` least kept in order of value, then index (a later equal value goes after).
    let mut least = [(f32::INFINITY, u32::MAX); LANES];
    let mut count = 0;
    let take = |j: usize| {
        let partial = c_norms[j] - 2.0 * dots[j];
        if count == t + 1 && !(partial < least[t].0) {
            return;
        }
        let mut at = count.min(t);
        while at > 0 && partial < least[at - 1].0 {
            least[at] = least[at - 1];
            at -= 1;
        }
        least[at] = (partial, j as u32);
        count = (count + 1).min(t + 1);
    };
    // SAFETY: as above.
    unsafe { for_each_within(dots, c_norms, Some(limit), take) };
    assert!(count == t + 1, "at least t + 1 partials up to the (t + 1)-th least lane minimum");
    for (n, &(_, j)) in nearest.iter_mut().zip(least.iter()) {
        *n = j;
    }
    round_down(least[t].0 as f64 - error + x_sq)
}

/// One row of a block: its values, dot products, `‖x‖²` (a float32 sum), the error bound
/// of its partial distances, and the bounds on its (rounded) norm and rounding residual.
struct Row<'a> {
    x: &'a [f32],
    dots: &'a [f32],
    x_sq: f64,
    error: f64,
    norms: (f64, f64),
}

/// One row's label, exact squared distance, and a lower bound on its squared distance to
/// every other centroid, from its partial distances (`c_norms − 2·dots`) and their error
/// bound. Where the runner-up lies within twice the bound of the best, each centroid's own
/// share of the bound (its norms) rules out those that cannot be nearest; where several
/// remain and the kind rounded the rows, their partial distances are computed again in
/// float32 from the row and centroids as they are (a bound a few hundred times tighter),
/// and only those still within twice that bound of the best are measured exactly. Without
/// `measure`, a row with one centroid left keeps its computed distance raised by its error
/// bound (an upper bound on the exact one). `candidates` is scratch space.
#[inline(always)]
fn settle_row(
    row: &Row<'_>,
    (best, best_j, runner_up): (f32, usize, f32),
    c_norms: &[f32],
    centroids: MatRef<'_, f32>,
    bound: &Bound,
    measure: bool,
    candidates: &mut Vec<(usize, f32)>,
) -> (u32, f64, f64) {
    let (x, dots, x_sq, error) = (row.x, row.dots, row.x_sq, row.error);
    let (best, runner_up) = (best as f64, runner_up as f64);
    // Every centroid left out has a true partial distance above `best + error`, and one at
    // least `runner_up − error`.
    let outside = (runner_up - error).max(best + error) + x_sq;
    // Values so large that the float32 partials overflow: every centroid is measured.
    let everything = !(best.is_finite() && error.is_finite());
    // Without `measure`: the computed distance raised by its error bound ([`above`]).
    if !everything && runner_up > best + 2.0 * error {
        let distance = if measure {
            exact_sq_distance(x, centroids.row(best_j))
        } else {
            above(row, bound, c_norms, best_j, best)
        };
        return (best_j as u32, distance, outside.max(0.0));
    }
    candidates.clear();
    let outside = if everything {
        // SAFETY: as above; `c_norms` holds a value for every dot product.
        unsafe { for_each_within(dots, c_norms, None, |j| candidates.push((j, 0.0))) };
        f64::INFINITY
    } else {
        let (norm, residual) = row.norms;
        let own = bound.per_centroid(norm, residual, x_sq);
        let best_error = own.of(bound, best_j, c_norms[best_j]);
        // Centroid `j` may be nearest only if `v_j − e_j ≤ best + e_best`; the float32
        // difference is within `u·(|best| + 2·error)` of the true one for every such `j`.
        let u = f32::EPSILON as f64 / 2.0;
        let limit = super::f32_up(best + best_error + 2.0 * u * (best.abs() + 2.0 * error) + f64::MIN_POSITIVE);
        // SAFETY: as above.
        unsafe { for_each_possible(dots, c_norms, bound, own, limit, |j| candidates.push((j, 0.0))) };
        // Every centroid left out has a true partial distance above `best + e_best`; those the
        // pair bound rules out next come with their own lower bound.
        let outside = (runner_up - error).max(best + best_error) + x_sq;
        outside.min(rule_out_by_pairs(row, best_j, limit as f64, own, c_norms, centroids, bound, candidates))
    };
    if let (false, [(only, _)]) = (everything, &candidates[..]) {
        let only = *only;
        let distance =
            if measure { exact_sq_distance(x, centroids.row(only)) } else { above(row, bound, c_norms, only, best) };
        return (only as u32, distance, outside.max(0.0));
    }
    let mut nearest = Nearest { label: u32::MAX, distance: f64::INFINITY, other: outside };
    if let (Some(unrounded), false, true) = (bound.unrounded.as_deref(), everything, candidates.len() > 1) {
        // Only rows with near ties need this bound (the row's norm inflated by its rounding).
        let fine = unrounded.of_row((x_sq * super::inflation(x.len())).sqrt(), 0.0, x_sq);
        let mut fine_best = f64::INFINITY;
        for (j, partial) in candidates.iter_mut() {
            // SAFETY: as above.
            *partial = c_norms[*j] - 2.0 * unsafe { dot_f32(x, centroids.row(*j)) };
            fine_best = fine_best.min(*partial as f64);
        }
        if fine_best.is_finite() && fine.is_finite() && candidates.iter().all(|c| c.1.is_finite()) {
            // A candidate beyond `fine_best + 2·fine` is truly farther than the best's.
            let close = |partial: f32| partial as f64 <= fine_best + 2.0 * fine;
            // One left: without `measure`, its float32 distance raised by `fine` serves (an
            // upper bound, as above).
            let settled = !measure && candidates.iter().filter(|c| close(c.1)).count() == 1;
            for &(j, partial) in candidates.iter() {
                if close(partial) {
                    let distance = if settled {
                        (partial as f64 + fine + x_sq).max(0.0)
                    } else {
                        exact_sq_distance(x, centroids.row(j))
                    };
                    nearest.take(j, distance);
                } else {
                    nearest.other = nearest.other.min(partial as f64 - fine + x_sq);
                }
            }
            return (nearest.label, nearest.distance, nearest.other.max(0.0));
        }
    }
    for &(j, _) in candidates.iter() {
        nearest.take(j, exact_sq_distance(x, centroids.row(j)));
    }
    (nearest.label, nearest.distance, nearest.other.max(0.0))
}

/// Without `measure`: the row's computed partial distance to centroid `j` raised by its error
/// bound (the centroid's own share), so that it is an upper bound on the exact squared
/// distance (up to its rounding to float32). A function rather than a closure, so that it is
/// compiled for AVX-512F with its caller.
#[inline(always)]
fn above(row: &Row<'_>, bound: &Bound, c_norms: &[f32], j: usize, partial: f64) -> f64 {
    let (norm, residual) = row.norms;
    (partial + bound.per_centroid(norm, residual, row.x_sq).of(bound, j, c_norms[j]) + row.x_sq).max(0.0)
}

/// The nearest of the centroids measured so far (ties to the first measured) and a lower
/// bound on the distance to every other.
struct Nearest {
    label: u32,
    distance: f64,
    other: f64,
}

impl Nearest {
    #[inline(always)]
    fn take(&mut self, j: usize, exact: f64) {
        if exact < self.distance {
            self.other = self.other.min(self.distance);
            (self.label, self.distance) = (j as u32, exact);
        } else {
            self.other = self.other.min(exact);
        }
    }
}

/// The error bound of a computed partial distance `‖c‖² − 2x̃·c̃` against the exact
/// `‖c‖² − 2x·c`: `2(‖x − x̃‖·‖c‖ + ‖x̃‖·‖c − c̃‖)` from rounding the inputs (zero in float32),
/// `2γ‖x̃‖‖c̃‖` from float32 accumulation over `d` products (each exact, or fused), the rounding
/// of `‖c‖²` and of the final subtraction, and products flushed to zero (bfloat16).
pub(super) struct Bound {
    gamma: f64,
    norm_max: f64,
    rounded_norm_max: f64,
    residual_max: f64,
    sq_norm_max: f64,
    flushed: f64,
    /// Per centroid: upper bounds on its norms and its rounding residual's (`Packed`).
    widths: Vec<f32>,
    residuals: Vec<f32>,
    /// For kinds that round the rows and centroids: the bound of float32 products of them
    /// as they are (nothing rounded, `d + 4` roundings).
    pub(super) unrounded: Option<Box<Bound>>,
}

/// A row's error bound with each centroid's own norms in place of the largest:
/// `e_j = a·w_j + b·r_j + t·‖c_j‖² + e` (`w_j`, `r_j`: the centroid's norm and residual
/// bounds), each coefficient rounded up, so float32 arithmetic never undercuts the bound.
#[derive(Clone, Copy)]
pub(super) struct PerCentroid {
    a: f32,
    b: f32,
    t: f32,
    e: f32,
}

impl PerCentroid {
    /// `e_j` for centroid `j` (`c_norm`: its float32 `‖c_j‖²`).
    #[inline(always)]
    pub(super) fn of(self, bound: &Bound, j: usize, c_norm: f32) -> f64 {
        let (a, b, t, e) = (self.a as f64, self.b as f64, self.t as f64, self.e as f64);
        a * bound.widths[j] as f64 + b * bound.residuals[j] as f64 + t * c_norm as f64 + e
    }
}

impl Bound {
    pub(super) fn new(kind: Dots, d: usize, packed: &Packed) -> Self {
        let u = f32::EPSILON as f64 / 2.0;
        // Matrix tiles sum in an order of their own: twice the roundings, to be safe.
        let n = if kind == Dots::Amx { 2 * d + 8 } else { d + 4 } as f64;
        let float32 = (d + 4) as f64;
        let unrounded = (kind != Dots::F32).then(|| {
            Box::new(Self {
                gamma: float32 * u / (1.0 - float32 * u),
                norm_max: packed.norm_max,
                rounded_norm_max: packed.norm_max,
                residual_max: 0.0,
                sq_norm_max: packed.sq_norm_max,
                flushed: 4.0 * d as f64 * f32::MIN_POSITIVE as f64,
                widths: Vec::new(),
                residuals: Vec::new(),
                unrounded: None,
            })
        });
        Self {
            gamma: n * u / (1.0 - n * u),
            norm_max: packed.norm_max,
            rounded_norm_max: packed.rounded_norm_max,
            residual_max: packed.residual_max,
            sq_norm_max: packed.sq_norm_max,
            flushed: 4.0 * d as f64 * f32::MIN_POSITIVE as f64,
            widths: packed.widths.clone(),
            residuals: packed.residuals.clone(),
            unrounded,
        }
    }

    /// [`Bound::of_row`]'s terms split by centroid: `inputs` as `2·residual·w_j + 2·norm·r_j`,
    /// `dot` and `roundings` as `(2γ + 4u)·norm·w_j + 2u·‖c_j‖²`, the rest alike. Every term
    /// is at most its counterpart in `of_row`, so `e_j` never exceeds the row's bound.
    pub(super) fn per_centroid(&self, norm: f64, residual: f64, x_sq: f64) -> PerCentroid {
        let u = f32::EPSILON as f64 / 2.0;
        // The margins of `of_row`, and room for the float32 sums of `e_j` (four roundings).
        let margin = (1.0 + 1e-6) * (1.0 + 1e-5);
        let up = |v: f64| super::f32_up(v * margin);
        PerCentroid {
            a: up(2.0 * residual + (2.0 * self.gamma + 4.0 * u) * norm),
            b: up(2.0 * norm),
            // `‖c_j‖²` comes as its float32 rounding: at most `u` relatively below.
            t: up(2.0 * u * (1.0 + 2.0 * u)),
            e: up(self.gamma * x_sq + self.flushed + f64::MIN_POSITIVE),
        }
    }

    /// For a row with (rounded) norm `norm`, residual norm `residual` and `‖x‖² = x_sq` (a
    /// float32 sum, whose own error joins the bound).
    pub(super) fn of_row(&self, norm: f64, residual: f64, x_sq: f64) -> f64 {
        let u = f32::EPSILON as f64 / 2.0;
        let inputs = 2.0 * (residual * self.norm_max + norm * self.residual_max);
        let dot = 2.0 * self.gamma * norm * self.rounded_norm_max;
        let roundings = 2.0 * u * (self.sq_norm_max + 2.0 * norm * self.rounded_norm_max);
        let row_norm = self.gamma * x_sq;
        // A margin for the float64 arithmetic of the bound itself.
        (inputs + dot + roundings + row_norm + self.flushed) * (1.0 + 1e-6) + f64::MIN_POSITIVE
    }
}
