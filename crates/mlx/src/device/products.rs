//! How MLX multiplies float32 matrices on its default device, measured once a process.
//!
//! MLX may run float32 matrix products at reduced precision on hardware with matrix units:
//! TF32 on NVIDIA tensor cores, the neural accelerators of Apple's M5-class GPUs (every
//! float32 product but a matrix-vector one), unless the process was started with
//! `MLX_ENABLE_TF32=0`. The kernel's near-tie bound must hold for what the device really
//! does, so that is measured here rather than assumed from the platform: products of
//! full-precision values against float64 (reduced precision shows as an error past float32's
//! bound), and, where they are reduced, the two facts the high/low split relies on (products of
//! values exact in bfloat16 stay exact, and other values keep at least bfloat16's precision
//! over float32's range); the verdict is the engine's (`mlx_kmeans::kernel::products`).

use std::sync::OnceLock;

use mlx_rs::Array;

use mlx_kmeans::error::{Error, Result};
use mlx_kmeans::kernel::products::{accumulation_bound, verdict};

pub use mlx_kmeans::kernel::products::Products;

/// A sentence for `backends()`.
pub fn describe(products: Products) -> &'static str {
    match products {
        Products::Float32 => "float32 matrix products measured at float32 precision",
        Products::Reduced => {
            "float32 matrix products measured at reduced (TF32-class) precision: GEMMs split into bfloat16 halves"
        }
    }
}

/// The measurement's shape: a GEMM (not a matrix-vector product, which MLX keeps in float32)
/// with an inner dimension small enough that float32's accumulation bound stays far below a
/// TF32 rounding.
const ROWS: usize = 256;
const INNER: usize = 64;
const COLS: usize = 128;

/// The products of this process's default device (measured at the first call).
pub fn products() -> Result<Products> {
    static MEASURED: OnceLock<std::result::Result<Products, String>> = OnceLock::new();
    MEASURED.get_or_init(measure).clone().map_err(Error::Backend)
}

fn measure() -> std::result::Result<Products, String> {
    let probe = |a: &[f32], b: &[f32]| largest_error(a, b).map_err(|e| format!("could not measure: {e}"));
    let full = probe(&values(1, Kind::Full), &values(2, Kind::Full))?;
    if full <= accumulation_bound(INNER) {
        return Ok(Products::Float32);
    }
    let halves = probe(&values(3, Kind::Bfloat16), &values(4, Kind::Bfloat16))?;
    let wide = probe(&values(5, Kind::Wide), &values(6, Kind::Bfloat16))?;
    log::debug!(
        target: crate::LOG_TARGET,
        "float32 GEMM error relative to Σ|a·b|: {full:.2e} on full-precision values, {halves:.2e} on \
         bfloat16 values, {wide:.2e} over float32's range (float32's bound {:.2e})",
        accumulation_bound(INNER)
    );
    verdict(full, halves, wide, INNER)
}

#[derive(Clone, Copy)]
enum Kind {
    /// Every mantissa bit used, magnitudes 1 to 2, both signs.
    Full,
    /// Exact in bfloat16, magnitudes 2^-24 to 2^24, both signs.
    Bfloat16,
    /// Every mantissa bit used, magnitudes 2^-40 to 2^40, both signs.
    Wide,
}

/// `ROWS × INNER` (odd seeds: the left factor) or `INNER × COLS` values, deterministic.
fn values(seed: u64, kind: Kind) -> Vec<f32> {
    let count = if seed % 2 == 1 { ROWS * INNER } else { INNER * COLS };
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        // xorshift64*: any fixed sequence would do; this one fills every mantissa bit.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    (0..count)
        .map(|_| {
            let bits = next();
            let mantissa = 1.0 + (bits >> 40) as f64 / (1u64 << 24) as f64;
            let sign = if bits & 1 == 0 { 1.0 } else { -1.0 };
            let exponent = ((bits >> 8) & 0xff) as i32;
            let value = match kind {
                Kind::Full => mantissa,
                Kind::Bfloat16 => round_to_bfloat16(mantissa) * 2f64.powi(exponent % 49 - 24),
                Kind::Wide => mantissa * 2f64.powi(exponent % 81 - 40),
            };
            (sign * value) as f32
        })
        .collect()
}

/// `x` rounded to bfloat16's 8 significant bits (to nearest, ties away: exactness is all
/// that matters here).
fn round_to_bfloat16(x: f64) -> f64 {
    let scale = 2f64.powi(7 - x.abs().log2().floor() as i32);
    (x * scale).round() / scale
}

/// The largest error of MLX's float32 product `a · b` against float64, relative to
/// `Σ|a_l b_l|` of the same entry.
fn largest_error(a: &[f32], b: &[f32]) -> Result<f64> {
    let left = Array::from_slice(a, &[ROWS as i32, INNER as i32]);
    let right = Array::from_slice(b, &[INNER as i32, COLS as i32]);
    let product = mlx_rs::ops::matmul(&left, &right)?;
    product.eval()?;
    let product = product.as_slice::<f32>();
    let mut largest = 0f64;
    for i in 0..ROWS {
        for j in 0..COLS {
            let (mut exact, mut magnitude) = (0f64, 0f64);
            for l in 0..INNER {
                let term = a[i * INNER + l] as f64 * b[l * COLS + j] as f64;
                exact += term;
                magnitude += term.abs();
            }
            let error = (product[i * COLS + j] as f64 - exact).abs() / magnitude;
            largest = largest.max(if error.is_nan() { f64::INFINITY } else { error });
        }
    }
    Ok(largest)
}
