//! Custom CUDA kernels run by MLX (`mlx::core::fast::cuda_kernel`, through mlx-c) for the
//! Lloyd step on an NVIDIA GPU. MLX's own ops need the `n × k` distance matrix, a full pass
//! over it for `argmin` and another for the value at it, and per-cluster sums as a one-hot
//! GEMM. Here `fused_assign` finds each row's candidates on the tensor cores without that
//! matrix (one float16 product, or three of a float16 split, with a rigorous bound, and
//! `exact_candidates` deciding among the centroids within it by float64 distances), or
//! `row_argmin` reads blocks of the matrix once; `chunk_sums` and `cluster_means` make the
//! sums in one read of the data, in a fixed order with float64 accumulation. MLX JIT-compiles
//! each kernel once per process and template values, and runs it inside the step's graph like
//! any op. The kernel bodies live in `cuda/*.cu`; MLX generates their signatures from the
//! names given here.

use std::ffi::{c_char, CString};

use mlx_rs::{Array, Dtype, Stream};
use mlx_sys as sys;

use mlx_kmeans::error::{Error, Result};

/// Sorted rows per block of the first summing pass.
const ROWS_PER_CHUNK: i32 = 128;

/// Rows per block of `fused_assign`, its threads, and the multiple its features are padded to.
const FUSED_ROWS: usize = 128;
const FUSED_THREADS: i32 = 256;
const FUSED_STEP: i32 = 32;

/// Candidates per row that `fused_assign` lists for `exact_candidates` at most.
const FUSED_CANDIDATES: i32 = 8;

/// How `fused_assign` forms each row's dot products with the centroids (the labels are exact
/// either way): three float16 products of the split halves (`Three`, error ~2^-20), or one of
/// the high parts (`One`, ~2^-10), which leaves more rows several candidates to decide exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Products {
    Three,
    One,
}

impl Products {
    fn count(self) -> i32 {
        match self {
            Products::Three => 3,
            Products::One => 1,
        }
    }

    /// `fused_assign`'s dynamic shared memory at most: 128 rows of up to 192 features and
    /// three steps of 128 × 72 tiles, each in as many float16 parts as the products read
    /// (fixed in `fused_assign.cu`; streamed rows, 3 steps of 128 × 40 tiles, take less).
    fn shared_memory(self) -> i32 {
        let parts = if self == Products::Three { 2 } else { 1 };
        parts * (128 * 200 + 3 * 128 * 72) * 2
    }
}

/// Warps of `split_halves` and of `exact_candidates` at most (they loop over the rest).
const SPLIT_WARPS: usize = 1 << 20;
const EXACT_WARPS: usize = 1 << 20;

/// One MLX custom kernel: a JIT-compiled CUDA body with named inputs and outputs.
pub(super) struct CudaKernel {
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
    /// `header` goes before the generated function (helpers); `source` is its body, which
    /// may use `shared_memory` bytes of dynamic shared memory.
    fn new(name: &'static str, inputs: &[&str], outputs: &[&str], header: &str, source: &str) -> Self {
        Self::with_shared_memory(name, inputs, outputs, header, source, 0)
    }

    fn with_shared_memory(
        name: &'static str,
        inputs: &[&str],
        outputs: &[&str],
        header: &str,
        source: &str,
        shared_memory: i32,
    ) -> Self {
        Self::build(name, inputs, outputs, header, source, shared_memory)
            .unwrap_or_else(|e| panic!("MLX could not create the CUDA kernel {name}: {e}"))
    }

    /// The same, or why MLX could not create it (a build of MLX without CUDA refuses).
    pub(super) fn build(
        name: &'static str,
        inputs: &[&str],
        outputs: &[&str],
        header: &str,
        source: &str,
        shared_memory: i32,
    ) -> Result<Self> {
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
                shared_memory,
            )
        };
        if handle.ctx.is_null() {
            return Err(Error::Backend(format!("MLX could not create the CUDA kernel {name}")));
        }
        Ok(Self { name, handle })
    }

    /// Adds the kernel to the graph: `threads` threads in blocks of `block`, one output per
    /// `(shape, dtype)`, with integer template arguments. Runs when its outputs are evaluated.
    pub(super) fn apply(
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

/// `fused_assign` with its inputs and outputs, for `products`.
fn fused_assign(name: &'static str, products: Products) -> CudaKernel {
    CudaKernel::with_shared_memory(
        name,
        &["xnorm", "xh", "xl", "xres", "cnorm", "ch", "cl", "cmax", "cres"],
        &["candidates", "counts"],
        include_str!("cuda/fused_assign.cuh"),
        include_str!("cuda/fused_assign.cu"),
        products.shared_memory(),
    )
}

/// The Lloyd step's custom kernels.
pub(super) struct LloydKernels {
    split_halves: CudaKernel,
    /// `fused_assign` with three products and with one (see [`Products`]).
    fused_three: CudaKernel,
    fused_one: CudaKernel,
    exact_candidates: CudaKernel,
    row_argmin: CudaKernel,
    chunk_sums: CudaKernel,
    cluster_means: CudaKernel,
}

/// Rows as the fused kernel takes them (see [`LloydKernels::halves`]): float16 bits, and a
/// bound on each row's distance from its high part.
pub(super) struct Halves {
    pub hi: Array,
    pub lo: Array,
    pub res: Array,
}

/// Per-cluster results of [`LloydKernels::cluster_means`], all float32 on the device.
pub(super) struct ClusterMeans {
    pub sums: Array,
    pub weights: Array,
    pub means: Array,
}

impl LloydKernels {
    pub(super) fn new() -> Self {
        Self {
            split_halves: CudaKernel::new(
                "mlx_kmeans_split_halves",
                &["x", "sq"],
                &["hi", "lo", "res"],
                include_str!("cuda/fused_assign.cuh"),
                include_str!("cuda/split_halves.cu"),
            ),
            fused_three: fused_assign("mlx_kmeans_fused_assign", Products::Three),
            fused_one: fused_assign("mlx_kmeans_fused_assign_one", Products::One),
            exact_candidates: CudaKernel::new(
                "mlx_kmeans_exact_candidates",
                &["x", "centroids", "candidates", "counts"],
                &["labels", "distances"],
                include_str!("cuda/warp_sq_distance.cuh"),
                include_str!("cuda/exact_candidates.cu"),
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

    /// Rows (`n × d`, with squared norms `n`) as the fused kernel takes them: scaled by powers
    /// of two and split into two float16 parts (their bits, `n × dp`, `dp` a multiple of the
    /// kernel's step), with a bound on each row's distance from its high part (`n`).
    pub(super) fn halves(&self, x: &Array, sq: &Array) -> Result<Halves> {
        let (n, d) = (x.shape()[0], x.shape()[1]);
        let padded = (d + FUSED_STEP - 1) / FUSED_STEP * FUSED_STEP;
        let threads = (n as usize).clamp(1, SPLIT_WARPS) * 32;
        let shape: &[i32] = &[n, padded];
        let mut out = self.split_halves.apply(
            &[x, &sq.reshape(&[n])?],
            &[(shape, Dtype::Uint16), (shape, Dtype::Uint16), (&[n], Dtype::Float32)],
            threads,
            256,
            &[("D", d), ("DP", padded)],
        )?;
        let res = out.pop().expect("three outputs");
        let lo = out.pop().expect("three outputs");
        Ok(Halves { hi: out.pop().expect("three outputs"), lo, res })
    }

    /// Each row's nearest centroid (uint32) and exact squared distance (float32) from the rows
    /// (`n × d`), their squared norms (`n`) and halves, and the centroids (`k × d`) and their
    /// squared norms (`k` values), without an `n × k` matrix: the fused kernel finds each
    /// row's candidates by `products`, then exact distances decide among them.
    pub(super) fn nearest_fused(
        &self,
        x: &Array,
        x_norms: &Array,
        x_halves: &Halves,
        (centroids, c_norms): (&Array, &Array),
        products: Products,
    ) -> Result<(Array, Array)> {
        let (n, d, k) = (x.shape()[0], x.shape()[1], centroids.shape()[0]);
        let c_max = c_norms.max(None)?.reshape(&[1])?;
        let c_norms = c_norms.reshape(&[k])?;
        let c_halves = self.halves(centroids, &c_norms)?;
        let c_res = c_halves.res.max(None)?.reshape(&[1])?;
        let padded = x_halves.hi.shape()[1];
        let blocks = (n as usize).div_ceil(FUSED_ROWS);
        let fused = match products {
            Products::Three => &self.fused_three,
            Products::One => &self.fused_one,
        };
        let inputs =
            [x_norms, &x_halves.hi, &x_halves.lo, &x_halves.res, &c_norms, &c_halves.hi, &c_halves.lo, &c_max, &c_res];
        let found = fused.apply(
            &inputs,
            &[(&[n, FUSED_CANDIDATES], Dtype::Uint32), (&[n], Dtype::Uint32)],
            blocks * FUSED_THREADS as usize,
            FUSED_THREADS,
            &[("K", k), ("D", d), ("DP", padded), ("P", products.count()), ("C", FUSED_CANDIDATES)],
        )?;
        let warps = (n as usize).min(EXACT_WARPS);
        let mut settled = self.exact_candidates.apply(
            &[x, centroids, &found[0], &found[1]],
            &[(&[n], Dtype::Uint32), (&[n], Dtype::Float32)],
            warps * 32,
            256,
            &[("K", k), ("D", d), ("C", FUSED_CANDIDATES)],
        )?;
        let distances = settled.pop().expect("two outputs");
        Ok((settled.pop().expect("two outputs"), distances))
    }

    /// Weighted per-cluster sums, weights and means of `x`'s rows (`n × d`) by `labels` (`n`).
    pub(super) fn cluster_means(&self, x: &Array, weights: &Array, labels: &Array, k: usize) -> Result<ClusterMeans> {
        let threads = column_threads(x.shape()[1] as usize);
        let (sums, weights, means) = sorted_cluster_means(
            (x, weights, labels, k),
            threads,
            |i, o, t, g, a| self.chunk_sums.apply(i, o, t, g, a),
            |i, o, t, g, a| self.cluster_means.apply(i, o, t, g, a),
        )?;
        Ok(ClusterMeans { sums, weights, means })
    }
}

/// Per-cluster sums (`k × d`), weights (`k`) and means (`k × d`) of rows `x` (`n × d`) with
/// `weights` by `labels` (`n`, uint32), by two kernels over the rows in label order (MLX's
/// argsort): `chunk_sums` writes two partial rows per block of [`ROWS_PER_CHUNK`] sorted rows
/// and label (`(n/R + k) × (d + 1)`), `cluster_means` adds each cluster's partials, with
/// `threads` threads per block in both.
pub(super) fn sorted_cluster_means(
    (x, weights, labels, k): (&Array, &Array, &Array, usize),
    threads: i32,
    chunk_sums: impl Fn(&[&Array], &[(&[i32], Dtype)], usize, i32, &[(&str, i32)]) -> Result<Vec<Array>>,
    cluster_means: impl Fn(&[&Array], &[(&[i32], Dtype)], usize, i32, &[(&str, i32)]) -> Result<Vec<Array>>,
) -> Result<(Array, Array, Array)> {
    let (n, d) = (x.shape()[0], x.shape()[1]);
    let order = mlx_rs::ops::argsort_axis(labels, 0)?.as_type::<u32>()?;
    let sorted = labels.take_axis(&order, 0)?;
    let chunks = (n + ROWS_PER_CHUNK - 1) / ROWS_PER_CHUNK;
    let template = [("D", d), ("R", ROWS_PER_CHUNK)];
    let partial: &[i32] = &[chunks + k as i32, d + 1];
    let parts = chunk_sums(
        &[x, weights, &order, &sorted],
        &[(partial, Dtype::Float32), (partial, Dtype::Float32)],
        chunks as usize * threads as usize,
        threads,
        &template,
    )?;
    let k = k as i32;
    let mut out = cluster_means(
        &[&parts[0], &parts[1], &sorted],
        &[(&[k, d], Dtype::Float32), (&[k], Dtype::Float32), (&[k, d], Dtype::Float32)],
        k as usize * threads as usize,
        threads,
        &template,
    )?;
    let means = out.pop().expect("three outputs");
    let weights = out.pop().expect("three outputs");
    Ok((out.pop().expect("three outputs"), weights, means))
}
