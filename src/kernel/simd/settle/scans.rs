//! The vector scans of a row's partial distances that deciding it needs: the best two, the
//! centroids within a limit, those each centroid's own error bound leaves, and float32 dots.

use super::{Bound, PerCentroid};

/// Float32 dot product of `x` and `c` (fused multiply-adds in four 16-lane accumulators,
/// then the lanes summed): within the float32 error bound of any summation order.
///
/// # Safety
/// AVX-512F must be supported; `c` holds at least `x.len()` values.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn dot_f32(x: &[f32], c: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    const LANES: usize = 16;
    let n = x.len();
    let mut sums = [_mm512_setzero_ps(); 4];
    let mut j = 0;
    while j + 4 * LANES <= n {
        for (a, sum) in sums.iter_mut().enumerate() {
            let at = j + a * LANES;
            *sum = _mm512_fmadd_ps(_mm512_loadu_ps(x.as_ptr().add(at)), _mm512_loadu_ps(c.as_ptr().add(at)), *sum);
        }
        j += 4 * LANES;
    }
    while j < n {
        let mask = crate::kernel::simd::x86::first_lanes(n - j);
        let (a, b) = (_mm512_maskz_loadu_ps(mask, x.as_ptr().add(j)), _mm512_maskz_loadu_ps(mask, c.as_ptr().add(j)));
        sums[0] = _mm512_fmadd_ps(a, b, sums[0]);
        j += LANES;
    }
    _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(sums[0], sums[1]), _mm512_add_ps(sums[2], sums[3])))
}

/// `‖a − b‖²` in float32 (the differences rounded once, then squared and summed as
/// [`dot_f32`] sums): within [`super::super::inflation`] and two roundings of the true value.
///
/// # Safety
/// AVX-512F must be supported; `b` holds at least `a.len()` values.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn sq_difference_f32(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    const LANES: usize = 16;
    let n = a.len();
    let mut sums = [_mm512_setzero_ps(); 4];
    let mut j = 0;
    while j + 4 * LANES <= n {
        for (s, sum) in sums.iter_mut().enumerate() {
            let at = j + s * LANES;
            let diff = _mm512_sub_ps(_mm512_loadu_ps(a.as_ptr().add(at)), _mm512_loadu_ps(b.as_ptr().add(at)));
            *sum = _mm512_fmadd_ps(diff, diff, *sum);
        }
        j += 4 * LANES;
    }
    while j < n {
        let mask = crate::kernel::simd::x86::first_lanes(n - j);
        let diff = _mm512_sub_ps(
            _mm512_maskz_loadu_ps(mask, a.as_ptr().add(j)),
            _mm512_maskz_loadu_ps(mask, b.as_ptr().add(j)),
        );
        sums[0] = _mm512_fmadd_ps(diff, diff, sums[0]);
        j += LANES;
    }
    _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(sums[0], sums[1]), _mm512_add_ps(sums[2], sums[3])))
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn sq_difference_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(&u, &v)| (u - v) * (u - v)).sum()
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn dot_f32(x: &[f32], c: &[f32]) -> f32 {
    x.iter().zip(c).map(|(&a, &b)| a * b).sum()
}

/// [`crate::kernel::cpu::argmin2_partial`] (the same minimum, first index and runner-up) on
/// 16-lane vectors (`x86::Lanes`): per lane the running minimum, its index and the lane's
/// runner-up, branch-free; then the lanes' minima, the lowest index among the lanes that
/// hold it, and the smallest of every other value. Not-a-number partials are never taken,
/// as there.
///
/// # Safety
/// AVX-512F must be supported; `c_norms` holds at least `dots.len()` values.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
pub(in crate::kernel::simd) unsafe fn argmin2(dots: &[f32], c_norms: &[f32]) -> (f32, usize, f32) {
    use crate::kernel::simd::x86::Lanes;
    use std::arch::x86_64::*;
    const LANES: usize = 16;
    let n = dots.len();
    debug_assert!(c_norms.len() >= n);
    let mut lanes = Lanes::new();
    let mut j = 0;
    while j < n {
        // Lanes past the end read an infinite norm: never a minimum nor a runner-up.
        let mask = crate::kernel::simd::x86::first_lanes(n - j);
        let d = _mm512_maskz_loadu_ps(mask, dots.as_ptr().add(j));
        let c = _mm512_mask_loadu_ps(_mm512_set1_ps(f32::INFINITY), mask, c_norms.as_ptr().add(j));
        lanes.step(d, c, j);
        j += LANES;
    }
    lanes.finish()
}

/// Per lane `l`, the least partial distance `c_norms[j] − 2·dots[j]` over `j ≡ l (mod 16)`
/// (infinite for a lane with none); `None` where a partial is not finite.
///
/// # Safety
/// AVX-512F must be supported; `c_norms` holds at least `dots.len()` values.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn lane_minima(dots: &[f32], c_norms: &[f32]) -> Option<[f32; 16]> {
    use std::arch::x86_64::*;
    const LANES: usize = 16;
    let n = dots.len();
    let (mut least, mut spread) = (_mm512_set1_ps(f32::INFINITY), _mm512_setzero_ps());
    let mut j = 0;
    while j < n {
        let mask = crate::kernel::simd::x86::first_lanes(n - j);
        let d = _mm512_maskz_loadu_ps(mask, dots.as_ptr().add(j));
        let c = _mm512_maskz_loadu_ps(mask, c_norms.as_ptr().add(j));
        let v = _mm512_sub_ps(c, _mm512_add_ps(d, d));
        // Not-a-number or infinite anywhere shows in the sum of zeros times each.
        spread = _mm512_mask_add_ps(spread, mask, spread, _mm512_mul_ps(v, _mm512_setzero_ps()));
        least = _mm512_mask_min_ps(least, mask, least, v);
        j += LANES;
    }
    if _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(spread, _mm512_setzero_ps()) != 0 {
        return None;
    }
    let mut lanes = [0f32; LANES];
    _mm512_storeu_ps(lanes.as_mut_ptr(), least);
    Some(lanes)
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn lane_minima(dots: &[f32], c_norms: &[f32]) -> Option<[f32; 16]> {
    let mut lanes = [f32::INFINITY; 16];
    let mut spread = 0f32;
    for (j, (&dot, &c_norm)) in dots.iter().zip(c_norms).enumerate() {
        let partial = c_norm - 2.0 * dot;
        spread += partial * 0.0;
        lanes[j % 16] = lanes[j % 16].min(partial);
    }
    (spread == 0.0).then_some(lanes)
}

/// The value of rank `t` (from zero; equal values ranked by lane) among `lanes`, none of
/// them not-a-number: each lane's rank counted by one comparison of all sixteen.
///
/// # Safety
/// AVX-512F must be supported.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn nth_least(lanes: &[f32; 16], t: usize) -> f32 {
    use std::arch::x86_64::*;
    let all = _mm512_loadu_ps(lanes.as_ptr());
    for (lane, &value) in lanes.iter().enumerate() {
        let value_v = _mm512_set1_ps(value);
        let below = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(all, value_v).count_ones();
        let equal_before = (_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(all, value_v) & ((1u32 << lane) - 1) as u16).count_ones();
        if (below + equal_before) as usize == t {
            return value;
        }
    }
    unreachable!("every rank below sixteen is some lane's")
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn nth_least(lanes: &[f32; 16], t: usize) -> f32 {
    let mut sorted = *lanes;
    sorted.sort_unstable_by(f32::total_cmp);
    sorted[t]
}

/// Calls `visit(j)`, in increasing `j`, for each partial distance `c_norms[j] − 2·dots[j]`
/// at most `limit`, or for every `j` without a limit.
///
/// # Safety
/// AVX-512F must be supported; `c_norms` holds at least `dots.len()` values.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn for_each_within(dots: &[f32], c_norms: &[f32], limit: Option<f32>, mut visit: impl FnMut(usize)) {
    use std::arch::x86_64::*;
    const LANES: usize = 16;
    let n = dots.len();
    let bound = _mm512_set1_ps(limit.unwrap_or(0.0));
    let mut j = 0;
    while j < n {
        let mask = crate::kernel::simd::x86::first_lanes(n - j);
        let mut within = if limit.is_none() {
            mask
        } else {
            let d = _mm512_maskz_loadu_ps(mask, dots.as_ptr().add(j));
            let c = _mm512_maskz_loadu_ps(mask, c_norms.as_ptr().add(j));
            let v = _mm512_sub_ps(c, _mm512_add_ps(d, d));
            _mm512_mask_cmp_ps_mask::<_CMP_LE_OQ>(mask, v, bound)
        };
        while within != 0 {
            visit(j + within.trailing_zeros() as usize);
            within &= within - 1;
        }
        j += LANES;
    }
}

/// Calls `visit(j)`, in increasing `j`, for each centroid whose partial distance less its
/// own error bound (`own`) is at most `limit`: the only ones that may be nearest.
///
/// # Safety
/// AVX-512F must be supported; `c_norms` holds at least `dots.len()` values, and `bound`
/// a width and residual for each.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn for_each_possible(
    dots: &[f32],
    c_norms: &[f32],
    bound: &Bound,
    own: PerCentroid,
    limit: f32,
    mut visit: impl FnMut(usize),
) {
    use std::arch::x86_64::*;
    const LANES: usize = 16;
    let n = dots.len();
    debug_assert!(c_norms.len() >= n && bound.widths.len() >= n && bound.residuals.len() >= n);
    let (a, b, t, e) = (_mm512_set1_ps(own.a), _mm512_set1_ps(own.b), _mm512_set1_ps(own.t), _mm512_set1_ps(own.e));
    let limit = _mm512_set1_ps(limit);
    let mut j = 0;
    while j < n {
        let mask = crate::kernel::simd::x86::first_lanes(n - j);
        let d = _mm512_maskz_loadu_ps(mask, dots.as_ptr().add(j));
        let c = _mm512_maskz_loadu_ps(mask, c_norms.as_ptr().add(j));
        let w = _mm512_maskz_loadu_ps(mask, bound.widths.as_ptr().add(j));
        let r = _mm512_maskz_loadu_ps(mask, bound.residuals.as_ptr().add(j));
        let v = _mm512_sub_ps(c, _mm512_add_ps(d, d));
        let error = _mm512_fmadd_ps(a, w, _mm512_fmadd_ps(b, r, _mm512_fmadd_ps(t, c, e)));
        let mut within = _mm512_mask_cmp_ps_mask::<_CMP_LE_OQ>(mask, _mm512_sub_ps(v, error), limit);
        while within != 0 {
            visit(j + within.trailing_zeros() as usize);
            within &= within - 1;
        }
        j += LANES;
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn for_each_possible(
    dots: &[f32],
    c_norms: &[f32],
    bound: &Bound,
    own: PerCentroid,
    limit: f32,
    mut visit: impl FnMut(usize),
) {
    for (j, (&dot, &c_norm)) in dots.iter().zip(c_norms).enumerate() {
        if c_norm - 2.0 * dot - own.of(bound, j, c_norm) as f32 <= limit {
            visit(j);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn for_each_within(dots: &[f32], c_norms: &[f32], limit: Option<f32>, mut visit: impl FnMut(usize)) {
    for (j, (&dot, &c_norm)) in dots.iter().zip(c_norms).enumerate() {
        if limit.is_none_or(|limit| c_norm - 2.0 * dot <= limit) {
            visit(j);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(in crate::kernel::simd) unsafe fn argmin2(dots: &[f32], c_norms: &[f32]) -> (f32, usize, f32) {
    crate::kernel::cpu::argmin2_partial(dots, c_norms)
}
