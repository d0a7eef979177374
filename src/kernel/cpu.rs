//! The pure-Rust CPU kernel: rayon over fixed row blocks, a GEMM per block against
//! panels of centroids, and the argmin fused in, so no `n × k` matrix is ever allocated.

use gemm::Parallelism;
use rayon::prelude::*;

use super::Kernel;
use crate::matrix::{row_sq_norms, MatRef};
use crate::scalar::Scalar;

/// Rows per block. Fixed (never derived from the thread count) so results are reproducible.
const ROW_BLOCK: usize = 128;
/// Centroids per GEMM panel: bounds the per-thread buffer to `ROW_BLOCK × COL_PANEL`.
const COL_PANEL: usize = 1024;

#[derive(Debug, Default, Clone, Copy)]
pub struct CpuKernel;

/// `out (m × n, row stride ldo) = a (m × d) · bᵀ` where `b` is `n × d`, both row-major.
fn dot_rows<T: Scalar>(a: MatRef<'_, T>, b: MatRef<'_, T>, out: &mut [T], ldo: usize) {
    let (m, n, d) = (a.rows(), b.rows(), a.cols());
    debug_assert!(out.len() >= (m - 1) * ldo + n);
    // SAFETY: the pointers and strides describe in-bounds row-major buffers checked above;
    // `gemm` reads `a`, `b` and writes only the m×n window of `out`.
    unsafe {
        gemm::gemm(
            m,
            n,
            d,
            out.as_mut_ptr(),
            1,
            ldo as isize,
            false,
            a.as_slice().as_ptr(),
            1,
            d as isize,
            b.as_slice().as_ptr(),
            d as isize,
            1,
            T::zero(),
            T::one(),
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

impl<T: Scalar> Kernel<T> for CpuKernel {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn assign(
        &self,
        x: MatRef<'_, T>,
        x_sq_norms: &[T],
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
    ) {
        let k = centroids.rows();
        let c_norms = row_sq_norms(centroids);
        let panel = COL_PANEL.min(k);
        let two = T::one() + T::one();
        labels
            .par_chunks_mut(ROW_BLOCK)
            .zip(distances.par_chunks_mut(ROW_BLOCK))
            .enumerate()
            .for_each_init(
                || vec![T::zero(); ROW_BLOCK * panel],
                |dots, (b, (block_labels, block_distances))| {
                    let start = b * ROW_BLOCK;
                    let m = block_labels.len();
                    let block = x.slice_rows(start, start + m);
                    block_distances.fill(T::infinity());
                    block_labels.fill(0);
                    for j0 in (0..k).step_by(panel) {
                        let kc = panel.min(k - j0);
                        dot_rows(block, centroids.slice_rows(j0, j0 + kc), dots, kc);
                        for r in 0..m {
                            let row = &dots[r * kc..(r + 1) * kc];
                            let mut best = block_distances[r];
                            let mut best_j = block_labels[r];
                            for (j, (&dot, &cn)) in row.iter().zip(&c_norms[j0..j0 + kc]).enumerate() {
                                let partial = cn - two * dot;
                                if partial < best {
                                    best = partial;
                                    best_j = (j0 + j) as u32;
                                }
                            }
                            block_distances[r] = best;
                            block_labels[r] = best_j;
                        }
                    }
                    for r in 0..m {
                        let d = block_distances[r] + x_sq_norms[start + r];
                        block_distances[r] = if d > T::zero() { d } else { T::zero() };
                    }
                },
            );
    }

    fn pairwise(&self, x: MatRef<'_, T>, x_sq_norms: &[T], centroids: MatRef<'_, T>, out: &mut [T]) {
        let k = centroids.rows();
        let c_norms = row_sq_norms(centroids);
        let two = T::one() + T::one();
        out.par_chunks_mut(ROW_BLOCK * k).enumerate().for_each(|(b, block_out)| {
            let start = b * ROW_BLOCK;
            let m = block_out.len() / k;
            dot_rows(x.slice_rows(start, start + m), centroids, block_out, k);
            for r in 0..m {
                let xn = x_sq_norms[start + r];
                for (v, &cn) in block_out[r * k..(r + 1) * k].iter_mut().zip(&c_norms) {
                    let d = xn + cn - two * *v;
                    *v = if d > T::zero() { d } else { T::zero() };
                }
            }
        });
    }
}
