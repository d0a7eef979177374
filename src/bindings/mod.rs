//! `mlx_kmeans._native`: converts arguments, releases the GIL, calls the engine, and
//! hands results back as NumPy arrays. No algorithm lives here.

mod input;
mod kernels;
mod run;

use numpy::ndarray::Array2;
use numpy::IntoPyArray;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::kernel::labelled_sq_distances;
use crate::matrix::{row_sq_norms, MatRef};
use crate::minibatch::{self, MiniBatchParams, MiniBatchState};
use crate::{lloyd, KMeansParams, Scalar};
use input::{dtype_of, Dtype};
use kernels::{BackendSpec, KernelFor};
use run::detached;

/// Calls `$f::<f32>` or `$f::<f64>` according to the dtype of `$x`.
macro_rules! by_dtype {
    ($x:expr, $f:ident ( $($arg:expr),* )) => {
        match dtype_of($x)? {
            Dtype::F32 => $f::<f32>($($arg),*),
            Dtype::F64 => $f::<f64>($($arg),*),
        }
    };
}

fn backend_spec(backend: Option<&Bound<'_, PyAny>>) -> PyResult<BackendSpec> {
    match backend {
        Some(b) if !b.is_none() => BackendSpec::from_py(b),
        _ => Ok(BackendSpec::Cpu),
    }
}

fn view<'a, T: Scalar>(data: &'a [T], rows: usize, cols: usize) -> PyResult<MatRef<'a, T>> {
    MatRef::new(data, rows, cols).map_err(|e| PyValueError::new_err(e.to_string()))
}

fn matrix_out<'py, T: KernelFor>(py: Python<'py>, values: Vec<T>, rows: usize, cols: usize) -> PyResult<Bound<'py, PyAny>> {
    let array = Array2::from_shape_vec((rows, cols), values).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(array.into_pyarray(py).into_any())
}

fn labels_out(py: Python<'_>, labels: Vec<u32>) -> Bound<'_, PyAny> {
    labels.into_iter().map(|l| l as i32).collect::<Vec<i32>>().into_pyarray(py).into_any()
}

#[pyfunction]
#[pyo3(signature = (x, sample_weight, *, n_clusters, init, n_init, max_iter, tol, seed, spherical=false, progress=None, backend=None))]
#[allow(clippy::too_many_arguments)]
fn kmeans_fit<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    n_clusters: usize,
    init: &Bound<'py, PyAny>,
    n_init: usize,
    max_iter: usize,
    tol: f64,
    seed: u64,
    spherical: bool,
    progress: Option<Py<PyAny>>,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    by_dtype!(x, kmeans_fit_t(py, x, sample_weight, n_clusters, init, n_init, max_iter, tol, seed, spherical, progress, backend))
}

#[allow(clippy::too_many_arguments)]
fn kmeans_fit_t<'py, T: KernelFor>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    n_clusters: usize,
    init: &Bound<'py, PyAny>,
    n_init: usize,
    max_iter: usize,
    tol: f64,
    seed: u64,
    spherical: bool,
    progress: Option<Py<PyAny>>,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let (x_array, n, d) = input::matrix::<T>(x, "X")?;
    let weights = input::vector::<T>(sample_weight, "sample_weight")?;
    let params = KMeansParams { n_clusters, init: input::init::<T>(init, n_clusters, d)?, n_init, max_iter, tol, seed, spherical };
    let data = view(x_array.as_slice()?, n, d)?;
    let w = weights.as_ref().map(|w| w.as_slice()).transpose()?;
    let spec = backend_spec(backend)?;
    let result = detached(py, progress, |monitor| {
        let kernel = T::kernel(&spec, Some(data))?;
        lloyd::fit(&*kernel, data, w, &params, monitor)
    })?;
    let out = PyDict::new(py);
    out.set_item("centroids", matrix_out(py, result.centroids, n_clusters, d)?)?;
    out.set_item("labels", labels_out(py, result.labels))?;
    out.set_item("distances", result.distances.into_pyarray(py))?;
    out.set_item("inertia", result.inertia)?;
    out.set_item("n_iter", result.n_iter)?;
    out.set_item("inertia_history", result.inertia_history)?;
    Ok(out)
}

#[pyfunction]
#[pyo3(signature = (x, sample_weight, *, n_clusters, init, n_init, max_iter, batch_size, init_size, tol,
    max_no_improvement, reassignment_ratio, seed, compute_labels, spherical=false, progress=None, backend=None))]
#[allow(clippy::too_many_arguments)]
fn minibatch_fit<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    n_clusters: usize,
    init: &Bound<'py, PyAny>,
    n_init: usize,
    max_iter: usize,
    batch_size: usize,
    init_size: Option<usize>,
    tol: f64,
    max_no_improvement: Option<usize>,
    reassignment_ratio: f64,
    seed: u64,
    compute_labels: bool,
    spherical: bool,
    progress: Option<Py<PyAny>>,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    by_dtype!(x, minibatch_fit_t(py, x, sample_weight, n_clusters, init, n_init, max_iter, batch_size, init_size, tol,
        max_no_improvement, reassignment_ratio, seed, compute_labels, spherical, progress, backend))
}

#[allow(clippy::too_many_arguments)]
fn minibatch_fit_t<'py, T: KernelFor>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    n_clusters: usize,
    init: &Bound<'py, PyAny>,
    n_init: usize,
    max_iter: usize,
    batch_size: usize,
    init_size: Option<usize>,
    tol: f64,
    max_no_improvement: Option<usize>,
    reassignment_ratio: f64,
    seed: u64,
    compute_labels: bool,
    spherical: bool,
    progress: Option<Py<PyAny>>,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let (x_array, n, d) = input::matrix::<T>(x, "X")?;
    let weights = input::vector::<T>(sample_weight, "sample_weight")?;
    let params = MiniBatchParams {
        n_clusters,
        init: input::init::<T>(init, n_clusters, d)?,
        n_init,
        max_iter,
        batch_size,
        init_size,
        tol,
        max_no_improvement,
        reassignment_ratio,
        seed,
        compute_labels,
        spherical,
    };
    let data = view(x_array.as_slice()?, n, d)?;
    let w = weights.as_ref().map(|w| w.as_slice()).transpose()?;
    let spec = backend_spec(backend)?;
    let result = detached(py, progress, |monitor| {
        let kernel = T::kernel(&spec, None)?;
        minibatch::fit(&*kernel, data, w, &params, monitor)
    })?;
    let out = PyDict::new(py);
    out.set_item("centroids", matrix_out(py, result.state.centroids, n_clusters, d)?)?;
    out.set_item("counts", result.state.counts.into_pyarray(py))?;
    out.set_item("n_since_last_reassign", result.state.n_since_last_reassign)?;
    out.set_item("labels", result.labels.map(|l| labels_out(py, l)))?;
    out.set_item("distances", result.distances.map(|v| v.into_pyarray(py)))?;
    out.set_item("inertia", result.inertia)?;
    out.set_item("n_steps", result.n_steps)?;
    out.set_item("n_iter", result.n_iter)?;
    out.set_item("batch_size", result.batch_size)?;
    out.set_item("init_size", result.init_size)?;
    out.set_item("inertia_history", result.inertia_history)?;
    Ok(out)
}

/// Initial centroids for a first `partial_fit`: chosen on `init_size` sampled rows.
#[pyfunction]
#[pyo3(signature = (x, sample_weight, *, n_clusters, init, batch_size, init_size, seed, spherical=false, backend=None))]
#[allow(clippy::too_many_arguments)]
fn init_centroids<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    n_clusters: usize,
    init: &Bound<'py, PyAny>,
    batch_size: usize,
    init_size: Option<usize>,
    seed: u64,
    spherical: bool,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    by_dtype!(x, init_centroids_t(py, x, sample_weight, n_clusters, init, batch_size, init_size, seed, spherical, backend))
}

#[allow(clippy::too_many_arguments)]
fn init_centroids_t<'py, T: KernelFor>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    n_clusters: usize,
    init: &Bound<'py, PyAny>,
    batch_size: usize,
    init_size: Option<usize>,
    seed: u64,
    spherical: bool,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    use rand::SeedableRng;
    let (x_array, n, d) = input::matrix::<T>(x, "X")?;
    let weights = input::vector::<T>(sample_weight, "sample_weight")?;
    let init = input::init::<T>(init, n_clusters, d)?;
    let data = view(x_array.as_slice()?, n, d)?;
    let w = weights.as_ref().map(|w| w.as_slice()).transpose()?;
    let spec = backend_spec(backend)?;
    let centroids = detached(py, None, |monitor| {
        let kernel = T::kernel(&spec, None)?;
        if n_clusters == 0 || n_clusters > n {
            return Err(crate::Error::InvalidArgument(format!("n_samples={n} should be >= n_clusters={n_clusters}")));
        }
        let init_size = minibatch::resolve_init_size(init_size, batch_size.clamp(1, n), n_clusters, n);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        minibatch::init_on_sample(&*kernel, data, w, n_clusters, &init, init_size, spherical, &mut rng, 0, monitor)
    })?;
    matrix_out(py, centroids, n_clusters, d)
}

/// One mini-batch step on all rows of `x`; returns the updated centroids, counts and
/// rows-since-reassignment counter.
#[pyfunction]
#[pyo3(signature = (x, sample_weight, *, centroids, counts, n_since_last_reassign, batch_size, reassignment_ratio, seed, spherical=false, backend=None))]
#[allow(clippy::too_many_arguments)]
fn minibatch_partial_fit<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    centroids: &Bound<'py, PyAny>,
    counts: Vec<f64>,
    n_since_last_reassign: usize,
    batch_size: usize,
    reassignment_ratio: f64,
    seed: u64,
    spherical: bool,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>, usize)> {
    by_dtype!(x, minibatch_partial_fit_t(py, x, sample_weight, centroids, counts, n_since_last_reassign, batch_size, reassignment_ratio, seed, spherical, backend))
}

#[allow(clippy::too_many_arguments)]
fn minibatch_partial_fit_t<'py, T: KernelFor>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    centroids: &Bound<'py, PyAny>,
    counts: Vec<f64>,
    n_since_last_reassign: usize,
    batch_size: usize,
    reassignment_ratio: f64,
    seed: u64,
    spherical: bool,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>, usize)> {
    use rand::SeedableRng;
    let (x_array, n, d) = input::matrix::<T>(x, "X")?;
    let weights = input::vector::<T>(sample_weight, "sample_weight")?;
    let (c_array, k, cd) = input::matrix::<T>(centroids, "centroids")?;
    if cd != d || counts.len() != k {
        return Err(PyValueError::new_err("centroids, counts and X do not agree in shape"));
    }
    let mut state = MiniBatchState { centroids: c_array.as_slice()?.to_vec(), counts, n_since_last_reassign };
    let data = view(x_array.as_slice()?, n, d)?;
    let w = weights.as_ref().map(|w| w.as_slice()).transpose()?;
    let spec = backend_spec(backend)?;
    let state = detached(py, None, |_| {
        let kernel = T::kernel(&spec, None)?;
        lloyd::check_weights(w, n)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let reassign = state.take_reassign_turn(batch_size);
        minibatch::minibatch_step(&*kernel, data, w, &mut state, &mut rng, reassign, reassignment_ratio, spherical)?;
        Ok(state)
    })?;
    Ok((matrix_out(py, state.centroids, k, d)?, state.counts.into_pyarray(py).into_any(), state.n_since_last_reassign))
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

fn assign_t<'py, T: KernelFor>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    centroids: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>, f64)> {
    let (x_array, n, d) = input::matrix::<T>(x, "X")?;
    let (c_array, k, cd) = input::matrix::<T>(centroids, "centroids")?;
    if cd != d {
        return Err(PyValueError::new_err(format!("X has {d} features but the centroids have {cd}")));
    }
    let weights = input::vector::<T>(sample_weight, "sample_weight")?;
    let data = view(x_array.as_slice()?, n, d)?;
    let cents = view(c_array.as_slice()?, k, d)?;
    let w = weights.as_ref().map(|w| w.as_slice()).transpose()?;
    let spec = backend_spec(backend)?;
    let (labels, distances, inertia) = detached(py, None, |_| {
        let kernel = T::kernel(&spec, Some(data))?;
        if let Some(w) = w {
            if w.len() != n {
                return Err(crate::Error::InvalidArgument(format!("sample_weight has {} entries; expected {n}", w.len())));
            }
        }
        let norms = row_sq_norms(data);
        let mut labels = vec![0u32; n];
        let mut approx = vec![T::zero(); n];
        kernel.assign(data, &norms, cents, &mut labels, &mut approx);
        let (distances, inertia) = labelled_sq_distances(data, w, cents, &labels);
        Ok((labels, distances, inertia))
    })?;
    Ok((labels_out(py, labels), distances.into_pyarray(py).into_any(), inertia))
}

/// Squared distances from every row to every centroid (`n × k`).
#[pyfunction]
#[pyo3(signature = (x, centroids, backend=None))]
fn sq_distances<'py>(py: Python<'py>, x: &Bound<'py, PyAny>, centroids: &Bound<'py, PyAny>, backend: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
    by_dtype!(x, sq_distances_t(py, x, centroids, backend))
}

fn sq_distances_t<'py, T: KernelFor>(py: Python<'py>, x: &Bound<'py, PyAny>, centroids: &Bound<'py, PyAny>, backend: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
    let spec = backend_spec(backend)?;
    let (x_array, n, d) = input::matrix::<T>(x, "X")?;
    let (c_array, k, cd) = input::matrix::<T>(centroids, "centroids")?;
    if cd != d {
        return Err(PyValueError::new_err(format!("X has {d} features but the centroids have {cd}")));
    }
    let data = view(x_array.as_slice()?, n, d)?;
    let cents = view(c_array.as_slice()?, k, d)?;
    let out = detached(py, None, |_| {
        let kernel = T::kernel(&spec, Some(data))?;
        let mut out = vec![T::zero(); n * k];
        kernel.pairwise(data, &row_sq_norms(data), cents, &mut out);
        Ok(out)
    })?;
    matrix_out(py, out, n, k)
}

/// Triggers a Rust panic inside the engine wrapper: proves panics become Python exceptions.
#[pyfunction]
fn _panic_for_test(py: Python<'_>) -> PyResult<()> {
    detached(py, None, |_| -> crate::Result<()> { panic!("deliberate test panic") })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // No level caching: log records are rare (per iteration at most), and a user who
    // turns on DEBUG logging mid-session must see them at once.
    if let Ok(logger) = pyo3_log::Logger::new(m.py(), pyo3_log::Caching::Nothing) {
        let _ = logger.install();
    }
    m.add_function(wrap_pyfunction!(kmeans_fit, m)?)?;
    m.add_function(wrap_pyfunction!(minibatch_fit, m)?)?;
    m.add_function(wrap_pyfunction!(minibatch_partial_fit, m)?)?;
    m.add_function(wrap_pyfunction!(init_centroids, m)?)?;
    m.add_function(wrap_pyfunction!(assign, m)?)?;
    m.add_function(wrap_pyfunction!(sq_distances, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_test, m)?)?;
    m.add_function(wrap_pyfunction!(kernels::mlx_info, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
