//! Custom CUDA kernels run by MLX (`mlx::core::fast::cuda_kernel`, through mlx-c) for the
//! Lloyd step on an NVIDIA GPU. MLX's own ops need the `n × k` distance matrix, a full pass
//! over it for `argmin` and another for the value at it, and per-cluster sums as a one-hot
//! GEMM; here one kernel finds each row's nearest centroid on the tensor cores without that
//! matrix (`fused_assign`, exact through a float16 split and a recheck of near ties), and two
//! make the sums in one read of the data, in a fixed order with float64 accumulation. MLX JIT-compiles each kernel once per process and
//! template values, and runs it inside the step's graph like any op. The kernel bodies live in
//! `cuda/*.cu`; MLX generates their signatures from the names given here.

use std::ffi::{c_char, CString};

use mlx_rs::{Array, Dtype, Stream};
use mlx_sys as sys;

use mlx_kmeans::error::{Error, Result};

/// Sorted rows per block of the first summing pass.
const ROWS_PER_CHUNK: i32 = 128;

/// Rows per block of `fused_assign` (its tiles are fixed in `fused_assign.cu`), and its threads.
const FUSED_ROWS: usize = 128;
const FUSED_THREADS: i32 = 256;

/// One MLX custom kernel: a JIT-compiled CUDA body with named inputs and outputs.
struct CudaKernel {
    name: &'static str,
    handle: sys::mlx_fast_cuda_kernel,
}

/// A vector of C strings for mlx-c, freed on drop.
struct Names(sys::mlx_vector_string);

impl Names {
    fn new(names: &[&str]) -> Self {
        // SAFETY: mlx-c copies each string into its own vector.
        unsafe {
            let vector = sys::mlx_vector_string_new();
            for name in names {
                let name = CString::new(*name).expect("kernel argument names have no NUL");
                sys::mlx_vector_string_append_value(vector, name.as_ptr());
            }
            Self(vector)
        }
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        // SAFETY: created by mlx_vector_string_new and freed once.
        unsafe { sys::mlx_vector_string_free(self.0) };
    }
}

impl CudaKernel {
    /// `header` goes before the generated function (helpers); `source` is its body.
    fn new(name: &'static str, inputs: &[&str], outputs: &[&str], header: &str, source: &str) -> Self {
        let (inputs, outputs) = (Names::new(inputs), Names::new(outputs));
        let c_name = CString::new(name).expect("kernel names have no NUL");
        let source = CString::new(source).expect("kernel sources have no NUL");
        let header = CString::new(header).expect("kernel headers have no NUL");
        // SAFETY: mlx-c copies every argument; the handle is freed in `Drop`.
        let handle = unsafe {
            sys::mlx_fast_cuda_kernel_new(
                c_name.as_ptr(),
                inputs.0,
                outputs.0,
                source.as_ptr(),
                header.as_ptr(),
                true,
                0,
            )
        };
        assert!(!handle.ctx.is_null(), "MLX could not create the CUDA kernel {name}");
        Self { name, handle }
    }

    /// Adds the kernel to the graph: `threads` threads in blocks of `block`, one output per
    /// `(shape, dtype)`, with integer template arguments. Runs when its outputs are evaluated.
    fn apply(
        &self,
        inputs: &[&Array],
        outputs: &[(&[i32], Dtype)],
        threads: usize,
        block: i32,
        template: &[(&str, i32)],
    ) -> Result<Vec<Array>> {
        let threads =
            i32::try_from(threads).map_err(|_| Error::Backend(format!("{}: more than 2^31 GPU threads", self.name)))?;
        // SAFETY: every mlx-c object made here is freed before returning; arrays read out of
        // the result vector are new references owned by the returned `Array`s.
        unsafe {
            let config = sys::mlx_fast_cuda_kernel_config_new();
            for (shape, dtype) in outputs {
                sys::mlx_fast_cuda_kernel_config_add_output_arg(
                    config,
                    shape.as_ptr(),
                    shape.len(),
                    *dtype as sys::mlx_dtype,
                );
            }
            sys::mlx_fast_cuda_kernel_config_set_grid(config, threads, 1, 1);
            sys::mlx_fast_cuda_kernel_config_set_thread_group(config, block, 1, 1);
            let names: Vec<CString> = template.iter().map(|(n, _)| CString::new(*n).expect("no NUL")).collect();
            for (name, (_, value)) in names.iter().zip(template) {
                sys::mlx_fast_cuda_kernel_config_add_template_arg_int(config, name.as_ptr() as *const c_char, *value);
            }
            let input_vector = sys::mlx_vector_array_new();
            for array in inputs {
                sys::mlx_vector_array_append_value(input_vector, array.as_ptr());
            }
            let mut output_vector = sys::mlx_vector_array_new();
            let stream = Stream::default();
            let status =
                sys::mlx_fast_cuda_kernel_apply(&mut output_vector, self.handle, input_vector, config, stream.as_ptr());
            let mut results = Vec::with_capacity(outputs.len());
            if status == 0 {
                for i in 0..sys::mlx_vector_array_size(output_vector) {
                    let mut array = sys::mlx_array_new();
                    sys::mlx_vector_array_get(&mut array, output_vector, i);
                    results.push(Array::from_ptr(array));
                }
            }
            sys::mlx_vector_array_free(output_vector);
            sys::mlx_vector_array_free(input_vector);
            sys::mlx_fast_cuda_kernel_config_free(config);
            if status != 0 || results.len() != outputs.len() {
                return Err(Error::Backend(format!("MLX could not run the CUDA kernel {}", self.name)));
            }
            Ok(results)
        }
    }
}

impl Drop for CudaKernel {
    fn drop(&mut self) {
        // SAFETY: created by mlx_fast_cuda_kernel_new and freed once.
        unsafe { sys::mlx_fast_cuda_kernel_free(self.handle) };
    }
}

/// Threads per block for kernels that give one thread per feature column.
fn column_threads(d: usize) -> i32 {
    (d.div_ceil(32) * 32).clamp(32, 256) as i32
}

/// The Lloyd step's custom kernels.
pub(super) struct LloydKernels {
    fused_assign: CudaKernel,
    settle_flagged: CudaKernel,
    row_argmin: CudaKernel,
    chunk_sums: CudaKernel,
    cluster_means: CudaKernel,
}

/// Per-cluster results of [`LloydKernels::cluster_means`], all float32 on the device.
pub(super) struct ClusterMeans {
    pub sums: Array,
    pub weights: Array,
    pub means: Array,
}

impl LloydKernels {
    pub(super) fn new() -> Self {
        let fused_header = [include_str!("cuda/fused_assign.cuh"), include_str!("cuda/warp_sq_distance.cuh")].concat();
        Self {
            fused_assign: CudaKernel::new(
                "mlx_kmeans_fused_assign",
                &["x", "xnorm", "centroids", "cnorm", "cmax"],
                &["labels", "distances", "flags"],
                &fused_header,
                include_str!("cuda/fused_assign.cu"),
            ),
            settle_flagged: CudaKernel::new(
                "mlx_kmeans_settle_flagged",
                &["x", "centroids", "labels_in", "distances_in", "flags"],
                &["labels", "distances"],
                include_str!("cuda/warp_sq_distance.cuh"),
                include_str!("cuda/settle_flagged.cu"),
            ),
            row_argmin: CudaKernel::new(
                "mlx_kmeans_row_argmin",
                &["dist", "xnorm", "x", "centroids", "cmax"],
                &["labels", "distances"],
                include_str!("cuda/warp_sq_distance.cuh"),
                include_str!("cuda/row_argmin.cu"),
            ),
            chunk_sums: CudaKernel::new(
                "mlx_kmeans_chunk_sums",
                &["x", "w", "order", "sorted"],
                &["hi", "lo"],
                "",
                include_str!("cuda/chunk_sums.cu"),
            ),
            cluster_means: CudaKernel::new(
                "mlx_kmeans_cluster_means",
                &["hi", "lo", "sorted"],
                &["sums", "weights", "means"],
                "",
                include_str!("cuda/cluster_means.cu"),
            ),
        }
    }

    /// Each row's nearest centroid (`rows`, uint32) and squared distance (`rows`, float32)
    /// from its partial distances (`rows × k`, with a relative error of at most `tolerance`),
    /// its squared norms (`rows`), the rows themselves (`rows × d`), the centroids (`k × d`)
    /// and their squared norms (`1 × k`): near ties are decided by exact distances.
    pub(super) fn nearest(
        &self,
        partial: &Array,
        x_norms: &Array,
        x: &Array,
        centroids: &Array,
        c_norms: &Array,
        tolerance: f64,
    ) -> Result<(Array, Array)> {
        let (rows, k, d) = (partial.shape()[0], partial.shape()[1], x.shape()[1]);
        let c_max = c_norms.max(None)?;
        let c_max = c_max.reshape(&[1])?;
        let mut out = self.row_argmin.apply(
            &[partial, x_norms, x, centroids, &c_max],
            &[(&[rows], Dtype::Uint32), (&[rows], Dtype::Float32)],
            rows as usize * 32,
            256,
            &[("K", k), ("D", d), ("TOL_E6", (tolerance * 1e6).ceil() as i32)],
        )?;
        let distances = out.pop().expect("two outputs");
        Ok((out.pop().expect("two outputs"), distances))
    }

    /// Each row's nearest centroid (uint32) and exact squared distance (float32) from the rows
    /// (`n × d`), their squared norms (`n`), the centroids (`k × d`) and their squared norms
    /// (`k` values), without an `n × k` matrix: the fused kernel, then exact distances for
    /// the rows it could not decide.
    pub(super) fn nearest_fused(
        &self,
        x: &Array,
        x_norms: &Array,
        centroids: &Array,
        c_norms: &Array,
    ) -> Result<(Array, Array)> {
        let (n, d, k) = (x.shape()[0], x.shape()[1], centroids.shape()[0]);
        let c_max = c_norms.max(None)?.reshape(&[1])?;
        let c_norms = c_norms.reshape(&[k])?;
        let template = [("K", k), ("D", d)];
        let blocks = (n as usize).div_ceil(FUSED_ROWS);
        let out = self.fused_assign.apply(
            &[x, x_norms, centroids, &c_norms, &c_max],
            &[(&[n], Dtype::Uint32), (&[n], Dtype::Float32), (&[n], Dtype::Uint32)],
            blocks * FUSED_THREADS as usize,
            FUSED_THREADS,
            &template,
        )?;
        let mut settled = self.settle_flagged.apply(
            &[x, centroids, &out[0], &out[1], &out[2]],
            &[(&[n], Dtype::Uint32), (&[n], Dtype::Float32)],
            (n as usize).div_ceil(32) * 32,
            256,
            &template,
        )?;
        let distances = settled.pop().expect("two outputs");
        Ok((settled.pop().expect("two outputs"), distances))
    }

    /// Weighted per-cluster sums, weights and means of `x`'s rows (`n × d`) by `labels` (`n`).
    pub(super) fn cluster_means(&self, x: &Array, weights: &Array, labels: &Array, k: usize) -> Result<ClusterMeans> {
        let (n, d) = (x.shape()[0], x.shape()[1]);
        let order = mlx_rs::ops::argsort_axis(labels, 0)?;
        let sorted = labels.take_axis(&order, 0)?;
        let chunks = (n + ROWS_PER_CHUNK - 1) / ROWS_PER_CHUNK;
        let threads = column_threads(d as usize);
        let template = [("D", d), ("R", ROWS_PER_CHUNK)];
        let partial: &[i32] = &[chunks + k as i32, d + 1];
        let halves = self.chunk_sums.apply(
            &[x, weights, &order, &sorted],
            &[(partial, Dtype::Float32), (partial, Dtype::Float32)],
            chunks as usize * threads as usize,
            threads,
            &template,
        )?;
        let mut out = self.cluster_means.apply(
            &[&halves[0], &halves[1], &sorted],
            &[(&[k as i32, d], Dtype::Float32), (&[k as i32], Dtype::Float32), (&[k as i32, d], Dtype::Float32)],
            k * threads as usize,
            threads,
            &template,
        )?;
        let means = out.pop().expect("three outputs");
        let weights = out.pop().expect("three outputs");
        Ok(ClusterMeans { sums: out.pop().expect("three outputs"), weights, means })
    }
}
