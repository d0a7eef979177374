//! The device kernel another extension module plugs into these bindings. `mlx_kmeans_mlx._kernel`
//! (the crate `crates/mlx`, the only one that links libmlx) registers the MLX kernel when it
//! is imported; `mlx_kmeans._native` registers none, so there `backend="mlx"` is an error and
//! MLX arrays are read through their NumPy view. Each extension module holds its own copy of
//! this registry.

use std::any::Any;
use std::sync::OnceLock;

use pyo3::prelude::*;

use crate::error::Result;
use crate::matrix::MatRef;
use crate::options::Options;
use crate::strategy::Engine;

/// A device array over the call's data (the caller's own), opaque to these bindings.
pub type SharedArray = Box<dyn Any + Send>;

pub trait DeviceKernel: Send + Sync {
    /// The device array that `view` (a C-contiguous `rows × cols` float32 NumPy array whose
    /// values start at `data`) is a view of, to compute on in place; `None` when there is none.
    fn share(&self, view: &Bound<'_, PyAny>, data: *const f32, rows: usize, cols: usize) -> Option<SharedArray>;

    /// The engine for a call with the call's runtime switches; `data` is the call's data
    /// matrix (kept resident on the device), `shared` the array from [`DeviceKernel::share`]
    /// over the same values.
    fn engine<'a>(
        &self,
        options: &Options,
        data: Option<MatRef<'a, f32>>,
        shared: Option<SharedArray>,
    ) -> Result<Box<dyn Engine<f32> + 'a>>;
}

static DEVICE: OnceLock<&'static dyn DeviceKernel> = OnceLock::new();

/// Plugs the device kernel in (once per module; later calls are ignored).
pub fn register_device(kernel: &'static dyn DeviceKernel) {
    let _ = DEVICE.set(kernel);
}

pub(super) fn device() -> Option<&'static dyn DeviceKernel> {
    DEVICE.get().copied()
}
