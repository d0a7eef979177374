//! The fitting entry points: full k-means, mini-batch, and the pieces of `partial_fit`.
//! Each Python-facing function gathers its scalar arguments into one struct and dispatches
//! on the dtype of `x` to a generic body.

use numpy::IntoPyArray;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::input::{self, Data};
use super::kernels::KernelFor;
use super::run::detached;
use super::{backend_spec, by_dtype, labels_out, matrix_out};
use crate::minibatch::{self, MiniBatchParams, MiniBatchState};
use crate::{lloyd, Init, KMeansParams};

/// Scalar arguments of `kmeans_fit`.
struct LloydArgs {
    n_clusters: usize,
    n_init: usize,
    max_iter: usize,
    tol: f64,
    seed: u64,
    spherical: bool,
    prune: bool,
}

impl LloydArgs {
    fn params<T>(&self, init: Init<T>) -> KMeansParams<T> {
        KMeansParams {
            n_clusters: self.n_clusters,
            init,
            n_init: self.n_init,
            max_iter: self.max_iter,
            tol: self.tol,
            seed: self.seed,
            spherical: self.spherical,
            prune: self.prune,
        }
    }
}

#[pyfunction]
#[pyo3(signature = (x, sample_weight, *, n_clusters, init, n_init, max_iter, tol, seed, spherical=false, prune=true, progress=None, backend=None))]
#[allow(clippy::too_many_arguments)]
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
    prune: bool,
    progress: Option<Py<PyAny>>,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let args = LloydArgs { n_clusters, n_init, max_iter, tol, seed, spherical, prune };
    by_dtype!(x, kmeans_fit_t(py, x, sample_weight, init, args, progress, backend))
}

fn kmeans_fit_t<'py, T: KernelFor>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    init: &Bound<'py, PyAny>,
    args: LloydArgs,
    progress: Option<Py<PyAny>>,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let mut input = Data::<T>::new(x, sample_weight)?;
    let params = args.params(input::init::<T>(init, args.n_clusters, input.cols)?);
    let shared = input.take_mlx();
    let (data, w) = (input.matrix()?, input.weights()?);
    let spec = backend_spec(backend)?;
    let result = detached(py, progress, |monitor| {
        let started = std::time::Instant::now();
        let kernel = T::kernel(&spec, Some(data), shared)?;
        log::debug!("{} kernel ready in {:.1} ms", kernel.name(), started.elapsed().as_secs_f64() * 1e3);
        lloyd::fit(&*kernel, data, w, &params, monitor)
    })?;
    let out = PyDict::new(py);
    out.set_item("centroids", matrix_out(py, result.centroids, args.n_clusters, input.cols)?)?;
    out.set_item("labels", labels_out(py, result.labels))?;
    out.set_item("distances", result.distances.into_pyarray(py))?;
    out.set_item("inertia", result.inertia)?;
    out.set_item("n_iter", result.n_iter)?;
    out.set_item("inertia_history", result.inertia_history)?;
    Ok(out)
}

/// Scalar arguments of `minibatch_fit`.
struct MiniBatchArgs {
    n_clusters: usize,
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
}

impl MiniBatchArgs {
    fn params<T>(&self, init: Init<T>) -> MiniBatchParams<T> {
        MiniBatchParams {
            n_clusters: self.n_clusters,
            init,
            n_init: self.n_init,
            max_iter: self.max_iter,
            batch_size: self.batch_size,
            init_size: self.init_size,
            tol: self.tol,
            max_no_improvement: self.max_no_improvement,
            reassignment_ratio: self.reassignment_ratio,
            seed: self.seed,
            compute_labels: self.compute_labels,
            spherical: self.spherical,
        }
    }
}

#[pyfunction]
#[pyo3(signature = (x, sample_weight, *, n_clusters, init, n_init, max_iter, batch_size, init_size, tol,
    max_no_improvement, reassignment_ratio, seed, compute_labels, spherical=false, progress=None, backend=None))]
#[allow(clippy::too_many_arguments)]
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
    let args = MiniBatchArgs {
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
    by_dtype!(x, minibatch_fit_t(py, x, sample_weight, init, args, progress, backend))
}

fn minibatch_fit_t<'py, T: KernelFor>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    init: &Bound<'py, PyAny>,
    args: MiniBatchArgs,
    progress: Option<Py<PyAny>>,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let input = Data::<T>::new(x, sample_weight)?;
    let params = args.params(input::init::<T>(init, args.n_clusters, input.cols)?);
    let (data, w) = (input.matrix()?, input.weights()?);
    let spec = backend_spec(backend)?;
    let result = detached(py, progress, |monitor| {
        let kernel = T::kernel(&spec, None, None)?;
        minibatch::fit(&*kernel, data, w, &params, monitor)
    })?;
    let out = PyDict::new(py);
    out.set_item("centroids", matrix_out(py, result.state.centroids, args.n_clusters, input.cols)?)?;
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

/// Scalar arguments of `init_centroids`.
struct InitArgs {
    n_clusters: usize,
    batch_size: usize,
    init_size: Option<usize>,
    seed: u64,
    spherical: bool,
}

/// Initial centroids for a first `partial_fit`: chosen on `init_size` sampled rows.
#[pyfunction]
#[pyo3(signature = (x, sample_weight, *, n_clusters, init, batch_size, init_size, seed, spherical=false, backend=None))]
#[allow(clippy::too_many_arguments)]
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
    let args = InitArgs { n_clusters, batch_size, init_size, seed, spherical };
    by_dtype!(x, init_centroids_t(py, x, sample_weight, init, args, backend))
}

fn init_centroids_t<'py, T: KernelFor>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    init: &Bound<'py, PyAny>,
    args: InitArgs,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let input = Data::<T>::new(x, sample_weight)?;
    let (n, k) = (input.rows, args.n_clusters);
    let init = input::init::<T>(init, k, input.cols)?;
    let (data, w) = (input.matrix()?, input.weights()?);
    let spec = backend_spec(backend)?;
    let centroids = detached(py, None, |monitor| {
        let kernel = T::kernel(&spec, None, None)?;
        lloyd::check_n_clusters(n, k)?;
        let init_size = minibatch::resolve_init_size(args.init_size, args.batch_size.clamp(1, n), k, n);
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        minibatch::init_on_sample(&*kernel, data, w, k, &init, init_size, args.spherical, &mut rng, 0, monitor)
    })?;
    matrix_out(py, centroids, k, input.cols)
}

/// Scalar arguments of `minibatch_partial_fit`.
struct StepArgs {
    n_since_last_reassign: usize,
    batch_size: usize,
    reassignment_ratio: f64,
    seed: u64,
    spherical: bool,
}

/// One mini-batch step on all rows of `x`; returns the updated centroids, counts and
/// rows-since-reassignment counter.
#[pyfunction]
#[pyo3(signature = (x, sample_weight, *, centroids, counts, n_since_last_reassign, batch_size, reassignment_ratio, seed, spherical=false, backend=None))]
#[allow(clippy::too_many_arguments)]
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
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>, usize)> {
    let args = StepArgs { n_since_last_reassign, batch_size, reassignment_ratio, seed, spherical };
    by_dtype!(x, minibatch_partial_fit_t(py, x, sample_weight, centroids, counts, args, backend))
}

fn minibatch_partial_fit_t<'py, T: KernelFor>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    centroids: &Bound<'py, PyAny>,
    counts: Vec<f64>,
    args: StepArgs,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>, usize)> {
    let input = Data::<T>::new(x, sample_weight)?;
    let (c_array, k, cd) = input::matrix::<T>(centroids, "centroids")?;
    if cd != input.cols || counts.len() != k {
        return Err(PyValueError::new_err("centroids, counts and X do not agree in shape"));
    }
    let mut state = MiniBatchState { centroids: c_array.as_slice()?.to_vec(), counts, n_since_last_reassign: args.n_since_last_reassign };
    let (data, w) = (input.matrix()?, input.weights()?);
    let spec = backend_spec(backend)?;
    let state = detached(py, None, |_| {
        let kernel = T::kernel(&spec, None, None)?;
        lloyd::check_weights(w, input.rows)?;
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        let reassign = state.take_reassign_turn(args.batch_size);
        minibatch::minibatch_step(&*kernel, data, w, &mut state, &mut rng, reassign, args.reassignment_ratio, args.spherical)?;
        Ok(state)
    })?;
    Ok((matrix_out(py, state.centroids, k, input.cols)?, state.counts.into_pyarray(py).into_any(), state.n_since_last_reassign))
}
