//! The float32 assignment on explicit SIMD dot-product kernels, picked at run time by CPU
//! feature ([`Dots`]). The `gemm` crate runs 256-bit FMAs only on stable Rust; these kernels
//! use 512-bit float32 FMAs, or bfloat16 pairs accumulated in float32 where the CPU runs
//! those faster. A rigorous per-row bound `E` on the error of the partial distances
//! `‖c‖² − 2x·c` they give (from the actual rounding residuals of the inputs, by
//! Cauchy–Schwarz, and the float32 accumulation) keeps the labels exact: every centroid within
//! `2E` of the best partial distance is measured again exactly (by differences, in float64),
//! and the nearest of those wins, ties to the lowest index.

mod kept;
pub mod screen;
mod settle;
// `matrix::dot` takes it on x86-64, where AVX-512 may run it.
#[cfg(target_arch = "x86_64")]
pub(crate) use settle::dot_f32;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
use x86::THIN_MAX;
#[cfg(not(target_arch = "x86_64"))]
const THIN_MAX: usize = 8;

use rayon::prelude::*;

use crate::matrix::MatRef;
pub use kept::RoundedRows;
use settle::{settle_block, Block, Bound, Source};

/// Columns per SIMD strip (float32 lanes of a 512-bit register).
const LANES: usize = 16;
/// Bytes of partial distances per row block: sets the rows per block for a given `k`.
const BLOCK_BYTES: usize = 1 << 19;
/// Fewest rows per block (the microkernel's tile height) and most.
const BLOCK_MIN: usize = 32;
const BLOCK_MAX: usize = 192;

/// How the dot products of rows with centroids are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dots {
    /// Float32 FMAs on 512-bit vectors (AVX-512F).
    F32,
    /// Rows and centroids rounded to bfloat16, pairs of products accumulated in float32
    /// (AVX512-BF16 `vdpbf16ps`): taken on AMD's cores (Zen 4 and later), where it issues at
    /// the FMA rate for twice the float32 flops. On an Intel core with AMX it measured 0.4×
    /// the float32 FMA flops, so Intel never takes it.
    Bf16,
    /// The same bfloat16 products on Intel's matrix tiles (AMX-BF16 `tdpbf16ps`, 16×16 dot
    /// products of 32 features per instruction): measured at about 960 GFLOP/s on one core
    /// (bound by the tile loads: the products alone run four times faster), against about
    /// 130 for the float32 kernel.
    Amx,
}

impl Dots {
    pub const ALL: [Dots; 3] = [Dots::F32, Dots::Bf16, Dots::Amx];

    pub fn name(self) -> &'static str {
        match self {
            Dots::F32 => "f32",
            Dots::Bf16 => "bf16",
            Dots::Amx => "amx",
        }
    }

    /// Steps per row in the kernels' layout (a step is one float32 feature or a pair of
    /// bfloat16 features; tiles take 16 pairs at a time), columns and rows per tile.
    fn layout(self, d: usize) -> Layout {
        match self {
            Dots::F32 => Layout { depth: d, cols: LANES, rows: 1 },
            Dots::Bf16 => Layout { depth: d.div_ceil(2), cols: LANES, rows: 1 },
            Dots::Amx => Layout { depth: d.div_ceil(32) * 16, cols: 2 * LANES, rows: 32 },
        }
    }

    /// Whether this CPU has the instructions.
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Dots::F32 => crate::matrix::wide_vectors(),
                Dots::Bf16 => bf16_rounding(),
                Dots::Amx => bf16_rounding() && x86::amx_ready(),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The kind this process uses: the one its first native call asked for ([`Dots::ask`])
    /// where this CPU has it, else the fastest this CPU has; `None` leaves the `gemm` crate.
    /// Fixed once per process, so that no fit ever mixes layouts.
    pub fn chosen() -> Option<Dots> {
        *CHOSEN.get_or_init(|| Dots::pick(None))
    }

    /// Asks for a kind by name (`amx`, `bf16`, `f32`, or `gemm` for none: a diagnostic, the
    /// labels are the same): taken when this is the process's first choice.
    pub fn ask(asked: Option<&str>) {
        CHOSEN.get_or_init(|| Dots::pick(asked));
    }

    fn pick(asked: Option<&str>) -> Option<Dots> {
        if asked == Some("gemm") {
            return None;
        }
        if let Some(kind) = Dots::ALL.into_iter().find(|kind| Some(kind.name()) == asked && kind.supported()) {
            return Some(kind);
        }
        if Dots::Amx.supported() {
            Some(Dots::Amx)
        } else if Dots::Bf16.supported() && full_width_bf16() {
            Some(Dots::Bf16)
        } else if Dots::F32.supported() {
            Some(Dots::F32)
        } else {
            None
        }
    }
}

static CHOSEN: std::sync::OnceLock<Option<Dots>> = std::sync::OnceLock::new();

/// Whether rows can be rounded to bfloat16 (AVX512-BF16, with AVX512BW for the flush).
#[cfg(target_arch = "x86_64")]
fn bf16_rounding() -> bool {
    crate::matrix::wide_vectors() && is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512bf16")
}

/// Whether `vdpbf16ps` issues at the float32 FMA rate (twice its flops): AMD's cores.
fn full_width_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let id = std::arch::x86_64::__cpuid(0);
        let vendor: Vec<u8> = [id.ebx, id.edx, id.ecx].iter().flat_map(|r| r.to_le_bytes()).collect();
        vendor == b"AuthenticAMD"
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Centroids for the microkernel: strips of 16 centroids, `[strip][step][lane]` (a step is
/// one feature in float32, a pair of features in bfloat16), zero-padded to whole strips, with
/// their float32 squared norms and the maxima the error bound needs.
struct Packed {
    strips: Vec<u32>,
    /// Centroids with the padding: a whole number of the kind's tile columns.
    padded: usize,
    /// `‖c‖²` rounded once from float64.
    c_norms: Vec<f32>,
    norm_max: f64,
    rounded_norm_max: f64,
    residual_max: f64,
    sq_norm_max: f64,
    /// Per centroid, float32 upper bounds on its norm (as given and rounded) and on its
    /// rounding residual's norm: each centroid's own share of the error bound.
    widths: Vec<f32>,
    residuals: Vec<f32>,
    /// `c_norms` padded to `padded` with infinities, for kernels that scan as they go (AMX).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    scan_norms: Vec<f32>,
}

/// Upper bounds on the norm of each (rounded) row and of its rounding residual.
struct RowNorms {
    rounded: Vec<f64>,
    residual: Vec<f64>,
}

impl RowNorms {
    /// The bounds of consecutive pieces of rows, as one.
    fn joined(pieces: &[RowNorms]) -> Self {
        RowNorms {
            rounded: pieces.iter().flat_map(|p| p.rounded.iter().copied()).collect(),
            residual: pieces.iter().flat_map(|p| p.residual.iter().copied()).collect(),
        }
    }
}

/// How a kind lays out rows and centroids: `depth` steps per row (zero-padded), centroids
/// padded to a multiple of `cols`, rows of a block to a multiple of `rows`.
#[derive(Debug, Clone, Copy)]
struct Layout {
    depth: usize,
    cols: usize,
    rows: usize,
}

/// The bounds [`assign`] gives besides labels and distances.
pub enum Extra<'a> {
    None,
    /// Per row, a lower bound on its squared distance to every centroid other than its own
    /// (within the error bound of the runner-up, never below the row's own distance).
    RunnerUp(&'a mut [f32]),
    /// Per row and group (`rows × members.len()`, row-major), a lower bound on its squared
    /// distance to the group's centroids (`members[g]`) other than its own; infinite for a
    /// group with no other.
    Groups {
        members: &'a [Vec<u32>],
        lower: &'a mut [f32],
    },
    /// Per row, the `t` centroids of least computed distance (`nearest`, `rows × t`,
    /// row-major; `u32::MAX` where there are fewer), a lower bound on its squared distance to
    /// every other centroid (`beyond`; zero where a distance overflowed), and `RunnerUp`'s.
    Nearest {
        t: usize,
        nearest: &'a mut [u32],
        beyond: &'a mut [f32],
        second: &'a mut [f32],
    },
}

/// Labels (the exact nearest centroids, ties to the lowest index) and exact squared
/// distances of the rows of `x`, and the bounds `extra` asks for. Call only where
/// `kind.supported()`.
pub fn assign(
    kind: Dots,
    x: MatRef<'_, f32>,
    x_sq_norms: &[f32],
    centroids: MatRef<'_, f32>,
    labels: &mut [u32],
    distances: &mut [f32],
    extra: Extra<'_>,
) {
    assign_rows(kind, Rows::All(x), x_sq_norms, centroids, labels, distances, extra, true)
}

/// The rows of an assignment.
#[derive(Clone, Copy)]
pub enum Rows<'a> {
    /// Every row of the matrix.
    All(MatRef<'a, f32>),
    /// The listed rows of the matrix (one label, distance and bound per listed row; norms
    /// are every row's): each block copies its rows into a buffer of its own, in cache,
    /// instead of the caller gathering them all first; or, where `kept` holds every row of
    /// the matrix rounded for the kind, copies their rounded words (half the bytes) and reads
    /// the rows themselves only for near ties.
    Listed(MatRef<'a, f32>, &'a [usize], Option<&'a RoundedRows>),
    /// Every row of the matrix, whose rounded words are those of rows `first..` of `kept`
    /// (where they serve the kind; else the rows are rounded as ever).
    Kept(MatRef<'a, f32>, &'a RoundedRows, usize),
}

/// [`assign`] of the rows `rows` says. Without `measure`, a row whose best centroid the error
/// bound settles keeps its computed distance raised by that bound (its partial distance plus
/// its norm and the bound: an upper bound on the exact one) instead of being measured
/// exactly; rows with near ties are measured as ever.
#[allow(clippy::too_many_arguments)]
pub fn assign_rows(
    kind: Dots,
    rows: Rows<'_>,
    x_sq_norms: &[f32],
    centroids: MatRef<'_, f32>,
    labels: &mut [u32],
    distances: &mut [f32],
    extra: Extra<'_>,
    measure: bool,
) {
    let (x, subset, kept) = match rows {
        Rows::All(x) => (x, None, None),
        Rows::Listed(x, listed, kept) => {
            (x, Some(listed), kept.filter(|kept| kept.serves(kind, 0, x)).map(|kept| (kept, 0)))
        }
        Rows::Kept(x, kept, first) => {
            (x, None, (kept.serves(kind, first, x) && !kept.laid_out()).then_some((kept, first)))
        }
    };
    assert!(kind.supported(), "{kind:?} kernels on a CPU without them");
    assert_eq!(labels.len(), subset.map_or(x.rows(), <[usize]>::len), "one label per row assigned");
    let d = x.cols();
    let layout = kind.layout(d);
    let depth = layout.depth;
    let packed = pack_centroids(kind, centroids);
    let padded = packed.padded;
    // Rows per block: enough for the microkernel to reuse each strip of centroids, few
    // enough that the block's partial distances stay in cache. Results do not depend on it.
    // (No more than the rows: a call on a few rows allocates no more than they need.)
    let block =
        (BLOCK_BYTES / (4 * padded)).clamp(BLOCK_MIN, BLOCK_MAX).min(labels.len().max(1)).next_multiple_of(layout.rows);
    let bound = Bound::new(kind, d, &packed);
    // Each block's share of the bounds asked for.
    let mut extras: Vec<Extra<'_>> = match extra {
        Extra::None => (0..labels.len().div_ceil(block)).map(|_| Extra::None).collect(),
        Extra::RunnerUp(s) => s.chunks_mut(block).map(Extra::RunnerUp).collect(),
        Extra::Groups { members, lower } => {
            lower.chunks_mut(block * members.len().max(1)).map(|lower| Extra::Groups { members, lower }).collect()
        }
        Extra::Nearest { t, nearest, beyond, second } => (nearest.chunks_mut(block * t.max(1)))
            .zip(beyond.chunks_mut(block))
            .zip(second.chunks_mut(block))
            .map(|((nearest, beyond), second)| Extra::Nearest { t, nearest, beyond, second })
            .collect(),
    };
    // Words for rows rounded or copied here (made by the first block that does: rows read
    // where they lie need none).
    let words_per_block = block * depth;
    let copied_per_block = match (subset, kept) {
        (Some(_), None) => block,
        _ => 0,
    };
    // Listed rows that lie in order in a laid-out copy are read there, with the rows between
    // them: at most this many rows' products a block.
    let stretch_most = if subset.is_some() && kept.is_some_and(|(kept, _)| kept.laid_out()) { 4 * block } else { 0 };
    let labels_total = labels.len();
    labels
        .par_chunks_mut(block)
        .zip(distances.par_chunks_mut(block))
        .zip(extras.par_iter_mut())
        .enumerate()
        .for_each_init(
            || {
                let copies = (vec![0f32; copied_per_block * d], vec![0f32; copied_per_block]);
                (Vec::new(), Scratch::at_least(block.max(stretch_most) * padded), copies)
            },
            |(words, dots, (copied, copied_norms)), (b, ((labels, distances), extra))| {
                let dots = &mut dots.values;
                let start = b * block;
                let m = labels.len();
                // Rows the tiles compute: a whole number of tiles (the extra rows of a last
                // block hold stale words; their dots are never read).
                let tiled = m.next_multiple_of(layout.rows);
                let (rows, norms) = match (subset, kept) {
                    (None, _) => (Source::Rows(x.slice_rows(start, start + m)), &x_sq_norms[start..start + m]),
                    // The rows are read where they lie, and only for near ties.
                    (Some(subset), Some(_)) => {
                        let listed = &subset[start..start + m];
                        copied_norms.clear();
                        copied_norms.extend(listed.iter().map(|&i| x_sq_norms[i]));
                        (Source::Listed(x, listed), &copied_norms[..])
                    }
                    (Some(subset), None) => {
                        let listed = &subset[start..start + m];
                        for ((copy, norm), &i) in
                            copied.chunks_exact_mut(d.max(1)).zip(copied_norms.iter_mut()).zip(listed)
                        {
                            copy[..d].copy_from_slice(x.row(i));
                            *norm = x_sq_norms[i];
                        }
                        let rows = MatRef::new(&copied[..m * d], m, d).expect("a block of copied rows");
                        (Source::Rows(rows), &copied_norms[..m])
                    }
                };
                let made;
                // Rows the products run over, and where the block's rows lie among them when
                // they are read in place among others.
                let (mut computed, mut picked) = (tiled, None);
                let (a, rounded, residual): (&[u32], &[f64], &[f64]) = match (kind, kept, rows) {
                    (Dots::F32, _, Source::Rows(rows)) => {
                        made = exact_row_norms(norms, d);
                        (as_words(rows.as_slice()), &made.rounded, &made.residual)
                    }
                    (Dots::F32, _, Source::Listed(..)) => unreachable!("float32 rows keep no copy"),
                    // Listed rows' rounded words gathered from the kept copy, tile by tile.
                    (_, Some((kept, _)), Source::Listed(_, listed)) => {
                        match kept.stretch(listed, layout.rows, stretch_most) {
                            Some((first, offsets)) => {
                                computed = (offsets[m - 1] + 1).next_multiple_of(layout.rows);
                                made = kept.norms_of(listed);
                                picked = Some(offsets);
                                (&kept.words[first * depth..(first + computed) * depth], &made.rounded, &made.residual)
                            }
                            None => {
                                words.resize(words_per_block, 0);
                                made = kept.gather(listed, depth, &mut words[..tiled * depth]);
                                (&words[..tiled * depth], &made.rounded, &made.residual)
                            }
                        }
                    }
                    // `first + start` starts a tile (`serves`), and the kept words run to a
                    // whole piece past the last row: `tiled` rows' words are there.
                    (_, Some((kept, first)), Source::Rows(_)) => {
                        let at = first + start;
                        let a = &kept.words[at * depth..(at + tiled) * depth];
                        (a, &kept.norms.rounded[at..at + m], &kept.norms.residual[at..at + m])
                    }
                    (Dots::Bf16 | Dots::Amx, None, Source::Listed(..)) => unreachable!("listed rows are copied"),
                    (Dots::Bf16 | Dots::Amx, None, Source::Rows(rows)) => {
                        words.resize(words_per_block, 0);
                        made = round_rows(rows, depth, kind == Dots::Amx, &mut words[..tiled * depth]);
                        (&words[..tiled * depth], &made.rounded, &made.residual)
                    }
                };
                // SAFETY: `kind` is supported (asserted above); `a` holds `tiled × depth`
                // words, the strips `padded × depth`, `dots` `tiled × padded` values, and
                // the padded norms `padded`.
                let dots = &mut dots[..computed * padded];
                // The rows the next block reads (the task's next, most often), where they lie.
                let next = (start + m)..(start + m + block).min(labels_total);
                // (Listed rows gathered from the kept ones gained nothing from it.)
                let ahead: &[u8] = match (subset, kept) {
                    (Some(subset), Some((kept, _))) if picked.is_some() => {
                        kept.stretch_bytes(&subset[next.clone()], layout.rows, stretch_most)
                    }
                    (Some(_), _) => &[],
                    (None, Some((kept, first))) => {
                        let words = &kept.words[((first + next.start) * depth).min(kept.words.len())..];
                        as_bytes(&words[..(next.len() * depth).min(words.len())])
                    }
                    (None, None) => as_bytes(as_words(x.slice_rows(next.start, next.end).as_slice())),
                };
                let mut firsts = unsafe { kernel_dots_scanned(kind, a, computed, depth, &packed, dots, ahead) };
                if let Some(offsets) = &picked {
                    // The block's rows' products first, in order (an offset is never below
                    // its row's place, so nothing is overwritten before it is read).
                    for (r, &offset) in offsets.iter().enumerate() {
                        dots.copy_within(offset * padded..(offset + 1) * padded, r * padded);
                    }
                    firsts = firsts.map(|firsts| offsets.iter().map(|&offset| firsts[offset]).collect());
                }
                let dots = &dots[..tiled * padded];
                let block = Block { rows, norms, rounded, residual, dots, padded, firsts: firsts.as_deref() };
                // SAFETY: every kind runs on AVX-512F (`kind.supported()`, asserted above).
                unsafe { settle_block(&block, &packed.c_norms, centroids, &bound, labels, distances, extra, measure) };
            },
        );
}

/// A thread's block of partial distances, kept between kernel calls: the lists' passes call
/// the kernel once per run of a few rows, and a fresh block each time cost its allocation
/// and zeroing. Values left by an earlier call are never read: the products write every
/// value a block reads.
struct Scratch {
    values: Vec<f32>,
}

thread_local! {
    static SPARE_DOTS: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

impl Scratch {
    /// This thread's block, grown to at least `len` values.
    fn at_least(len: usize) -> Self {
        let mut values = SPARE_DOTS.with(std::cell::Cell::take);
        if values.len() < len {
            values.resize(len, 0.0);
        }
        Self { values }
    }
}

/// Most values a thread keeps between calls (8 MiB): more (tens of thousands of centroids)
/// is freed with the call.
const SPARE_MOST: usize = 1 << 21;

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.values.capacity() <= SPARE_MOST {
            SPARE_DOTS.with(|spare| spare.set(std::mem::take(&mut self.values)));
        }
    }
}

/// Words as their bytes.
fn as_bytes(words: &[u32]) -> &[u8] {
    // SAFETY: every u32 is four initialised bytes; u8 has alignment 1.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), 4 * words.len()) }
}

/// Float32 values as the kernels' words (their bits).
fn as_words(values: &[f32]) -> &[u32] {
    // SAFETY: f32 and u32 have the same size and alignment, and every bit pattern is a u32.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u32>(), values.len()) }
}

/// Float32 sums of `d` squares, inflated by their own rounding error bound.
fn inflation(d: usize) -> f64 {
    1.0 + 2.0 * (d + 2) as f64 * f32::EPSILON as f64
}

/// Row norms for float32 kernels, from the rows' float32 squared norms: nothing is rounded.
fn exact_row_norms(x_sq_norms: &[f32], d: usize) -> RowNorms {
    let inflate = inflation(d);
    RowNorms {
        rounded: x_sq_norms.iter().map(|&v| (v as f64 * inflate).sqrt()).collect(),
        residual: vec![0.0; x_sq_norms.len()],
    }
}

/// Where row `r`'s words lie among rows of `depth` words: its first word, and the step from
/// one chunk of 16 words to the next. Row-major, or (`tiles`, the AMX kernel's rows) in tiles
/// of 16 rows, `[tile][chunk][row][16 words]`, so that one tile load reads 1 KiB in a row
/// (measured: a quarter more products a second than rows 16 apart).
fn row_words(r: usize, depth: usize, tiles: bool) -> (usize, usize) {
    if tiles {
        ((r / 16) * depth * 16 + (r % 16) * 16, 256)
    } else {
        (r * depth, 16)
    }
}

/// Rounds each row of `rows` to bfloat16 pairs in `words` (`depth` words per row, laid out as
/// [`row_words`] says; words past the row's pairs are left as they are) and bounds its norms.
fn round_rows(rows: MatRef<'_, f32>, depth: usize, tiles: bool, words: &mut [u32]) -> RowNorms {
    round_rows_of(rows.rows(), rows.cols(), |r| rows.row(r), depth, tiles, words)
}

/// [`round_rows`] of the `m` rows `row(0)`, …, `row(m − 1)` (each `d` wide), read where
/// they lie.
fn round_rows_of<'a>(
    m: usize,
    d: usize,
    row: impl Fn(usize) -> &'a [f32],
    depth: usize,
    tiles: bool,
    words: &mut [u32],
) -> RowNorms {
    let inflate = inflation(d);
    let (mut rounded, mut residual) = (vec![0.0; m], vec![0.0; m]);
    for r in 0..m {
        let (start, chunk_stride) = row_words(r, depth, tiles);
        let row = row(r);
        assert_eq!(row.len(), d, "rows of one width");
        // SAFETY: only called for bfloat16 kinds, which `assign` checked are supported.
        let (rounded_sq, residual_sq) = unsafe { round_row(row, &mut words[start..], chunk_stride) };
        rounded[r] = (rounded_sq as f64 * inflate).sqrt();
        residual[r] = (residual_sq as f64 * inflate).sqrt();
    }
    RowNorms { rounded, residual }
}

/// Centroids a task of [`pack_centroids`] rounds at once.
const PACK_ROWS: usize = 32;

/// Rounds the centroids if the kind asks, lays them out in strips and takes their norms.
fn pack_centroids(kind: Dots, centroids: MatRef<'_, f32>) -> Packed {
    let (k, d) = (centroids.rows(), centroids.cols());
    let layout = kind.layout(d);
    let depth = layout.depth;
    // Every step works row by row (or strip by strip), in parallel: packing runs once per
    // kernel call, while the other threads would wait.
    let sq_norms: Vec<f64> = (0..k)
        .into_par_iter()
        .with_min_len(PACK_ROWS)
        .map(|j| centroids.row(j).iter().map(|&v| (v as f64) * (v as f64)).sum())
        .collect();
    let max = |v: &[f64]| v.iter().fold(0.0f64, |m, &a| m.max(a));
    let sq_norm_max = max(&sq_norms);
    let norm_max = sq_norm_max.sqrt() * (1.0 + 1e-12);
    let rounded_words;
    let norms: Vec<f64> = sq_norms.iter().map(|&v| v.sqrt() * (1.0 + 1e-12)).collect();
    let (words, rounded, residuals) = match kind {
        Dots::F32 => (as_words(centroids.as_slice()), norms.clone(), vec![0.0; k]),
        Dots::Bf16 | Dots::Amx => {
            let mut words = vec![0u32; k * depth];
            let pieces: Vec<RowNorms> = (words.par_chunks_mut((PACK_ROWS * depth).max(1)).enumerate())
                .map(|(p, words)| {
                    let rows = centroids.slice_rows(p * PACK_ROWS, ((p + 1) * PACK_ROWS).min(k));
                    round_rows(rows, depth, false, words)
                })
                .collect();
            rounded_words = words;
            let norms = RowNorms::joined(&pieces);
            (&rounded_words[..], norms.rounded, norms.residual)
        }
    };
    let (rounded_norm_max, residual_max) = (max(&rounded), max(&residuals));
    let widths = norms.iter().zip(&rounded).map(|(&a, &b)| f32_up(a.max(b))).collect();
    let residuals = residuals.iter().map(|&r| f32_up(r)).collect();
    // Strips of 16 centroids, `[strip][step][lane]`: for the tiles, 16 steps of a strip are
    // one tile of the second operand (16 rows of 64 bytes).
    let padded = k.div_ceil(layout.cols) * layout.cols;
    let mut strips = vec![0u32; padded * depth];
    strips.par_chunks_exact_mut((depth * LANES).max(1)).enumerate().for_each(|(s, strip)| {
        for lane in 0..LANES.min(k.saturating_sub(s * LANES)) {
            let row = &words[(s * LANES + lane) * depth..(s * LANES + lane + 1) * depth];
            for (p, &word) in row.iter().enumerate() {
                strip[p * LANES + lane] = word;
            }
        }
    });
    let c_norms: Vec<f32> = sq_norms.iter().map(|&v| v as f32).collect();
    let scan_norms = c_norms.iter().copied().chain(std::iter::repeat(f32::INFINITY)).take(padded).collect();
    Packed {
        strips,
        padded,
        c_norms,
        scan_norms,
        norm_max,
        rounded_norm_max,
        residual_max,
        sq_norm_max,
        widths,
        residuals,
    }
}

/// The smallest float32 at least `value`.
fn f32_up(value: f64) -> f32 {
    let rounded = value as f32;
    if (rounded as f64) < value {
        rounded.next_up()
    } else {
        rounded
    }
}

/// `dots[r][j]`, the dot product of row `r` of `a` (`m × depth` words) with centroid `j`
/// of the strips (`padded × depth`), into `dots` (`m × padded`, row-major).
///
/// # Safety
/// `kind` must be supported by this CPU, and the slices at least the sizes above.
unsafe fn kernel_dots(kind: Dots, a: &[u32], m: usize, depth: usize, strips: &[u32], padded: usize, dots: &mut [f32]) {
    assert!(a.len() >= m * depth && strips.len() >= padded * depth && dots.len() >= m * padded);
    #[cfg(target_arch = "x86_64")]
    match kind {
        Dots::F32 => x86::dots_f32(a, m, depth, strips, padded, dots),
        Dots::Bf16 => x86::dots_bf16(a, m, depth, strips, padded, dots),
        Dots::Amx => x86::dots_amx(a, m, depth, strips, padded, dots, None, &[]),
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("{kind:?} kernels exist on x86-64 only ({a:p}, {m}, {depth}, {strips:p}, {padded}, {dots:p})")
}

/// [`kernel_dots`] with the centroids `packed`, and where the kind scans the partial
/// distances as it goes (AMX: while its tiles multiply), each row's least partial distance,
/// its centroid and the runner-up, as `settle::argmin2` gives them; `ahead`: bytes the next
/// block reads, asked for while these multiply (AMX).
///
/// # Safety
/// As [`kernel_dots`].
unsafe fn kernel_dots_scanned(
    kind: Dots,
    a: &[u32],
    m: usize,
    depth: usize,
    packed: &Packed,
    dots: &mut [f32],
    ahead: &[u8],
) -> Option<Vec<(f32, usize, f32)>> {
    #[cfg(target_arch = "x86_64")]
    if kind == Dots::Amx {
        let mut lanes = vec![x86::Lanes::new(); m];
        let scan = Some((&packed.scan_norms[..], &mut lanes[..]));
        x86::dots_amx(a, m, depth, &packed.strips, packed.padded, dots, scan, ahead);
        return Some(lanes.into_iter().map(|lanes| lanes.finish()).collect());
    }
    // Only the AMX kernel asks for rows ahead.
    let _ = ahead;
    kernel_dots(kind, a, m, depth, &packed.strips, packed.padded, dots);
    None
}

/// Float32 dot products of the rows of `x` with a few centroids (at most 16; k-means++
/// candidates) into `out` (`x.rows() × k`, row-major), on AVX-512F where the CPU has it and a
/// `gemm` call pays less than its overhead; false where they were not computed.
pub fn thin_dots(x: MatRef<'_, f32>, centroids: MatRef<'_, f32>, out: &mut [f32]) -> bool {
    let rows: Vec<usize> = (0..x.rows()).collect();
    thin_dots_of_rows(x, &rows, centroids, out)
}

/// [`thin_dots`] of the rows `rows` of `x` (`rows.len() × k` into `out`), read where they lie:
/// each row's values are those [`thin_dots`] gives it.
pub fn thin_dots_of_rows(x: MatRef<'_, f32>, rows: &[usize], centroids: MatRef<'_, f32>, out: &mut [f32]) -> bool {
    let (k, d) = (centroids.rows(), x.cols());
    if !(Dots::F32.supported() && Dots::chosen().is_some()) || k > 2 * THIN_MAX || d < LANES {
        return false;
    }
    assert!(out.len() >= rows.len() * k && rows.iter().all(|&i| i < x.rows()));
    for j0 in (0..k).step_by(THIN_MAX) {
        let t = THIN_MAX.min(k - j0);
        let c = centroids.slice_rows(j0, j0 + t);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512F is supported (checked above); the rows lie in `x`; `out` holds
        // `rows.len() × k` values, the first of this group at column `j0`.
        unsafe {
            x86::thin_dots_f32(x.as_slice(), d, rows, c.as_slice(), t, &mut out[j0..], k)
        };
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("{c:?}");
    }
    true
}

/// Rounds `row` to bfloat16 pairs and returns the float32 sums of squares of the rounded
/// values and of the residuals.
///
/// # Safety
/// `Dots::Bf16` must be supported; `words` holds `row.len().div_ceil(2)` words.
unsafe fn round_row(row: &[f32], words: &mut [u32], chunk_stride: usize) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    return x86::round_row_bf16(row, words, chunk_stride);
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("bfloat16 kernels exist on x86-64 only ({}, {}, {chunk_stride})", row.len(), words.len())
}

#[cfg(test)]
mod tests;
