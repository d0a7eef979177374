//! Centroids as sparse rows' products take them: transposed (`d × k`, float64, so that a
//! row's nonzero in feature `p` meets all centroids in one contiguous run) with their squared
//! norms. Built once for a set of centroids, or kept as the working state of mini-batch
//! steps, which move them in this layout.

use rayon::prelude::*;

use super::CsrIndex;
use crate::matrix::MatRef;
use crate::scalar::Scalar;

/// Features per task when the layout is transposed or swept: a block of rows of the
/// transposed matrix that stays in cache while every centroid is visited.
const BLOCK: usize = 64;

pub struct Centres {
    transposed: Vec<f64>,
    sq_norms: Vec<f64>,
    k: usize,
}

impl Centres {
    pub fn new<T: Scalar>(centroids: MatRef<'_, T>) -> Self {
        let (k, d) = (centroids.rows(), centroids.cols());
        let mut transposed = vec![0.0; d * k];
        if k > 0 {
            transposed.par_chunks_mut(BLOCK * k).enumerate().for_each(|(block, out)| {
                let first = block * BLOCK;
                for j in 0..k {
                    for (q, &v) in centroids.row(j)[first..first + out.len() / k].iter().enumerate() {
                        out[q * k + j] = v.as_f64();
                    }
                }
            });
        }
        let mut centres = Self { transposed, sq_norms: vec![0.0; k], k };
        centres.refresh_norms();
        centres
    }

    pub fn k(&self) -> usize {
        self.k
    }

    fn d(&self) -> usize {
        self.transposed.len().checked_div(self.k).unwrap_or(0)
    }

    pub fn sq_norms(&self) -> &[f64] {
        &self.sq_norms
    }

    /// The centroids as rows (`k × d`, row-major) in `T`.
    pub fn to_rows<T: Scalar>(&self) -> Vec<T> {
        let (k, d) = (self.k, self.d());
        let mut rows = vec![T::zero(); k * d];
        rows.par_chunks_mut(d.max(1)).enumerate().for_each(|(j, row)| {
            for (p, value) in row.iter_mut().enumerate() {
                *value = T::of_f64(self.transposed[p * k + j]);
            }
        });
        rows
    }

    /// Recomputes the squared norms after the centroids moved.
    pub fn refresh_norms(&mut self) {
        let k = self.k;
        self.sq_norms = self
            .transposed
            .par_chunks(BLOCK * k.max(1))
            .fold(
                || vec![0.0f64; k],
                |mut sums, block| {
                    for features in block.chunks_exact(k) {
                        sums.iter_mut().zip(features).for_each(|(s, &c)| *s += c * c);
                    }
                    sums
                },
            )
            .reduce(|| vec![0.0f64; k], |a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect());
    }

    /// Multiplies centroid `j` by `factors[j]`, all centroids in one sweep.
    pub fn scale(&mut self, factors: &[f64]) {
        self.transposed
            .par_chunks_mut(self.k.max(1))
            .for_each(|features| features.iter_mut().zip(factors).for_each(|(c, &f)| *c *= f));
    }

    /// Adds `weight ×` a sparse row into centroid `j`.
    pub fn add<T: Scalar, I: CsrIndex>(&mut self, j: usize, indices: &[I], values: &[T], weight: f64) {
        for (&p, &v) in indices.iter().zip(values) {
            self.transposed[p.at() * self.k + j] += v.as_f64() * weight;
        }
    }

    /// Replaces centroid `j` by `row`.
    pub fn set<T: Scalar>(&mut self, j: usize, row: &[T]) {
        for (p, &v) in row.iter().enumerate() {
            self.transposed[p * self.k + j] = v.as_f64();
        }
    }

    /// Sum over centroids of the squared distance each moved since `before` (its layout).
    pub fn squared_shift(&self, before: &[f64]) -> f64 {
        self.transposed.par_iter().zip(before).map(|(a, b)| (a - b) * (a - b)).sum()
    }

    pub fn transposed(&self) -> &[f64] {
        &self.transposed
    }

    /// `‖x‖² + ‖c‖² − 2x·c` for one row against every centroid, into `out` (`k`).
    pub(super) fn expanded<T: Scalar, I: CsrIndex>(
        &self,
        indices: &[I],
        values: &[T],
        x_sq_norm: f64,
        out: &mut [f64],
    ) {
        out.fill(0.0);
        for (&j, &v) in indices.iter().zip(values) {
            let column = &self.transposed[j.at() * self.k..(j.at() + 1) * self.k];
            let v = v.as_f64();
            out.iter_mut().zip(column).for_each(|(o, &c)| *o += v * c);
        }
        out.iter_mut().zip(&self.sq_norms).for_each(|(o, &c)| *o = x_sq_norm + c - 2.0 * *o);
    }
}
