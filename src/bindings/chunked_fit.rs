//! A fit over data held in chunks elsewhere, driven by the engine's own loop
//! (`crate::strategy::chunked`): each pass calls back into a Python driver
//! (`python/mlx_kmeans/_chunked/loop.py`), which runs the chunk tasks where the chunks live and
//! combines their results. An exception raised by the driver ends the fit as it is.

use std::marker::PhantomData;

use numpy::{IntoPyArray, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::engines::{BackendSpec, EngineFor};
use super::fit::{algorithm, fit_out};
use super::matrix_out;
use super::run::{detached, refresh_log_levels, PendingError};
use crate::error::{Error, Result};
use crate::kernel::ClusterSums;
use crate::matrix::MatRef;
use crate::params::KMeansParams;
use crate::strategy::chunked::{fit_chunks, ChunkPass, Chunks, FarRow, PassBounds};

/// The Python driver seen as [`Chunks`].
struct Driver<'a, T> {
    driver: &'a Py<PyAny>,
    pending: &'a PendingError,
    rows: usize,
    k: usize,
    d: usize,
    _float: PhantomData<T>,
}

/// `values` with exactly `len` entries (any layout), else a `ValueError` naming `what`.
fn values<T: Copy>(values: numpy::ndarray::ArrayViewD<'_, T>, len: usize, what: &str) -> PyResult<Vec<T>> {
    if values.len() != len {
        return Err(PyValueError::new_err(format!(
            "the chunk driver returned {} {what} values; expected {len}",
            values.len()
        )));
    }
    Ok(values.iter().copied().collect())
}

impl<T: EngineFor> Driver<'_, T> {
    /// Runs `f` on the driver with the GIL held; an exception it raises is kept in `pending`
    /// and ends the fit.
    fn call<R>(&self, f: impl FnOnce(Python<'_>, &Bound<'_, PyAny>) -> PyResult<R>) -> Result<R> {
        self.pending.call(|py| f(py, self.driver.bind(py))).ok_or(Error::Callback)
    }

    fn centroids_in<'py>(&self, py: Python<'py>, centroids: MatRef<'_, T>) -> PyResult<Bound<'py, PyAny>> {
        matrix_out(py, centroids.as_slice().to_vec(), centroids.rows(), self.d)
    }
}

impl<T: EngineFor> Chunks<T> for Driver<'_, T> {
    fn rows(&self) -> usize {
        self.rows
    }

    fn initial_centroids(&self, run: usize, seed: u64) -> Result<Vec<T>> {
        self.call(|_, driver| {
            let centroids: PyReadonlyArray2<'_, T> =
                driver.call_method1("initial_centroids", (run, seed))?.extract()?;
            values(centroids.as_array().into_dyn(), self.k * self.d, "centroid")
        })
    }

    fn mean_feature_variance(&self) -> Result<f64> {
        self.call(|_, driver| driver.call_method0("mean_feature_variance")?.extract())
    }

    fn pass(&self, centroids: MatRef<'_, T>, bounds: Option<PassBounds<'_>>) -> Result<ChunkPass> {
        self.call(|py, driver| {
            let (gaps, shifts) = match bounds {
                Some(b) => (Some(b.half_gaps.to_vec().into_pyarray(py)), b.shifts.map(|s| s.to_vec().into_pyarray(py))),
                None => (None, None),
            };
            let out = driver.call_method1("lloyd_pass", (self.centroids_in(py, centroids)?, gaps, shifts))?;
            let (sums, weights, inertia, searched, changed): (
                PyReadonlyArray2<'_, f64>,
                PyReadonlyArray1<'_, f64>,
                f64,
                usize,
                usize,
            ) = out.extract()?;
            let sums = ClusterSums {
                sums: values(sums.as_array().into_dyn(), self.k * self.d, "sum")?,
                weights: values(weights.as_array().into_dyn(), self.k, "weight")?,
            };
            Ok(ChunkPass { sums, inertia, searched, changed })
        })
    }

    fn farthest(&self, centroids: MatRef<'_, T>, count: usize) -> Result<Vec<FarRow<T>>> {
        self.call(|py, driver| {
            let out = driver.call_method1("farthest", (self.centroids_in(py, centroids)?, count))?;
            let (distances, labels, weights, rows): (
                PyReadonlyArray1<'_, f64>,
                PyReadonlyArray1<'_, i64>,
                PyReadonlyArray1<'_, f64>,
                PyReadonlyArray2<'_, T>,
            ) = out.extract()?;
            let m = distances.len();
            if labels.len() != m || weights.len() != m || rows.shape() != [m, self.d] {
                return Err(PyValueError::new_err("the chunk driver returned farthest rows of mismatched lengths"));
            }
            let rows = rows.as_array();
            Ok((0..m)
                .map(|r| FarRow {
                    distance: distances.as_array()[r],
                    label: u32::try_from(labels.as_array()[r]).unwrap_or(u32::MAX),
                    weight: weights.as_array()[r],
                    values: rows.row(r).to_vec(),
                })
                .collect())
        })
    }

    fn inertia(&self, centroids: MatRef<'_, T>) -> Result<f64> {
        self.call(|py, driver| driver.call_method1("inertia", (self.centroids_in(py, centroids)?,))?.extract())
    }
}

/// Lloyd's k-means over chunks by `driver` (`n_rows × n_features` in all, computed in float64
/// when `float64`, else float32): `n_init` runs, each from `driver.initial_centroids(run,
/// seed)`, stopped by the engine's rules. Returns what `kmeans_fit` returns, less the labels
/// and distances (they stay with the chunks).
#[pyfunction]
#[pyo3(signature = (driver, *, n_rows, n_features, float64, n_clusters, n_init, max_iter, tol, seed, spherical=false, algorithm="auto", progress=None, backend=None))]
#[allow(clippy::too_many_arguments)]
pub fn kmeans_fit_chunks<'py>(
    py: Python<'py>,
    driver: Py<PyAny>,
    n_rows: usize,
    n_features: usize,
    float64: bool,
    n_clusters: usize,
    n_init: usize,
    max_iter: usize,
    tol: f64,
    seed: u64,
    spherical: bool,
    algorithm: &str,
    progress: Option<Py<PyAny>>,
    backend: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    refresh_log_levels(py)?;
    let algorithm = self::algorithm(algorithm)?;
    let params = KMeansParams { n_clusters, n_init, max_iter, tol, seed, spherical, algorithm, distances: true };
    let spec = BackendSpec::from_py(backend)?;
    let shape = (n_rows, n_features);
    if float64 {
        fit_t::<f64>(py, driver, shape, &params, progress, &spec)
    } else {
        fit_t::<f32>(py, driver, shape, &params, progress, &spec)
    }
}

fn fit_t<'py, T: EngineFor>(
    py: Python<'py>,
    driver: Py<PyAny>,
    (rows, d): (usize, usize),
    params: &KMeansParams,
    progress: Option<Py<PyAny>>,
    spec: &BackendSpec,
) -> PyResult<Bound<'py, PyDict>> {
    let k = params.n_clusters;
    let result = detached(py, progress, |pending, monitor| {
        let chunks = Driver::<T> { driver: &driver, pending, rows, k, d, _float: PhantomData };
        let engine = T::engine(spec, None, None, pending)?;
        fit_chunks(&chunks, &*engine, d, params, monitor)
    })?;
    fit_out(py, result, k, d)
}
