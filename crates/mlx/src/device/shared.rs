//! The kernels whose arithmetic is written once for two dialects: Metal (`fast::metal_kernel`,
//! what Apple GPUs run) and CUDA (`fast::cuda_kernel`, the twin the lent NVIDIA GPU tests).
//! The bodies (`shared/*.body`) use a few names that each dialect's header and prologue
//! define: `km_long`/`km_uint`, `KM_DEVICE` (the pointers' address space), `KM_XOR` (an
//! exchange within a SIMD group or warp), and the thread indices `km_thread`, `km_group`,
//! `km_local`, `km_group_size`, `km_lane`.
//! - `band_argmin`: each row's nearest centroid over a block of partial distances, and how
//!   many centroids lie within the GEMM's error band (one read of the block where MLX's ops
//!   take three: argmin, the value at it, the band count).
//! - `chunk_sums` + `cluster_means`: per-cluster sums, weights and means in one read of the
//!   rows in label order, compensated float32 in a fixed order (no one-hot GEMM).
//!
//! At their first use in a process, a dialect's kernels are compiled and checked on a small
//! problem against MLX's ops; a compile error or a mismatch is logged (WARNING) with its
//! reason and the fits run on MLX's ops. On macOS the Metal dialect is used by default;
//! The runtime switch `mlx_shared` forces a dialect (for the twin, and to test the
//! fallback where the kernel API refuses it) or none.

use std::sync::Mutex;

use mlx_rs::fast::{MetalKernel, MetalKernelApplyOptions, MetalKernelOptions, MetalKernelOutput, TemplateArg};
use mlx_rs::ops::stack;
use mlx_rs::{Array, Dtype};

use super::cuda::{sorted_cluster_means, CudaKernel};
use super::kernel::{nearest_in_band_by_ops, runner_up, Nearest};
use super::{eval_all, partial_distances, row_norms};
use mlx_kmeans::error::{Error, Result};

/// The two dialects of the shared kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Metal,
    Cuda,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Self::Metal => "metal",
            Self::Cuda => "cuda",
        }
    }

    fn header(self) -> &'static str {
        match self {
            Self::Metal => include_str!("shared/metal.h"),
            Self::Cuda => include_str!("shared/cuda.h"),
        }
    }

    fn prologue(self) -> &'static str {
        match self {
            Self::Metal => include_str!("shared/prologue.metal"),
            Self::Cuda => include_str!("shared/prologue.cuda"),
        }
    }
}

/// The kernels' names, as `backends()` reports them.
pub const KERNEL_NAMES: [&str; 3] = ["band_argmin", "chunk_sums", "cluster_means"];

/// One shared kernel in one dialect.
enum DialectKernel {
    Metal(MetalKernel),
    Cuda(CudaKernel),
}

impl DialectKernel {
    fn new(dialect: Dialect, name: &'static str, inputs: &[&str], outputs: &[&str], body: &str) -> Result<Self> {
        let source = format!("{}{}", dialect.prologue(), body);
        let full_name = format!("mlx_kmeans_shared_{name}");
        Ok(match dialect {
            Dialect::Metal => {
                let options = MetalKernelOptions {
                    header: dialect.header().to_string(),
                    ensure_row_contiguous: true,
                    atomic_outputs: false,
                };
                Self::Metal(MetalKernel::new(&full_name, inputs, outputs, &source, options)?)
            }
            Dialect::Cuda => Self::Cuda(CudaKernel::build(name, inputs, outputs, dialect.header(), &source, 0)?),
        })
    }

    /// Adds the kernel to the graph: `threads` threads in groups of `group`, one output per
    /// `(shape, dtype)`, with integer template arguments.
    fn apply(
        &self,
        inputs: &[&Array],
        outputs: &[(&[i32], Dtype)],
        threads: usize,
        group: i32,
        template: &[(&str, i32)],
    ) -> Result<Vec<Array>> {
        match self {
            Self::Cuda(kernel) => kernel.apply(inputs, outputs, threads, group, template),
            Self::Metal(kernel) => {
                let threads =
                    i32::try_from(threads).map_err(|_| Error::Backend("more than 2^31 GPU threads".into()))?;
                let outputs: Vec<MetalKernelOutput> = outputs
                    .iter()
                    .map(|(shape, dtype)| MetalKernelOutput { shape: shape.to_vec(), dtype: *dtype })
                    .collect();
                let options = MetalKernelApplyOptions {
                    template_args: template.iter().map(|(n, v)| (n.to_string(), TemplateArg::Int(*v))).collect(),
                    init_value: None,
                    verbose: false,
                };
                // SAFETY: every body reads only its inputs within their shapes (rows past
                // the last return at once) and writes each output element it is given at
                // most once per thread, never an input; the callers size outputs as the
                // bodies' headers say.
                Ok(unsafe { kernel.apply(inputs, &outputs, (threads, 1, 1), (group, 1, 1), options)? })
            }
        }
    }
}

/// The shared kernels of one dialect, ready to run.
pub struct SharedKernels {
    band_argmin: DialectKernel,
    chunk_sums: DialectKernel,
    cluster_means: DialectKernel,
}

impl SharedKernels {
    fn new(dialect: Dialect) -> Result<Self> {
        Ok(Self {
            band_argmin: DialectKernel::new(
                dialect,
                "band_argmin",
                &["dist", "xnorm", "scale"],
                &["labels", "distances", "in_band", "second"],
                include_str!("shared/band_argmin.body"),
            )?,
            chunk_sums: DialectKernel::new(
                dialect,
                "chunk_sums",
                &["x", "w", "order", "sorted"],
                &["sums", "errors"],
                include_str!("shared/chunk_sums.body"),
            )?,
            cluster_means: DialectKernel::new(
                dialect,
                "cluster_means",
                &["sums", "errors", "sorted"],
                &["cluster_sums", "weights", "means"],
                include_str!("shared/cluster_means.body"),
            )?,
        })
    }

    /// [`Nearest`] from a block's partial distances (`rows × k`), the rows' squared norms
    /// (`rows`), the centroids' squared norms (`1 × k`) and the GEMM's error bound.
    pub(super) fn nearest(&self, partial: &Array, norms: &Array, c_norms: &Array, bound: f64) -> Result<Nearest> {
        let (rows, k) = (partial.shape()[0], partial.shape()[1]);
        let scale = stack(&[Array::from_f32(bound as f32), c_norms.max(None)?], 0)?;
        let mut out = self.band_argmin.apply(
            &[partial, norms, &scale],
            &[(&[rows], Dtype::Uint32), (&[rows], Dtype::Float32), (&[rows], Dtype::Int32), (&[rows], Dtype::Uint32)],
            rows as usize * 32,
            256,
            &[("K", k)],
        )?;
        let second = out.pop().expect("four outputs");
        let in_band = out.pop().expect("four outputs");
        let distances = out.pop().expect("four outputs");
        Ok(Nearest { labels: out.pop().expect("four outputs"), distances, in_band, second: Some(second) })
    }

    /// Weighted per-cluster sums (`k × d`), weights (`k`) and means (`k × d`) of `x`'s rows
    /// (`n × d`) by `labels` (`n`, uint32), with `weights` (`n`).
    pub(super) fn cluster_means(
        &self,
        x: &Array,
        weights: &Array,
        labels: &Array,
        k: usize,
    ) -> Result<(Array, Array, Array)> {
        // One thread per column and one for the weights.
        let threads = ((x.shape()[1] as usize + 1).div_ceil(32) * 32).clamp(32, 256) as i32;
        sorted_cluster_means(
            (x, weights, labels, k),
            threads,
            |i, o, t, g, a| self.chunk_sums.apply(i, o, t, g, a),
            |i, o, t, g, a| self.cluster_means.apply(i, o, t, g, a),
        )
    }
}

/// The dialect a fit uses: `forced` by the configuration (`Some(None)`: none), else Metal on
/// an Apple GPU and none elsewhere.
pub fn dialect_for(forced: Option<Option<Dialect>>, on_gpu: bool) -> Option<Dialect> {
    forced.unwrap_or((cfg!(target_os = "macos") && on_gpu).then_some(Dialect::Metal))
}

/// Each dialect's first-use check: `Ok` when its kernels compiled and agreed with MLX's ops,
/// else why not. Decided once per process.
static CHECKED: Mutex<Vec<(Dialect, std::result::Result<(), String>)>> = Mutex::new(Vec::new());

/// The dialect's kernels when they passed their first-use check (run now if it has not
/// run in this process; a failure is logged once, as a warning).
pub fn checked(dialect: Dialect) -> Option<SharedKernels> {
    let mut checked = CHECKED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    match checked.iter().find(|(d, _)| *d == dialect) {
        Some((_, verdict)) => verdict.clone().ok().and_then(|()| SharedKernels::new(dialect).ok()),
        None => {
            let kernels = SharedKernels::new(dialect).and_then(|kernels| self_check(&kernels).map(|()| kernels));
            let verdict = kernels.as_ref().map(|_| ()).map_err(|e| e.to_string());
            if let Err(reason) = &verdict {
                log::warn!(
                    target: crate::LOG_TARGET,
                    "the {} kernels ({}) are off, fits run on MLX's ops: {reason}",
                    dialect.name(),
                    KERNEL_NAMES.join(", ")
                );
            } else {
                log::info!(target: crate::LOG_TARGET, "the {} kernels passed their first-use check", dialect.name());
            }
            checked.push((dialect, verdict));
            kernels.ok()
        }
    }
}

/// The verdict of a dialect's check in this process, if it ran: `Ok` or why not.
pub fn verdict(dialect: Dialect) -> Option<std::result::Result<(), String>> {
    let checked = CHECKED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    checked.iter().find(|(d, _)| *d == dialect).map(|(_, verdict)| verdict.clone())
}

/// Runs each kernel on a small problem (uneven clusters, one empty, weights): `band_argmin`
/// against MLX's ops on the same distances (labels, runners-up and band counts equal, distances within
/// float32 rounding), the sums against float64 sums made on the host.
fn self_check(kernels: &SharedKernels) -> Result<()> {
    let (n, d, k) = (300usize, 37usize, 11usize);
    // Deterministic values with a spread of scales, no generator needed.
    let values: Vec<f32> = (0..n * d).map(|i| ((i * 7919 % 1009) as f32 / 1009.0 - 0.5) * (1 + i % 5) as f32).collect();
    let x = Array::from_slice(&values, &[n as i32, d as i32]);
    let centroids = Array::from_slice(&values[..k * d], &[k as i32, d as i32]);
    let norms = x.square()?.sum_axis(1, false)?;
    let c_norms = row_norms(&centroids, k)?;
    let partial = partial_distances(&x, &centroids, &c_norms)?;
    let bound = 1e-3;
    let by_ops = nearest_in_band_by_ops(&partial, &norms, &c_norms, bound, false)?;
    let ours = kernels.nearest(&partial, &norms, &c_norms, bound)?;
    let ops_second = runner_up(&partial, &by_ops.labels.reshape(&[-1, 1])?)?;
    // Labels pointing at clusters 0..k-1 except the last (left empty), some rows weighted 0;
    // the sums' reference is computed on the host in float64.
    let label_values: Vec<u32> = (0..n).map(|i| ((i * 37 + i / 7) % (k - 1)) as u32).collect();
    let labels = Array::from_slice(&label_values, &[n as i32]);
    let weight_values: Vec<f32> = (0..n).map(|i| (i % 4) as f32 * 0.5 + (i % 3) as f32 * 0.1).collect();
    let weights = Array::from_slice(&weight_values, &[n as i32]);
    let (sums, cluster_weights, means) = kernels.cluster_means(&x, &weights, &labels, k)?;
    let (mut exact_sums, mut exact_weights) = (vec![0f64; k * d], vec![0f64; k]);
    for (i, (&label, &w)) in label_values.iter().zip(&weight_values).enumerate() {
        let j = label as usize;
        exact_weights[j] += w as f64;
        for c in 0..d {
            exact_sums[j * d + c] += w as f64 * values[i * d + c] as f64;
        }
    }
    let exact_means: Vec<f64> = (0..k * d)
        .map(|e| if exact_weights[e / d] > 0.0 { exact_sums[e] / exact_weights[e / d] } else { 0.0 })
        .collect();
    eval_all(&[&sums, &cluster_weights, &means])?;
    // Float32 results within a few units of the float64 values' scale.
    let near = |got: &[f32], exact: &[f64]| {
        let scale = exact.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
        got.len() == exact.len() && got.iter().zip(exact).all(|(&g, &e)| (g as f64 - e).abs() <= 1e-5 * scale)
    };
    let same = |a: &Array, b: &Array| -> Result<bool> {
        let equal = a.eq(b)?.all(None)?;
        eval_all(&[&equal])?;
        Ok(equal.item_exact::<bool>())
    };
    let distances_close = {
        let diff = ours.distances.subtract(&by_ops.distances)?.abs()?.max(None)?;
        let scale = by_ops.distances.abs()?.max(None)?;
        eval_all(&[&diff, &scale])?;
        diff.item_exact::<f32>() <= 1e-5 * scale.item_exact::<f32>()
    };
    let checks = [
        ("band_argmin labels", same(&ours.labels, &by_ops.labels)?),
        ("band_argmin band counts", same(&ours.in_band, &by_ops.in_band)?),
        ("band_argmin runners-up", same(ours.second.as_ref().expect("the kernel's runner-up"), &ops_second)?),
        ("band_argmin distances", distances_close),
        ("cluster_means weights", near(cluster_weights.as_slice::<f32>(), &exact_weights)),
        ("cluster_means sums", near(sums.as_slice::<f32>(), &exact_sums)),
        ("cluster_means means", near(means.as_slice::<f32>(), &exact_means)),
    ];
    match checks.iter().find(|(_, ok)| !ok) {
        Some((what, _)) => Err(Error::Backend(format!("{what} differ from MLX's ops on the check problem"))),
        None => Ok(()),
    }
}
