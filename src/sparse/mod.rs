//! Sparse rows (CSR, as scipy.sparse holds them: int32 or int64 indices, float32 or float64
//! values), used in place and never densified. A row's products with the centroids are one
//! pass over its nonzeros, each adding its value times a column of the transposed centroids
//! (`d × k`, float64): `nnz × k` multiply-adds a row. Distances are
//! `‖x‖² + ‖c‖² − 2x·c` in float64; where the two nearest lie within that form's rounding
//! bound, the row is decided by exact distances, by differences over all features.
//!
//! Lloyd's steps on such rows plug into the one loop (`crate::lloyd::lloyd`) as a
//! [`LloydStep`]; seeding is `seeding.rs`.

mod centres;
mod minibatch;
mod seeding;
mod step;

use std::sync::OnceLock;

use rayon::prelude::*;

use crate::error::{invalid, Result};
use crate::matrix::{exact_sq_distance, MatRef};
use crate::scalar::Scalar;

pub use centres::Centres;
pub use minibatch::SparseRows;
pub use seeding::kmeans_plusplus;
pub use step::{fit, initial_centroids, SparseLloyd};

/// A CSR index type (scipy uses int32 or int64).
pub trait CsrIndex: Copy + Send + Sync {
    fn at(self) -> usize;
    /// The index `i` (which the caller knows fits: it counts values already held).
    fn of(i: usize) -> Self;
}

impl CsrIndex for i32 {
    fn at(self) -> usize {
        self as usize
    }
    fn of(i: usize) -> Self {
        i as i32
    }
}

impl CsrIndex for i64 {
    fn at(self) -> usize {
        self as usize
    }
    fn of(i: usize) -> Self {
        i as i64
    }
}

/// Borrowed CSR rows: row `i` holds `data[indptr[i]..indptr[i + 1]]` at columns `indices[..]`.
#[derive(Clone, Copy)]
pub struct CsrRef<'a, T, I> {
    indptr: &'a [I],
    indices: &'a [I],
    data: &'a [T],
    cols: usize,
}

impl<'a, T: Scalar, I: CsrIndex> CsrRef<'a, T, I> {
    /// Checks the structure once (so that rows can be read without further checks):
    /// `indptr` starts at 0, never decreases and ends at the number of values; every column
    /// index lies in `0..cols`.
    pub fn new(indptr: &'a [I], indices: &'a [I], data: &'a [T], cols: usize) -> Result<Self> {
        if indptr.is_empty() || indptr[0].at() != 0 || indptr[indptr.len() - 1].at() != data.len() {
            return invalid("indptr must start at 0 and end at the number of stored values");
        }
        if indices.len() != data.len() {
            return invalid("indices and data must have the same length");
        }
        // `at` of a negative index wraps to a huge value, which the checks below reject.
        if indptr.windows(2).any(|w| w[1].at() < w[0].at() || w[1].at() > data.len()) {
            return invalid("indptr must not decrease");
        }
        if indices.par_iter().any(|&j| j.at() >= cols) {
            return invalid(format!("column indices must lie in 0..{cols}"));
        }
        Ok(Self { indptr, indices, data, cols })
    }

    pub fn rows(&self) -> usize {
        self.indptr.len() - 1
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i`'s column indices and values.
    pub fn row(&self, i: usize) -> (&'a [I], &'a [T]) {
        let (start, end) = (self.indptr[i].at(), self.indptr[i + 1].at());
        (&self.indices[start..end], &self.data[start..end])
    }

    /// Squared norms of the rows, in float64.
    pub fn row_sq_norms(&self) -> Vec<f64> {
        (0..self.rows()).into_par_iter().map(|i| self.row(i).1.iter().map(|v| v.as_f64().powi(2)).sum()).collect()
    }

    /// Row `i` as a dense vector.
    pub fn dense_row(&self, i: usize) -> Vec<T> {
        let mut out = vec![T::zero(); self.cols];
        let (indices, values) = self.row(i);
        for (&j, &v) in indices.iter().zip(values) {
            out[j.at()] = out[j.at()] + v;
        }
        out
    }

    /// scikit-learn's tolerance scale: the mean over features of the (unweighted) variance.
    pub fn mean_feature_variance(&self) -> f64 {
        let (n, d) = (self.rows() as f64, self.cols);
        let (mut sums, mut squares) = (vec![0.0f64; d], vec![0.0f64; d]);
        for (&j, &v) in self.indices.iter().zip(self.data) {
            sums[j.at()] += v.as_f64();
            squares[j.at()] += v.as_f64().powi(2);
        }
        sums.iter().zip(&squares).map(|(s, q)| (q / n - (s / n).powi(2)).max(0.0)).sum::<f64>() / d as f64
    }
}

/// Each row's nearest centroid (lowest index on ties) and squared distance, into `labels`
/// and `distances`.
pub fn assign<T: Scalar, I: CsrIndex>(
    x: CsrRef<'_, T, I>,
    x_sq_norms: &[f64],
    centroids: MatRef<'_, T>,
    labels: &mut [u32],
    distances: &mut [T],
) {
    assign_to(x, x_sq_norms, &Centres::new(centroids), labels, distances);
}

/// [`assign`] into new vectors: each row's label and squared distance.
pub fn nearest<T: Scalar, I: CsrIndex>(
    x: CsrRef<'_, T, I>,
    x_sq_norms: &[f64],
    centroids: MatRef<'_, T>,
) -> (Vec<u32>, Vec<T>) {
    let (mut labels, mut distances) = (vec![0u32; x.rows()], vec![T::zero(); x.rows()]);
    assign(x, x_sq_norms, centroids, &mut labels, &mut distances);
    (labels, distances)
}

/// [`assign`] to centroids already in the products' layout.
pub fn assign_to<T: Scalar, I: CsrIndex>(
    x: CsrRef<'_, T, I>,
    x_sq_norms: &[f64],
    centres: &Centres,
    labels: &mut [u32],
    distances: &mut [T],
) {
    let k = centres.k();
    let c_max = centres.sq_norms().iter().copied().fold(0.0, f64::max);
    // The centroids as rows, made once and only when some row is a near tie (a centroid
    // read out of the transposed layout feature by feature would cost a cache line each).
    let rows: OnceLock<Vec<f64>> = OnceLock::new();
    labels.par_chunks_mut(256).zip(distances.par_chunks_mut(256)).enumerate().for_each(
        |(chunk, (labels, distances))| {
            let mut row_distances = vec![0.0; k];
            for (r, (label, distance)) in labels.iter_mut().zip(distances.iter_mut()).enumerate() {
                let i = chunk * 256 + r;
                let (indices, values) = x.row(i);
                centres.expanded(indices, values, x_sq_norms[i], &mut row_distances);
                let (mut best, mut second) = (0usize, f64::INFINITY);
                for j in 1..k {
                    if row_distances[j] < row_distances[best] {
                        second = row_distances[best];
                        best = j;
                    } else if row_distances[j] < second {
                        second = row_distances[j];
                    }
                }
                // The expanded form errs by a few units of (nnz + 4)·2^-53 of ‖x‖² + ‖c‖² + 2‖x‖‖c‖.
                let scale = x_sq_norms[i] + c_max + 2.0 * (x_sq_norms[i] * c_max).sqrt();
                let band = 4.0 * (indices.len() as f64 + 8.0) * f64::EPSILON * scale;
                let mut value = row_distances[best];
                if second - value <= band {
                    let limit = value + band;
                    let near: Vec<usize> = (0..k).filter(|&j| row_distances[j] <= limit).collect();
                    let dense: Vec<f64> = x.dense_row(i).iter().map(|v| v.as_f64()).collect();
                    let (rows, d) = (rows.get_or_init(|| centres.to_rows()), dense.len());
                    let exact: Vec<f64> =
                        near.iter().map(|&j| exact_sq_distance(&dense, &rows[j * d..(j + 1) * d])).collect();
                    let pick = (0..near.len()).fold(0, |b, q| if exact[q] < exact[b] { q } else { b });
                    best = near[pick];
                    value = exact[pick];
                }
                *label = best as u32;
                *distance = T::of_f64(value.max(0.0));
            }
        },
    );
}

/// Squared distances from every row to every centroid (`n × k`, row-major), as `transform`
/// needs them.
pub fn sq_distances<T: Scalar, I: CsrIndex>(x: CsrRef<'_, T, I>, centroids: MatRef<'_, T>) -> Vec<T> {
    let centres = Centres::new(centroids);
    let k = centroids.rows();
    let norms = x.row_sq_norms();
    let mut out = vec![T::zero(); x.rows() * k];
    out.par_chunks_mut(k.max(1)).enumerate().for_each(|(i, out)| {
        let mut row = vec![0.0; k];
        let (indices, values) = x.row(i);
        centres.expanded(indices, values, norms[i], &mut row);
        out.iter_mut().zip(&row).for_each(|(o, &v)| *o = T::of_f64(v.max(0.0)));
    });
    out
}

#[cfg(test)]
mod tests;
