//! Turns Python arguments into borrowed engine views. Nothing past this module knows
//! Python types. The Python layer has already validated and, where needed, converted the
//! data once; here C-contiguous float32/float64 NumPy arrays are borrowed as they are.

use numpy::{Element, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::device::{device, SharedArray};
use crate::matrix::MatRef;
use crate::{Init, Scalar};

/// The float type of the data, decided by the data matrix.
pub enum Dtype {
    F32,
    F64,
}

pub fn dtype_of(x: &Bound<'_, PyAny>) -> PyResult<Dtype> {
    if x.cast::<numpy::PyArray2<f32>>().is_ok() {
        Ok(Dtype::F32)
    } else if x.cast::<numpy::PyArray2<f64>>().is_ok() {
        Ok(Dtype::F64)
    } else {
        Err(PyTypeError::new_err("expected a 2-D NumPy array of float32 or float64"))
    }
}

/// A borrowed C-contiguous matrix.
pub fn matrix<'py, T: Scalar + Element>(
    x: &Bound<'py, PyAny>,
    name: &str,
) -> PyResult<(PyReadonlyArray2<'py, T>, usize, usize)> {
    let array: PyReadonlyArray2<'py, T> =
        x.extract().map_err(|_| PyTypeError::new_err(format!("{name} must be a 2-D {} NumPy array", T::NAME)))?;
    if !array.is_c_contiguous() {
        return Err(PyValueError::new_err(format!("{name} must be C-contiguous")));
    }
    let shape = array.shape();
    let (rows, cols) = (shape[0], shape[1]);
    Ok((array, rows, cols))
}

pub fn vector<'py, T: Scalar + Element>(
    v: Option<&Bound<'py, PyAny>>,
    name: &str,
) -> PyResult<Option<PyReadonlyArray1<'py, T>>> {
    let Some(v) = v.filter(|v| !v.is_none()) else { return Ok(None) };
    let array: PyReadonlyArray1<'py, T> =
        v.extract().map_err(|_| PyTypeError::new_err(format!("{name} must be a 1-D {} NumPy array", T::NAME)))?;
    if !array.is_contiguous() {
        return Err(PyValueError::new_err(format!("{name} must be contiguous")));
    }
    Ok(Some(array))
}

/// Engine views of rows, centroids and the rows' optional weights.
pub type Views<'a, T> = (MatRef<'a, T>, MatRef<'a, T>, Option<&'a [T]>);

/// Rows to compare with centroids: both borrowed matrices (the same number of features) and
/// the rows' optional sample weights.
pub struct RowsAndCentroids<'py, T: Scalar + Element> {
    x: PyReadonlyArray2<'py, T>,
    centroids: PyReadonlyArray2<'py, T>,
    weights: Option<PyReadonlyArray1<'py, T>>,
    pub rows: usize,
    pub clusters: usize,
    pub cols: usize,
}

impl<'py, T: Scalar + Element> RowsAndCentroids<'py, T> {
    pub fn new(
        x: &Bound<'py, PyAny>,
        centroids: &Bound<'py, PyAny>,
        sample_weight: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Self> {
        let (x, rows, cols) = matrix::<T>(x, "X")?;
        let (centroids, clusters, centroid_cols) = matrix::<T>(centroids, "centroids")?;
        if centroid_cols != cols {
            return Err(PyValueError::new_err(format!("X has {cols} features but the centroids have {centroid_cols}")));
        }
        let weights = vector::<T>(sample_weight, "sample_weight")?;
        Ok(Self { x, centroids, weights, rows, clusters, cols })
    }

    /// The rows, the centroids and the weights as engine views.
    pub fn views(&self) -> PyResult<Views<'_, T>> {
        let err = |e: crate::Error| PyValueError::new_err(e.to_string());
        let x = MatRef::new(self.x.as_slice()?, self.rows, self.cols).map_err(err)?;
        let centroids = MatRef::new(self.centroids.as_slice()?, self.clusters, self.cols).map_err(err)?;
        Ok((x, centroids, self.weights.as_ref().map(|w| w.as_slice()).transpose()?))
    }
}

/// Cluster labels (a 1-D int32 NumPy array), each checked to lie in `0..k`.
pub fn labels(v: &Bound<'_, PyAny>, name: &str, k: usize) -> PyResult<Vec<u32>> {
    let array: PyReadonlyArray1<'_, i32> =
        v.extract().map_err(|_| PyTypeError::new_err(format!("{name} must be a 1-D int32 NumPy array")))?;
    array
        .as_array()
        .iter()
        .map(|&l| u32::try_from(l).ok().filter(|&l| (l as usize) < k))
        .collect::<Option<_>>()
        .ok_or_else(|| PyValueError::new_err(format!("{name} must lie in 0..{k}")))
}

/// The `init` argument: a method, or starting centroids borrowed from NumPy.
pub enum InitArg<'py, T: Scalar + Element> {
    KMeansPlusPlus,
    Random,
    Given(PyReadonlyArray2<'py, T>),
}

impl<'py, T: Scalar + Element> InitArg<'py, T> {
    /// `"k-means++"`, `"random"`, or a C-contiguous `k × d` array of starting centroids.
    pub fn new(init: &Bound<'py, PyAny>, k: usize, d: usize) -> PyResult<Self> {
        if let Ok(name) = init.extract::<String>() {
            return match name.as_str() {
                "k-means++" => Ok(Self::KMeansPlusPlus),
                "random" => Ok(Self::Random),
                other => Err(PyValueError::new_err(format!(
                    "init should be 'k-means++', 'random' or an array of shape (n_clusters, n_features); got {other:?}"
                ))),
            };
        }
        let (array, rows, cols) = matrix::<T>(init, "init")?;
        if rows != k || cols != d {
            return Err(PyValueError::new_err(format!(
                "The shape of the initial centers ({rows}, {cols}) does not match the number of clusters {k} and features {d}"
            )));
        }
        Ok(Self::Given(array))
    }

    pub fn as_init(&self) -> PyResult<Init<'_, T>> {
        Ok(match self {
            Self::KMeansPlusPlus => Init::KMeansPlusPlus,
            Self::Random => Init::Random,
            Self::Given(array) => Init::Given(array.as_slice()?),
        })
    }
}

/// The data matrix of a call and its optional sample weights, borrowed from NumPy; and,
/// when the matrix is a view of an MLX array, that array, shared (see `device`).
pub struct Data<'py, T: Scalar + Element> {
    x: PyReadonlyArray2<'py, T>,
    weights: Option<PyReadonlyArray1<'py, T>>,
    mlx: Option<SharedArray>,
    pub rows: usize,
    pub cols: usize,
}

impl<'py, T: Scalar + Element> Data<'py, T> {
    /// `share_mlx`: look for an MLX array behind `x` to share with the kernel.
    pub fn new(x: &Bound<'py, PyAny>, sample_weight: Option<&Bound<'py, PyAny>>, share_mlx: bool) -> PyResult<Self> {
        let view = x;
        let (x, rows, cols) = matrix::<T>(x, "X")?;
        let weights = vector::<T>(sample_weight, "sample_weight")?;
        let is_f32 = std::mem::size_of::<T>() == 4;
        let mlx = match device() {
            Some(device) if is_f32 && share_mlx => device.share(view, x.as_slice()?.as_ptr() as *const f32, rows, cols),
            _ => None,
        };
        Ok(Self { x, weights, mlx, rows, cols })
    }

    /// The MLX array the matrix is a view of, for the kernel to compute on in place.
    pub fn take_mlx(&mut self) -> Option<SharedArray> {
        self.mlx.take()
    }

    pub fn matrix(&self) -> PyResult<MatRef<'_, T>> {
        MatRef::new(self.x.as_slice()?, self.rows, self.cols).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    pub fn weights(&self) -> PyResult<Option<&[T]>> {
        Ok(self.weights.as_ref().map(|w| w.as_slice()).transpose()?)
    }
}
