//! Pieces of a Lloyd iteration for data held in chunks elsewhere (a Dask cluster's
//! partitions, a file read piece by piece), run where each chunk lives: its partial sums,
//! and its rows farthest from their centroid for empty clusters. The driver of
//! `python/mlx_kmeans/_chunked/loop.py` combines them for the engine's loop (`chunked_fit`).

use numpy::ndarray::Array1;
use numpy::IntoPyArray;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::engines::{BackendSpec, EngineFor};
use super::run::detached;
use super::{by_dtype, input, labels_out, matrix_out};
use crate::lloyd::lloyd_step;
use crate::matrix::{weighted_sum, Points};
use crate::monitor::Progress;
use crate::strategy::bounds::BoundedPass;

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
    let input = input::RowsAndCentroids::<T>::new(x, centroids, sample_weight)?;
    let (n, k, d) = (input.rows, input.clusters, input.cols);
    let (data, cents, w) = input.views()?;
    let step = detached(py, None, |pending, monitor| {
        crate::params::check_weight_values(w, n)?;
        let engine = T::engine(&spec, Some(data), None, pending)?;
        let kernel = engine.kernel();
        let norms = kernel.row_sq_norms(data)?;
        let points = Points { x: data, x_sq_norms: &norms, weights: w };
        lloyd_step(kernel, points, cents, &mut || monitor(&Progress::block(0, 0)))
    })?;
    let (labels, distances, sums, weights) = partials_out(py, step.labels, step.distances, step.sums, k, d)?;
    Ok((labels, distances, sums, weights, step.inertia))
}

type Four<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>);

/// Labels, distances, per-cluster sums (`k × d`) and weights as NumPy arrays.
fn partials_out<T: EngineFor>(
    py: Python<'_>,
    labels: Vec<u32>,
    distances: Vec<T>,
    sums: crate::ClusterSums,
    k: usize,
    d: usize,
) -> PyResult<Four<'_>> {
    Ok((
        labels_out(py, labels),
        distances.into_pyarray(py).into_any(),
        matrix_out(py, sums.sums, k, d)?,
        Array1::from_vec(sums.weights).into_pyarray(py).into_any(),
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
    let input = input::RowsAndCentroids::<T>::new(x, centroids, sample_weight)?;
    let (n, k) = (input.rows, input.clusters);
    let labels = input::labels(labels, "labels", k)?;
    if labels.len() != n {
        return Err(PyValueError::new_err(format!("{} labels for {n} rows", labels.len())));
    }
    let (data, cents, w) = input.views()?;
    let cents = cents.as_slice();
    let found = detached(py, None, |_, _| {
        crate::params::check_weight_values(w, n)?;
        Ok(crate::update::farthest_rows(data, w, &labels, cents, count))
    })?;
    let distances: Vec<f64> = found.iter().map(|&(dist, _)| dist).collect();
    let rows: Vec<i64> = found.iter().map(|&(_, i)| i as i64).collect();
    Ok((distances.into_pyarray(py).into_any(), rows.into_pyarray(py).into_any()))
}

/// A chunk's pass with Hamerly's bounds kept from its previous pass: `labels` and `lower`
/// (None on the first pass: a full search that makes them), loosened here by `shifts` (how
/// far each centroid moved since). Returns labels, squared distances, per-cluster sums and
/// weights (float64), the weighted inertia, the new lower bounds and how many rows needed a
/// full search. Labels equal a dense pass's.
#[pyfunction]
#[pyo3(signature = (x, centroids, half_gaps, labels=None, lower=None, shifts=None, sample_weight=None, backend=None))]
#[allow(clippy::too_many_arguments)]
pub fn bounded_partials<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    centroids: &Bound<'py, PyAny>,
    half_gaps: &Bound<'py, PyAny>,
    labels: Option<&Bound<'py, PyAny>>,
    lower: Option<&Bound<'py, PyAny>>,
    shifts: Option<&Bound<'py, PyAny>>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<BoundedPartials<'py>> {
    let float64s = |v: Option<&Bound<'py, PyAny>>, name: &str| -> PyResult<Option<Vec<f64>>> {
        Ok(input::vector::<f64>(v, name)?.map(|a| a.as_slice().map(|s| s.to_vec())).transpose()?)
    };
    let state = Bounds {
        half_gaps: float64s(Some(half_gaps), "half_gaps")?.unwrap_or_default(),
        labels,
        lower: float64s(lower, "lower")?,
        shifts: float64s(shifts, "shifts")?,
    };
    by_dtype!(x, bounded_partials_t(py, x, centroids, state, sample_weight, backend))
}

type BoundedPartials<'py> =
    (Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>, f64, Bound<'py, PyAny>, usize);

/// A chunk's bounds from its previous pass, and the pass's centroid gaps.
struct Bounds<'a, 'py> {
    half_gaps: Vec<f64>,
    labels: Option<&'a Bound<'py, PyAny>>,
    lower: Option<Vec<f64>>,
    shifts: Option<Vec<f64>>,
}

fn bounded_partials_t<'py, T: EngineFor>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    centroids: &Bound<'py, PyAny>,
    state: Bounds<'_, 'py>,
    sample_weight: Option<&Bound<'py, PyAny>>,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<BoundedPartials<'py>> {
    let spec = BackendSpec::from_py(backend)?;
    let input = input::RowsAndCentroids::<T>::new(x, centroids, sample_weight)?;
    let (n, k, d) = (input.rows, input.clusters, input.cols);
    if state.half_gaps.len() != k {
        return Err(PyValueError::new_err(format!("{} half gaps for {k} centroids", state.half_gaps.len())));
    }
    let mut labels = match state.labels.filter(|l| !l.is_none()) {
        Some(given) => Some(input::labels(given, "labels", k)?),
        None => None,
    };
    let lower = match (&labels, state.lower, state.shifts) {
        (Some(l), Some(lower), Some(shifts)) if l.len() == n && lower.len() == n && shifts.len() == k => {
            Some((lower, shifts))
        }
        (None, None, _) => None,
        _ => {
            return Err(PyValueError::new_err(format!(
                "labels and lower bounds ({n} each) and shifts ({k}) go together, or none of them"
            )))
        }
    };
    let (data, cents, w) = input.views()?;
    let gaps = state.half_gaps;
    let (labels, distances, sums, inertia, lower, searched) = detached(py, None, |pending, monitor| {
        crate::params::check_weight_values(w, n)?;
        let engine = T::engine(&spec, Some(data), None, pending)?;
        let kernel = engine.kernel();
        let norms = kernel.row_sq_norms(data)?;
        let points = Points { x: data, x_sq_norms: &norms, weights: w };
        let mut labels = labels.take().unwrap_or_else(|| vec![0u32; n]);
        let mut pass = match lower {
            Some((lower, shifts)) => {
                let mut pass = BoundedPass::resume(Some(lower), n);
                pass.loosen_by(&shifts, &labels);
                pass
            }
            None => BoundedPass::resume(None, n),
        };
        let mut distances = vec![T::zero(); n];
        let (sums, searched) =
            pass.chunk_pass(kernel, points, cents, &gaps, &mut labels, &mut distances, &mut || {
                monitor(&Progress::block(0, 0))
            })?;
        let inertia = weighted_sum(&distances, w);
        Ok((labels, distances, sums, inertia, pass.into_lower(), searched))
    })?;
    let (labels, distances, sums, weights) = partials_out(py, labels, distances, sums, k, d)?;
    Ok((labels, distances, sums, weights, inertia, lower.into_pyarray(py).into_any(), searched))
}
