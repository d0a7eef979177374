//! Assignment by a Python callable, `assign(x, centroids) -> (squared_distances, labels)` on
//! NumPy arrays (how the faiss backend plugs into the shared loop). The callable computes in
//! its own way (faiss: float32 GEMMs), so rows and centroids are handed over re-centred on the
//! centroids' mean (the copy is made anyway), and when it returns the two nearest centroids
//! per row (`n × 2` arrays), rows whose two distances lie within the GEMM's error bound are
//! decided again exactly: labels are the exact nearest centroids, as on the cpu backend.

use numpy::{Element, IntoPyArray, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use rayon::prelude::*;

use super::run::PendingError;
use crate::error::{Error, Result};
use crate::kernel::{centred_f32_error_bound, cpu::CpuKernel, Kernel};
use crate::matrix::{column_means, exact_nearest, MatRef};
use crate::Scalar;

/// Rows per call of the callable: bounds the copies and the callable's outputs (faiss: two
/// distances and two int64 labels per row) to a few megabytes, whatever the data's size.
const ROWS_PER_CALL: usize = 1 << 15;

/// Distances for k-means++ run on the CPU kernel and the sums are the trait's own. An
/// exception from the callable is kept in `pending` and ends the fit.
pub struct CallbackKernel<'a> {
    callback: &'a Py<PyAny>,
    pending: &'a PendingError,
}

impl<'a> CallbackKernel<'a> {
    pub fn new(callback: &'a Py<PyAny>, pending: &'a PendingError) -> Self {
        Self { callback, pending }
    }
}

/// `m` minus `mean` per column, rounded back to `T`, with the squared norms of the result
/// (rows in parallel: this copy is made every iteration).
fn centred<T: Scalar>(m: MatRef<'_, T>, mean: &[f64]) -> (Vec<T>, Vec<f64>) {
    let d = m.cols();
    let mut values = vec![T::zero(); m.as_slice().len()];
    let mut norms = vec![0.0; m.rows()];
    values.par_chunks_mut(d.max(1)).zip(norms.par_iter_mut()).enumerate().for_each(|(i, (out, norm))| {
        for ((o, &v), &c) in out.iter_mut().zip(m.row(i)).zip(mean) {
            *o = T::of_f64(v.as_f64() - c);
            *norm += o.as_f64() * o.as_f64();
        }
    });
    (values, norms)
}

impl<T: Scalar + Element> Kernel<T> for CallbackKernel<'_> {
    fn name(&self) -> &'static str {
        "callback"
    }

    fn assign(
        &self,
        x: MatRef<'_, T>,
        _x_sq_norms: &[T],
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
    ) -> Result<()> {
        let (k, d) = (centroids.rows(), x.cols());
        let mean = column_means(centroids);
        let (cs, c_norms) = centred(centroids, &mean);
        let c_max = c_norms.iter().copied().fold(0.0, f64::max);
        let bound = centred_f32_error_bound(d);
        for start in (0..x.rows()).step_by(ROWS_PER_CALL) {
            let end = (start + ROWS_PER_CALL).min(x.rows());
            let block = x.slice_rows(start, end);
            let (xs, x_norms) = centred(block, &mean);
            let (labels, distances) = (&mut labels[start..end], &mut distances[start..end]);
            let outcome = self.pending.call(|py| {
                let xs = xs.into_pyarray(py).reshape([end - start, d])?;
                let cs = cs.clone().into_pyarray(py).reshape([k, d])?;
                let result = self.callback.call1(py, (xs, cs))?;
                let (dist, lab): (PyReadonlyArrayDyn<'_, T>, PyReadonlyArrayDyn<'_, i64>) = result.extract(py)?;
                let n = end - start;
                let columns = match (dist.shape(), lab.shape()) {
                    ([rows], [label_rows]) if *rows == n && *label_rows == n => 1,
                    ([rows, c], [label_rows, lc]) if *rows == n && *label_rows == n && c == lc && *c >= 1 => *c,
                    _ => return Err(PyValueError::new_err("assign callback returned arrays of the wrong shape")),
                };
                let (dist, lab) = (dist.as_slice()?, lab.as_slice()?);
                for i in 0..n {
                    let label = lab[i * columns];
                    if !(0..k as i64).contains(&label) {
                        return Err(PyValueError::new_err(format!(
                            "assign callback returned label {label} outside 0..{k}"
                        )));
                    }
                    let best = dist[i * columns];
                    labels[i] = label as u32;
                    distances[i] = if best > T::zero() { best } else { T::zero() };
                    let near_tie = columns >= 2
                        && (dist[i * columns + 1].as_f64() - best.as_f64()) <= bound * (x_norms[i] + 2.0 * c_max);
                    if near_tie {
                        let (exact, distance) = exact_nearest(block.row(i), centroids);
                        (labels[i], distances[i]) = (exact, T::of_f64(distance));
                    }
                }
                Ok(())
            });
            outcome.ok_or(Error::Callback)?;
        }
        Ok(())
    }

    fn pairwise(&self, x: MatRef<'_, T>, x_sq_norms: &[T], centroids: MatRef<'_, T>, out: &mut [T]) -> Result<()> {
        CpuKernel.pairwise(x, x_sq_norms, centroids, out)
    }
}
