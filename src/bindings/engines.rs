//! Which engine runs: the pure-Rust CPU kernel, the MLX kernel, or a Python callable that
//! assigns rows to centroids (how the faiss backend plugs into the same loop), each built
//! with the runtime switches of the call ([`current_options`]).

use std::sync::RwLock;

use numpy::Element;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::callback::CallbackKernel;
use super::device::{device, SharedArray};
use super::run::PendingError;
use crate::error::{Error, Result};
use crate::kernel::cpu::CpuKernel;
use crate::matrix::MatRef;
use crate::options::{BoundsKind, Options, SharedDialect};
use crate::strategy::{Engine, HostEngine};
use crate::Scalar;

/// The switches `python/mlx_kmeans/_options.py` handed over last (it does before each native
/// call, when they changed).
static OPTIONS: RwLock<Option<Options>> = RwLock::new(None);

/// The switches for a call beginning now.
pub fn current_options() -> Options {
    OPTIONS.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone().unwrap_or_default()
}

/// Takes the runtime switches (`python/mlx_kmeans/_options.py`'s `Options.engine()`): every
/// native call that begins after it runs with them. Unknown keys and values of the wrong
/// type are errors, so that the two sides cannot drift apart silently.
#[pyfunction]
pub fn configure(options: &Bound<'_, PyDict>) -> PyResult<()> {
    let mut parsed = Options::default();
    for (key, value) in options.iter() {
        let key: String = key.extract()?;
        let flag = |v: &Bound<'_, PyAny>| -> PyResult<Option<bool>> { v.extract() };
        match key.as_str() {
            "cpu_dots" => parsed.cpu_dots = value.extract()?,
            "cpu_bounds" => {
                parsed.cpu_bounds = match value.extract::<Option<String>>()?.as_deref() {
                    None => None,
                    Some("hamerly") => Some(BoundsKind::Hamerly),
                    Some("grouped") => Some(BoundsKind::Grouped),
                    Some("candidates") => Some(BoundsKind::Candidates),
                    Some(other) => return Err(PyValueError::new_err(format!("unknown cpu bounds {other:?}"))),
                }
            }
            "seeding_prune" => parsed.seeding.prune = value.extract()?,
            "seeding_screen" => parsed.seeding.screen = flag(&value)?,
            "mlx_cuda_kernels" => parsed.mlx.cuda_kernels = value.extract()?,
            "mlx_fused" => parsed.mlx.fused = flag(&value)?,
            "mlx_products" => {
                parsed.mlx.products = match value.extract::<Option<u8>>()? {
                    products @ (None | Some(1) | Some(3)) => products,
                    Some(other) => return Err(PyValueError::new_err(format!("products must be 1 or 3, got {other}"))),
                }
            }
            "mlx_share" => parsed.mlx.share = value.extract()?,
            "mlx_device_bytes" => parsed.mlx.device_bytes = value.extract()?,
            "mlx_ahead" => parsed.mlx.queue_ahead = flag(&value)?,
            "mlx_pairs" => parsed.mlx.pairs = flag(&value)?,
            "mlx_split" => parsed.mlx.split = value.extract()?,
            "mlx_shared" => {
                parsed.mlx.shared = match value.extract::<Option<String>>()?.as_deref() {
                    None => None,
                    Some("off") => Some(SharedDialect::Off),
                    Some("metal") => Some(SharedDialect::Metal),
                    Some("cuda") => Some(SharedDialect::Cuda),
                    Some(other) => return Err(PyValueError::new_err(format!("unknown shared dialect {other:?}"))),
                }
            }
            other => return Err(PyValueError::new_err(format!("unknown runtime switch {other:?}"))),
        }
    }
    // The cpu kernel's layout is fixed once per process (the first call's choice).
    crate::kernel::simd::Dots::ask(parsed.cpu_dots.as_deref());
    *OPTIONS.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(parsed);
    Ok(())
}

/// The backend argument of the native functions: `"cpu"`, `"mlx"`, or a callable
/// `assign(x, centroids) -> (squared_distances, labels)` on NumPy arrays.
/// With the call's runtime switches.
pub struct BackendSpec {
    kind: BackendKind,
    options: Options,
}

enum BackendKind {
    Cpu,
    Mlx,
    Callback(Py<PyAny>),
}

impl BackendSpec {
    /// `None` is the CPU backend.
    pub fn from_py(backend: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let kind = match backend.filter(|b| !b.is_none()) {
            None => BackendKind::Cpu,
            Some(backend) => match backend.extract::<String>() {
                Ok(name) => match name.as_str() {
                    "cpu" => BackendKind::Cpu,
                    "mlx" => BackendKind::Mlx,
                    other => return Err(PyValueError::new_err(format!("unknown native backend {other:?}"))),
                },
                Err(_) if backend.is_callable() => BackendKind::Callback(backend.clone().unbind()),
                Err(_) => return Err(PyValueError::new_err("backend must be 'cpu', 'mlx' or a callable")),
            },
        };
        Ok(Self { kind, options: current_options() })
    }

    /// Whether the MLX array behind a NumPy view may be shared with the kernel (the input
    /// layer looks for one only where a device kernel is plugged in).
    pub fn shares_mlx(&self) -> bool {
        matches!(self.kind, BackendKind::Mlx) && self.options.mlx.share
    }
}

/// Builds the engine for a float type; `data` is the fit's data matrix (kept resident by
/// kernels that hold data in device memory), `shared` an MLX array over the same values.
pub trait EngineFor: Scalar + Element {
    fn engine<'a>(
        spec: &'a BackendSpec,
        data: Option<MatRef<'a, Self>>,
        shared: Option<SharedArray>,
        pending: &'a PendingError,
    ) -> Result<Box<dyn Engine<Self> + 'a>>;
}

/// The engines every float type has: the CPU kernel with bounds, a callback without.
fn host_engine<'a, T: Scalar + Element>(
    spec: &'a BackendSpec,
    pending: &'a PendingError,
) -> Option<Box<dyn Engine<T> + 'a>> {
    let seeding = spec.options.seeding;
    match &spec.kind {
        BackendKind::Cpu => Some(Box::new(
            HostEngine::new(CpuKernel, true).with_seeding(seeding).with_bounds_kind(spec.options.cpu_bounds),
        )),
        // The callback searches elsewhere: bounds would replace its search with ours.
        BackendKind::Callback(callback) => {
            Some(Box::new(HostEngine::new(CallbackKernel::new(callback, pending), false).with_seeding(seeding)))
        }
        BackendKind::Mlx => None,
    }
}

impl EngineFor for f64 {
    fn engine<'a>(
        spec: &'a BackendSpec,
        _data: Option<MatRef<'a, f64>>,
        _shared: Option<SharedArray>,
        pending: &'a PendingError,
    ) -> Result<Box<dyn Engine<f64> + 'a>> {
        host_engine(spec, pending)
            .ok_or_else(|| Error::InvalidArgument("the mlx backend computes in float32; pass float32 data".into()))
    }
}

impl EngineFor for f32 {
    fn engine<'a>(
        spec: &'a BackendSpec,
        data: Option<MatRef<'a, f32>>,
        shared: Option<SharedArray>,
        pending: &'a PendingError,
    ) -> Result<Box<dyn Engine<f32> + 'a>> {
        if let Some(engine) = host_engine(spec, pending) {
            return Ok(engine);
        }
        let device = device().ok_or_else(|| {
            Error::InvalidArgument(
                "the MLX kernel lives in the plugin mlx_kmeans_mlx._kernel; this module has none".into(),
            )
        })?;
        device.engine(&spec.options, data, shared)
    }
}
