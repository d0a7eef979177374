//! The verdict on a device's float32 matrix products from their measured errors (the MLX
//! kernel measures them once a process: `crates/mlx/src/device/products.rs`). A device whose
//! products are float32's own needs nothing; one that rounds the inputs (TF32-class) is
//! corrected by splitting each value into a part exact in bfloat16 and the rest, which holds
//! only if products of bfloat16 values come out exact and other inputs keep at least
//! bfloat16's precision over float32's range; anything else cannot give exact labels.

/// What a device's float32 matrix products are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Products {
    /// Float32's own: no error past float32 accumulation.
    Float32,
    /// Inputs rounded (TF32-class), within what the high/low split corrects.
    Reduced,
}

/// The bound on float32 accumulation over `inner` products, relative to `Σ|a·b|`.
pub fn accumulation_bound(inner: usize) -> f64 {
    (inner + 2) as f64 * 2f64.powi(-24)
}

/// The verdict from the largest errors relative to `Σ|a·b|` measured with an inner dimension
/// of `inner`: on full-precision values (`full`), on values exact in bfloat16 (`halves`), and on
/// full-precision values over float32's exponent range against bfloat16 values (`wide`;
/// infinite where a result overflowed or came out NaN). `Err` says why neither applies.
pub fn verdict(full: f64, halves: f64, wide: f64, inner: usize) -> Result<Products, String> {
    let accumulation = accumulation_bound(inner);
    if full <= accumulation {
        return Ok(Products::Float32);
    }
    // The split's bound takes products of bfloat16 values as exact and other inputs rounded
    // no worse than bfloat16 (2^-8 relative an input, so under 2^-7 a product).
    if halves <= accumulation && wide <= 2f64.powi(-7) {
        return Ok(Products::Reduced);
    }
    Err(format!(
        "MLX's float32 matrix products on this device err by {full:.2e} (relative), and by {halves:.2e} on values \
         exact in bfloat16 and {wide:.2e} over float32's range: beyond what the MLX kernel corrects to give exact \
         labels. Start the process with MLX_ENABLE_TF32=0, or use backend='cpu'"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INNER: usize = 64;

    #[test]
    fn float32_products_need_no_split() {
        // Float32 accumulation of 64 products stays under (64 + 2)·2^-24; one unit more is not float32.
        let bound = accumulation_bound(INNER);
        assert_eq!(verdict(0.0, 0.0, 0.0, INNER), Ok(Products::Float32));
        assert_eq!(verdict(bound, f64::INFINITY, f64::INFINITY, INNER), Ok(Products::Float32));
        assert_ne!(verdict(bound * 1.01, f64::INFINITY, f64::INFINITY, INNER), Ok(Products::Float32));
    }

    #[test]
    fn tf32_class_rounding_takes_the_split() {
        // TF32 keeps 10 fraction bits: a product errs by up to 2^-10 relative.
        let tf32 = 2f64.powi(-10);
        assert_eq!(verdict(tf32, 1e-7, tf32, INNER), Ok(Products::Reduced));
        // bfloat16-class inputs (7 fraction bits) are the split's limit.
        assert_eq!(verdict(2f64.powi(-8), 0.0, 2f64.powi(-7), INNER), Ok(Products::Reduced));
    }

    #[test]
    fn what_the_split_cannot_correct_is_refused_with_the_measurements() {
        let tf32 = 2f64.powi(-10);
        // Products of bfloat16 values not exact (an accumulation below float32's).
        let inexact = verdict(tf32, 1e-3, tf32, INNER).unwrap_err();
        assert!(inexact.contains("1.00e-3") && inexact.contains("MLX_ENABLE_TF32=0"), "{inexact}");
        // Inputs coarser than bfloat16, or out of float16's range (overflow: infinite error).
        assert!(verdict(tf32, 0.0, 2f64.powi(-6), INNER).is_err());
        assert!(verdict(tf32, 0.0, f64::INFINITY, INNER).is_err());
    }
}
