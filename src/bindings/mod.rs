//! The native functions of both extension modules (`mlx_kmeans._native` and the plugin's
//! `mlx_kmeans_mlx._kernel`):
//! converts arguments, releases the GIL, calls the engine, and hands results back as NumPy
//! arrays. No algorithm lives here.

mod arrow;
mod callback;
mod chunked_fit;
mod chunks;
mod device;
mod engines;
mod fit;
mod input;
mod run;
mod sparse;
mod threads;

pub use device::{register_device, DeviceKernel, SharedArray};
pub use engines::current_options;

use numpy::ndarray::Array2;
use numpy::IntoPyArray;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::kernel::assign_in_chunks;
use crate::matrix::MatRef;
use crate::monitor::Progress;
use engines::{BackendSpec, EngineFor};
use run::detached;

/// The entry of every native function that takes data: refreshes the log bridge's levels
/// (see `run::refresh_log_levels`), then calls `$f::<f32>` or `$f::<f64>` according to the
/// dtype of `$x`.
macro_rules! by_dtype {
    ($x:expr, $f:ident ( $($arg:expr),* )) => {
        match $crate::bindings::run::refresh_log_levels($x.py())
            .and_then(|_| $crate::bindings::input::dtype_of($x))?
        {
            $crate::bindings::input::Dtype::F32 => $f::<f32>($($arg),*),
            $crate::bindings::input::Dtype::F64 => $f::<f64>($($arg),*),
        }
    };
}
pub(crate) use by_dtype;

fn view<'a, T: crate::Scalar>(data: &'a [T], rows: usize, cols: usize) -> PyResult<MatRef<'a, T>> {
    MatRef::new(data, rows, cols).map_err(|e| PyValueError::new_err(e.to_string()))
}

fn matrix_out<'py, T: EngineFor>(
    py: Python<'py>,
    values: Vec<T>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let array = Array2::from_shape_vec((rows, cols), values).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(array.into_pyarray(py).into_any())
}

fn labels_out(py: Python<'_>, labels: Vec<u32>) -> Bound<'_, PyAny> {
    labels.into_iter().map(|l| l as i32).collect::<Vec<i32>>().into_pyarray(py).into_any()
}

/// Nearest centroid of each row, the exact squared distance to it, and the weighted inertia.
#[pyfunction]
#[pyo3(signature = (x, centroids, sample_weight=None, backend=None))]
fn assign<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    centroids: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>, f64)> {
    by_dtype!(x, assign_t(py, x, centroids, sample_weight, backend))
}

fn assign_t<'py, T: EngineFor>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    centroids: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>, f64)> {
    let spec = BackendSpec::from_py(backend)?;
    let input = input::RowsAndCentroids::<T>::new(x, centroids, sample_weight)?;
    let n = input.rows;
    let (data, cents, w) = input.views()?;
    let (labels, distances, inertia) = detached(py, None, |pending, monitor| {
        let engine = T::engine(&spec, Some(data), None, pending)?;
        crate::params::check_weight_values(w, n)?;
        let kernel = engine.kernel();
        let norms = kernel.row_sq_norms(data)?;
        let mut labels = vec![0u32; n];
        let mut approx = vec![T::zero(); n];
        assign_in_chunks(kernel, data, &norms, None, cents, &mut labels, &mut approx, &mut || {
            monitor(&Progress::block(0, 0))
        })?;
        let (distances, inertia) = kernel.labelled_sq_distances(data, w, cents, &labels)?;
        Ok((labels, distances, inertia))
    })?;
    Ok((labels_out(py, labels), distances.into_pyarray(py).into_any(), inertia))
}

/// Squared distances from every row to every centroid (`n × k`), accurate to the float
/// type's rounding on data far from the origin (`kernel::exact`): computed on the host,
/// whichever backend fitted, as a backend's expanded form loses every digit there.
#[pyfunction]
fn sq_distances<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    centroids: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    by_dtype!(x, sq_distances_t(py, x, centroids))
}

fn sq_distances_t<'py, T: EngineFor>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    centroids: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let (x_array, n, d) = input::matrix::<T>(x, "X")?;
    let (c_array, k, cd) = input::matrix::<T>(centroids, "centroids")?;
    if cd != d {
        return Err(PyValueError::new_err(format!("X has {d} features but the centroids have {cd}")));
    }
    let data = view(x_array.as_slice()?, n, d)?;
    let cents = view(c_array.as_slice()?, k, d)?;
    let out = detached(py, None, |_, monitor| {
        let mut out = vec![T::zero(); n * k];
        crate::kernel::exact::sq_distances(data, cents, &mut out, &mut || monitor(&Progress::block(0, 0)))?;
        Ok(out)
    })?;
    matrix_out(py, out, n, k)
}

/// `(has_nan, has_inf, max_magnitude)` of a C-contiguous float array, in one parallel pass.
#[pyfunction]
fn value_summary(py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<(bool, bool, f64)> {
    by_dtype!(x, value_summary_t(py, x))
}

fn value_summary_t<T: EngineFor>(py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<(bool, bool, f64)> {
    let (array, _, _) = input::matrix::<T>(x, "X")?;
    let values = array.as_slice()?;
    let s = detached(py, None, |_, _| Ok(crate::matrix::value_summary(values)))?;
    Ok((s.has_nan, s.has_inf, s.max_magnitude))
}

/// `(has_nan, has_inf, max_magnitude, column means, column sums of squared deviations)` of a
/// C-contiguous float matrix: what a chunk of a larger matrix contributes to its checks and
/// its mean feature variance.
#[pyfunction]
fn chunk_summary<'py>(py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<ChunkSummary<'py>> {
    by_dtype!(x, chunk_summary_t(py, x))
}

type ChunkSummary<'py> = (bool, bool, f64, Bound<'py, PyAny>, Bound<'py, PyAny>);

fn chunk_summary_t<'py, T: EngineFor>(py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<ChunkSummary<'py>> {
    let (array, n, d) = input::matrix::<T>(x, "X")?;
    let data = view(array.as_slice()?, n, d)?;
    let (s, (means, sq)) = detached(py, None, |_, _| {
        Ok((crate::matrix::value_summary(data.as_slice()), crate::matrix::column_moments(data)))
    })?;
    Ok((s.has_nan, s.has_inf, s.max_magnitude, means.into_pyarray(py).into_any(), sq.into_pyarray(py).into_any()))
}

/// Triggers a Rust panic inside the engine wrapper: proves panics become Python exceptions.
/// Test builds only (the cargo feature `test-hooks`).
#[cfg(feature = "test-hooks")]
#[pyfunction]
fn _panic_for_test(py: Python<'_>) -> PyResult<()> {
    detached(py, None, |_, _| -> crate::Result<()> { panic!("deliberate test panic") })
}

/// How the `cpu` backend computes its float32 distances on this machine: `"amx"`, `"bf16"`,
/// `"f32"` (its SIMD kernels) or `"gemm"` (the `gemm` crate).
#[pyfunction]
fn cpu_kernel() -> &'static str {
    crate::kernel::simd::Dots::chosen().map_or("gemm", |kind| kind.name())
}

/// Fills an extension module with the native functions (its `#[pymodule]` calls this).
pub fn init_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    threads::record_loading_process();
    // Levels are cached so that a record below the logger's level never runs Python code
    // (where a pending Ctrl-C would be raised and lost); a native call made after the logger's
    // level changed resets the cache (`by_dtype!`), so a new level takes effect at once.
    if let Ok(logger) = pyo3_log::Logger::new(m.py(), pyo3_log::Caching::LoggersAndLevels) {
        if let Ok(handle) = logger.install() {
            let _ = run::LOG_CACHE.set(handle);
        }
    }
    m.add_function(wrap_pyfunction!(engines::configure, m)?)?;
    m.add_function(wrap_pyfunction!(fit::kmeans_fit, m)?)?;
    m.add_function(wrap_pyfunction!(fit::minibatch_fit, m)?)?;
    m.add_function(wrap_pyfunction!(fit::minibatch_partial_fit, m)?)?;
    m.add_function(wrap_pyfunction!(fit::init_centroids, m)?)?;
    m.add_function(wrap_pyfunction!(arrow::arrow_matrix, m)?)?;
    m.add_function(wrap_pyfunction!(value_summary, m)?)?;
    m.add_function(wrap_pyfunction!(chunk_summary, m)?)?;
    m.add_function(wrap_pyfunction!(assign, m)?)?;
    m.add_function(wrap_pyfunction!(chunked_fit::kmeans_fit_chunks, m)?)?;
    m.add_function(wrap_pyfunction!(chunks::lloyd_partials, m)?)?;
    m.add_function(wrap_pyfunction!(chunks::farthest_rows, m)?)?;
    m.add_function(wrap_pyfunction!(chunks::bounded_partials, m)?)?;
    m.add_function(wrap_pyfunction!(sq_distances, m)?)?;
    m.add_function(wrap_pyfunction!(sparse::kmeans_fit_sparse, m)?)?;
    m.add_function(wrap_pyfunction!(sparse::minibatch_fit_sparse, m)?)?;
    m.add_function(wrap_pyfunction!(sparse::init_centroids_sparse, m)?)?;
    m.add_function(wrap_pyfunction!(sparse::minibatch_partial_fit_sparse, m)?)?;
    m.add_function(wrap_pyfunction!(sparse::assign_sparse, m)?)?;
    m.add_function(wrap_pyfunction!(sparse::sq_distances_sparse, m)?)?;
    m.add_function(wrap_pyfunction!(cpu_kernel, m)?)?;
    #[cfg(feature = "test-hooks")]
    m.add_function(wrap_pyfunction!(_panic_for_test, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
