//! The floating-point types the engine runs on (f32 and f64).

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{AddAssign, MulAssign, SubAssign};

/// A float the engine computes in. Sums that must not lose precision
/// (centroid sums, inertia, k-means++ potentials) are kept in f64 whatever `Self` is.
pub trait Scalar:
    num_traits::Float + AddAssign + SubAssign + MulAssign + Sum + Default + Debug + Send + Sync + 'static
{
    const NAME: &'static str;
    fn of_f64(value: f64) -> Self;
    fn as_f64(self) -> f64;
    /// The slice as float32, where `Self` is float32 (kernels specialised for it).
    fn as_f32s(values: &[Self]) -> Option<&[f32]>;
    fn as_f32s_mut(values: &mut [Self]) -> Option<&mut [f32]>;
}

impl Scalar for f32 {
    const NAME: &'static str = "float32";
    #[inline(always)]
    fn of_f64(value: f64) -> Self {
        value as f32
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self as f64
    }
    fn as_f32s(values: &[Self]) -> Option<&[f32]> {
        Some(values)
    }
    fn as_f32s_mut(values: &mut [Self]) -> Option<&mut [f32]> {
        Some(values)
    }
}

impl Scalar for f64 {
    const NAME: &'static str = "float64";
    #[inline(always)]
    fn of_f64(value: f64) -> Self {
        value
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self
    }
    fn as_f32s(_: &[Self]) -> Option<&[f32]> {
        None
    }
    fn as_f32s_mut(_: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
}
