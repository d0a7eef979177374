//! A first look at greedy k-means++'s candidates on an 8-bit copy of the rows, made once per
//! seeding: a quarter of the bytes of a float32 pass. Each row, less the column mean
//! (distances do not change, and the codes' error grows with the values), is stored as bytes
//! `q` with a scale `s` (`x' ≈ s·q`), and the exact norm of what that leaves out. Dot products
//! of codes are exact in integers (AVX512-VNNI), so each row's squared distance to every
//! candidate has a rigorous lower bound from the codes, the two residual norms and the
//! centring's rounding; where that bound, less the error of the distances the float32 kernel
//! computes (`slack`), still reaches the row's closest distance, the kernel's distance could
//! not be below it, so the row keeps its closest distance without being measured. The other
//! rows are measured by the float32 kernel as before: the potentials and picks are the
//! unscreened ones, bit for bit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::THIN_MAX;
use crate::kernel::{SeedingScreen, StepScreen};
use crate::matrix::MatRef;
use crate::scalar::Scalar;

/// Rows per call of the dot-product kernel.
const ROWS: usize = 128;
/// Rows per task when the copy is made.
const PACK_ROWS: usize = 2048;
/// The largest copy made (2 GiB): a quarter of the float32 rows' bytes again could exhaust
/// the memory beside data near its size, so larger data are not screened.
const MAX_COPY_BYTES: usize = 1 << 31;
/// The widest rows screened: their integer dot products stay exact in 32 bits.
const MAX_FEATURES: usize = 32_768;
/// Largest code magnitude, and the offset that makes a row's codes unsigned.
const CODE_MAX: f32 = 127.0;
const ROW_OFFSET: i32 = 128;

/// Smallest data screened by default: below it the rows stay in the caches, and a float32
/// pass costs about what the screen does (measured: 10k × 128 rows seeded 10 % slower
/// screened; 4,608 × 768 rows 1.4× faster).
const MIN_DATA_BYTES: usize = 8 << 20;

/// Whether k-means++ screens rows of `bytes` bytes: as `forced` says (the seeding switch
/// `screen`), else where they are at least [`MIN_DATA_BYTES`].
fn wanted(bytes: usize, forced: Option<bool>) -> bool {
    forced.unwrap_or(bytes >= MIN_DATA_BYTES)
}

/// Rows as codes: `bytes` (`stride` a row, zero-padded), and per row the scale, the norms of
/// the coded part and of the residual (rounded up), and the exact squared norm.
struct Codes<B> {
    bytes: Vec<B>,
    scale: Vec<f32>,
    coded: Vec<f64>,
    residual: Vec<f64>,
    sq_norm: Vec<f64>,
}

/// One row's codes of `centred` into `out` (shifted by `offset`): its scale, and the norms
/// of the coded part and of the residual, and its squared norm (float64, the first two
/// rounded up). A row with a value that is not finite gets an infinite residual.
fn encode_row(centred: &[f32], offset: i32, out: &mut [u8]) -> (f32, f64, f64, f64) {
    let largest = centred.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
    let scale = if largest > 0.0 && largest.is_finite() { largest / CODE_MAX } else { 1.0 };
    let (mut coded, mut residual, mut sq_norm) = (0.0f64, 0.0f64, 0.0f64);
    for (byte, &v) in out.iter_mut().zip(centred) {
        let q = (v / scale).round().clamp(-CODE_MAX, CODE_MAX);
        let q = if q.is_nan() { 0.0 } else { q };
        *byte = (q as i32 + offset) as u8;
        let part = scale as f64 * q as f64;
        coded += part * part;
        residual += (v as f64 - part) * (v as f64 - part);
        sq_norm += v as f64 * v as f64;
    }
    let up = |sq: f64| sq.sqrt() * (1.0 + 1e-12);
    let residual = if largest.is_finite() { up(residual) } else { f64::INFINITY };
    (scale, up(coded), residual, sq_norm)
}

/// The codes of `x` less `mean`, `stride` bytes a row, shifted by `offset`.
fn encode(x: MatRef<'_, f32>, mean: &[f32], stride: usize, offset: i32) -> Codes<u8> {
    let (n, d) = (x.rows(), x.cols());
    let mut bytes = vec![0u8; n * stride];
    let parts: Vec<Vec<(f32, f64, f64, f64)>> = bytes
        .par_chunks_mut(PACK_ROWS * stride)
        .enumerate()
        .map(|(c, block)| {
            let mut centred = vec![0f32; d];
            block
                .chunks_exact_mut(stride)
                .enumerate()
                .map(|(r, out)| {
                    for ((v, &a), &m) in centred.iter_mut().zip(x.row(c * PACK_ROWS + r)).zip(mean) {
                        *v = a - m;
                    }
                    encode_row(&centred, offset, out)
                })
                .collect()
        })
        .collect();
    let mut codes = Codes { bytes, scale: vec![], coded: vec![], residual: vec![], sq_norm: vec![] };
    for (scale, coded, residual, sq_norm) in parts.into_iter().flatten() {
        codes.scale.push(scale);
        codes.coded.push(coded);
        codes.residual.push(residual);
        codes.sq_norm.push(sq_norm);
    }
    codes
}

/// The rows as codes with what their bounds need, and when screening is worth a step.
pub struct Screen {
    codes: Codes<u8>,
    stride: usize,
    d: usize,
    /// The column means (float32) subtracted before coding.
    mean: Vec<f32>,
    /// Each coded row's norm (`√sq_norm`, rounded up).
    norm: Vec<f64>,
    slack: Vec<f64>,
    back_off: Mutex<BackOff>,
    screened: AtomicUsize,
    skipped: AtomicUsize,
}

/// Steps asked for so far, the next to screen, and how many screens in a row skipped too
/// few rows to repay themselves (then screening is tried ever more rarely: 1, 2, 4 … 64
/// steps apart).
#[derive(Default)]
struct BackOff {
    steps: usize,
    next: usize,
    misses: u32,
}

impl Screen {
    /// For rows `x` whose float32 kernel distances err by at most `slack[i]`; `None` where
    /// the screen is not wanted ([`wanted`], `forced` by the seeding switch) or cannot run
    /// ([`Screen::build`]).
    pub fn new(x: MatRef<'_, f32>, slack: Vec<f64>, forced: Option<bool>) -> Option<Self> {
        if !wanted(x.rows().saturating_mul(x.cols()).saturating_mul(4), forced) {
            return None;
        }
        Self::build(x, slack)
    }

    /// [`Screen::new`] whatever the data's size; `None` where this CPU has no 8-bit dot
    /// products, where the rows are too narrow, too wide or too few, or where the copy would
    /// pass [`MAX_COPY_BYTES`].
    fn build(x: MatRef<'_, f32>, slack: Vec<f64>) -> Option<Self> {
        let (n, d) = (x.rows(), x.cols());
        let stride = d.next_multiple_of(4);
        let fits = n.saturating_mul(stride) <= MAX_COPY_BYTES && slack.len() == n;
        if !(vnni_ready() && fits && (32..=MAX_FEATURES).contains(&d)) || n < 4 * ROWS {
            return None;
        }
        let mean = column_mean(x);
        let codes = encode(x, &mean, stride, ROW_OFFSET);
        let norm = codes.sq_norm.iter().map(|&v| v.sqrt() * (1.0 + 1e-12)).collect();
        Some(Self {
            codes,
            norm,
            stride,
            d,
            mean,
            slack,
            back_off: Mutex::new(BackOff::default()),
            screened: AtomicUsize::new(0),
            skipped: AtomicUsize::new(0),
        })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let (screened, skipped) = (*self.screened.get_mut(), *self.skipped.get_mut());
        log::debug!(
            "k-means++ screening: {skipped} of {screened} rows screened ({:.1} %) needed no float32 distances",
            100.0 * skipped as f64 / screened.max(1) as f64
        );
    }
}

/// One step's candidates as signed codes (`t × stride`) and what the bounds take of them.
struct ScreenStep<'s> {
    screen: &'s Screen,
    codes: Vec<i8>,
    norm_max: f64,
    sq_norm_max: f64,
    lanes: Lanes,
    screened: AtomicUsize,
    skipped: AtomicUsize,
}

/// Per candidate, in float64, what each row's bound takes: the code offset's product
/// (`ROW_OFFSET · Σ q_c`), the scale, residual norm, norm and squared norm.
struct Lanes {
    offset: Vec<f64>,
    scale: Vec<f64>,
    residual: Vec<f64>,
    norm: Vec<f64>,
    sq_norm: Vec<f64>,
}

impl<T: Scalar> SeedingScreen<T> for Screen {
    fn step(&self, candidates: MatRef<'_, T>) -> Option<Box<dyn StepScreen<T> + '_>> {
        let candidates = candidates.as_f32()?;
        if candidates.cols() != self.d {
            return None;
        }
        {
            let mut back_off = self.back_off.lock().unwrap_or_else(|e| e.into_inner());
            back_off.steps += 1;
            if back_off.steps < back_off.next {
                return None;
            }
        }
        let Codes { bytes, scale, residual, sq_norm, .. } = encode(candidates, &self.mean, self.stride, 0);
        // Signed codes, stored as their bytes.
        let codes: Vec<i8> = bytes.into_iter().map(|b| b as i8).collect();
        let offset = codes
            .chunks_exact(self.stride)
            .map(|row| (ROW_OFFSET as i64 * row.iter().map(|&q| q as i64).sum::<i64>()) as f64);
        let norm: Vec<f64> = sq_norm.iter().map(|&v| v.sqrt() * (1.0 + 1e-12)).collect();
        let norm_max = norm.iter().fold(0.0f64, |m, &v| m.max(v));
        let sq_norm_max = sq_norm.iter().fold(0.0f64, |m, &v| m.max(v));
        let lanes = Lanes {
            offset: offset.collect(),
            scale: scale.iter().map(|&v| v as f64).collect(),
            residual,
            norm,
            sq_norm,
        };
        Some(Box::new(ScreenStep {
            screen: self,
            codes,
            norm_max,
            sq_norm_max,
            lanes,
            screened: AtomicUsize::new(0),
            skipped: AtomicUsize::new(0),
        }))
    }
}

impl<T: Scalar> StepScreen<T> for ScreenStep<'_> {
    fn rows_to_measure(&self, rows: &[usize], closest: &[T]) -> Vec<usize> {
        let Some(closest) = T::as_f32s(closest) else { return rows.to_vec() };
        let (screen, t) = (self.screen, self.lanes.offset.len());
        let x = &screen.codes;
        let mut keep = Vec::with_capacity(rows.len());
        let mut dots = vec![0i32; ROWS * t];
        for group in rows.chunks(ROWS) {
            for j0 in (0..t).step_by(THIN_MAX) {
                let codes = &self.codes[j0 * screen.stride..];
                // SAFETY: `Screen::new` checked the 8-bit dot products are supported and the
                // rows narrow enough; the rows lie in the copy, `codes` holds the candidates
                // from `j0` on, and `dots` `group.len() × t` values.
                unsafe { thin_dots(&x.bytes, screen.stride, group, codes, THIN_MAX.min(t - j0), &mut dots[j0..], t) };
            }
            // SAFETY: the 8-bit dot products above need AVX-512 too (checked by `Screen::new`).
            unsafe { self.keep_rows(group, &dots, closest, &mut keep) };
        }
        self.screened.fetch_add(rows.len(), Ordering::Relaxed);
        self.skipped.fetch_add(rows.len() - keep.len(), Ordering::Relaxed);
        keep
    }
}

impl ScreenStep<'_> {
    /// Of `group`, the rows whose lower bound does not reach `closest`, pushed onto `keep`,
    /// given their code products with the candidates (`dots`, `group.len() × t`).
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
    unsafe fn keep_rows(&self, group: &[usize], dots: &[i32], closest: &[f32], keep: &mut Vec<usize>) {
        let (x, lanes, t) = (&self.screen.codes, &self.lanes, self.lanes.offset.len());
        for (r, &i) in group.iter().enumerate() {
            // min over candidates of ‖c'‖² − 2x'·c' from below (see `nearest_bound`).
            let row = (x.scale[i] as f64, x.coded[i], x.residual[i]);
            let nearest = nearest_bound(&dots[r * t..(r + 1) * t], lanes, row);
            // A lower bound on the squared distance between the centred float32 row and
            // every candidate (a margin for the float64 arithmetic); then, less the
            // rounding of the centring (`e`, half a unit per coordinate of each, a unit to
            // spare), on the true one: (√A − e)² ≥ A − 2e·√A ≥ A − 2e·(‖x'‖ + max ‖c'‖),
            // the last as A is at most (‖x'‖ + ‖c'‖)², and the bound holds below zero too;
            // then on the kernel's computed one. NaN or overflow measures the row.
            let x_sq = x.sq_norm[i];
            let margin = 1e-9 * (x_sq + self.sq_norm_max);
            let reach = self.screen.norm[i] + self.norm_max;
            let centring = 2.0 * f32::EPSILON as f64 * reach * reach;
            let lower = x_sq + nearest - margin - centring - self.screen.slack[i];
            if !(lower >= closest[i] as f64) {
                keep.push(i);
            }
        }
    }
}

impl Drop for ScreenStep<'_> {
    fn drop(&mut self) {
        let (screened, skipped) = (*self.screened.get_mut(), *self.skipped.get_mut());
        self.screen.screened.fetch_add(screened, Ordering::Relaxed);
        self.screen.skipped.fetch_add(skipped, Ordering::Relaxed);
        let mut back_off = self.screen.back_off.lock().unwrap_or_else(|e| e.into_inner());
        // Screening reads a quarter of the bytes of a measuring pass, and rows it keeps are
        // gathered and measured: it repays itself once about half the rows are skipped.
        back_off.misses = if 2 * skipped < screened { back_off.misses + 1 } else { 0 };
        back_off.next = back_off.steps + (1 << back_off.misses.min(6));
    }
}

/// The smallest of a row's lower bounds on `‖c'‖² − 2x'·c'` over the candidates, from its
/// code products `dots` (one a candidate) and `(scale, coded, residual)`: the codes' product
/// less what the residuals can add (|x'·c' − s_x s_c q_x·q_c| ≤ ‖s_x q_x‖‖r_c‖ + ‖r_x‖‖c'‖).
/// Integer products and offsets are exact in float64. A NaN bound is passed over.
#[cfg(not(target_arch = "x86_64"))]
fn nearest_bound(dots: &[i32], lanes: &Lanes, (scale, coded, residual): (f64, f64, f64)) -> f64 {
    let mut nearest = f64::INFINITY;
    for (j, &dot) in dots.iter().enumerate() {
        let product = dot as f64 - lanes.offset[j];
        let estimate = scale * lanes.scale[j] * product;
        let error = coded * lanes.residual[j] + residual * lanes.norm[j];
        let bound = lanes.sq_norm[j] - 2.0 * (estimate + error);
        nearest = if bound < nearest { bound } else { nearest };
    }
    nearest
}

/// The same, eight candidates a vector (the same operations in the same order, no fused
/// multiply-adds, so the same values).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn nearest_bound(dots: &[i32], lanes: &Lanes, (scale, coded, residual): (f64, f64, f64)) -> f64 {
    use std::arch::x86_64::*;
    let t = dots.len();
    assert!(lanes.offset.len() >= t && lanes.scale.len() >= t && lanes.residual.len() >= t);
    assert!(lanes.norm.len() >= t && lanes.sq_norm.len() >= t);
    let (scale, coded, residual, two) =
        (_mm512_set1_pd(scale), _mm512_set1_pd(coded), _mm512_set1_pd(residual), _mm512_set1_pd(2.0));
    let mut nearest = _mm512_set1_pd(f64::INFINITY);
    for j in (0..t).step_by(8) {
        let mask = ((1u32 << (t - j).min(8)) - 1) as __mmask8;
        // SAFETY: the masked loads read candidates j..t only, which every slice holds.
        let load = |v: &[f64]| _mm512_maskz_loadu_pd(mask, v.as_ptr().add(j));
        let dot = _mm512_cvtepi32_pd(_mm512_castsi512_si256(_mm512_maskz_loadu_epi32(
            mask as __mmask16,
            dots.as_ptr().add(j),
        )));
        let product = _mm512_sub_pd(dot, load(&lanes.offset));
        let estimate = _mm512_mul_pd(_mm512_mul_pd(scale, load(&lanes.scale)), product);
        let error =
            _mm512_add_pd(_mm512_mul_pd(coded, load(&lanes.residual)), _mm512_mul_pd(residual, load(&lanes.norm)));
        let bound = _mm512_sub_pd(load(&lanes.sq_norm), _mm512_mul_pd(two, _mm512_add_pd(estimate, error)));
        // MINPD returns its second operand where either is NaN: a NaN bound keeps `nearest`.
        nearest = _mm512_mask_min_pd(nearest, mask, bound, nearest);
    }
    _mm512_reduce_min_pd(nearest)
}

/// The float32 column means of `x` (float64 sums).
fn column_mean(x: MatRef<'_, f32>) -> Vec<f32> {
    let (n, d) = (x.rows(), x.cols());
    let sums = (0..n)
        .into_par_iter()
        .with_min_len(PACK_ROWS)
        .fold(
            || vec![0.0f64; d],
            |mut sums, i| {
                for (s, &v) in sums.iter_mut().zip(x.row(i)) {
                    *s += v as f64;
                }
                sums
            },
        )
        .reduce(|| vec![0.0f64; d], |a, b| a.iter().zip(&b).map(|(u, v)| u + v).collect());
    sums.iter().map(|&s| (s / n.max(1) as f64) as f32).collect()
}

/// Whether this CPU has the 8-bit dot products.
fn vnni_ready() -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::x86::vnni_ready();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// [`super::x86::thin_dots_u8i8`] where it exists.
///
/// # Safety
/// As there: [`vnni_ready`], the slices large enough.
unsafe fn thin_dots(a: &[u8], stride: usize, rows: &[usize], c: &[i8], t: usize, out: &mut [i32], ldo: usize) {
    #[cfg(target_arch = "x86_64")]
    super::x86::thin_dots_u8i8(a, stride, rows, c, t, out, ldo);
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!(
        "8-bit kernels exist on x86-64 only ({}, {stride}, {rows:?}, {}, {t}, {}, {ldo})",
        a.len(),
        c.len(),
        out.len()
    )
}

#[cfg(test)]
mod tests;
