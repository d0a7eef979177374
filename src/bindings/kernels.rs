//! Which kernel runs: the pure-Rust CPU kernel, the MLX kernel, or a Python callable that
//! assigns rows to centroids (how the faiss backend plugs into the same loop).

use numpy::{Element, IntoPyArray, PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::error::{Error, Result};
use crate::kernel::{cpu::CpuKernel, ClusterSums, Kernel};
use super::mlx_share::SharedMlx;
use crate::matrix::MatRef;
use crate::Scalar;

/// The backend argument of the native functions: `"cpu"`, `"mlx"`, or a callable
/// `assign(x, centroids) -> (squared_distances, labels)` on NumPy arrays.
pub enum BackendSpec {
    Cpu,
    Mlx,
    Callback(Py<PyAny>),
}

impl BackendSpec {
    pub fn from_py(backend: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(name) = backend.extract::<String>() {
            return match name.as_str() {
                "cpu" => Ok(Self::Cpu),
                "mlx" => Ok(Self::Mlx),
                other => Err(PyValueError::new_err(format!("unknown native backend {other:?}"))),
            };
        }
        if backend.is_callable() {
            return Ok(Self::Callback(backend.clone().unbind()));
        }
        Err(PyValueError::new_err("backend must be 'cpu', 'mlx' or a callable"))
    }
}

/// Builds the kernel for a float type; `data` is the fit's data matrix (kept resident by
/// kernels that hold data in device memory), `shared` an MLX array over the same values.
pub trait KernelFor: Scalar + Element {
    fn kernel<'a>(spec: &'a BackendSpec, data: Option<MatRef<'a, Self>>, shared: Option<SharedMlx>) -> Result<Box<dyn Kernel<Self> + 'a>>;
}

impl KernelFor for f64 {
    fn kernel<'a>(spec: &'a BackendSpec, _data: Option<MatRef<'a, f64>>, _shared: Option<SharedMlx>) -> Result<Box<dyn Kernel<f64> + 'a>> {
        match spec {
            BackendSpec::Cpu => Ok(Box::new(CpuKernel)),
            BackendSpec::Mlx => Err(Error::InvalidArgument("the mlx backend computes in float32; pass float32 data".into())),
            BackendSpec::Callback(callback) => Ok(Box::new(CallbackKernel { callback })),
        }
    }
}

impl KernelFor for f32 {
    fn kernel<'a>(spec: &'a BackendSpec, data: Option<MatRef<'a, f32>>, shared: Option<SharedMlx>) -> Result<Box<dyn Kernel<f32> + 'a>> {
        match spec {
            BackendSpec::Cpu => Ok(Box::new(CpuKernel)),
            #[cfg(all(feature = "mlx", any(target_os = "linux", target_os = "macos")))]
            BackendSpec::Mlx => Ok(Box::new(crate::kernel::mlx::MlxKernel::new(data, shared.map(|s| s.0)))),
            #[cfg(not(all(feature = "mlx", any(target_os = "linux", target_os = "macos"))))]
            BackendSpec::Mlx => {
                let _ = (data, shared);
                Err(Error::InvalidArgument("this build of mlx_kmeans has no MLX kernel".into()))
            }
            BackendSpec::Callback(callback) => Ok(Box::new(CallbackKernel { callback })),
        }
    }
}

/// Assignment by a Python callable (e.g. a faiss flat L2 search); the other operations run
/// on the CPU kernel.
struct CallbackKernel<'a> {
    callback: &'a Py<PyAny>,
}

impl<T: Scalar + Element> Kernel<T> for CallbackKernel<'_> {
    fn name(&self) -> &'static str {
        "callback"
    }

    fn assign(&self, x: MatRef<'_, T>, _x_sq_norms: &[T], centroids: MatRef<'_, T>, labels: &mut [u32], distances: &mut [T]) {
        let outcome: PyResult<()> = Python::attach(|py| {
            let xs = x.as_slice().to_vec().into_pyarray(py).reshape([x.rows(), x.cols()])?;
            let cs = centroids.as_slice().to_vec().into_pyarray(py).reshape([centroids.rows(), centroids.cols()])?;
            let result = self.callback.call1(py, (xs, cs))?;
            let (dist, lab): (PyReadonlyArray1<'_, T>, PyReadonlyArray1<'_, i64>) = result.extract(py)?;
            if dist.len() != labels.len() || lab.len() != labels.len() {
                return Err(PyValueError::new_err("assign callback returned arrays of the wrong length"));
            }
            for (d, &v) in distances.iter_mut().zip(dist.as_slice()?) {
                *d = if v > T::zero() { v } else { T::zero() };
            }
            let k = centroids.rows() as i64;
            for (l, &v) in labels.iter_mut().zip(lab.as_slice()?) {
                if !(0..k).contains(&v) {
                    return Err(PyValueError::new_err(format!("assign callback returned label {v} outside 0..{k}")));
                }
                *l = v as u32;
            }
            Ok(())
        });
        if let Err(err) = outcome {
            panic!("assign callback failed: {err}");
        }
    }

    fn pairwise(&self, x: MatRef<'_, T>, x_sq_norms: &[T], centroids: MatRef<'_, T>, out: &mut [T]) {
        CpuKernel.pairwise(x, x_sq_norms, centroids, out)
    }

    fn accumulate(&self, x: MatRef<'_, T>, weights: Option<&[T]>, labels: &[u32], k: usize) -> ClusterSums {
        CpuKernel.accumulate(x, weights, labels, k)
    }
}

/// What the MLX kernel sees here: built in?, runs?, on a GPU?, and a description or the reason.
#[pyfunction]
pub fn mlx_info(py: Python<'_>) -> PyResult<(bool, bool, bool, String)> {
    #[cfg(all(feature = "mlx", any(target_os = "linux", target_os = "macos")))]
    {
        let probe = py.detach(|| std::panic::catch_unwind(crate::kernel::mlx::device_description));
        Ok(match probe {
            Ok(Ok((gpu, device))) => (true, true, gpu, device),
            Ok(Err(reason)) => (true, false, false, format!("libmlx loaded but failed to run: {reason}")),
            Err(_) => (true, false, false, "libmlx loaded but panicked on a probe".to_string()),
        })
    }
    #[cfg(not(all(feature = "mlx", any(target_os = "linux", target_os = "macos"))))]
    {
        let _ = py;
        Ok((false, false, false, "this build of mlx_kmeans has no MLX kernel (built CPU-only)".to_string()))
    }
}
