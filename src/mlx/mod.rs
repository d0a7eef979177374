//! The MLX kernel (mlx-rs): distances as one matmul plus norms, argmin, and per-cluster sums
//! as a one-hot matmul, on MLX's default device (Metal or CUDA GPU, else MLX's CPU). A Lloyd step
//! is one MLX graph and one evaluation: labels never leave the device before the sums are made.
//! MLX computes in float32. The data matrix given at construction is held in MLX memory for
//! the whole fit: shared with the caller's MLX array when there is one, else copied once. Row
//! norms and final distances of that matrix are computed on the device too, so the host never
//! reads (in CUDA managed memory: migrates) it. Other matrices (mini-batches, candidates) are
//! copied per call.

use std::sync::{Mutex, MutexGuard};

use mlx_rs::ops::indexing::{argmin_axis, IndexOp};
use mlx_rs::{Array, Device, DeviceType, Dtype};

mod cuda;
mod engine;
mod lloyd;

pub use engine::MlxEngine;

use crate::error::{Error, Result};
use crate::kernel::{ClusterSums, Kernel};
use crate::matrix::MatRef;

impl From<mlx_rs::error::Exception> for Error {
    fn from(e: mlx_rs::error::Exception) -> Self {
        Error::Backend(format!("MLX: {e}"))
    }
}

/// Rows per MLX call, bounded so that a `rows × k` block stays near 2^27 floats (512 MB):
/// one block for the common shapes (100k rows, k ≤ 1024), so the resident data is used whole.
fn rows_per_block(k: usize) -> usize {
    ((1usize << 27) / k.max(1)).clamp(1024, 1 << 21)
}

fn eval_all(arrays: &[&Array]) -> Result<()> {
    Ok(mlx_rs::transforms::eval(arrays.iter().copied())?)
}

/// How the MLX kernel computes, decided once by the caller.
#[derive(Debug, Clone, Copy, Default)]
pub struct MlxConfig {
    /// Float32 GEMMs through the high/low split (see [`Precision`]): `None` where TF32 tensor
    /// cores would otherwise round them (a GPU on Linux, which MLX runs through CUDA).
    pub split: Option<bool>,
    /// Lloyd steps by the custom CUDA kernels (`mlx/cuda.rs`) where MLX runs on CUDA;
    /// `false` keeps to MLX's own ops.
    pub cuda_kernels: bool,
}

/// Whether MLX runs on a GPU here (Metal or CUDA), and a description of its device.
pub fn device_description() -> std::result::Result<(bool, String), String> {
    let device = Device::try_default().map_err(|e| e.to_string())?;
    let kind = device.get_type().map_err(|e| e.to_string())?;
    // A tiny computation proves the library really runs, not only that it loaded.
    let probe = Array::from_slice(&[1.0f32, 2.0], &[2]).sum(None).map_err(|e| e.to_string())?;
    probe.eval().map_err(|e| e.to_string())?;
    if probe.as_slice::<f32>() != [3.0] {
        return Err("MLX returned a wrong result for 1 + 2".into());
    }
    Ok((matches!(kind, DeviceType::Gpu), format!("{device:?}")))
}

/// The fit's data matrix in MLX memory: as the GEMMs take it (`lifted`) and as it is.
struct Resident {
    lifted: Array,
    plain: Array,
}

pub struct MlxKernel<'a> {
    /// The fit's data matrix and its MLX arrays. The borrow keeps the address from being
    /// reused for other data while this kernel lives, so comparing pointers is sound.
    data: Option<(&'a [f32], usize, Mutex<Resident>)>,
    /// Whether MLX computes on a GPU (then a pass is split far less often).
    on_gpu: bool,
    /// Whether float32 GEMMs go through the high/low split (see [`Precision`]). With the
    /// custom kernels, Lloyd steps would be exact without it too (near ties are decided
    /// again), but at TF32's error bound so many rows need that on an H100 (C: 2.42 ms per
    /// iteration against 2.11 ms with the split) that the split pays for itself.
    split: bool,
    /// Whether Lloyd steps use the custom CUDA kernels (`mlx/cuda.rs`): on a GPU on Linux,
    /// which MLX runs through CUDA.
    cuda_kernels: bool,
}

/// MLX's CUDA backend runs float32 matrix products on TF32 tensor cores (measured on an H100:
/// a relative error of 8e-5 where float32 gives ~1e-6), which flips near-tied labels and
/// blurs centroid sums. The split keeps float32 accuracy: each value `a = hi + lo` with `hi`
/// exact in bfloat16 (so products of `hi` parts are exact in TF32) and `lo` the rest;
/// rows become `[hi, hi, lo]` and centroids `[hi, lo, hi]`, so that one GEMM of three times
/// the width gives `x·c` up to the `lo·lo` term (~2^-18 relative), and a one-hot GEMM on
/// `[hi, hi, lo]` gives sums whose first and last thirds add up to the float32 sums.
struct Precision;

impl Precision {
    fn halves(a: &Array) -> Result<(Array, Array)> {
        let hi = a.as_dtype(Dtype::Bfloat16)?.as_dtype(Dtype::Float32)?;
        let lo = a.subtract(&hi)?;
        Ok((hi, lo))
    }

    fn rows(a: &Array) -> Result<Array> {
        let (hi, lo) = Self::halves(a)?;
        Ok(mlx_rs::ops::concatenate(&[&hi, &hi, &lo], 1)?)
    }

    fn centroids(c: &Array) -> Result<Array> {
        let (hi, lo) = Self::halves(c)?;
        Ok(mlx_rs::ops::concatenate(&[&hi, &lo, &hi], 1)?)
    }

    /// `k × 3d` sums of `[hi, hi, lo]` rows back to `k × d`: hi sums plus lo sums.
    fn fold(sums: &Array, d: i32) -> Result<Array> {
        Ok(sums.index((.., 0..d)).add(sums.index((.., 2 * d..3 * d)))?)
    }
}

// SAFETY: the MLX array is only touched under the mutex; MLX arrays are reference-counted
// handles that MLX allows to be used from any thread.
unsafe impl Sync for MlxKernel<'_> {}

impl<'a> MlxKernel<'a> {
    /// A kernel that keeps `data` (`rows × cols`) resident in MLX memory: `shared`, an MLX
    /// array over the same values, when the caller has one, else a copy.
    pub fn new(data: Option<MatRef<'a, f32>>, shared: Option<Array>, config: MlxConfig) -> Result<Self> {
        let on_gpu = matches!(Device::try_default().and_then(|d| d.get_type()), Ok(DeviceType::Gpu));
        // TF32 arithmetic is a CUDA matter (Metal and MLX's CPU compute float32 products in
        // float32); the configuration may force the split on (to test it) or off (to measure).
        let split = config.split.unwrap_or(on_gpu && cfg!(target_os = "linux"));
        let cuda_kernels = cfg!(target_os = "linux") && on_gpu && config.cuda_kernels;
        let mut kernel = Self { data: None, on_gpu, split, cuda_kernels };
        if let Some(m) = data {
            let plain = shared.unwrap_or_else(|| to_mlx(m));
            let resident = Resident { lifted: kernel.lift_rows(plain.clone())?, plain };
            kernel.data = Some((m.as_slice(), m.cols(), Mutex::new(resident)));
        }
        Ok(kernel)
    }

    /// Rows as the GEMMs take them: `[hi, hi, lo]` when splitting, else as they are.
    fn lift_rows(&self, rows: Array) -> Result<Array> {
        if self.split {
            Precision::rows(&rows)
        } else {
            Ok(rows)
        }
    }

    /// A bound on the GEMM's error in a partial distance `‖c‖² − 2x·c`, relative to
    /// `‖x‖² + 2 max ‖c‖²`, for `d` features. TF32 rounds each input to 10 bits: a product
    /// errs by at most 2^-10 relative (2^-9 if inputs are truncated), and
    /// `Σ|x_i c_i| ≤ (‖x‖² + ‖c‖²) / 2`. The split leaves the `lo·lo` term and the TF32
    /// rounding of the low parts, under 2^-15. Float32 accumulation adds at most `d·2^-24`
    /// relative to the same sum. (Measured on an H100: 1.3e-4 without the split, 1.5e-5
    /// with it, relative to the largest distance.)
    fn gemm_error_bound(split: bool, d: usize) -> f64 {
        let products = if split { 2f64.powi(-15) } else { 2f64.powi(-8) };
        products + 2.0 * d as f64 * 2f64.powi(-24)
    }

    /// Centroids as the GEMMs take them, and their squared norms (`1 × k`, in float32).
    fn lift_centroids(&self, centroids: MatRef<'_, f32>) -> Result<(Array, Array)> {
        lift_centroid_array(to_mlx(centroids), centroids.rows(), self.split)
    }

    fn resident(&self) -> Option<(&'a [f32], usize, MutexGuard<'_, Resident>)> {
        let (data, cols, resident) = self.data.as_ref()?;
        Some((data, *cols, resident.lock().unwrap_or_else(|poisoned| poisoned.into_inner())))
    }

    /// Where `x` lies in the resident data: its first row, if it is a run of its rows.
    fn resident_offset(&self, x: MatRef<'_, f32>) -> Option<usize> {
        let (data, cols, _) = self.data.as_ref()?;
        let (base, len) = (data.as_ptr() as usize, data.len());
        let at = x.as_slice().as_ptr() as usize;
        let size = std::mem::size_of::<f32>() * cols;
        // Both point into the one borrowed data slice, so comparing addresses is sound.
        let inside = *cols > 0 && x.cols() == *cols && at >= base && at + x.as_slice().len() * 4 <= base + len * 4;
        (inside && (at - base) % size == 0).then(|| (at - base) / size)
    }

    /// The resident data as it is and as the GEMMs take it, when `x` is all of it.
    fn whole(&self, x: MatRef<'_, f32>) -> Option<(Array, Array)> {
        let offset = self.resident_offset(x);
        let (data, cols, resident) = self.resident()?;
        (offset == Some(0) && x.rows() == data.len() / cols).then(|| (resident.plain.clone(), resident.lifted.clone()))
    }

    /// Rows `start..end` of `x` as an MLX array: a slice of the resident data when `x` is
    /// the data or a run of its rows, else a copy of those rows.
    fn rows(&self, x: MatRef<'_, f32>, start: usize, end: usize) -> Result<Array> {
        if let (Some(first), Some((data, cols, resident))) = (self.resident_offset(x), self.resident()) {
            if first + start == 0 && first + end == data.len() / cols {
                return Ok(resident.lifted.clone());
            }
            return Ok(resident.lifted.index(((first + start) as i32..(first + end) as i32, ..)));
        }
        let block = x.slice_rows(start, end);
        self.lift_rows(Array::from_slice(block.as_slice(), &[(end - start) as i32, x.cols() as i32]))
    }
}

/// Centroids as the GEMMs take them (`[hi, lo, hi]` when splitting), and their squared
/// norms (`1 × k`, in float32).
fn lift_centroid_array(c: Array, k: usize, split: bool) -> Result<(Array, Array)> {
    let norms = row_norms(&c, k)?;
    Ok((if split { Precision::centroids(&c)? } else { c }, norms))
}

/// Per-cluster sums back to `k × d` (undoing the split's widening).
fn fold_sums(sums: Array, d: usize, split: bool) -> Result<Array> {
    if split {
        Precision::fold(&sums, d as i32)
    } else {
        Ok(sums)
    }
}

fn to_mlx(m: MatRef<'_, f32>) -> Array {
    Array::from_slice(m.as_slice(), &[m.rows() as i32, m.cols() as i32])
}

/// Squared norms of the centroids as a `1 × k` row.
fn row_norms(c: &Array, k: usize) -> Result<Array> {
    Ok(c.square()?.sum_axis(1, true)?.reshape(&[1, k as i32])?)
}

/// `‖c‖² − 2 x·c` for a block of rows against all centroids (`rows × k`), as one GEMM whose
/// epilogue adds the norms.
fn partial_distances(block: &Array, centroids: &Array, c_norms: &Array) -> Result<Array> {
    Ok(mlx_rs::ops::addmm(c_norms, block, centroids.t(), -2.0, 1.0)?)
}

/// Index (`rows × 1`, uint32) and value of each row's smallest partial distance.
fn nearest(partial: &Array) -> Result<(Array, Array)> {
    let best = argmin_axis(partial, 1, true)?;
    let best_value = partial.take_along_axis(&best, 1)?;
    Ok((best, best_value))
}

/// Writes evaluated `nearest` results for rows `start..` into the host labels and squared
/// distances (the partial distance plus the row's squared norm, clamped at zero).
fn store_nearest(best: &Array, best_value: &Array, x_sq_norms: &[f32], labels: &mut [u32], distances: &mut [f32]) {
    labels.copy_from_slice(best.as_slice::<u32>());
    for ((d, &v), &xn) in distances.iter_mut().zip(best_value.as_slice::<f32>()).zip(x_sq_norms) {
        *d = (v + xn).max(0.0);
    }
}

/// Per-cluster weighted sums (`k × d`) and weights (`k`) of `block`'s rows by `labels`, as a
/// one-hot matmul: on a GPU it runs as one GEMM. MLX's scatter-add was slower there (on an
/// H100, a whole 100k×768, k=500 step took ~10 ms with it, ~2 ms with the one-hot matmul).
fn cluster_sums(block: &Array, labels: &Array, weights: Option<&Array>, k: usize) -> Result<(Array, Array)> {
    let m = block.shape()[0];
    let clusters = Array::from_iter(0..k as u32, &[k as i32, 1]);
    // one_hot[j, i] = weight of row i if it belongs to cluster j.
    let mut one_hot = clusters.eq(&labels.reshape(&[1, m])?)?.as_type::<f32>()?;
    if let Some(w) = weights {
        one_hot = one_hot.multiply(&w.reshape(&[1, m])?)?;
    }
    Ok((one_hot.matmul(block)?, one_hot.sum_axis(1, false)?))
}

/// Adds a block's device sums into the f64 host totals.
fn add_block_sums(out: &mut ClusterSums, block_sums: &Array, block_weights: &Array) {
    for (s, &v) in out.sums.iter_mut().zip(block_sums.as_slice::<f32>()) {
        *s += v as f64;
    }
    for (s, &v) in out.weights.iter_mut().zip(block_weights.as_slice::<f32>()) {
        *s += v as f64;
    }
}

impl Kernel<f32> for MlxKernel<'_> {
    fn name(&self) -> &'static str {
        "mlx"
    }

    fn rows_per_check(&self, k: usize, d: usize) -> usize {
        // A GPU runs ~100× the CPU's flops; each split costs a device round trip. MLX's CPU
        // build multiplies with reference BLAS, ~10× slower than the cpu backend's GEMM.
        let rows = crate::monitor::rows_per_check(k, d);
        if self.on_gpu {
            rows.saturating_mul(128)
        } else {
            (rows / 16).max(256)
        }
    }

    fn row_sq_norms(&self, x: MatRef<'_, f32>) -> Result<Vec<f32>> {
        let Some((data, _)) = self.whole(x) else { return Ok(crate::matrix::row_sq_norms(x)) };
        let norms = data.square()?.sum_axis(1, false)?;
        eval_all(&[&norms])?;
        Ok(norms.as_slice::<f32>().to_vec())
    }

    fn mean_feature_variance(&self, x: MatRef<'_, f32>) -> Result<f64> {
        let Some((data, _)) = self.whole(x) else { return Ok(crate::matrix::mean_feature_variance(x)) };
        let mean = data.var_axis(0, false, 0)?.mean(false)?;
        eval_all(&[&mean])?;
        Ok(mean.item_exact::<f32>() as f64)
    }

    fn labelled_sq_distances(
        &self,
        x: MatRef<'_, f32>,
        weights: Option<&[f32]>,
        centroids: MatRef<'_, f32>,
        labels: &[u32],
    ) -> Result<(Vec<f32>, f64)> {
        let Some((data, _)) = self.whole(x) else {
            return Ok(crate::kernel::labelled_sq_distances(x, weights, centroids, labels));
        };
        // By differences, as on the host: exact up to float32 rounding of each term.
        let own = to_mlx(centroids).take_axis(Array::from_slice(labels, &[labels.len() as i32]), 0)?;
        let distances = data.subtract(&own)?.square()?.sum_axis(1, false)?;
        eval_all(&[&distances])?;
        let distances = distances.as_slice::<f32>().to_vec();
        let inertia = crate::matrix::weighted_sum(&distances, weights);
        Ok((distances, inertia))
    }

    fn assign(
        &self,
        x: MatRef<'_, f32>,
        x_sq_norms: &[f32],
        centroids: MatRef<'_, f32>,
        labels: &mut [u32],
        distances: &mut [f32],
    ) -> Result<()> {
        let n = x.rows();
        let (c, c_norms) = self.lift_centroids(centroids)?;
        let step = rows_per_block(centroids.rows());
        for start in (0..n).step_by(step) {
            let end = (start + step).min(n);
            let (best, best_value) = nearest(&partial_distances(&self.rows(x, start, end)?, &c, &c_norms)?)?;
            eval_all(&[&best, &best_value])?;
            store_nearest(
                &best,
                &best_value,
                &x_sq_norms[start..end],
                &mut labels[start..end],
                &mut distances[start..end],
            );
        }
        Ok(())
    }

    fn pairwise(
        &self,
        x: MatRef<'_, f32>,
        x_sq_norms: &[f32],
        centroids: MatRef<'_, f32>,
        out: &mut [f32],
    ) -> Result<()> {
        let (n, k) = (x.rows(), centroids.rows());
        let (c, c_norms) = self.lift_centroids(centroids)?;
        let step = rows_per_block(k);
        for start in (0..n).step_by(step) {
            let end = (start + step).min(n);
            let partial = partial_distances(&self.rows(x, start, end)?, &c, &c_norms)?;
            eval_all(&[&partial])?;
            let values = partial.as_slice::<f32>();
            for (r, row) in values.chunks_exact(k).enumerate() {
                let xn = x_sq_norms[start + r];
                for (o, &v) in out[(start + r) * k..(start + r + 1) * k].iter_mut().zip(row) {
                    *o = (v + xn).max(0.0);
                }
            }
        }
        Ok(())
    }

    fn assign_accumulate(
        &self,
        points: crate::matrix::Points<'_, f32>,
        centroids: MatRef<'_, f32>,
        labels: &mut [u32],
        distances: &mut [f32],
    ) -> Result<ClusterSums> {
        let (x, n, k) = (points.x, points.rows(), centroids.rows());
        let (c, c_norms) = self.lift_centroids(centroids)?;
        let mut totals = ClusterSums::zeros(k, x.cols());
        let step = rows_per_block(k);
        for start in (0..n).step_by(step) {
            let end = (start + step).min(n);
            let block = self.rows(x, start, end)?;
            let (best, best_value) = nearest(&partial_distances(&block, &c, &c_norms)?)?;
            let block_weights = points.weights.map(|w| Array::from_slice(&w[start..end], &[(end - start) as i32]));
            let (sums, cluster_weights) = cluster_sums(&block, &best, block_weights.as_ref(), k)?;
            let sums = fold_sums(sums, x.cols(), self.split)?;
            eval_all(&[&best, &best_value, &sums, &cluster_weights])?;
            store_nearest(
                &best,
                &best_value,
                &points.x_sq_norms[start..end],
                &mut labels[start..end],
                &mut distances[start..end],
            );
            add_block_sums(&mut totals, &sums, &cluster_weights);
        }
        Ok(totals)
    }
}
