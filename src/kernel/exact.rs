//! All pairwise squared distances, accurate on data far from the origin: the expanded form
//! `‖x‖² + ‖c‖² − 2x·c` in the data's own float type cancels catastrophically when the
//! distances are small next to the norms (an offset of 1e5 with a spread of 1 leaves no
//! correct digit in float32). Here rows and centroids are re-centred on the centroids' mean
//! and expanded in f64 (a GEMM), and every entry whose error bound is not small next to its
//! value is computed again by differences.

use rayon::prelude::*;

use super::cpu::dot_rows;
use crate::error::Result;
use crate::matrix::{column_means, exact_sq_distance, MatRef};
use crate::monitor::{for_each_chunk, rows_per_check, KeepGoing};
use crate::scalar::Scalar;

/// Rows per parallel block (fixed, so results do not depend on the thread count).
const ROW_BLOCK: usize = 64;

/// Relative accuracy kept for `T`: a quarter of its unit roundoff, so that rounding the f64
/// value to `T` is within one rounding of the true distance; float64 results keep 2⁻⁴⁰.
fn relative_tolerance<T: Scalar>() -> f64 {
    (T::epsilon().as_f64() / 8.0).max(f64::EPSILON * 4096.0)
}

/// Squared distances from every row of `x` to every row of `centroids`, row-major into `out`
/// (`x.rows() × centroids.rows()`), each within `T`'s rounding of the true value (float64:
/// relative 2⁻⁴⁰) whatever the data's offset. `keep_going` is asked between chunks of rows.
pub fn sq_distances<T: Scalar>(
    x: MatRef<'_, T>,
    centroids: MatRef<'_, T>,
    out: &mut [T],
    keep_going: KeepGoing<'_>,
) -> Result<()> {
    let (k, d) = (centroids.rows(), centroids.cols());
    if k == 0 || x.rows() == 0 {
        return Ok(());
    }
    let mean = column_means(centroids);
    let centred_c: Vec<f64> = centroids.as_slice().chunks_exact(d).flat_map(|c| centre(c, &mean)).collect();
    let c_norms: Vec<f64> = centred_c.chunks_exact(d).map(sq_norm).collect();
    let centred_c = MatRef::new(&centred_c, k, d)?;
    // Rounding errors of the centring (one per coordinate) and of the expansion (a dot
    // product of d terms, then two additions), relative to ‖x'‖² + ‖c'‖².
    let bound = (2 * d + 16) as f64 * f64::EPSILON / 2.0;
    let tolerance = relative_tolerance::<T>();
    let step = rows_per_check(k, d);
    for_each_chunk(x.rows(), step, keep_going, |start, end| {
        out[start * k..end * k].par_chunks_mut(ROW_BLOCK * k).enumerate().try_for_each(|(b, block_out)| {
            let first = start + b * ROW_BLOCK;
            let rows = x.slice_rows(first, first + block_out.len() / k);
            let centred_x: Vec<f64> = rows.as_slice().chunks_exact(d).flat_map(|r| centre(r, &mean)).collect();
            let x_norms: Vec<f64> = centred_x.chunks_exact(d).map(sq_norm).collect();
            let mut dots = vec![0.0f64; block_out.len()];
            dot_rows(MatRef::new(&centred_x, rows.rows(), d)?, centred_c, &mut dots, k);
            for (r, (row_out, row_dots)) in block_out.chunks_exact_mut(k).zip(dots.chunks_exact(k)).enumerate() {
                for (j, (v, &dot)) in row_out.iter_mut().zip(row_dots).enumerate() {
                    let norms = x_norms[r] + c_norms[j];
                    let expanded = norms - 2.0 * dot;
                    let value = if bound * norms <= tolerance * expanded {
                        expanded
                    } else {
                        exact_sq_distance(rows.row(r), centroids.row(j))
                    };
                    *v = T::of_f64(value);
                }
            }
            Ok(())
        })
    })
}

fn centre<'a, T: Scalar>(row: &'a [T], mean: &'a [f64]) -> impl Iterator<Item = f64> + 'a {
    row.iter().zip(mean).map(|(&v, &m)| v.as_f64() - m)
}

fn sq_norm(row: &[f64]) -> f64 {
    row.iter().map(|v| v * v).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Far from the origin, with clusters much tighter than the offset, every entry is
    /// within float32's rounding of the true distance (computed here by differences in f64).
    #[test]
    fn accurate_on_offset_float32_data() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for offset in [0.0f64, 40.0, 1e3, 1e5] {
            let (n, k, d) = (300, 7, 5);
            let x: Vec<f32> = (0..n * d).map(|_| (offset + rng.random::<f64>() * 0.01) as f32).collect();
            let c: Vec<f32> = (0..k * d).map(|_| (offset + rng.random::<f64>() * 0.01) as f32).collect();
            let (xm, cm) = (MatRef::new(&x, n, d).unwrap(), MatRef::new(&c, k, d).unwrap());
            let mut out = vec![0.0f32; n * k];
            sq_distances(xm, cm, &mut out, &mut || true).unwrap();
            for i in 0..n {
                for j in 0..k {
                    let truth: f64 = x[i * d..(i + 1) * d]
                        .iter()
                        .zip(&c[j * d..(j + 1) * d])
                        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                        .sum();
                    let got = out[i * k + j] as f64;
                    assert!((got - truth).abs() <= truth * f32::EPSILON as f64, "offset {offset}: {got} vs {truth}");
                }
            }
        }
    }
}
