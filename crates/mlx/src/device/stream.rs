//! Data larger than the device may hold. A resident fit keeps the data on the device with its
//! working copies (centred, lifted for the GEMMs, split for the fused kernel); when those would
//! pass the device's memory, the kernel keeps nothing and every pass streams the rows from the
//! host in blocks (the host loops of `mlx_kmeans::strategy` call the kernel block by block).
//! On a CUDA GPU a block is assigned by the fused kernel and summed by the sorted-sums
//! kernels, as a resident step is: nothing of size `n × k`, no one-hot GEMM.

use mlx_rs::transforms::async_eval;
use mlx_rs::Array;

use super::cuda::{LloydKernels, Products};
use super::kernel::add_block_sums;
use super::{eval_all, lift_centroid_array, MlxKernel, Shift, FUSED_BY_DEFAULT, PRODUCTS_BY_DEFAULT};
use mlx_kmeans::error::Result;
use mlx_kmeans::kernel::ClusterSums;
use mlx_kmeans::matrix::{column_moments, MatRef};

/// MLX's memory limit for this device (bytes; on a GPU set from its memory), or no limit
/// when MLX does not say.
pub(super) fn memory_limit() -> usize {
    let mut limit = 0usize;
    // SAFETY: mlx-c writes one `size_t` through the pointer.
    let status = unsafe { mlx_sys::mlx_get_memory_limit(&mut limit) };
    if status == 0 && limit > 0 {
        limit
    } else {
        usize::MAX
    }
}

pub(super) fn log_streaming(rows: usize, cols: usize, device_bytes: usize) {
    let allowed = match device_bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b => format!("{b} bytes"),
    };
    log::info!(
        target: crate::LOG_TARGET,
        "{rows} x {cols} float32 rows and their working copies take more than the {allowed} of device \
         memory allowed: they stay on the host and are streamed to the device in blocks on every pass"
    );
}

impl Shift {
    /// [`Shift::of`] for data on the host (float64 column moments, one pass per moment).
    pub(super) fn of_host(x: MatRef<'_, f32>) -> Option<Self> {
        let (means, sq) = column_moments(x);
        let offset: f64 = means.iter().map(|m| m * m).sum();
        let spread: f64 = sq.iter().map(|s| s / x.rows().max(1) as f64).sum();
        if !(offset > spread) {
            return None;
        }
        let host: Vec<f32> = means.iter().map(|&m| m as f32).collect();
        let device = Array::from_slice(&host, &[1, host.len() as i32]);
        Some(Self { host, device })
    }
}

impl MlxKernel<'_> {
    /// Whether `rows × cols` float32 data fit on the device with the copies a resident fit
    /// makes of them: as given, centred (or split in two float16 halves), and lifted to three
    /// times the width when GEMMs take the float32 split.
    pub(super) fn holds(&self, rows: usize, cols: usize) -> bool {
        let copies = if self.split { 5 } else { 2 };
        rows.saturating_mul(cols).saturating_mul(4 * copies) <= self.device_bytes
    }

    /// The custom kernels when they assign rows by the fused kernel: unless the configuration
    /// asks for blocks of the distance matrix (see [`FUSED_BY_DEFAULT`]).
    pub(super) fn fused_kernels(&self) -> Option<&LloydKernels> {
        let fused = self.fused.unwrap_or(FUSED_BY_DEFAULT);
        self.kernels.as_ref().filter(|_| fused)
    }

    /// The fused kernel's products: forced, or the default.
    pub(super) fn fused_products(&self) -> Products {
        self.products.unwrap_or(PRODUCTS_BY_DEFAULT)
    }

    /// Centroids given on the host as [`Self::launch_fused`] takes them: centred, with their
    /// squared norms (`1 × k`), on the device once for all blocks of a pass.
    pub(super) fn fused_centroids(&self, centroids: MatRef<'_, f32>) -> Result<(Array, Array)> {
        lift_centroid_array(self.centred_centroids(centroids)?, centroids.rows(), false)
    }

    /// Rows `start..end` of `x` launched through the fused kernel against the centroids `c`
    /// with squared norms `c_norms` (see [`Self::fused_centroids`]) and, with `sums`, the
    /// sorted-sums kernels, by the rows' weights there: queued on the device, not waited for,
    /// so that the host prepares the next block meanwhile.
    pub(super) fn launch_fused(
        &self,
        kernels: &LloydKernels,
        x: MatRef<'_, f32>,
        (start, end): (usize, usize),
        (c, c_norms): (&Array, &Array),
        sums: Option<Option<&[f32]>>,
    ) -> Result<Launched> {
        let centred = self.centred_rows(x, start, end)?;
        let norms = centred.square()?.sum_axis(1, false)?;
        let halves = kernels.halves(&centred, &norms)?;
        let products = self.fused_products();
        let (labels, distances) = kernels.nearest_fused(&centred, &norms, &halves, (c, c_norms), products)?;
        let sums = match sums {
            Some(weights) => {
                Some(sorted_block_sums(kernels, &centred, weights, (start, end), &labels, c.shape()[0] as usize)?)
            }
            None => None,
        };
        let mut outputs = vec![&labels, &distances];
        if let Some((s, w)) = &sums {
            outputs.extend([s, w]);
        }
        async_eval(outputs)?;
        Ok(Launched { start, end, labels, distances, sums })
    }
}

/// Per-cluster sums (`k × d`) and weights (`k`) of `centred`, rows `start..end` of the data, by
/// their `labels`, weighted by those rows of `weights` (ones without): the sorted-sums kernels,
/// with no one-hot product of `k × rows` entries.
pub(super) fn sorted_block_sums(
    kernels: &LloydKernels,
    centred: &Array,
    weights: Option<&[f32]>,
    (start, end): (usize, usize),
    labels: &Array,
    k: usize,
) -> Result<(Array, Array)> {
    let n = (end - start) as i32;
    let weights = match weights {
        Some(w) => Array::from_slice(&w[start..end], &[n]),
        None => mlx_rs::ops::ones::<f32>(&[n])?,
    };
    let means = kernels.cluster_means(centred, &weights, labels, k)?;
    Ok((means.sums, means.weights))
}

/// A block of rows queued on the device by [`MlxKernel::launch_fused`].
pub(super) struct Launched {
    start: usize,
    end: usize,
    labels: Array,
    distances: Array,
    /// Per-cluster sums (`k × d`) and weights (`k`) of the centred rows, when asked for.
    sums: Option<(Array, Array)>,
}

impl Launched {
    /// Waits for the block, then writes its labels and distances into the whole pass's and
    /// adds its sums into `totals`.
    pub(super) fn collect(
        self,
        labels: &mut [u32],
        distances: &mut [f32],
        totals: Option<&mut ClusterSums>,
    ) -> Result<()> {
        let mut outputs = vec![&self.labels, &self.distances];
        if let Some((s, w)) = &self.sums {
            outputs.extend([s, w]);
        }
        eval_all(&outputs)?;
        labels[self.start..self.end].copy_from_slice(self.labels.as_slice::<u32>());
        distances[self.start..self.end].copy_from_slice(self.distances.as_slice::<f32>());
        if let (Some(totals), Some((sums, weights))) = (totals, &self.sums) {
            add_block_sums(totals, sums, weights);
        }
        Ok(())
    }
}

/// Runs `launch` on consecutive blocks, collecting each block after the next is queued: the
/// host's copy of one block overlaps the device's work on the one before.
pub(super) fn pipelined(
    blocks: impl Iterator<Item = (usize, usize)>,
    mut launch: impl FnMut((usize, usize)) -> Result<Launched>,
    mut collect: impl FnMut(Launched) -> Result<()>,
) -> Result<()> {
    let mut previous: Option<Launched> = None;
    for block in blocks {
        let next = launch(block)?;
        if let Some(done) = previous.replace(next) {
            collect(done)?;
        }
    }
    if let Some(done) = previous {
        collect(done)?;
    }
    Ok(())
}
