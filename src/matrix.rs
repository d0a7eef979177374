//! Borrowed row-major matrices and the per-row statistics the loop needs.

use rayon::prelude::*;

use crate::error::{invalid, Result};
use crate::scalar::Scalar;

/// Rows are processed in chunks of this many in every parallel reduction, so
/// the order of floating-point sums never depends on the number of threads.
pub(crate) const REDUCE_CHUNK: usize = 4096;

/// What a pass over the values finds: NaN, infinities, and the largest finite magnitude.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ValueSummary {
    pub has_nan: bool,
    pub has_inf: bool,
    pub max_magnitude: f64,
}

/// One chunk of float32 values summarised on their bits, so that the loop has no branch and
/// vectorises (on AVX-512 where the CPU has it: the baseline's vectors have no unsigned
/// maximum): a non-negative float orders as its bits do, and one is finite where its
/// magnitude's bits lie below infinity's. NaN and infinities are told apart only where the
/// chunk has one.
fn f32_summary(chunk: &[f32]) -> ValueSummary {
    #[cfg(target_arch = "x86_64")]
    if wide_vectors() {
        // SAFETY: AVX-512F is present (checked at run time).
        return unsafe { wide::f32_summary(chunk) };
    }
    f32_summary_inline(chunk)
}

#[inline(always)]
fn f32_summary_inline(chunk: &[f32]) -> ValueSummary {
    const MAGNITUDE: u32 = 0x7fff_ffff;
    let infinity = f32::INFINITY.to_bits();
    let (mut largest, mut not_finite) = (0u32, 0u32);
    for &v in chunk {
        let bits = v.to_bits() & MAGNITUDE;
        let finite = bits < infinity;
        largest = largest.max(if finite { bits } else { 0 });
        not_finite |= u32::from(!finite);
    }
    let (has_nan, has_inf) = match not_finite {
        0 => (false, false),
        _ => (chunk.iter().any(|v| v.is_nan()), chunk.iter().any(|v| v.is_infinite())),
    };
    ValueSummary { has_nan, has_inf, max_magnitude: f32::from_bits(largest) as f64 }
}

/// One parallel pass over `values` (order-independent: flags and a maximum).
pub fn value_summary<T: Scalar>(values: &[T]) -> ValueSummary {
    values
        .par_chunks(1 << 16)
        .map(|chunk| {
            if let Some(chunk) = T::as_f32s(chunk) {
                return f32_summary(chunk);
            }
            let mut s = ValueSummary::default();
            for &v in chunk {
                let v = v.as_f64();
                if v.is_nan() {
                    s.has_nan = true;
                } else if v.is_infinite() {
                    s.has_inf = true;
                } else if v.abs() > s.max_magnitude {
                    s.max_magnitude = v.abs();
                }
            }
            s
        })
        .reduce(ValueSummary::default, |a, b| ValueSummary {
            has_nan: a.has_nan || b.has_nan,
            has_inf: a.has_inf || b.has_inf,
            max_magnitude: a.max_magnitude.max(b.max_magnitude),
        })
}

/// A borrowed, row-major `rows × cols` matrix.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
}

impl<'a, T: Scalar> MatRef<'a, T> {
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Result<Self> {
        if cols == 0 {
            return invalid("matrix has no columns");
        }
        if rows.checked_mul(cols) != Some(data.len()) {
            return invalid(format!("buffer of {} values does not hold a {rows}×{cols} matrix", data.len()));
        }
        Ok(Self { data, rows, cols })
    }

    #[inline(always)]
    pub fn rows(&self) -> usize {
        self.rows
    }

    #[inline(always)]
    pub fn cols(&self) -> usize {
        self.cols
    }

    #[inline(always)]
    pub fn as_slice(&self) -> &'a [T] {
        self.data
    }

    #[inline(always)]
    pub fn row(&self, i: usize) -> &'a [T] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Rows `start..end` as a matrix of their own.
    pub fn slice_rows(&self, start: usize, end: usize) -> MatRef<'a, T> {
        MatRef { data: &self.data[start * self.cols..end * self.cols], rows: end - start, cols: self.cols }
    }

    /// The same matrix as float32, where `T` is float32 (kernels specialised for it).
    pub fn as_f32(&self) -> Option<MatRef<'a, f32>> {
        Some(MatRef { data: T::as_f32s(self.data)?, rows: self.rows, cols: self.cols })
    }

    /// Copies the given rows into a new row-major buffer.
    pub fn gather(&self, indices: &[usize]) -> Vec<T> {
        let mut out = Vec::with_capacity(indices.len() * self.cols);
        for &i in indices {
            out.extend_from_slice(self.row(i));
        }
        out
    }
}

/// Squared Euclidean norm of each row, in `T` (see [`sq_norm`]).
pub fn row_sq_norms<T: Scalar>(x: MatRef<'_, T>) -> Vec<T> {
    let mut norms = vec![T::zero(); x.rows()];
    norms.par_iter_mut().enumerate().with_min_len(256).for_each(|(i, norm)| {
        *norm = sq_norm(x.row(i));
    });
    norms
}

/// The sum of squares of `row` in `T`, on the widest vectors this CPU has: sixteen
/// interleaved partial sums, so that the loop vectorises instead of waiting on one running
/// sum. The order is fixed (not the thread count's); every bound that takes these norms
/// allows the rounding of a sum of `d` terms in any order.
#[inline]
pub fn sq_norm<T: Scalar>(row: &[T]) -> T {
    #[cfg(target_arch = "x86_64")]
    if wide_vectors() {
        // SAFETY: AVX-512F is present (checked at run time).
        return unsafe { wide::sq_norm(row) };
    }
    sq_norm_inline(row)
}

#[inline(always)]
fn sq_norm_inline<T: Scalar>(row: &[T]) -> T {
    const LANES: usize = 16;
    let mut partial = [T::zero(); LANES];
    let lanes = row.chunks_exact(LANES);
    let tail = lanes.remainder().iter().fold(T::zero(), |sum, &v| sum + v * v);
    for chunk in lanes {
        for l in 0..LANES {
            partial[l] += chunk[l] * chunk[l];
        }
    }
    partial.iter().fold(T::zero(), |sum, &p| sum + p) + tail
}

#[inline(always)]
/// Squared Euclidean distance between two rows by differences, in float64: exact up to the
/// float64 rounding of the sum. Eight independent partial sums let the loop vectorise.
pub fn exact_sq_distance<T: Scalar>(a: &[T], b: &[T]) -> f64 {
    const LANES: usize = 8;
    let mut partial = [0.0f64; LANES];
    let (a_lanes, b_lanes) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 =
        a_lanes.remainder().iter().zip(b_lanes.remainder()).map(|(&u, &v)| (u.as_f64() - v.as_f64()).powi(2)).sum();
    for (u, v) in a_lanes.zip(b_lanes) {
        for l in 0..LANES {
            let diff = u[l].as_f64() - v[l].as_f64();
            partial[l] += diff * diff;
        }
    }
    partial.iter().sum::<f64>() + tail
}

/// Whether the CPU has AVX-512F: the hot float64 loops below then run a copy compiled for
/// it (the crate's baseline is SSE2, two doubles per instruction).
pub fn wide_vectors() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static WIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *WIDE.get_or_init(|| is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`exact_sq_distance`] on the widest vectors this CPU has.
#[inline]
pub fn sq_distance<T: Scalar>(a: &[T], b: &[T]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if wide_vectors() {
        // SAFETY: AVX-512F is present (checked at run time).
        return unsafe { wide::sq_distance(a, b) };
    }
    exact_sq_distance(a, b)
}

/// The dot product of `a` and `b` in their own precision (float32 on 16-lane FMAs where the
/// CPU has them, float64 otherwise), within [`crate::kernel::partial_error_bound`] of `T`.
#[inline]
pub fn dot<T: Scalar>(a: &[T], b: &[T]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if wide_vectors() {
        if let (Some(a), Some(b)) = (T::as_f32s(a), T::as_f32s(b)) {
            // SAFETY: AVX-512F is present (checked at run time); the slices have equal length.
            return unsafe { crate::kernel::simd::dot_f32(a, &b[..a.len()]) } as f64;
        }
    }
    a.iter().zip(b).map(|(&u, &v)| u.as_f64() * v.as_f64()).sum()
}

/// `sum += weight · row`, in float64, on the widest vectors this CPU has.
#[inline]
pub fn add_scaled<T: Scalar>(sum: &mut [f64], row: &[T], weight: f64) {
    #[cfg(target_arch = "x86_64")]
    if wide_vectors() {
        // SAFETY: AVX-512F is present (checked at run time).
        return unsafe { wide::add_scaled(sum, row, weight) };
    }
    add_scaled_inline(sum, row, weight)
}

#[inline(always)]
fn add_scaled_inline<T: Scalar>(sum: &mut [f64], row: &[T], weight: f64) {
    for (s, &v) in sum.iter_mut().zip(row) {
        *s += v.as_f64() * weight;
    }
}

/// The same loops compiled for AVX-512F.
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::{add_scaled_inline, exact_sq_distance, f32_summary_inline, sq_norm_inline, Scalar, ValueSummary};

    #[target_feature(enable = "avx512f")]
    pub unsafe fn f32_summary(chunk: &[f32]) -> ValueSummary {
        f32_summary_inline(chunk)
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn sq_norm<T: Scalar>(row: &[T]) -> T {
        sq_norm_inline(row)
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn sq_distance<T: Scalar>(a: &[T], b: &[T]) -> f64 {
        exact_sq_distance(a, b)
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn add_scaled<T: Scalar>(sum: &mut [f64], row: &[T], weight: f64) {
        add_scaled_inline(sum, row, weight)
    }
}

/// Index and exact squared distance of the nearest row of `centroids` to `row` (ties to the
/// lowest index): how a near tie that a GEMM cannot decide is settled.
pub fn exact_nearest<T: Scalar>(row: &[T], centroids: MatRef<'_, T>) -> (u32, f64) {
    (0..centroids.rows()).fold((0, f64::INFINITY), |(best, best_distance), j| {
        let distance = exact_sq_distance(row, centroids.row(j));
        if distance < best_distance {
            (j as u32, distance)
        } else {
            (best, best_distance)
        }
    })
}

/// Scales every row to unit Euclidean norm (zero rows stay zero).
pub fn normalize_rows<T: Scalar>(values: &mut [T], d: usize) {
    for row in values.chunks_exact_mut(d) {
        let norm = row.iter().map(|v| v.as_f64().powi(2)).sum::<f64>().sqrt();
        if norm > 0.0 {
            for v in row {
                *v = T::of_f64(v.as_f64() / norm);
            }
        }
    }
}

/// The rows of one fit as the loop uses them: the matrix, its rows' squared norms and the
/// optional sample weights.
#[derive(Debug, Clone, Copy)]
pub struct Points<'a, T> {
    pub x: MatRef<'a, T>,
    pub x_sq_norms: &'a [T],
    pub weights: Option<&'a [T]>,
}

impl<'a, T: Scalar> Points<'a, T> {
    pub fn rows(&self) -> usize {
        self.x.rows()
    }

    pub fn cols(&self) -> usize {
        self.x.cols()
    }

    /// Whether `other` views the very same rows, norms and weights (not equal copies).
    pub fn same_rows(&self, other: &Points<'_, T>) -> bool {
        fn same<T>(a: &[T], b: &[T]) -> bool {
            std::ptr::eq(a, b)
        }
        same(self.x.as_slice(), other.x.as_slice())
            && self.cols() == other.cols()
            && same(self.x_sq_norms, other.x_sq_norms)
            && match (self.weights, other.weights) {
                (None, None) => true,
                (Some(a), Some(b)) => same(a, b),
                _ => false,
            }
    }

    /// Rows `start..end`, with their norms and weights.
    pub fn slice_rows(&self, start: usize, end: usize) -> Points<'a, T> {
        Points {
            x: self.x.slice_rows(start, end),
            x_sq_norms: &self.x_sq_norms[start..end],
            weights: self.weights.map(|w| &w[start..end]),
        }
    }
}

pub fn weight_at<T: Scalar>(weights: Option<&[T]>, i: usize) -> f64 {
    weights.map_or(1.0, |w| w[i].as_f64())
}

/// Sum of `values[i] * weights[i]` in f64, in an order fixed by the length alone.
pub fn weighted_sum<T: Scalar>(values: &[T], weights: Option<&[T]>) -> f64 {
    let partials: Vec<f64> = values
        .par_chunks(REDUCE_CHUNK)
        .enumerate()
        .map(|(c, chunk)| {
            let offset = c * REDUCE_CHUNK;
            chunk.iter().enumerate().map(|(j, &v)| v.as_f64() * weight_at(weights, offset + j)).sum()
        })
        .collect();
    partials.iter().sum()
}

/// The mean of each column of `x`, in f64 (fixed chunks, so independent of the thread count).
pub fn column_means<T: Scalar>(x: MatRef<'_, T>) -> Vec<f64> {
    let (n, d) = (x.rows(), x.cols());
    let chunk_sums = |start: usize, end: usize| {
        let mut sum = vec![0.0f64; d];
        for i in start..end {
            for (s, &v) in sum.iter_mut().zip(x.row(i)) {
                *s += v.as_f64();
            }
        }
        sum
    };
    reduce_chunks(n, d, &chunk_sums).iter().map(|s| s / n as f64).collect()
}

/// scikit-learn's tolerance scale: the mean over features of the (unweighted) variance.
pub fn mean_feature_variance<T: Scalar>(x: MatRef<'_, T>) -> f64 {
    let (_, sq) = column_moments(x);
    sq.iter().map(|s| s / x.rows() as f64).sum::<f64>() / x.cols() as f64
}

/// Each column's mean and sum of squared deviations from it (two passes, in float64: what
/// chunks of a larger matrix combine by Chan's formula).
pub fn column_moments<T: Scalar>(x: MatRef<'_, T>) -> (Vec<f64>, Vec<f64>) {
    let (n, d) = (x.rows(), x.cols());
    let means = column_means(x);
    let chunk_sq = |start: usize, end: usize| {
        let mut sq = vec![0.0f64; d];
        for i in start..end {
            for ((s, &v), m) in sq.iter_mut().zip(x.row(i)).zip(&means) {
                let diff = v.as_f64() - m;
                *s += diff * diff;
            }
        }
        sq
    };
    let sq = reduce_chunks(n, d, &chunk_sq);
    (means, sq)
}

/// Runs `f` over fixed row chunks in parallel and adds the vectors it returns in chunk order.
fn reduce_chunks(n: usize, d: usize, f: &(dyn Fn(usize, usize) -> Vec<f64> + Sync)) -> Vec<f64> {
    let n_chunks = n.div_ceil(REDUCE_CHUNK);
    let partials: Vec<Vec<f64>> =
        (0..n_chunks).into_par_iter().map(|c| f(c * REDUCE_CHUNK, ((c + 1) * REDUCE_CHUNK).min(n))).collect();
    let mut total = vec![0.0f64; d];
    for p in partials {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The float32 summary equals the same pass over the values widened to float64, for
    /// values of every class (negative, zero, subnormal, huge, infinite, NaN) spread over
    /// several chunks.
    #[test]
    fn float32_summary_equals_the_float64_pass() {
        let specials =
            [-0.0f32, f32::MIN_POSITIVE / 8.0, -f32::MAX, 3.0e38, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
        for case in 0..16usize {
            let n = 70_000 + case * 1_013;
            let mut values: Vec<f32> = (0..n).map(|i| ((i * 7919 + case) % 10_007) as f32 / 97.0 - 50.0).collect();
            // Each case places a different subset of the special values.
            for (s, &v) in specials.iter().enumerate() {
                if case >> (s % 4) & 1 == 1 || case == 15 {
                    values[(s * 9_973 + case * 31) % n] = v;
                }
            }
            let widened: Vec<f64> = values.iter().map(|&v| v as f64).collect();
            assert_eq!(value_summary(&values), value_summary(&widened), "case {case}");
        }
    }

    /// Row norms by the vectorised sum are float64's within the rounding of a float32 sum of
    /// `d` terms (the bound the kernels allow for), for lengths around the sixteen lanes and
    /// of real rows, on both code paths (AVX-512 where the CPU has it, and the portable one).
    #[test]
    fn row_norms_are_float64_sums_within_float32_rounding() {
        for d in [1usize, 7, 15, 16, 17, 31, 33, 128, 768, 1000] {
            let values: Vec<f32> =
                (0..3 * d).map(|i| ((i * 7919 + d) % 10_007) as f32 / 97.0 - 50.0 + (i % 3) as f32 * 1e-3).collect();
            let x = MatRef::new(&values, 3, d).unwrap();
            let wide: Vec<f64> = values.iter().map(|&v| v as f64).collect();
            let norms64 = row_sq_norms(MatRef::new(&wide, 3, d).unwrap());
            for (r, (&norm, &norm64)) in row_sq_norms(x).iter().zip(&norms64).enumerate() {
                let exact: f64 = x.row(r).iter().map(|&v| (v as f64) * (v as f64)).sum();
                let bound = (d + 2) as f64 * f32::EPSILON as f64 * exact;
                assert!((norm as f64 - exact).abs() <= bound, "d = {d}, row {r}: {norm} against {exact}");
                assert_eq!(sq_norm_inline(x.row(r)).to_bits(), norm.to_bits(), "d = {d}: the two paths differ");
                assert!((norm64 - exact).abs() <= 1e-12 * exact.max(1.0), "d = {d}, float64 row {r}");
            }
        }
    }
}
