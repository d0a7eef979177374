//! `mlx_kmeans_mlx._kernel` (the plugin distribution `mlx-kmeans-mlx`): the native functions
//! of `mlx_kmeans._native` with the MLX kernel plugged in behind `backend="mlx"`. This is the
//! one extension module that links libmlx; `mlx_kmeans` imports it only when the `mlx` backend
//! is probed or asked for, after checking the plugin's version and that the installed MLX is
//! the release it was built against. Once loaded, it serves every backend of the process.

mod device;
mod share;

use mlx_kmeans::bindings::{current_options, register_device, DeviceKernel, SharedArray};
use mlx_kmeans::error::Result;
use mlx_kmeans::matrix::MatRef;
use mlx_kmeans::options::{Options, SharedDialect};
use mlx_kmeans::strategy::Engine;
use pyo3::prelude::*;

use device::shared::{self, Dialect};
use device::{MlxConfig, MlxEngine, MlxKernel};

/// The configuration's choice of shared-kernel dialect (`None`: the default).
fn dialect_switch(switch: Option<SharedDialect>) -> Option<Option<Dialect>> {
    switch.map(|dialect| match dialect {
        SharedDialect::Off => None,
        SharedDialect::Metal => Some(Dialect::Metal),
        SharedDialect::Cuda => Some(Dialect::Cuda),
    })
}

/// The target of this crate's log records: the Python logger `mlx_kmeans.mlx`, under the
/// package's own (a crate's default target, `_kernel::...`, would sit outside it).
const LOG_TARGET: &str = "mlx_kmeans::mlx";

struct Mlx;

impl DeviceKernel for Mlx {
    fn share(&self, view: &Bound<'_, PyAny>, data: *const f32, rows: usize, cols: usize) -> Option<SharedArray> {
        share::shared_mlx(view, data, rows, cols).map(|array| Box::new(array) as SharedArray)
    }

    fn engine<'a>(
        &self,
        options: &Options,
        data: Option<MatRef<'a, f32>>,
        shared: Option<SharedArray>,
    ) -> Result<Box<dyn Engine<f32> + 'a>> {
        let switches = options.mlx;
        let config = MlxConfig {
            cuda_kernels: switches.cuda_kernels,
            fused: switches.fused,
            products: switches.products,
            device_bytes: switches.device_bytes,
            queue_ahead: switches.queue_ahead,
            pairs: switches.pairs,
            shared: dialect_switch(switches.shared),
            split: switches.split,
        };
        let shared = shared.and_then(|array| array.downcast::<mlx_rs::Array>().ok()).map(|array| *array);
        Ok(Box::new(MlxEngine::new(MlxKernel::new(data, shared, config)?, options.seeding)))
    }
}

/// What the MLX kernel sees here: `(runs, gpu, description)`; `runs` is false (and the
/// description the reason) when libmlx loaded but cannot make a default device.
#[pyfunction]
fn mlx_info(py: Python<'_>) -> (bool, bool, String) {
    match py.detach(device::device_description) {
        Ok((gpu, device)) => (true, gpu, device),
        Err(reason) => (false, false, format!("libmlx loaded but failed to run: {reason}")),
    }
}

/// The shared-source kernels a fit would run here (by the runtime switch, else the
/// default for a device that is a GPU or not: `gpu`, as `mlx_info` said): `(dialect, names,
/// active, reason)`, with their first-use check run now if it has not run yet in this
/// process; `dialect` is `None` where none applies.
#[pyfunction]
fn shared_kernels(py: Python<'_>, gpu: bool) -> (Option<&'static str>, Vec<&'static str>, bool, String) {
    let switches = current_options().mlx;
    let Some(dialect) = shared::dialect_for(dialect_switch(switches.shared), gpu) else {
        return (None, shared::KERNEL_NAMES.to_vec(), false, "no shared kernels apply here".into());
    };
    let active = py.detach(|| shared::checked(dialect).is_some());
    let reason = match shared::verdict(dialect) {
        Some(Ok(())) => "compiled and checked against MLX's ops at first use".to_string(),
        Some(Err(reason)) => reason,
        None => "not checked".to_string(),
    };
    (Some(dialect.name()), shared::KERNEL_NAMES.to_vec(), active, reason)
}

#[pymodule]
fn _kernel(m: &Bound<'_, PyModule>) -> PyResult<()> {
    static MLX: Mlx = Mlx;
    register_device(&MLX);
    mlx_kmeans::bindings::init_module(m)?;
    m.add_function(wrap_pyfunction!(mlx_info, m)?)?;
    m.add_function(wrap_pyfunction!(shared_kernels, m)?)?;
    // The MLX release whose headers and libmlx this module was built against.
    m.add("MLX_BUILT_AGAINST", env!("MLX_BUILT_AGAINST"))?;
    Ok(())
}
