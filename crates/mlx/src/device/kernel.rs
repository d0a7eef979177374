//! The MLX kernel's primitives: each block of rows is one GEMM against the centred centroids,
//! an argmin, and a count per row of the centroids within the GEMM's error band; rows with
//! more than one are decided again exactly (`ties.rs`: on the device where differences prove
//! it, else on the host), so labels are the exact nearest centroids of the given values, as on
//! the cpu backend.

use mlx_rs::ops::indexing::argmin_axis;
use mlx_rs::ops::{maximum, select};
use mlx_rs::Array;

use super::stream::{pipelined, sorted_block_sums, Launched};
use super::ties::{settle_on_device, settle_rest, Exact, TieRows};
use super::{
    blocks, eval_all, fold_sums, lift_centroid_array, own_sq_distances, partial_distances, rows_per_block, to_mlx,
    MlxKernel,
};
use mlx_kmeans::error::Result;
use mlx_kmeans::kernel::{ClusterSums, Kernel};
use mlx_kmeans::matrix::{MatRef, Points};

/// Index (`rows × 1`, uint32) and value of each row's smallest partial distance.
fn nearest(partial: &Array) -> Result<(Array, Array)> {
    let best = argmin_axis(partial, 1, true)?;
    let best_value = partial.take_along_axis(&best, 1)?;
    Ok((best, best_value))
}

/// Index (`rows`, uint32) of each row's second smallest partial distance (the lowest index
/// on ties, as the argmin; the best itself where `k` is 1), for `best` (`rows × 1`): with the
/// best, the only candidates of a row that has two centroids in its band. The shared
/// `band_argmin` kernel finds it in the same read as the best; with MLX's ops it takes two
/// more passes over the block, which cost more than they save on the lent GPU
/// (`benchmarks/gpu.md`), so the ops path leaves it out and this is its first-use reference.
pub(super) fn runner_up(partial: &Array, best: &Array) -> Result<Array> {
    let k = partial.shape()[1];
    let columns = mlx_rs::ops::arange::<_, u32>(0, k, 1)?.reshape(&[1, k])?;
    let masked = select(&columns.eq(best)?, Array::from_f32(f32::INFINITY), partial)?;
    Ok(argmin_axis(&masked, 1, false)?.as_type::<u32>()?)
}

/// How many centroids' partial distances lie within the GEMM's error bound of each row's
/// best (`rows`, int32; the best itself included): more than one is a near tie that float32
/// products cannot decide. The bound is `bound · (‖x‖² + 2 max ‖c‖²)` for the row's squared
/// norm `norms` (`rows`). Counting is one compare and one sum (on MLX's CPU a tenth of a
/// partition).
fn within_band(partial: &Array, best_value: &Array, norms: &Array, c_norms: &Array, bound: f64) -> Result<Array> {
    let rows = partial.shape()[0];
    let c_max = c_norms.max(None)?;
    let band = norms
        .reshape(&[rows, 1])?
        .add(&c_max.multiply(Array::from_f32(2.0))?)?
        .multiply(Array::from_f32(bound as f32))?;
    Ok(partial.le(&best_value.add(&band)?)?.sum_axis(1, false)?.as_type::<i32>()?)
}

/// Each row's nearest centroid by the GEMM, before near ties are settled.
pub(super) struct Nearest {
    /// `rows`, uint32.
    pub labels: Array,
    /// Squared distances (`rows`, clamped at zero).
    pub distances: Array,
    /// Centroids within each row's error band ([`within_band`], `rows`, int32).
    pub in_band: Array,
    /// The centroid with the second smallest partial distance ([`runner_up`], `rows`, uint32),
    /// where the kernel found it.
    pub second: Option<Array>,
}

/// [`Nearest`] from a block's partial distances (`rows × k`), the rows' squared norms
/// `norms` and the centroids' `c_norms`, with MLX's ops; `bound` is the GEMM's error bound.
/// With `with_runner_up`, each row's [`runner_up`] too.
pub(super) fn nearest_in_band_by_ops(
    partial: &Array,
    norms: &Array,
    c_norms: &Array,
    bound: f64,
    with_runner_up: bool,
) -> Result<Nearest> {
    let (best, best_value) = nearest(partial)?;
    let in_band = within_band(partial, &best_value, norms, c_norms, bound)?;
    Ok(Nearest {
        second: if with_runner_up { Some(runner_up(partial, &best)?) } else { None },
        labels: best.reshape(&[-1])?,
        distances: maximum(best_value.reshape(&[-1])?.add(norms)?, Array::from_f32(0.0))?,
        in_band,
    })
}

impl MlxKernel<'_> {
    /// [`Nearest`] for `rows` as the GEMMs take them, with their squared norms `norms`,
    /// against lifted centroids `c` with squared norms `c_norms`: one GEMM, then the shared
    /// `band_argmin` kernel where it passed its check, else MLX's ops.
    pub(super) fn nearest_in_band(&self, rows: &Array, norms: &Array, c: &Array, c_norms: &Array) -> Result<Nearest> {
        let partial = partial_distances(rows, c, c_norms)?;
        let bound = self.gemm_error_bound(c.shape()[1] as usize / if self.split { 3 } else { 1 });
        let mut nearest = match &self.shared {
            Some(kernels) => kernels.nearest(&partial, norms, c_norms, bound)?,
            None => nearest_in_band_by_ops(&partial, norms, c_norms, bound, self.pairs == Some(true))?,
        };
        if self.pairs == Some(false) {
            nearest.second = None;
        }
        Ok(nearest)
    }
}

/// Per-cluster weighted sums (`k × d`, or `k × 3d` for split rows: see `fold_sums`) and
/// weights (`k`) of `block`'s rows by `labels`, as a one-hot matmul: on a GPU it runs as one
/// GEMM. MLX's scatter-add was several times slower there (`benchmarks/gpu.md`, "Measurements
/// behind the MLX kernel's choices"). With `split` rows (TF32 products) the
/// weights are split too, into a part exact in bfloat16 and the rest, one GEMM each: TF32
/// would round them to 11 bits inside a single product.
pub(super) fn cluster_sums(
    block: &Array,
    labels: &Array,
    weights: Option<&Array>,
    k: usize,
    split: bool,
) -> Result<(Array, Array)> {
    let m = block.shape()[0];
    let clusters = Array::from_iter(0..k as u32, &[k as i32, 1]);
    // one_hot[j, i] = 1 if row i belongs to cluster j.
    let one_hot = clusters.eq(&labels.reshape(&[1, m])?)?.as_type::<f32>()?;
    let Some(w) = weights else {
        return Ok((one_hot.matmul(block)?, one_hot.sum_axis(1, false)?));
    };
    let w = w.reshape(&[1, m])?;
    let weighted = one_hot.multiply(&w)?;
    let cluster_weights = weighted.sum_axis(1, false)?;
    if !split {
        return Ok((weighted.matmul(block)?, cluster_weights));
    }
    let high = w.as_dtype(mlx_rs::Dtype::Bfloat16)?.as_dtype(mlx_rs::Dtype::Float32)?;
    let low = w.subtract(&high)?;
    let sums = one_hot.multiply(&high)?.matmul(block)?.add(&one_hot.multiply(&low)?.matmul(block)?)?;
    Ok((sums, cluster_weights))
}

/// Sums of centred rows back to sums of the rows themselves: `shift · weight` per cluster.
pub(super) fn uncentre_sums(sums: &mut ClusterSums, shift: Option<&[f32]>) {
    let Some(shift) = shift else { return };
    let d = shift.len();
    for (row, &weight) in sums.sums.chunks_exact_mut(d).zip(&sums.weights) {
        for (s, &m) in row.iter_mut().zip(shift) {
            *s += m as f64 * weight;
        }
    }
}

/// Rows per block of the fused kernel's passes over rows given on the host: 256 MB of float32.
fn fused_block_rows(d: usize) -> usize {
    ((1usize << 26) / d.max(1)).max(1024)
}

/// Adds a block's device sums into the f64 host totals.
pub(super) fn add_block_sums(out: &mut ClusterSums, block_sums: &Array, block_weights: &Array) {
    for (s, &v) in out.sums.iter_mut().zip(block_sums.as_slice::<f32>()) {
        *s += v as f64;
    }
    for (s, &v) in out.weights.iter_mut().zip(block_weights.as_slice::<f32>()) {
        *s += v as f64;
    }
}

/// Centroids on the device as a block assignment takes them: lifted for the GEMM, their
/// squared norms (`1 × k`), and centred (`k × d`).
struct DeviceCentroids {
    lifted: Array,
    norms: Array,
    centred: Array,
}

impl MlxKernel<'_> {
    /// Centroids given on the host as [`DeviceCentroids`]: one copy to the device.
    fn device_centroids(&self, centroids: MatRef<'_, f32>) -> Result<DeviceCentroids> {
        let centred = self.centred_centroids(centroids)?;
        let (lifted, norms) = lift_centroid_array(centred.clone(), centroids.rows(), self.split)?;
        Ok(DeviceCentroids { lifted, norms, centred })
    }

    /// Exact labels and squared distances of rows `start..end` of `x` (see the module
    /// documentation), and those labels on the device (`rows`) for sums that follow.
    fn assign_block(
        &self,
        x: MatRef<'_, f32>,
        (start, end): (usize, usize),
        centroids: MatRef<'_, f32>,
        device_centroids: &DeviceCentroids,
        labels: &mut [u32],
        distances: &mut [f32],
    ) -> Result<Array> {
        let DeviceCentroids { lifted: c, norms: c_norms, centred: centred_centroids } = device_centroids;
        let (rows, norms, centred) = self.rows(x, start, end)?;
        let nearest = self.nearest_in_band(&rows, &norms, c, c_norms)?;
        let tie_rows = TieRows { lifted: &rows, centred: &centred, c, c_norms, centroids: centred_centroids };
        let settled = settle_on_device(&tie_rows, nearest, self.shift.is_none(), None)?;
        eval_all(&settled.outputs())?;
        if settled.unproven_count.item_exact::<f32>() == 0.0 {
            labels.copy_from_slice(settled.labels.as_slice::<u32>());
            distances.copy_from_slice(settled.distances.as_slice::<f32>());
            return Ok(settled.labels);
        }
        let block = x.slice_rows(start, end);
        let exact = Exact { row: &|i| block.row(i) };
        let host_centroids = &mut || Ok(centroids.as_slice().to_vec());
        let (host_labels, host_distances) = settle_rest(&tie_rows, settled, &exact, host_centroids)?;
        labels.copy_from_slice(&host_labels);
        distances.copy_from_slice(&host_distances);
        Ok(Array::from_slice(labels, &[(end - start) as i32]))
    }
}

impl Kernel<f32> for MlxKernel<'_> {
    fn name(&self) -> &'static str {
        "mlx"
    }

    fn rows_per_check(&self, k: usize, d: usize) -> usize {
        // A GPU runs ~100× the CPU's flops; each split costs a device round trip. MLX's CPU
        // build multiplies with reference BLAS, ~10× slower than the cpu backend's GEMM.
        let rows = mlx_kmeans::monitor::rows_per_check(k, d);
        if self.on_gpu {
            rows.saturating_mul(128)
        } else {
            (rows / 16).max(256)
        }
    }

    fn row_sq_norms(&self, x: MatRef<'_, f32>) -> Result<Vec<f32>> {
        let Some(data) = self.whole(x) else { return Ok(mlx_kmeans::matrix::row_sq_norms(x)) };
        let norms = data.square()?.sum_axis(1, false)?;
        eval_all(&[&norms])?;
        Ok(norms.as_slice::<f32>().to_vec())
    }

    fn mean_feature_variance(&self, x: MatRef<'_, f32>) -> Result<f64> {
        let Some(data) = self.whole(x) else { return Ok(mlx_kmeans::matrix::mean_feature_variance(x)) };
        let mean = self.centre(&data)?.var_axis(0, false, 0)?.mean(false)?;
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
        let Some(data) = self.whole(x) else {
            return Ok(mlx_kmeans::kernel::labelled_sq_distances(x, weights, centroids, labels));
        };
        // By differences, as on the host.
        let distances =
            own_sq_distances(&data, &to_mlx(centroids), &Array::from_slice(labels, &[labels.len() as i32]))?;
        eval_all(&[&distances])?;
        let distances = distances.as_slice::<f32>().to_vec();
        let inertia = mlx_kmeans::matrix::weighted_sum(&distances, weights);
        Ok((distances, inertia))
    }

    fn assign(
        &self,
        x: MatRef<'_, f32>,
        _x_sq_norms: &[f32],
        centroids: MatRef<'_, f32>,
        labels: &mut [u32],
        distances: &mut [f32],
    ) -> Result<()> {
        let n = x.rows();
        if let Some(kernels) = self.fused_kernels() {
            let (c, c_norms) = self.fused_centroids(centroids)?;
            let launch = |block| self.launch_fused(kernels, x, block, (&c, &c_norms), None);
            let collect = |done: Launched| done.collect(labels, distances, None);
            return pipelined(blocks(n, fused_block_rows(x.cols())), launch, collect);
        }
        let device_centroids = self.device_centroids(centroids)?;
        let step = rows_per_block(centroids.rows());
        for (start, end) in blocks(n, step) {
            let (labels, distances) = (&mut labels[start..end], &mut distances[start..end]);
            self.assign_block(x, (start, end), centroids, &device_centroids, labels, distances)?;
        }
        Ok(())
    }

    fn pairwise(
        &self,
        x: MatRef<'_, f32>,
        _x_sq_norms: &[f32],
        centroids: MatRef<'_, f32>,
        out: &mut [f32],
    ) -> Result<()> {
        let (n, k) = (x.rows(), centroids.rows());
        let (c, c_norms) = self.lift_centroids(centroids)?;
        let step = rows_per_block(k);
        for (start, end) in blocks(n, step) {
            let (rows, norms, _) = self.rows(x, start, end)?;
            let full = partial_distances(&rows, &c, &c_norms)?.add(&norms.reshape(&[-1, 1])?)?;
            let full = maximum(&full, Array::from_f32(0.0))?;
            eval_all(&[&full])?;
            out[start * k..end * k].copy_from_slice(full.as_slice::<f32>());
        }
        Ok(())
    }

    fn assign_accumulate(
        &self,
        points: Points<'_, f32>,
        centroids: MatRef<'_, f32>,
        labels: &mut [u32],
        distances: &mut [f32],
    ) -> Result<ClusterSums> {
        let (x, n, k) = (points.x, points.rows(), centroids.rows());
        let mut totals = ClusterSums::zeros(k, x.cols());
        if let Some(kernels) = self.fused_kernels() {
            let (c, c_norms) = self.fused_centroids(centroids)?;
            let launch = |block| self.launch_fused(kernels, x, block, (&c, &c_norms), Some(points.weights));
            let collect = |done: Launched| done.collect(labels, distances, Some(&mut totals));
            pipelined(blocks(n, fused_block_rows(x.cols())), launch, collect)?;
            uncentre_sums(&mut totals, self.shift_values());
            return Ok(totals);
        }
        let device_centroids = self.device_centroids(centroids)?;
        let step = rows_per_block(k);
        for (start, end) in blocks(n, step) {
            let (block_labels, block_distances) = (&mut labels[start..end], &mut distances[start..end]);
            let best =
                self.assign_block(x, (start, end), centroids, &device_centroids, block_labels, block_distances)?;
            let (sums, cluster_weights) = match &self.kernels {
                Some(kernels) => {
                    let centred = self.centred_rows(x, start, end)?;
                    sorted_block_sums(kernels, &centred, points.weights, (start, end), &best, k)?
                }
                None => {
                    let (rows, ..) = self.rows(x, start, end)?;
                    let block_weights =
                        points.weights.map(|w| Array::from_slice(&w[start..end], &[(end - start) as i32]));
                    let (sums, cluster_weights) = cluster_sums(&rows, &best, block_weights.as_ref(), k, self.split)?;
                    (fold_sums(sums, x.cols(), self.split)?, cluster_weights)
                }
            };
            eval_all(&[&sums, &cluster_weights])?;
            add_block_sums(&mut totals, &sums, &cluster_weights);
        }
        uncentre_sums(&mut totals, self.shift_values());
        Ok(totals)
    }
}
