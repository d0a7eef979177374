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
//! - `seeding_distances`: a greedy k-means++ step's candidate distances by float32 dot
//!   products of the rows as they are (not the split rows a rounding GEMM needs, three times
//!   the bytes), skipping the rows the triangle inequality proves unchanged.
//!
//! At their first use in a process, a dialect's kernels are compiled and checked on a small
//! problem against MLX's ops; a compile error or a mismatch is logged (WARNING) with its
//! reason and the fits run on MLX's ops. On macOS the Metal dialect is used by default;
//! The runtime switch `mlx_shared` forces a dialect (for the twin, and to test the
//! fallback where the kernel API refuses it) or none.

use std::sync::Mutex;

mod check;
use check::self_check;

use mlx_rs::fast::{MetalKernel, MetalKernelApplyOptions, MetalKernelOptions, MetalKernelOutput, TemplateArg};
use mlx_rs::ops::stack;
use mlx_rs::{Array, Dtype};

use super::cuda::{sorted_cluster_means, CudaKernel};
use super::kernel::Nearest;
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
pub const KERNEL_NAMES: [&str; 4] = ["band_argmin", "chunk_sums", "cluster_means", "seeding_distances"];

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
    seeding_distances: DialectKernel,
}

/// A bound on the rounding of one squared distance by `seeding_distances`, relative to
/// `‖x‖² + ‖c‖²`, for `d` features: float32 norms (`d` units each), a dot product summed in
/// `d/32` sequential steps and five exchanges, and the last additions; doubled for margin.
pub fn seeding_rounding(d: usize) -> f32 {
    ((2 * d + 16) as f64 * 2f64.powi(-24)) as f32
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
            seeding_distances: DialectKernel::new(
                dialect,
                "seeding_distances",
                &["x", "xnorm", "cand", "cnorm", "closest", "assigned", "lower", "scale"],
                &["merged", "measured"],
                include_str!("shared/seeding_distances.body"),
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

    /// A greedy k-means++ step's squared distances from `x`'s rows (`N × d`, `runs` blocks of
    /// rows stacked; squared norms `xnorm`, `N`) to each run's candidates (`cand`,
    /// `runs × M × d`; squared norms `cnorm`, `runs × M`), each the minimum with the row's
    /// `closest` (`N`): `N × M`, and how many candidates each row measured (`N`, int32).
    /// `prune`: each row's centre (`N`, int32, by the order chosen) and lower bounds of the
    /// distances from each run's centres to its candidates (`runs × K × M`), by which
    /// candidates that cannot be nearer are skipped (the same results). `scale`: the
    /// rounding factor ([`seeding_rounding`]) and the largest squared norm of a row.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn seeding_distances(
        &self,
        x: &Array,
        xnorm: &Array,
        cand: &Array,
        cnorm: &Array,
        closest: &Array,
        prune: Option<(&Array, &Array)>,
        scale: &Array,
    ) -> Result<(Array, Array)> {
        let (rows, m) = (x.shape()[0], cand.shape()[1]);
        let none_assigned = Array::from_slice(&[0i32], &[1]);
        let none_lower = Array::from_slice(&vec![0f32; m as usize], &[1, 1, m]);
        let (assigned, lower) = prune.unwrap_or((&none_assigned, &none_lower));
        let mut out = self.seeding_distances.apply(
            &[x, xnorm, cand, cnorm, closest, assigned, lower, scale],
            &[(&[rows, m], Dtype::Float32), (&[rows], Dtype::Int32)],
            rows as usize * 32,
            256,
            &[("M", m), ("PRUNE", prune.is_some() as i32)],
        )?;
        let measured = out.pop().expect("two outputs");
        Ok((out.pop().expect("two outputs"), measured))
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
