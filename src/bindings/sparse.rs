//! Entry points for sparse rows (scipy.sparse CSR, validated and made canonical in Python):
//! the arrays `indptr`, `indices` (int32 or int64) and `data` (float32 or float64) are
//! borrowed as they are.

use numpy::{Element, IntoPyArray, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::engines::EngineFor;
use super::fit::{fit_out, minibatch_out, partial_out, partial_state, PartialOut};
use super::input::{self, InitArg};
use super::run::detached;
use super::{labels_out, matrix_out, view};
use crate::matrix::{weighted_sum, MatRef};
use crate::minibatch::{self, PartialStep, Seeding};
use crate::params::{Algorithm, KMeansParams, MiniBatchParams};
use crate::sparse::{self, CsrIndex, CsrRef, SparseRows};
use crate::Scalar;

/// Dispatches on the float type of `data` and the integer type of `indices`.
macro_rules! by_csr {
    ($data:expr, $indices:expr, $f:ident ( $($arg:expr),* )) => {{
        let f32_data = $data.cast::<numpy::PyArray1<f32>>().is_ok();
        let i32_indices = $indices.cast::<numpy::PyArray1<i32>>().is_ok();
        match (f32_data, i32_indices) {
            (true, true) => $f::<f32, i32>($($arg),*),
            (true, false) => $f::<f32, i64>($($arg),*),
            (false, true) => $f::<f64, i32>($($arg),*),
            (false, false) => $f::<f64, i64>($($arg),*),
        }
    }};
}

/// Sparse rows and their sample weights, as the engine takes them.
type Weighted<'a, T, I> = (CsrRef<'a, T, I>, Option<&'a [T]>);

/// The borrowed arrays of a CSR matrix, and its rows' sample weights.
struct Csr<'py, T: Element, I: Element> {
    indptr: PyReadonlyArray1<'py, I>,
    indices: PyReadonlyArray1<'py, I>,
    data: PyReadonlyArray1<'py, T>,
    cols: usize,
    weights: Option<PyReadonlyArray1<'py, T>>,
}

fn array<'py, E: Element>(a: &Bound<'py, PyAny>, name: &str) -> PyResult<PyReadonlyArray1<'py, E>> {
    let array: PyReadonlyArray1<'py, E> = a.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be a 1-D NumPy array of int32/int64 indices or float32/float64 values"
        ))
    })?;
    if !array.is_contiguous() {
        return Err(PyValueError::new_err(format!("{name} must be contiguous")));
    }
    Ok(array)
}

impl<'py, T: Scalar + Element, I: CsrIndex + Element> Csr<'py, T, I> {
    fn new(
        (indptr, indices, data, cols): CsrArgs<'_, 'py>,
        sample_weight: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Self> {
        let (indptr, indices) = (array(indptr, "indptr")?, array(indices, "indices")?);
        let weights = input::vector::<T>(sample_weight, "sample_weight")?;
        Ok(Self { indptr, indices, data: array(data, "data")?, cols, weights })
    }

    /// The rows, checked, and their weights.
    fn view(&self) -> PyResult<Weighted<'_, T, I>> {
        let x = CsrRef::new(self.indptr.as_slice()?, self.indices.as_slice()?, self.data.as_slice()?, self.cols)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok((x, self.weights.as_ref().map(|w| w.as_slice()).transpose()?))
    }

    /// Centroids to compare these rows with: a borrowed matrix with as many features.
    fn centroids(&self, centroids: &Bound<'py, PyAny>) -> PyResult<Centroids<'py, T>> {
        let (array, k, d) = input::matrix::<T>(centroids, "centroids")?;
        if d != self.cols {
            return Err(PyValueError::new_err(format!("centroids have {d} features; X has {}", self.cols)));
        }
        Ok(Centroids { array, k, d })
    }
}

/// Borrowed centroids (`k × d`).
struct Centroids<'py, T: Element> {
    array: PyReadonlyArray2<'py, T>,
    k: usize,
    d: usize,
}

impl<T: Scalar + Element> Centroids<'_, T> {
    fn view(&self) -> PyResult<MatRef<'_, T>> {
        view(self.array.as_slice()?, self.k, self.d)
    }
}

#[pyfunction]
#[pyo3(signature = (indptr, indices, data, n_features, sample_weight, *, n_clusters, init, n_init, max_iter, tol, seed, spherical=false, progress=None))]
#[allow(clippy::too_many_arguments)]
pub fn kmeans_fit_sparse<'py>(
    py: Python<'py>,
    indptr: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
    n_features: usize,
    sample_weight: Option<&Bound<'py, PyAny>>,
    n_clusters: usize,
    init: &Bound<'py, PyAny>,
    n_init: usize,
    max_iter: usize,
    tol: f64,
    seed: u64,
    spherical: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let algorithm = Algorithm::Dense;
    let params = KMeansParams { n_clusters, n_init, max_iter, tol, seed, spherical, algorithm, distances: true };
    let csr = (indptr, indices, data, n_features);
    by_csr!(data, indices, fit_t(py, csr, sample_weight, init, &params, progress))
}

type CsrArgs<'a, 'py> = (&'a Bound<'py, PyAny>, &'a Bound<'py, PyAny>, &'a Bound<'py, PyAny>, usize);

fn fit_t<'py, T: EngineFor, I: CsrIndex + Element>(
    py: Python<'py>,
    csr: CsrArgs<'_, 'py>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    init: &Bound<'py, PyAny>,
    params: &KMeansParams,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let (cols, csr) = (csr.3, Csr::<T, I>::new(csr, sample_weight)?);
    let init = InitArg::<T>::new(init, params.n_clusters, cols)?;
    let ((x, w), init) = (csr.view()?, init.as_init()?);
    let result = detached(py, progress, |_, monitor| sparse::fit(x, w, params, init, monitor))?;
    fit_out(py, result, params.n_clusters, cols)
}

/// Each sparse row's nearest centroid, squared distance, and the (weighted) inertia.
#[pyfunction]
#[pyo3(signature = (indptr, indices, data, n_features, centroids, sample_weight=None))]
pub fn assign_sparse<'py>(
    py: Python<'py>,
    indptr: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
    n_features: usize,
    centroids: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    by_csr!(data, indices, assign_t(py, (indptr, indices, data, n_features), centroids, sample_weight))
}

fn assign_t<'py, T: EngineFor, I: CsrIndex + Element>(
    py: Python<'py>,
    csr: CsrArgs<'_, 'py>,
    centroids: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let csr = Csr::<T, I>::new(csr, sample_weight)?;
    let centroids = csr.centroids(centroids)?;
    let ((x, w), c) = (csr.view()?, centroids.view()?);
    let (labels, distances) = py.detach(|| sparse::nearest(x, &x.row_sq_norms(), c));
    let inertia = weighted_sum(&distances, w);
    Ok((labels_out(py, labels), distances.into_pyarray(py), inertia).into_pyobject(py)?.into_any())
}

/// Squared distances from every sparse row to every centroid (`n × k`).
#[pyfunction]
pub fn sq_distances_sparse<'py>(
    py: Python<'py>,
    indptr: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
    n_features: usize,
    centroids: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    by_csr!(data, indices, sq_distances_t(py, (indptr, indices, data, n_features), centroids))
}

fn sq_distances_t<'py, T: EngineFor, I: CsrIndex + Element>(
    py: Python<'py>,
    csr: CsrArgs<'_, 'py>,
    centroids: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let csr = Csr::<T, I>::new(csr, None)?;
    let centroids = csr.centroids(centroids)?;
    let ((x, _), c) = (csr.view()?, centroids.view()?);
    let out = py.detach(|| sparse::sq_distances(x, c));
    matrix_out(py, out, x.rows(), c.rows())
}

#[pyfunction]
#[pyo3(signature = (indptr, indices, data, n_features, sample_weight, *, n_clusters, init, n_init, max_iter, batch_size,
    init_size, tol, max_no_improvement, reassignment_ratio, seed, compute_labels, spherical=false, progress=None))]
#[allow(clippy::too_many_arguments)]
pub fn minibatch_fit_sparse<'py>(
    py: Python<'py>,
    indptr: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
    n_features: usize,
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
    let csr = (indptr, indices, data, n_features);
    by_csr!(data, indices, minibatch_fit_t(py, csr, sample_weight, init, &params, progress))
}

fn minibatch_fit_t<'py, T: EngineFor, I: CsrIndex + Element>(
    py: Python<'py>,
    csr: CsrArgs<'_, 'py>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    init: &Bound<'py, PyAny>,
    params: &MiniBatchParams,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let (cols, csr) = (csr.3, Csr::<T, I>::new(csr, sample_weight)?);
    let init = InitArg::<T>::new(init, params.n_clusters, cols)?;
    let ((x, w), init) = (csr.view()?, init.as_init()?);
    let result = detached(py, progress, |_, monitor| minibatch::fit(&SparseRows::new(x, w), params, init, monitor))?;
    minibatch_out(py, result, params.n_clusters, cols)
}

/// Initial centroids for a first sparse `partial_fit`: chosen on `init_size` sampled rows.
#[pyfunction]
#[pyo3(signature = (indptr, indices, data, n_features, sample_weight, *, n_clusters, init, batch_size, init_size, seed, spherical=false))]
#[allow(clippy::too_many_arguments)]
pub fn init_centroids_sparse<'py>(
    py: Python<'py>,
    indptr: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
    n_features: usize,
    sample_weight: Option<&Bound<'py, PyAny>>,
    n_clusters: usize,
    init: &Bound<'py, PyAny>,
    batch_size: usize,
    init_size: Option<usize>,
    seed: u64,
    spherical: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let sample = Seeding { n_clusters, batch_size, init_size, seed, spherical };
    by_csr!(data, indices, init_centroids_t(py, (indptr, indices, data, n_features), sample_weight, init, &sample))
}

fn init_centroids_t<'py, T: EngineFor, I: CsrIndex + Element>(
    py: Python<'py>,
    csr: CsrArgs<'_, 'py>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    init: &Bound<'py, PyAny>,
    sample: &Seeding,
) -> PyResult<Bound<'py, PyAny>> {
    let (cols, csr) = (csr.3, Csr::<T, I>::new(csr, sample_weight)?);
    let init = InitArg::<T>::new(init, sample.n_clusters, cols)?;
    let ((x, w), init) = (csr.view()?, init.as_init()?);
    let centroids =
        detached(py, None, |_, monitor| minibatch::first_centroids(&SparseRows::new(x, w), init, sample, monitor))?;
    matrix_out(py, centroids, sample.n_clusters, cols)
}

/// One mini-batch step on all sparse rows; returns what `minibatch_partial_fit` returns.
#[pyfunction]
#[pyo3(signature = (indptr, indices, data, n_features, sample_weight, *, centroids, counts, n_since_last_reassign,
    batch_size, reassignment_ratio, seed, spherical=false))]
#[allow(clippy::too_many_arguments)]
pub fn minibatch_partial_fit_sparse<'py>(
    py: Python<'py>,
    indptr: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
    n_features: usize,
    sample_weight: Option<&Bound<'py, PyAny>>,
    centroids: &Bound<'py, PyAny>,
    counts: Vec<f64>,
    n_since_last_reassign: usize,
    batch_size: usize,
    reassignment_ratio: f64,
    seed: u64,
    spherical: bool,
) -> PyResult<PartialOut<'py>> {
    let step = PartialStep { n_since_last_reassign, batch_size, reassignment_ratio, seed, spherical };
    let csr = (indptr, indices, data, n_features);
    by_csr!(data, indices, partial_fit_t(py, csr, sample_weight, centroids, counts, &step))
}

fn partial_fit_t<'py, T: EngineFor, I: CsrIndex + Element>(
    py: Python<'py>,
    csr: CsrArgs<'_, 'py>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    centroids: &Bound<'py, PyAny>,
    counts: Vec<f64>,
    step: &PartialStep,
) -> PyResult<PartialOut<'py>> {
    let (cols, csr) = (csr.3, Csr::<T, I>::new(csr, sample_weight)?);
    let state = partial_state::<T>(centroids, counts, cols, step)?;
    let (x, w) = csr.view()?;
    let (state, reassigned) = detached(py, None, |_, _| minibatch::partial_step(&SparseRows::new(x, w), state, step))?;
    partial_out(py, state, reassigned, cols)
}
