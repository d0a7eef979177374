//! A first look at greedy k-means++'s candidates on a bfloat16 copy of the rows, made once
//! per seeding: half the bytes of a float32 pass. The copy is of the rows less their mean
//! (distances do not change, and bfloat16 rounding errs in proportion to the values). From
//! its dot products and their rigorous error bound ([`Bound`]), plus the rounding of the
//! centring, each row gets a lower bound on its true squared distance to every candidate;
//! where that bound, less the error of the distances the float32 kernel computes (`slack`),
//! still reaches the row's closest distance, the kernel's distance could not be below it, so
//! the row keeps its closest distance without being measured. The other rows are measured by
//! the float32 kernel as before: the potentials and picks are the unscreened ones, bit for
//! bit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::settle::Bound;
use super::{pack_centroids, round_rows, Dots, Packed, RowNorms, LANES, THIN_MAX};
use crate::kernel::{SeedingScreen, StepScreen};
use crate::matrix::MatRef;
use crate::scalar::Scalar;

/// Rows per call of the dot-product kernel.
const ROWS: usize = 128;
/// Rows per task when the copy is made.
const PACK_ROWS: usize = 2048;
/// The largest copy made (2 GiB): half the float32 rows' bytes again could exhaust the memory
/// beside data near its size, so larger data are not screened.
const MAX_COPY_BYTES: usize = 1 << 31;

/// The rows in bfloat16 with what their bounds need, and when screening is worth a step.
pub struct Screen {
    words: Vec<u32>,
    depth: usize,
    d: usize,
    /// The column means (float32) subtracted before rounding.
    mean: Vec<f32>,
    norms: RowNorms,
    /// Squared norms of the centred float32 rows (float64 sums, rounded up to float32).
    centred_sq_norms: Vec<f32>,
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
    /// For rows `x` with squared norms `x_sq_norms` whose float32 kernel distances err by at
    /// most `slack[i]`; `None` where this CPU has no bfloat16 dot products, where the chosen
    /// kernel is not a bfloat16 one (`MLX_KMEANS_CPU_DOTS=f32` or `gemm`), where the rows
    /// are too narrow or too few to gain, or where the copy would pass [`MAX_COPY_BYTES`].
    pub fn new(x: MatRef<'_, f32>, x_sq_norms: &[f32], slack: Vec<f64>) -> Option<Self> {
        let (n, d) = (x.rows(), x.cols());
        let bf16_chosen = matches!(Dots::chosen(), Some(Dots::Bf16 | Dots::Amx));
        if !(bf16_chosen && Dots::Bf16.supported()) || d < 2 * LANES || n < 4 * ROWS || x_sq_norms.len() != n {
            return None;
        }
        let depth = Dots::Bf16.layout(d).depth;
        if n.saturating_mul(depth).saturating_mul(4) > MAX_COPY_BYTES {
            return None;
        }
        let mean = column_mean(x);
        let mut words = vec![0u32; n * depth];
        let parts: Vec<(RowNorms, Vec<f32>)> = words
            .par_chunks_mut(PACK_ROWS * depth)
            .enumerate()
            .map(|(c, block)| {
                let start = c * PACK_ROWS;
                let centred = centre(x.slice_rows(start, start + block.len() / depth), &mean);
                let rows = MatRef::new(&centred, block.len() / depth, d).expect("whole rows");
                (round_rows(rows, depth, block), sq_norms_up(rows))
            })
            .collect();
        let mut norms = RowNorms { rounded: Vec::with_capacity(n), residual: Vec::with_capacity(n) };
        let mut centred_sq_norms = Vec::with_capacity(n);
        for (part, sq_norms) in parts {
            norms.rounded.extend(part.rounded);
            norms.residual.extend(part.residual);
            centred_sq_norms.extend(sq_norms);
        }
        Some(Self {
            words,
            depth,
            d,
            mean,
            norms,
            centred_sq_norms,
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

/// One step's candidates rounded to bfloat16 (`words`, `t × depth`), their norms and the
/// error bound of their dot products.
struct ScreenStep<'s> {
    screen: &'s Screen,
    words: Vec<u32>,
    packed: Packed,
    bound: Bound,
    candidates: usize,
    screened: AtomicUsize,
    skipped: AtomicUsize,
}

impl<T: Scalar> SeedingScreen<T> for Screen {
    fn step(&self, candidates: MatRef<'_, T>) -> Option<Box<dyn StepScreen<T> + '_>> {
        let candidates = candidates.as_f32()?;
        {
            let mut back_off = self.back_off.lock().unwrap_or_else(|e| e.into_inner());
            back_off.steps += 1;
            if back_off.steps < back_off.next {
                return None;
            }
        }
        let centred = centre(candidates, &self.mean);
        let candidates = MatRef::new(&centred, candidates.rows(), self.d).ok()?;
        let packed = pack_centroids(Dots::Bf16, candidates);
        let bound = Bound::new(Dots::Bf16, self.d, &packed);
        let mut words = vec![0u32; candidates.rows() * self.depth];
        round_rows(candidates, self.depth, &mut words);
        Some(Box::new(ScreenStep {
            screen: self,
            words,
            packed,
            bound,
            candidates: candidates.rows(),
            screened: AtomicUsize::new(0),
            skipped: AtomicUsize::new(0),
        }))
    }
}

impl<T: Scalar> StepScreen<T> for ScreenStep<'_> {
    fn rows_to_measure(&self, rows: &[usize], closest: &[T]) -> Vec<usize> {
        let Some(closest) = T::as_f32s(closest) else { return rows.to_vec() };
        let (screen, t) = (self.screen, self.candidates);
        let mut keep = Vec::with_capacity(rows.len());
        let mut dots = vec![0f32; ROWS * t];
        for group in rows.chunks(ROWS) {
            for j0 in (0..t).step_by(THIN_MAX) {
                let c = &self.words[j0 * screen.depth..];
                // SAFETY: `Screen::new` checked that bfloat16 dot products are supported; the
                // rows lie in the copy, `c` holds the candidates from `j0` on, and `dots`
                // `group.len() × t` values.
                unsafe { thin_dots(&screen.words, screen.depth, group, c, THIN_MAX.min(t - j0), &mut dots[j0..], t) };
            }
            for (r, &i) in group.iter().enumerate() {
                let x_sq = screen.centred_sq_norms[i] as f64;
                let error = self.bound.of_row(screen.norms.rounded[i], screen.norms.residual[i], x_sq);
                let nearest = dots[r * t..(r + 1) * t]
                    .iter()
                    .zip(&self.packed.c_norms)
                    .map(|(&dot, &c_norm)| c_norm as f64 - 2.0 * dot as f64)
                    .fold(f64::INFINITY, f64::min);
                // A lower bound on the squared distance between the centred float32 row and
                // every candidate; then, less the rounding of the centring (half a unit per
                // coordinate of each, a unit to spare), on the true one; then on the kernel's
                // computed one. NaN or overflow measures the row.
                let centred = (x_sq + nearest - error).max(0.0).sqrt();
                let centring = f32::EPSILON as f64 * (x_sq.sqrt() + self.packed.norm_max);
                let lower = (centred - centring).max(0.0).powi(2) - screen.slack[i];
                if !(lower >= closest[i] as f64) {
                    keep.push(i);
                }
            }
        }
        self.screened.fetch_add(rows.len(), Ordering::Relaxed);
        self.skipped.fetch_add(rows.len() - keep.len(), Ordering::Relaxed);
        keep
    }
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

/// The rows of `x` less `mean`, in float32 (row-major).
fn centre(x: MatRef<'_, f32>, mean: &[f32]) -> Vec<f32> {
    (0..x.rows()).flat_map(|i| x.row(i).iter().zip(mean).map(|(&v, &m)| v - m)).collect()
}

/// Squared norms of the rows of `x`, summed in float64 and rounded up to float32.
fn sq_norms_up(x: MatRef<'_, f32>) -> Vec<f32> {
    (0..x.rows())
        .map(|i| {
            let exact: f64 = x.row(i).iter().map(|&v| v as f64 * v as f64).sum();
            let rounded = exact as f32;
            if (rounded as f64) < exact {
                rounded.next_up()
            } else {
                rounded
            }
        })
        .collect()
}

/// [`super::x86::thin_dots_bf16`] where it exists.
///
/// # Safety
/// As there: bfloat16 dot products supported, the slices large enough.
unsafe fn thin_dots(a: &[u32], depth: usize, rows: &[usize], c: &[u32], t: usize, out: &mut [f32], ldo: usize) {
    #[cfg(target_arch = "x86_64")]
    super::x86::thin_dots_bf16(a, depth, rows, c, t, out, ldo);
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!(
        "bfloat16 kernels exist on x86-64 only ({}, {depth}, {rows:?}, {}, {t}, {}, {ldo})",
        a.len(),
        c.len(),
        out.len()
    )
}

impl Drop for ScreenStep<'_> {
    fn drop(&mut self) {
        let (screened, skipped) = (*self.screened.get_mut(), *self.skipped.get_mut());
        self.screen.screened.fetch_add(screened, Ordering::Relaxed);
        self.screen.skipped.fetch_add(skipped, Ordering::Relaxed);
        let mut back_off = self.screen.back_off.lock().unwrap_or_else(|e| e.into_inner());
        // Screening reads half the bytes of a measuring pass, and rows it keeps are gathered
        // and measured: it repays itself once about two thirds of the rows are skipped.
        back_off.misses = if 3 * skipped < 2 * screened { back_off.misses + 1 } else { 0 };
        back_off.next = back_off.steps + (1 << back_off.misses.min(6));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{cpu::CpuKernel, Kernel};
    use crate::matrix::row_sq_norms;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(rng: &mut ChaCha8Rng, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale).collect()
    }

    /// The thin bfloat16 dots of listed rows against float64 sums of the same rounded values,
    /// with candidate counts on both sides of a tile's and odd feature counts.
    #[test]
    fn thin_dots_match_float64_sums_of_the_rounded_values() {
        if !Dots::Bf16.supported() {
            eprintln!("no bfloat16 dot products on this CPU");
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (n, d, t) in [(40, 33, 1), (17, 64, 8), (29, 95, 11), (9, 16, 16)] {
            let depth = Dots::Bf16.layout(d).depth;
            let (x, c) = (random(&mut rng, n * d, 3.0), random(&mut rng, t * d, 3.0));
            let (mut xw, mut cw) = (vec![0u32; n * depth], vec![0u32; t * depth]);
            round_rows(MatRef::new(&x, n, d).unwrap(), depth, &mut xw);
            round_rows(MatRef::new(&c, t, d).unwrap(), depth, &mut cw);
            let value = |w: u32, high: bool| f32::from_bits(if high { w & 0xffff_0000 } else { w << 16 }) as f64;
            let dot = |a: &[u32], b: &[u32]| -> (f64, f64) {
                let pairs = a
                    .iter()
                    .zip(b)
                    .flat_map(|(&p, &q)| [(value(p, false), value(q, false)), (value(p, true), value(q, true))]);
                pairs.fold((0.0, 0.0), |(s, m), (u, v)| (s + u * v, m + (u * v).abs()))
            };
            let rows: Vec<usize> = (0..n).filter(|i| i % 3 != 1).rev().collect();
            let mut out = vec![0f32; rows.len() * t];
            for j0 in (0..t).step_by(THIN_MAX) {
                unsafe { thin_dots(&xw, depth, &rows, &cw[j0 * depth..], THIN_MAX.min(t - j0), &mut out[j0..], t) };
            }
            for (r, &i) in rows.iter().enumerate() {
                for j in 0..t {
                    let (exact, scale) = dot(&xw[i * depth..(i + 1) * depth], &cw[j * depth..(j + 1) * depth]);
                    let got = out[r * t + j] as f64;
                    assert!(
                        (got - exact).abs() <= (d + 4) as f64 * f32::EPSILON as f64 * scale + 1e-30,
                        "{n}x{d} t={t} row {i} candidate {j}: {got} vs {exact}"
                    );
                }
            }
        }
    }

    /// Every row the screen lets go has float32 kernel distances to every candidate at least
    /// its closest distance (closest distances set on both sides of the nearest candidate's),
    /// with and without a common offset.
    #[test]
    fn rows_let_go_are_no_nearer_to_any_candidate_by_the_kernel() {
        let kernel = CpuKernel;
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for (n, d, t, offset) in [(3000, 64, 8, 0.0f32), (2000, 200, 5, 30.0), (1500, 33, 12, 0.0)] {
            let x: Vec<f32> = random(&mut rng, n * d, 2.0).iter().map(|v| v + offset).collect();
            let xm = MatRef::new(&x, n, d).unwrap();
            let norms = row_sq_norms(xm);
            let bound = Kernel::<f32>::seeding_error_bound(&kernel, d).unwrap();
            let Some(screen) = Screen::new(xm, &norms, crate::kernel::seeding_slack(&norms, bound)) else {
                eprintln!("no screen on this CPU's chosen kernel");
                return;
            };
            let picks: Vec<usize> = (0..t).map(|j| j * 37 % n).collect();
            let candidates = xm.gather(&picks);
            let cm = MatRef::new(&candidates, t, d).unwrap();
            let mut distances = vec![0f32; n * t];
            kernel.pairwise(xm, &norms, cm, &mut distances).unwrap();
            let nearest: Vec<f32> =
                distances.chunks_exact(t).map(|row| row.iter().fold(f32::INFINITY, |m, &v| m.min(v))).collect();
            // Closest distances spread around the kernel's nearest distance, by up to a half.
            let closest: Vec<f32> = nearest.iter().map(|&v| v * (0.5 + rng.random::<f32>())).collect();
            let step = SeedingScreen::<f32>::step(&screen, cm).expect("the first step is screened");
            let all: Vec<usize> = (0..n).collect();
            let kept = step.rows_to_measure(&all, &closest);
            let let_go: Vec<usize> = all.iter().copied().filter(|i| kept.binary_search(i).is_err()).collect();
            for &i in &let_go {
                assert!(
                    nearest[i] >= closest[i],
                    "{n}x{d} row {i}: kernel distance {} below closest {}",
                    nearest[i],
                    closest[i]
                );
            }
            // A row (not a candidate itself) whose closest distance lies a fifth below every
            // candidate is let go: the bounds are that tight on these shapes.
            let far: Vec<usize> = (0..n).filter(|&i| !picks.contains(&i) && closest[i] < 0.8 * nearest[i]).collect();
            let bad: Vec<(usize, f32, f32)> = far
                .iter()
                .filter(|i| let_go.binary_search(i).is_err())
                .map(|&i| (i, closest[i], nearest[i]))
                .take(3)
                .collect();
            assert!(
                !far.is_empty() && bad.is_empty(),
                "{n}x{d}: rows far below kept {bad:?} {} {}",
                far.len(),
                let_go.len()
            );
        }
    }
}
