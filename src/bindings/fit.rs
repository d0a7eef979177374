//! The fitting entry points: full k-means, mini-batch, and the pieces of `partial_fit`.
//! Each Python-facing function builds the engine's plain parameter struct from its
//! arguments and dispatches on the dtype of `x` to a generic body.

use numpy::IntoPyArray;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::engines::{BackendSpec, EngineFor};
use super::input::{self, Data, InitArg};
use super::run::detached;
use super::{by_dtype, labels_out, matrix_out};
use crate::minibatch::{self, DenseRows, MiniBatchState, PartialStep, Seeding};
use crate::params::{Algorithm, KMeansParams, MiniBatchParams};
use crate::{lloyd, Monitor};

pub(super) fn algorithm(name: &str) -> PyResult<Algorithm> {
    match name {
        "lloyd" => Ok(Algorithm::Dense),
        // Bounded passes give the same labels: 'elkan' asks for them, 'auto' where they save time.
        "elkan" => Ok(Algorithm::Bounded),
        "auto" => Ok(Algorithm::Auto),
        other => Err(PyValueError::new_err(format!("algorithm must be 'auto', 'lloyd' or 'elkan'; got {other:?}"))),
    }
}

#[pyfunction]
#[pyo3(signature = (x, sample_weight, *, n_clusters, init, n_init, max_iter, tol, seed, spherical=false, algorithm="auto", progress=None, backend=None, distances=true))]
pub fn kmeans_fit<'py>(
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
    algorithm: &str,
    progress: Option<Py<PyAny>>,
    backend: Option<&Bound<'py, PyAny>>,
    distances: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let algorithm = self::algorithm(algorithm)?;
    let params = KMeansParams { n_clusters, n_init, max_iter, tol, seed, spherical, algorithm, distances };
    let spec = BackendSpec::from_py(backend)?;
    by_dtype!(x, kmeans_fit_t(py, x, sample_weight, init, &params, progress, &spec))
}

fn kmeans_fit_t<'py, T: EngineFor>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    init: &Bound<'py, PyAny>,
    params: &KMeansParams,
    progress: Option<Py<PyAny>>,
    spec: &BackendSpec,
) -> PyResult<Bound<'py, PyDict>> {
    let mut input = Data::<T>::new(x, sample_weight, spec.shares_mlx())?;
    let init = InitArg::<T>::new(init, params.n_clusters, input.cols)?;
    let shared = input.take_mlx();
    let (data, w, init) = (input.matrix()?, input.weights()?, init.as_init()?);
    let result = detached(py, progress, |pending, monitor| {
        let started = std::time::Instant::now();
        let engine = T::engine(spec, Some(data), shared, pending)?;
        log::debug!("{} kernel ready in {:.1} ms", engine.kernel().name(), started.elapsed().as_secs_f64() * 1e3);
        lloyd::fit(&*engine, data, w, params, init, monitor)
    })?;
    fit_out(py, result, params.n_clusters, input.cols)
}

/// A fit's result as the Python layer reads it.
pub(super) fn fit_out<T: EngineFor>(
    py: Python<'_>,
    result: lloyd::KMeansFit<T>,
    k: usize,
    d: usize,
) -> PyResult<Bound<'_, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("centroids", matrix_out(py, result.centroids, k, d)?)?;
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
pub fn minibatch_fit<'py>(
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
    let params = MiniBatchParams {
        n_clusters,
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
    let spec = BackendSpec::from_py(backend)?;
    by_dtype!(x, minibatch_fit_t(py, x, sample_weight, init, &params, progress, &spec))
}

fn minibatch_fit_t<'py, T: EngineFor>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    init: &Bound<'py, PyAny>,
    params: &MiniBatchParams,
    progress: Option<Py<PyAny>>,
    spec: &BackendSpec,
) -> PyResult<Bound<'py, PyDict>> {
    let mut input = Data::<T>::new(x, sample_weight, spec.shares_mlx())?;
    let init = InitArg::<T>::new(init, params.n_clusters, input.cols)?;
    let shared = input.take_mlx();
    let (data, w, init) = (input.matrix()?, input.weights()?, init.as_init()?);
    let result = detached(py, progress, |pending, monitor| {
        // A device kernel holds the data for the whole fit: batches are gathered there.
        let engine = T::engine(spec, Some(data), shared, pending)?;
        minibatch::fit(&DenseRows { engine: &*engine, x: data, weights: w }, params, init, monitor)
    })?;
    minibatch_out(py, result, params.n_clusters, input.cols)
}

/// A mini-batch fit's result as the Python layer reads it.
pub(super) fn minibatch_out<T: EngineFor>(
    py: Python<'_>,
    result: minibatch::MiniBatchFit<T>,
    k: usize,
    d: usize,
) -> PyResult<Bound<'_, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("centroids", matrix_out(py, result.state.centroids, k, d)?)?;
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
pub fn init_centroids<'py>(
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
    let spec = BackendSpec::from_py(backend)?;
    let sample = Seeding { n_clusters, batch_size, init_size, seed, spherical };
    by_dtype!(x, init_centroids_t(py, x, sample_weight, init, &sample, &spec))
}

fn init_centroids_t<'py, T: EngineFor>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    init: &Bound<'py, PyAny>,
    sample: &Seeding,
    spec: &BackendSpec,
) -> PyResult<Bound<'py, PyAny>> {
    let input = Data::<T>::new(x, sample_weight, false)?;
    let k = sample.n_clusters;
    let init = InitArg::<T>::new(init, k, input.cols)?;
    let (data, w, init) = (input.matrix()?, input.weights()?, init.as_init()?);
    let centroids = detached(py, None, |pending, monitor: Monitor<'_>| {
        let engine = T::engine(spec, None, None, pending)?;
        minibatch::first_centroids(&DenseRows { engine: &*engine, x: data, weights: w }, init, sample, monitor)
    })?;
    matrix_out(py, centroids, k, input.cols)
}

/// One mini-batch step on all rows of `x`; returns the updated centroids, counts,
/// rows-since-reassignment counter and how many centres were reassigned.
#[pyfunction]
#[pyo3(signature = (x, sample_weight, *, centroids, counts, n_since_last_reassign, batch_size, reassignment_ratio, seed, spherical=false, backend=None))]
pub fn minibatch_partial_fit<'py>(
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
) -> PyResult<PartialOut<'py>> {
    let spec = BackendSpec::from_py(backend)?;
    let step = PartialStep { n_since_last_reassign, batch_size, reassignment_ratio, seed, spherical };
    by_dtype!(x, minibatch_partial_fit_t(py, x, sample_weight, centroids, counts, &step, &spec))
}

fn minibatch_partial_fit_t<'py, T: EngineFor>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    centroids: &Bound<'py, PyAny>,
    counts: Vec<f64>,
    step: &PartialStep,
    spec: &BackendSpec,
) -> PyResult<PartialOut<'py>> {
    let mut input = Data::<T>::new(x, sample_weight, spec.shares_mlx())?;
    let state = partial_state(centroids, counts, input.cols, step)?;
    let shared = input.take_mlx();
    let (data, w) = (input.matrix()?, input.weights()?);
    let (state, reassigned) = detached(py, None, |pending, _| {
        // The batch is all of X: a device kernel holds it (shared with an MLX array).
        let engine = T::engine(spec, Some(data), shared, pending)?;
        minibatch::partial_step(&DenseRows { engine: &*engine, x: data, weights: w }, state, step)
    })?;
    partial_out(py, state, reassigned, input.cols)
}

/// What `partial_fit` returns: centroids, counts, rows since the last reassignment, and how
/// many centres that step reassigned.
pub(super) type PartialOut<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>, usize, usize);

/// The state `partial_fit` continues from: centroids (`k × d`) and their counts.
pub(super) fn partial_state<T: EngineFor>(
    centroids: &Bound<'_, PyAny>,
    counts: Vec<f64>,
    d: usize,
    step: &PartialStep,
) -> PyResult<MiniBatchState<T>> {
    let (array, k, cd) = input::matrix::<T>(centroids, "centroids")?;
    if cd != d || counts.len() != k {
        return Err(PyValueError::new_err("centroids, counts and X do not agree in shape"));
    }
    Ok(MiniBatchState {
        centroids: array.as_slice()?.to_vec(),
        counts,
        n_since_last_reassign: step.n_since_last_reassign,
    })
}

pub(super) fn partial_out<T: EngineFor>(
    py: Python<'_>,
    state: MiniBatchState<T>,
    reassigned: usize,
    d: usize,
) -> PyResult<PartialOut<'_>> {
    let k = state.counts.len();
    Ok((
        matrix_out(py, state.centroids, k, d)?,
        state.counts.into_pyarray(py).into_any(),
        state.n_since_last_reassign,
        reassigned,
    ))
}
