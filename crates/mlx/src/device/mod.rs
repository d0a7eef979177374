//! The MLX kernel (mlx-rs): distances as one matmul plus norms, argmin, and per-cluster sums
//! as a one-hot matmul, on MLX's default device (Metal or CUDA GPU, else MLX's CPU). A Lloyd step
//! is one MLX graph and one evaluation: labels never leave the device before the sums are made.
//! MLX computes in float32. The data matrix given at construction is held in MLX memory for
//! the whole fit: shared with the caller's MLX array when there is one, else copied once
//! when the device can hold it with its working copies (else streamed: `stream.rs`). Row
//! norms and final distances of that matrix are computed on the device too, so the host never
//! reads (in CUDA managed memory: migrates) it. Other matrices (mini-batches, candidates) are
//! copied per call. Data far from the origin is re-centred first (see [`Shift`]), and rows
//! whose two nearest centroids the GEMM cannot tell apart are decided again exactly
//! (`ties.rs`), so labels are the exact nearest centroids on every device.

use std::sync::{Mutex, MutexGuard};

use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::{Array, Device, DeviceType, Dtype};

mod cuda;
mod engine;
mod kernel;
mod lloyd;
mod minibatch;
mod products;
mod seeding;
pub mod shared;
mod stream;
mod ties;

pub use engine::MlxEngine;

use mlx_kmeans::error::Result;
use mlx_kmeans::matrix::MatRef;

/// Whether Lloyd steps use the fused kernel when the configuration leaves it open: yes. With
/// one float16 product per distance it was as fast as GEMMs with blocks of the distance
/// matrix or faster on every workload of `benchmarks/gpu.md` (H100, 2026-12-07: 100k × 768,
/// k = 500, 1.53 against 2.38 ms a step; 500k × 768, k = 1000, 9.97 against 9.58, within the
/// runs' spread), and past 2^31 entries those GEMMs gave labels that were not the nearest
/// centroids of half the rows (10M × 128, k = 4096), where the fused kernel, whose indices are
/// 64-bit, gives the exact ones.
const FUSED_BY_DEFAULT: bool = true;

/// The fused kernel's products when the configuration leaves them open: one (faster on every
/// workload measured, the most on many features: 1M × 768, k = 10000, 139 against 217 ms).
const PRODUCTS_BY_DEFAULT: cuda::Products = cuda::Products::One;

/// Rows per MLX call, bounded so that a `rows × k` block stays near 2^27 floats (512 MB):
/// one block for the common shapes (100k rows, k ≤ 1024), so the resident data is used whole.
fn rows_per_block(k: usize) -> usize {
    ((1usize << 27) / k.max(1)).clamp(1024, 1 << 21)
}

/// `0..n` in runs of `step` rows: `(start, end)` of each.
fn blocks(n: usize, step: usize) -> impl Iterator<Item = (usize, usize)> {
    let step = step.max(1);
    (0..n).step_by(step).map(move |start| (start, (start + step).min(n)))
}

fn eval_all(arrays: &[&Array]) -> Result<()> {
    Ok(mlx_rs::transforms::eval(arrays.iter().copied())?)
}

/// How the MLX kernel computes, decided once by the caller.
#[derive(Debug, Clone, Copy, Default)]
pub struct MlxConfig {
    /// Lloyd steps by the custom CUDA kernels (`device/cuda.rs`) where MLX runs on CUDA;
    /// `false` keeps to MLX's own ops.
    pub cuda_kernels: bool,
    /// With the custom kernels: each row's nearest centroid by the fused kernel (no `n × k`
    /// matrix; `Some(true)`), or from blocks of the distance matrix made by a GEMM
    /// (`Some(false)`); `None`: [`FUSED_BY_DEFAULT`].
    pub fused: Option<bool>,
    /// Float16 products per distance in the fused kernel (`cuda::Products`): `Some(3)` the
    /// split, `Some(1)` the high parts; `None`: [`PRODUCTS_BY_DEFAULT`].
    pub products: Option<u8>,
    /// Device memory (bytes) the fit's data and its working copies may take; past it the data
    /// stays on the host and is streamed in blocks (`stream.rs`). `None`: MLX's memory limit.
    pub device_bytes: Option<usize>,
    /// Resident Lloyd steps queued one ahead (`lloyd.rs`: the device runs a step while the
    /// host builds the next; `Some(true)`), or each step waited for before the next is built
    /// (`Some(false)`); `None` decides by the time of a step.
    pub queue_ahead: Option<bool>,
    /// Near ties with two centroids in the band decided against each row's best and runner-up
    /// (`ties.rs`): `None` where the shared `band_argmin` kernel finds the runner-up,
    /// `Some(true)` also on MLX's ops, `Some(false)` never.
    pub pairs: Option<bool>,
    /// The dialect of the shared kernels (`shared.rs`) the MLX-ops path runs, when they pass
    /// their first-use check: `Some(None)` none, `None` the default (Metal on an Apple GPU).
    pub shared: Option<Option<shared::Dialect>>,
    /// GEMMs through the high/low split even where the device's float32 products are
    /// measured exact (the path a rounding device takes, run anywhere).
    pub split: bool,
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
    // A device whose float32 products the kernel cannot correct makes MLX unusable here.
    let products = products::products().map_err(|e| e.to_string())?;
    Ok((matches!(kind, DeviceType::Gpu), format!("{device:?}; {}", products::describe(products))))
}

/// The fit's data matrix in MLX memory: as it is (`plain`), re-centred by the kernel's
/// [`Shift`] (`centred`: `plain` itself without one), as the GEMMs take it (`lifted`), and
/// the squared norms of the centred rows.
struct Resident {
    plain: Array,
    centred: Array,
    lifted: Array,
    centred_norms: Array,
}

/// Rows as the device loops take them: centred, their lifted form and squared norms, and the
/// shift (`1 × d`) that centred them.
pub(super) struct CentredData {
    pub centred: Array,
    pub lifted: Array,
    pub norms: Array,
    pub shift: Option<Array>,
}

/// Subtracted from every row and centroid before the GEMMs: the data's mean, when the data lie
/// far from the origin next to their spread. There `‖x‖² + ‖c‖² − 2x·c` in float32 cancels
/// catastrophically (an offset of 1e5 with a spread of 1 leaves no correct digit) and float32
/// sums lose the spread to the offset; distances and labels do not change under a common
/// translation, and the shift is added back wherever centroids or sums leave the device.
struct Shift {
    /// `1 × d`.
    device: Array,
    host: Vec<f32>,
}

impl Shift {
    /// The data's column means when their squared norm exceeds the data's total variance
    /// (centring then gains at least a bit), else none: centring costs a copy of the data.
    fn of(plain: &Array) -> Result<Option<Self>> {
        let mean = plain.mean_axis(0, true)?;
        let offset = mean.square()?.sum(false)?;
        let spread = plain.var_axis(0, false, 0)?.sum(false)?;
        eval_all(&[&mean, &offset, &spread])?;
        if !(offset.item_exact::<f32>() > spread.item_exact::<f32>()) {
            return Ok(None);
        }
        Ok(Some(Self { host: mean.as_slice::<f32>().to_vec(), device: mean }))
    }
}

pub struct MlxKernel<'a> {
    /// The fit's data matrix and its MLX arrays. The borrow keeps the address from being
    /// reused for other data while this kernel lives, so comparing pointers is sound.
    data: Option<(&'a [f32], usize, Mutex<Resident>)>,
    /// Subtracted from rows and centroids before the GEMMs (data far from the origin).
    shift: Option<Shift>,
    /// Whether MLX computes on a GPU (then a pass is split far less often).
    on_gpu: bool,
    /// Whether float32 GEMMs go through the high/low split (see [`Precision`]). With the
    /// custom kernels, Lloyd steps would be exact without it too (near ties are decided
    /// again), but at TF32's error bound so many rows need that (`benchmarks/gpu.md`) that the
    /// split pays for itself.
    split: bool,
    /// Whether those kernels assign rows by the fused kernel (see [`MlxConfig`]).
    fused: Option<bool>,
    /// The fused kernel's products, when forced (see [`MlxConfig`]).
    products: Option<cuda::Products>,
    /// The custom CUDA kernels (`device/cuda.rs`) for Lloyd steps: on a GPU on Linux, which MLX
    /// runs through CUDA, unless the configuration keeps to MLX's own ops.
    kernels: Option<cuda::LloydKernels>,
    /// Device memory the fit's data and its working copies may take (see [`MlxConfig`]).
    device_bytes: usize,
    /// Whether the fit's data stays on the host (more than `device_bytes`): passes stream it.
    streamed: bool,
    /// Whether resident Lloyd steps are queued one ahead (see [`MlxConfig`]).
    queue_ahead: Option<bool>,
    /// Whether near ties go to the pair buffer (see [`MlxConfig`]).
    pairs: Option<bool>,
    /// The shared-source kernels the MLX-ops path runs (see [`MlxConfig`]), if any.
    shared: Option<shared::SharedKernels>,
    /// The shared kernels greedy k-means++ takes its candidate distances from (`seeding.rs`):
    /// those of the MLX-ops path, or with the custom CUDA kernels, the CUDA dialect's.
    seeding: Option<shared::SharedKernels>,
}

/// MLX may run float32 matrix products with rounded inputs: TF32 tensor cores on CUDA (a
/// relative error some 80 times float32's: `benchmarks/gpu.md`), the neural accelerators of
/// an M5-class Apple GPU (`products.rs`), which flips near-tied labels and blurs centroid sums. The split keeps float32 accuracy: each value `a = hi + lo` with `hi`
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
    /// array over the same values, when the caller has one, else a copy when it fits (see
    /// [`MlxKernel::holds`]); data that does not stays on the host.
    pub fn new(data: Option<MatRef<'a, f32>>, shared: Option<Array>, config: MlxConfig) -> Result<Self> {
        let on_gpu = matches!(Device::try_default().and_then(|d| d.get_type()), Ok(DeviceType::Gpu));
        // Float32 GEMMs through the high/low split (see [`Precision`]) where the device's
        // matrix units would otherwise round them: wherever the measurement finds rounded
        // products (an M5-class Apple GPU by default), and on any GPU on Linux, which MLX runs
        // through CUDA, whatever the measurement's one shape found (cuBLAS picks its kernels
        // by shape, and the custom kernels' buffers take split rows), or when asked to.
        let measured = products::products()?;
        let split = measured == products::Products::Reduced || (on_gpu && cfg!(target_os = "linux")) || config.split;
        let cuda_kernels = cfg!(target_os = "linux") && on_gpu && config.cuda_kernels;
        let kernels = cuda_kernels.then(cuda::LloydKernels::new);
        let device_bytes = config.device_bytes.unwrap_or_else(stream::memory_limit);
        let fused = config.fused;
        let queue_ahead = config.queue_ahead;
        let dialect = shared::dialect_for(config.shared, on_gpu);
        let shared_kernels = dialect.and_then(shared::checked);
        let seeding_dialect = match (dialect, config.shared) {
            (Some(dialect), _) => Some(dialect),
            (None, Some(None)) => None,
            (None, _) => kernels.is_some().then_some(shared::Dialect::Cuda),
        };
        let seeding_kernels = seeding_dialect.and_then(shared::checked);
        let mut kernel = Self {
            data: None,
            shift: None,
            on_gpu,
            split,
            fused,
            products: config.products.map(|p| if p == 1 { cuda::Products::One } else { cuda::Products::Three }),
            kernels,
            device_bytes,
            streamed: false,
            queue_ahead,
            pairs: config.pairs,
            shared: shared_kernels,
            seeding: seeding_kernels,
        };
        if let Some(m) = data {
            if shared.is_none() && !kernel.holds(m.rows(), m.cols()) {
                kernel.shift = Shift::of_host(m);
                kernel.streamed = true;
                stream::log_streaming(m.rows(), m.cols(), device_bytes);
                return Ok(kernel);
            }
            let plain = shared.unwrap_or_else(|| to_mlx(m));
            kernel.shift = Shift::of(&plain)?;
            let CentredData { centred, lifted, norms, .. } = kernel.centred_data(&plain)?;
            let resident = Resident { plain, centred, lifted, centred_norms: norms };
            kernel.data = Some((m.as_slice(), m.cols(), Mutex::new(resident)));
        }
        Ok(kernel)
    }

    /// Rows given as they are (`plain`) as the device loops take them: centred by the
    /// shift, lifted for the GEMMs, with the centred rows' squared norms.
    fn centred_data(&self, plain: &Array) -> Result<CentredData> {
        let centred = self.centre(plain)?;
        let norms = centred.square()?.sum_axis(1, false)?;
        Ok(CentredData { lifted: self.lift_rows(centred.clone())?, centred, norms, shift: self.shift_device() })
    }

    /// `a` (rows of data or centroids) minus the shift, or `a` itself without one.
    fn centre(&self, a: &Array) -> Result<Array> {
        Ok(match &self.shift {
            Some(shift) => a.subtract(&shift.device)?,
            None => a.clone(),
        })
    }

    /// Centroids given on the host (`k × d`) as the device computes with them: centred.
    fn centred_centroids(&self, centroids: MatRef<'_, f32>) -> Result<Array> {
        self.centre(&to_mlx(centroids))
    }

    /// The shift's host values, if any.
    fn shift_values(&self) -> Option<&[f32]> {
        self.shift.as_ref().map(|s| s.host.as_slice())
    }

    /// The shift on the device (`1 × d`), if any.
    fn shift_device(&self) -> Option<Array> {
        self.shift.as_ref().map(|s| s.device.clone())
    }

    /// `x` as the device loops take it: the resident data when `x` is all of it, else a copy.
    fn device_data(&self, x: MatRef<'_, f32>) -> Result<CentredData> {
        match self.whole_centred(x) {
            Some(resident) => Ok(resident),
            None => self.centred_data(&to_mlx(x)),
        }
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
    /// relative to the same sum (what it was measured at: `benchmarks/gpu.md`).
    /// Without the split, products were measured float32's own (Metal before the M5 class,
    /// MLX's CPU; a rounding device always splits): the bound is the CPU kernel's. Centring
    /// rounds each coordinate once more (4 units more).
    fn gemm_error_bound(&self, d: usize) -> f64 {
        let accumulation = mlx_kmeans::kernel::centred_f32_error_bound(d);
        if self.split {
            2f64.powi(-15) + accumulation
        } else {
            accumulation
        }
    }

    /// Centroids (given on the host) as the GEMMs take them, and the squared norms of the
    /// centred centroids (`1 × k`, in float32).
    fn lift_centroids(&self, centroids: MatRef<'_, f32>) -> Result<(Array, Array)> {
        lift_centroid_array(self.centred_centroids(centroids)?, centroids.rows(), self.split)
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
        (inside && (at - base).is_multiple_of(size)).then(|| (at - base) / size)
    }

    /// The resident data as it is, when `x` is all of it.
    fn whole(&self, x: MatRef<'_, f32>) -> Option<Array> {
        let offset = self.resident_offset(x);
        let (data, cols, resident) = self.resident()?;
        (offset == Some(0) && x.rows() == data.len() / cols).then(|| resident.plain.clone())
    }

    /// The resident data as a device Lloyd loop takes it, when `x` is all of it.
    fn whole_centred(&self, x: MatRef<'_, f32>) -> Option<CentredData> {
        let offset = self.resident_offset(x);
        let (data, cols, resident) = self.resident()?;
        (offset == Some(0) && x.rows() == data.len() / cols).then(|| CentredData {
            centred: resident.centred.clone(),
            lifted: resident.lifted.clone(),
            norms: resident.centred_norms.clone(),
            shift: self.shift_device(),
        })
    }

    /// Rows `start..end` of `x` centred: a slice of the resident data when `x` is the data or
    /// a run of its rows, else a copy.
    fn centred_rows(&self, x: MatRef<'_, f32>, start: usize, end: usize) -> Result<Array> {
        if let (Some(first), Some((_, _, resident))) = (self.resident_offset(x), self.resident()) {
            return Ok(resident.centred.index(((first + start) as i32..(first + end) as i32, ..)));
        }
        self.centre(&to_mlx(x.slice_rows(start, end)))
    }

    /// Rows `start..end` of `x` as the GEMMs take them (centred, lifted), the squared norms
    /// of the centred rows, and the centred rows: slices of the resident data when `x` is the
    /// data or a run of its rows, else one copy of those rows.
    fn rows(&self, x: MatRef<'_, f32>, start: usize, end: usize) -> Result<(Array, Array, Array)> {
        if let (Some(first), Some((data, cols, resident))) = (self.resident_offset(x), self.resident()) {
            if first + start == 0 && first + end == data.len() / cols {
                return Ok((resident.lifted.clone(), resident.centred_norms.clone(), resident.centred.clone()));
            }
            let range = (first + start) as i32..(first + end) as i32;
            return Ok((
                resident.lifted.index((range.clone(), ..)),
                resident.centred_norms.index(range.clone()),
                resident.centred.index((range, ..)),
            ));
        }
        let CentredData { lifted, norms, centred, .. } = self.centred_data(&to_mlx(x.slice_rows(start, end)))?;
        Ok((lifted, norms, centred))
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

/// Updated centred centroids as the device keeps them: unit norm as the user sees them (shifted
/// back) when spherical, and rounded to exactly the float32 values the user gets less the
/// shift, so that every device decision is about the centroids that are returned.
fn finish_centroids(centred: Array, spherical: bool, shift: Option<&Array>) -> Result<Array> {
    let Some(shift) = shift else {
        return if spherical { unit_rows(centred) } else { Ok(centred) };
    };
    let centred = if spherical { unit_rows(centred.add(shift)?)?.subtract(shift)? } else { centred };
    Ok(centred.add(shift)?.subtract(shift)?)
}

/// Centred values on the host as the user sees them: `centred + shift`.
fn uncentred_host(centred: &Array, shift: Option<&Array>) -> Result<Vec<f32>> {
    let plain = match shift {
        Some(shift) => centred.add(shift)?,
        None => centred.clone(),
    };
    eval_all(&[&plain])?;
    Ok(plain.as_slice::<f32>().to_vec())
}

/// Entries of a `rows × d` (or `rows × candidates × d`) difference made at once: bounds the
/// temporary to 256 MB of float32.
const DIFFERENCE_ENTRIES: usize = 1 << 26;

/// Each row's squared distance to its labelled centroid by differences (`rows`), exact up to
/// float32 rounding of each term, in blocks of rows that bound the temporary.
fn own_sq_distances(rows: &Array, centroids: &Array, labels: &Array) -> Result<Array> {
    let (n, d) = (rows.shape()[0] as usize, rows.shape()[1] as usize);
    let step = (DIFFERENCE_ENTRIES / d.max(1)).max(1);
    let mut pieces = Vec::new();
    for (start, end) in blocks(n, step) {
        let range = start as i32..end as i32;
        let own = centroids.take_axis(labels.index(range.clone()), 0)?;
        pieces.push(rows.index((range, ..)).subtract(&own)?.square()?.sum_axis(1, false)?);
    }
    Ok(if pieces.len() == 1 { pieces.pop().expect("one block") } else { mlx_rs::ops::concatenate(&pieces, 0)? })
}

/// Rows scaled to unit norm; zero rows stay zero.
fn unit_rows(rows: Array) -> Result<Array> {
    let norms = rows.square()?.sum_axis(1, true)?.sqrt()?;
    let scaled = rows.divide(&mlx_rs::ops::maximum(&norms, Array::from_f32(f32::MIN_POSITIVE))?)?;
    Ok(mlx_rs::ops::select(&norms.gt(Array::from_f32(0.0))?, &scaled, &rows)?)
}

fn to_mlx(m: MatRef<'_, f32>) -> Array {
    Array::from_slice(m.as_slice(), &[m.rows() as i32, m.cols() as i32])
}

/// Squared norms of the centroids as a `1 × k` row.
pub(super) fn row_norms(c: &Array, k: usize) -> Result<Array> {
    Ok(c.square()?.sum_axis(1, true)?.reshape(&[1, k as i32])?)
}

/// `‖c‖² − 2 x·c` for a block of rows against all centroids (`rows × k`), as one GEMM whose
/// epilogue adds the norms.
fn partial_distances(block: &Array, centroids: &Array, c_norms: &Array) -> Result<Array> {
    Ok(mlx_rs::ops::addmm(c_norms, block, centroids.t(), -2.0, 1.0)?)
}
