//! Which engine runs: the pure-Rust CPU kernel, the MLX kernel, or a Python callable that
//! assigns rows to centroids (how the faiss backend plugs into the same loop). Backend
//! switches are read here, once per call, and handed to the engines as configuration.

use numpy::Element;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::callback::CallbackKernel;
use super::device::{device, SharedArray};
use super::run::PendingError;
use crate::error::{Error, Result};
use crate::kernel::cpu::CpuKernel;
use crate::matrix::MatRef;
use crate::strategy::{Engine, HostEngine};
use crate::Scalar;

/// Switches of the MLX backend, for measuring and testing; read from the environment once
/// per call: `MLX_KMEANS_MLX_SPLIT` (`1`/`0`: force the float32-exact GEMM split on or off),
/// `MLX_KMEANS_MLX_CUDA_KERNELS=0` (MLX's own ops only), `MLX_KMEANS_MLX_FUSED` (`1`/`0`: the
/// custom kernels assign rows by the fused kernel, or through blocks of the distance matrix,
/// whatever the shape), `MLX_KMEANS_MLX_SHARE=0` (copy MLX input instead of sharing it),
/// `MLX_KMEANS_MLX_DEVICE_BYTES` (device memory the fit's data and its working copies may take
/// before the data stays on the host and is streamed to the device in blocks each pass; by
/// default MLX's memory limit), `MLX_KMEANS_MLX_AHEAD` (`1`/`0`: queue resident Lloyd steps
/// one ahead, or wait for each step before building the next, whatever the steps' time),
/// `MLX_KMEANS_MLX_SHARED` (`metal`/`cuda`: the MLX-ops path runs the shared-source kernels
/// in that dialect, `0`: none; by default Metal on an Apple GPU).
#[derive(Debug, Clone, Copy)]
pub struct MlxSwitches {
    pub split: Option<bool>,
    pub cuda_kernels: bool,
    pub fused: Option<bool>,
    pub share: bool,
    pub device_bytes: Option<usize>,
    pub queue_ahead: Option<bool>,
    pub shared: Option<SharedDialect>,
}

/// A dialect of the MLX kernel's shared-source kernels, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedDialect {
    Off,
    Metal,
    Cuda,
}

impl MlxSwitches {
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok();
        // `1` forces a choice on, `0` off; anything else leaves it to the kernel.
        let forced = |name: &str| match var(name).as_deref() {
            Some("1") => Some(true),
            Some("0") => Some(false),
            _ => None,
        };
        Self {
            split: forced("MLX_KMEANS_MLX_SPLIT"),
            cuda_kernels: var("MLX_KMEANS_MLX_CUDA_KERNELS").as_deref() != Some("0"),
            fused: forced("MLX_KMEANS_MLX_FUSED"),
            share: var("MLX_KMEANS_MLX_SHARE").as_deref() != Some("0"),
            device_bytes: var("MLX_KMEANS_MLX_DEVICE_BYTES").and_then(|v| v.trim().parse().ok()),
            queue_ahead: forced("MLX_KMEANS_MLX_AHEAD"),
            shared: match var("MLX_KMEANS_MLX_SHARED").map(|v| v.trim().to_ascii_lowercase()).as_deref() {
                Some("0") => Some(SharedDialect::Off),
                Some("metal") => Some(SharedDialect::Metal),
                Some("cuda") => Some(SharedDialect::Cuda),
                _ => None,
            },
        }
    }
}

/// The backend argument of the native functions: `"cpu"`, `"mlx"`, or a callable
/// `assign(x, centroids) -> (squared_distances, labels)` on NumPy arrays.
pub enum BackendSpec {
    Cpu,
    Mlx(MlxSwitches),
    Callback(Py<PyAny>),
}

impl BackendSpec {
    /// `None` is the CPU backend.
    pub fn from_py(backend: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let Some(backend) = backend.filter(|b| !b.is_none()) else { return Ok(Self::Cpu) };
        if let Ok(name) = backend.extract::<String>() {
            return match name.as_str() {
                "cpu" => Ok(Self::Cpu),
                "mlx" => Ok(Self::Mlx(MlxSwitches::from_env())),
                other => Err(PyValueError::new_err(format!("unknown native backend {other:?}"))),
            };
        }
        if backend.is_callable() {
            return Ok(Self::Callback(backend.clone().unbind()));
        }
        Err(PyValueError::new_err("backend must be 'cpu', 'mlx' or a callable"))
    }

    /// Whether the MLX array behind a NumPy view may be shared with the kernel (the input
    /// layer looks for one only where a device kernel is plugged in).
    pub fn shares_mlx(&self) -> bool {
        matches!(self, Self::Mlx(switches) if switches.share)
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
    match spec {
        BackendSpec::Cpu => Some(Box::new(HostEngine::new(CpuKernel, true))),
        // The callback searches elsewhere: bounds would replace its search with ours.
        BackendSpec::Callback(callback) => {
            Some(Box::new(HostEngine::new(CallbackKernel::new(callback, pending), false)))
        }
        BackendSpec::Mlx(_) => None,
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
        let BackendSpec::Mlx(switches) = spec else { unreachable!("host_engine covers the other specs") };
        mlx_engine(*switches, data, shared)
    }
}

fn mlx_engine<'a>(
    switches: MlxSwitches,
    data: Option<MatRef<'a, f32>>,
    shared: Option<SharedArray>,
) -> Result<Box<dyn Engine<f32> + 'a>> {
    let device = device().ok_or_else(|| {
        Error::InvalidArgument("the MLX kernel lives in the plugin mlx_kmeans_mlx._kernel; this module has none".into())
    })?;
    device.engine(switches, data, shared)
}
