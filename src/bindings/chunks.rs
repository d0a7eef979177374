//! Pieces of a Lloyd iteration for data held in chunks elsewhere (a Dask cluster's
//! partitions, a file read piece by piece): each chunk's partial sums, and its rows farthest
//! from their centroid for empty clusters. The caller combines the pieces (`_chunked.py`).

use numpy::ndarray::Array1;
use numpy::IntoPyArray;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::engines::{BackendSpec, EngineFor};
use super::run::detached;
use super::{by_dtype, input, labels_out, matrix_out, view};
use crate::kernel::assign_accumulate_in_chunks;
use crate::matrix::{weighted_sum, Points};
use crate::monitor::Progress;

type Partials<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>, f64);

/// One chunk's share of a Lloyd iteration: labels, squared distances, per-cluster weighted
/// sums (`k × d`, float64), per-cluster weights (float64) and the chunk's weighted inertia.
#[pyfunction]
#[pyo3(signature = (x, centroids, sample_weight=None, backend=None))]
pub fn lloyd_partials<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    centroids: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<Partials<'py>> {
    by_dtype!(x, lloyd_partials_t(py, x, centroids, sample_weight, backend))
}

fn lloyd_partials_t<'py, T: EngineFor>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    centroids: &Bound<'py, PyAny>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<Partials<'py>> {
    let spec = BackendSpec::from_py(backend)?;
    let (x_array, n, d) = input::matrix::<T>(x, "X")?;
    let (c_array, k, cd) = input::matrix::<T>(centroids, "centroids")?;
    if cd != d {
        return Err(PyValueError::new_err(format!("X has {d} features but the centroids have {cd}")));
    }
    let weights = input::vector::<T>(sample_weight, "sample_weight")?;
    let data = view(x_array.as_slice()?, n, d)?;
    let cents = view(c_array.as_slice()?, k, d)?;
    let w = weights.as_ref().map(|w| w.as_slice()).transpose()?;
    let (labels, distances, sums, inertia) = detached(py, None, |pending, monitor| {
        crate::params::check_weights(w, n)?;
        let engine = T::engine(&spec, Some(data), None, pending)?;
        let kernel = engine.kernel();
        let norms = kernel.row_sq_norms(data)?;
        let points = Points { x: data, x_sq_norms: &norms, weights: w };
        let mut labels = vec![0u32; n];
        let mut distances = vec![T::zero(); n];
        let sums = assign_accumulate_in_chunks(kernel, points, cents, &mut labels, &mut distances, &mut || {
            monitor(&Progress::block(0, 0))
        })?;
        let inertia = weighted_sum(&distances, w);
        Ok((labels, distances, sums, inertia))
    })?;
    Ok((
        labels_out(py, labels),
        distances.into_pyarray(py).into_any(),
        matrix_out(py, sums.sums, k, d)?,
        Array1::from_vec(sums.weights).into_pyarray(py).into_any(),
        inertia,
    ))
}

/// The `count` positive-weight rows of `x` farthest from their labelled centroid, farthest
/// first (ties by lowest row index): their exact squared distances (float64) and row indices.
#[pyfunction]
#[pyo3(signature = (x, centroids, labels, count, sample_weight=None))]
pub fn farthest_rows<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    centroids: &Bound<'py, PyAny>,
    labels: &Bound<'py, PyAny>,
    count: usize,
    sample_weight: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    by_dtype!(x, farthest_rows_t(py, x, centroids, labels, count, sample_weight))
}

fn farthest_rows_t<'py, T: EngineFor>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    centroids: &Bound<'py, PyAny>,
    labels: &Bound<'py, PyAny>,
    count: usize,
    sample_weight: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let (x_array, n, d) = input::matrix::<T>(x, "X")?;
    let (c_array, k, cd) = input::matrix::<T>(centroids, "centroids")?;
    if cd != d {
        return Err(PyValueError::new_err(format!("X has {d} features but the centroids have {cd}")));
    }
    let labels = input::labels(labels, "labels", k)?;
    if labels.len() != n {
        return Err(PyValueError::new_err(format!("{} labels for {n} rows", labels.len())));
    }
    let weights = input::vector::<T>(sample_weight, "sample_weight")?;
    let data = view(x_array.as_slice()?, n, d)?;
    let cents = c_array.as_slice()?;
    let w = weights.as_ref().map(|w| w.as_slice()).transpose()?;
    let found = detached(py, None, |_, _| {
        crate::params::check_weights(w, n)?;
        Ok(crate::update::farthest_rows(data, w, &labels, cents, count))
    })?;
    let distances: Vec<f64> = found.iter().map(|&(dist, _)| dist).collect();
    let rows: Vec<i64> = found.iter().map(|&(_, i)| i as i64).collect();
    Ok((distances.into_pyarray(py).into_any(), rows.into_pyarray(py).into_any()))
}
