//! The x86-64 kernels: AVX-512 microkernels (a tile of 8 rows, broadcast one step at a
//! time, by 3 strips of 16 centroids: 24 accumulators), AMX tiles, and the bfloat16 rounding
//! of rows.

use std::arch::asm;
use std::arch::x86_64::*;

use super::LANES;

const TILE_ROWS: usize = 8;
const TILE_STRIPS: usize = 3;
/// Steps per block: a group of strips (16 KiB of words per 64 steps) stays in the L1 cache.
const DEPTH_BLOCK: usize = 128;

/// The mask of the first `count` of 16 lanes (all of them from 16 on).
#[inline(always)]
pub fn first_lanes(count: usize) -> __mmask16 {
    ((1u32 << count.min(LANES)) - 1) as __mmask16
}

/// Rounds `row` to bfloat16 pairs in `words` (round to nearest even; an odd last feature is
/// paired with zero), each chunk of 16 pairs `chunk_stride` words after the one before (16:
/// contiguous), and returns the float32 sums of squares of the rounded values and of the
/// residuals. Subnormal results become zero, as the dot-product instructions read them.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub unsafe fn round_row_bf16(row: &[f32], words: &mut [u32], chunk_stride: usize) -> (f32, f32) {
    let d = row.len();
    let pairs = d.div_ceil(2);
    assert!(
        chunk_stride >= LANES && (pairs == 0 || words.len() > (pairs - 1) / LANES * chunk_stride + (pairs - 1) % LANES)
    );
    let take = |from: usize| first_lanes(d.saturating_sub(from));
    let (mut rounded_sq, mut residual_sq) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    for c in (0..d).step_by(2 * LANES) {
        let lo = _mm512_maskz_loadu_ps(take(c), row.as_ptr().add(c));
        let hi = _mm512_maskz_loadu_ps(take(c + LANES), row.as_ptr().add((c + LANES).min(d)));
        let both: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
        let normal = _mm512_test_epi16_mask(both, _mm512_set1_epi16(0x7f80));
        let both = _mm512_maskz_mov_epi16(normal, both);
        for (half, original) in [(_mm512_extracti64x4_epi64::<0>(both), lo), (_mm512_extracti64x4_epi64::<1>(both), hi)]
        {
            let back = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(half)));
            let residual = _mm512_sub_ps(original, back);
            rounded_sq = _mm512_fmadd_ps(back, back, rounded_sq);
            residual_sq = _mm512_fmadd_ps(residual, residual, residual_sq);
        }
        let words_left = (pairs - c / 2).min(LANES);
        let at = c / (2 * LANES) * chunk_stride;
        _mm512_mask_storeu_epi32(words.as_mut_ptr().add(at).cast(), first_lanes(words_left), both);
    }
    (_mm512_reduce_add_ps(rounded_sq), _mm512_reduce_add_ps(residual_sq))
}

/// `‖x̃ − c‖²` in float32 of a row kept as `depth` bfloat16 words (chunks of 16 words, each
/// 32 features in order, `chunk_stride` words apart from `words`; the last chunk may be
/// partial) and `c`, zero-padded to 32 features a chunk.
///
/// # Safety
/// AVX-512F must be supported; `words` holds the row's chunks and `c` 32 values a chunk.
#[target_feature(enable = "avx512f")]
pub unsafe fn kept_sq_distance(words: &[u32], chunk_stride: usize, depth: usize, c: &[f32]) -> f32 {
    let chunks = depth.div_ceil(LANES);
    assert!(
        chunks == 0
            || (words.len() >= (chunks - 1) * chunk_stride + (depth - (chunks - 1) * LANES)
                && c.len() >= 2 * LANES * chunks)
    );
    let mut sum = _mm512_setzero_ps();
    for chunk in 0..chunks {
        let mask = first_lanes(depth - chunk * LANES);
        let both = _mm512_maskz_loadu_epi32(mask, words.as_ptr().add(chunk * chunk_stride).cast());
        let centre = c.as_ptr().add(chunk * 2 * LANES);
        for (h, half) in
            [_mm512_extracti64x4_epi64::<0>(both), _mm512_extracti64x4_epi64::<1>(both)].into_iter().enumerate()
        {
            let value = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(half)));
            let diff = _mm512_sub_ps(value, _mm512_loadu_ps(centre.add(h * LANES)));
            sum = _mm512_fmadd_ps(diff, diff, sum);
        }
    }
    _mm512_reduce_add_ps(sum)
}

/// Tiles over all rows and strips; `$tile` is the microkernel for one tile.
macro_rules! tiled {
    ($name:ident, $tile:ident, $features:literal) => {
        #[target_feature(enable = $features)]
        pub unsafe fn $name(a: &[u32], m: usize, depth: usize, strips: &[u32], padded: usize, dots: &mut [f32]) {
            let strip_stride = depth * LANES;
            let n_strips = padded / LANES;
            // Blocks of steps keep a group of strips in the L1 cache while the row tiles
            // pass; tiles after the first block add to the dots already stored.
            for k0 in (0..depth).step_by(DEPTH_BLOCK) {
                let len = DEPTH_BLOCK.min(depth - k0);
                let first = k0 == 0;
                for s0 in (0..n_strips).step_by(TILE_STRIPS) {
                    let nv = TILE_STRIPS.min(n_strips - s0);
                    let b = strips.as_ptr().add(s0 * strip_stride + k0 * LANES);
                    for r0 in (0..m).step_by(TILE_ROWS) {
                        let rows = TILE_ROWS.min(m - r0);
                        let a = a.as_ptr().add(r0 * depth + k0);
                        let out = dots.as_mut_ptr().add(r0 * padded + s0 * LANES);
                        macro_rules! run {
                            ($mr:literal) => {
                                match nv {
                                    1 => $tile::<$mr, 1>(a, depth, len, b, strip_stride, out, padded, first),
                                    2 => $tile::<$mr, 2>(a, depth, len, b, strip_stride, out, padded, first),
                                    _ => $tile::<$mr, 3>(a, depth, len, b, strip_stride, out, padded, first),
                                }
                            };
                        }
                        match rows {
                            1 => run!(1),
                            2 => run!(2),
                            3 => run!(3),
                            4 => run!(4),
                            5 => run!(5),
                            6 => run!(6),
                            7 => run!(7),
                            _ => run!(8),
                        }
                    }
                }
            }
        }
    };
}

/// One `MR × 16·NV` tile over `len` steps, from zero (`first`) or from the stored dots:
/// `$step(acc, row word broadcast, strip vector)` per step.
macro_rules! tile {
    ($name:ident, $features:literal, |$acc:ident, $row:ident, $col:ident| $step:expr) => {
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn $name<const MR: usize, const NV: usize>(
            a: *const u32,
            lda: usize,
            len: usize,
            b: *const u32,
            strip_stride: usize,
            out: *mut f32,
            ldo: usize,
            first: bool,
        ) {
            let mut acc = [[_mm512_setzero_ps(); NV]; MR];
            if !first {
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    for (s, acc) in acc_row.iter_mut().enumerate() {
                        *acc = _mm512_loadu_ps(out.add(r * ldo + s * LANES));
                    }
                }
            }
            for p in 0..len {
                let mut centroid = [_mm512_setzero_si512(); NV];
                for (s, v) in centroid.iter_mut().enumerate() {
                    *v = _mm512_loadu_si512(b.add(s * strip_stride + p * LANES).cast());
                }
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let $row = _mm512_set1_epi32(*a.add(r * lda + p) as i32);
                    for (s, $acc) in acc_row.iter_mut().enumerate() {
                        let $col = centroid[s];
                        *$acc = $step;
                    }
                }
            }
            for (r, acc_row) in acc.iter().enumerate() {
                for (s, acc) in acc_row.iter().enumerate() {
                    _mm512_storeu_ps(out.add(r * ldo + s * LANES), *acc);
                }
            }
        }
    };
}

tile!(tile_f32, "avx512f", |acc, row, col| _mm512_fmadd_ps(_mm512_castsi512_ps(row), _mm512_castsi512_ps(col), *acc));
tile!(tile_bf16, "avx512f,avx512bf16", |acc, row, col| _mm512_dpbf16_ps(
    *acc,
    std::mem::transmute::<__m512i, __m512bh>(row),
    std::mem::transmute::<__m512i, __m512bh>(col)
));
tiled!(dots_f32, tile_f32, "avx512f");
tiled!(dots_bf16, tile_bf16, "avx512f,avx512bf16");

/// Whether this CPU and OS run AMX-BF16 tiles: CPUID says so, and Linux grants this process
/// the tile data state (asked once).
pub fn amx_ready() -> bool {
    static READY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *READY.get_or_init(|| {
        let id = __cpuid_count(7, 0);
        let (bf16, tile) = (id.edx >> 22 & 1 == 1, id.edx >> 24 & 1 == 1);
        bf16 && tile && request_tile_data()
    })
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: Linux (5.16 and later) enables the
/// tile registers for a process that asks; elsewhere they are not used.
fn request_tile_data() -> bool {
    #[cfg(target_os = "linux")]
    {
        const SYS_ARCH_PRCTL: i64 = 158;
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        let status: i64;
        // SAFETY: a plain system call with integer arguments; it changes only whether this
        // process may use the tile registers.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL => status,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        status == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// The tile configuration: palette 1, eight tiles of 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

const TILE_CONFIG: TileConfig = {
    let mut config = [0u8; 64];
    config[0] = 1;
    let mut t = 0;
    while t < 8 {
        config[16 + 2 * t] = 64;
        config[48 + t] = 16;
        t += 1;
    }
    TileConfig(config)
};

/// The bfloat16 dots on AMX tiles: 32 rows by 32 centroids at a time in four accumulator
/// tiles (tmm0–3), from two tiles of 16 rows × 16 pairs (tmm4–5) and two of 16 pairs × 16
/// centroids (tmm6–7, one strip each). The rows `a` are laid out in tiles of 16
/// (`super::row_words`), `m` is a multiple of 32 and `depth` of 16; `padded` of 32.
///
/// With `scan` (the centroids' squared norms, `padded` of them, infinite past the last, and
/// one [`Lanes`] per row), each row's partial distances are also scanned as [`Lanes::step`]
/// takes them, in centroid order: the 32 × 32 block stored last is scanned a few rows at a
/// time between the loads and products of the next, so that the vector units work while the
/// tiles multiply. The bytes `ahead` (the next block's rows) are asked for into the cache,
/// spread over the steps.
///
/// # Safety
/// [`amx_ready`] must hold, and the slices be at least `m × depth`, `padded × depth` and
/// `m × padded` (`scan`: `padded` norms and `m` lanes).
#[target_feature(enable = "avx512f")]
pub unsafe fn dots_amx(
    a: &[u32],
    m: usize,
    depth: usize,
    strips: &[u32],
    padded: usize,
    dots: &mut [f32],
    mut scan: Option<(&[f32], &mut [Lanes])>,
    ahead: &[u8],
) {
    assert!(m.is_multiple_of(32) && depth.is_multiple_of(16) && padded.is_multiple_of(32));
    assert!(a.len() >= m * depth && strips.len() >= padded * depth && dots.len() >= m * padded);
    if let Some((c_norms, lanes)) = &scan {
        assert!(c_norms.len() >= padded && lanes.len() >= m);
    }
    let out_bytes = padded * 4;
    let strip_stride = depth * LANES;
    let steps = depth / 16;
    // Rows of the block stored last scanned after each step's products.
    let rows_per_step = 32usize.div_ceil(steps.max(1));
    let dots = dots.as_mut_ptr();
    // The block whose dots were stored last and are not yet scanned: (first row, centroid).
    let mut stored: Option<(usize, usize)> = None;
    // The next block's rows asked for into the second-level cache a few lines a step, so
    // that their reads from memory overlap these products.
    let lines = ahead.len().div_ceil(64);
    let per_step = lines.div_ceil(((m / 32) * (padded / 32) * steps).max(1));
    let mut next_line = 0;
    asm!("ldtilecfg [{}]", in(reg) TILE_CONFIG.0.as_ptr(), options(nostack, readonly));
    for r0 in (0..m).step_by(32) {
        // Rows come in tiles of 16 (`super::row_words`): each tile load reads 1 KiB in a row.
        let a0 = a.as_ptr().add(r0 * depth);
        let a1 = a0.add(16 * depth);
        for c0 in (0..padded).step_by(32) {
            let b0 = strips.as_ptr().add(c0 / LANES * strip_stride);
            let b1 = b0.add(strip_stride);
            asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
            for step in 0..steps {
                let p0 = step * 16;
                // Each product follows the loads it needs, so that loads overlap products.
                asm!(
                    "tileloadd tmm4, [{a0} + {stride}*1]",
                    "tileloadd tmm6, [{b0} + {stride}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tileloadd tmm7, [{b1} + {stride}*1]",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tileloadd tmm5, [{a1} + {stride}*1]",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) a0.add(p0 * 16),
                    a1 = in(reg) a1.add(p0 * 16),
                    b0 = in(reg) b0.add(p0 * LANES),
                    b1 = in(reg) b1.add(p0 * LANES),
                    stride = in(reg) 4 * LANES,
                    options(nostack, readonly),
                );
                for line in next_line..(next_line + per_step).min(lines) {
                    _mm_prefetch::<_MM_HINT_T1>(ahead.as_ptr().add(64 * line).cast());
                }
                next_line += per_step;
                if let (Some((c_norms, lanes)), Some((s0, j0))) = (&mut scan, stored) {
                    let first = s0 + step * rows_per_step;
                    scan_rows(dots, padded, c_norms, lanes, first..(first + rows_per_step).min(s0 + 32), j0);
                }
            }
            let out = dots.add(r0 * padded + c0);
            asm!(
                "tilestored [{c00} + {out_bytes}*1], tmm0",
                "tilestored [{c01} + {out_bytes}*1], tmm1",
                "tilestored [{c10} + {out_bytes}*1], tmm2",
                "tilestored [{c11} + {out_bytes}*1], tmm3",
                c00 = in(reg) out,
                c01 = in(reg) out.add(LANES),
                c10 = in(reg) out.add(16 * padded),
                c11 = in(reg) out.add(16 * padded + LANES),
                out_bytes = in(reg) out_bytes,
                options(nostack),
            );
            stored = Some((r0, c0));
        }
    }
    asm!("tilerelease", options(nostack, nomem));
    if let (Some((c_norms, lanes)), Some((s0, j0))) = (&mut scan, stored) {
        scan_rows(dots, padded, c_norms, lanes, s0..s0 + 32, j0);
    }
}

/// [`Lanes::step`] for `rows` on the 32 centroids from `j0` (two steps each).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn scan_rows(
    dots: *const f32,
    padded: usize,
    c_norms: &[f32],
    lanes: &mut [Lanes],
    rows: std::ops::Range<usize>,
    j0: usize,
) {
    let (c_low, c_high) =
        (_mm512_loadu_ps(c_norms.as_ptr().add(j0)), _mm512_loadu_ps(c_norms.as_ptr().add(j0 + LANES)));
    for r in rows {
        let row = dots.add(r * padded + j0);
        let lane = &mut lanes[r];
        lane.step(_mm512_loadu_ps(row), c_low, j0);
        lane.step(_mm512_loadu_ps(row.add(LANES)), c_high, j0 + LANES);
    }
}

/// A row's running scan of its partial distances `c_norms − 2·dots`, 16 centroids at a time
/// (lane `l` sees centroids `l mod 16` in increasing order): per lane the least value, its
/// centroid and the lane's runner-up. [`Lanes::finish`] gives the row's least value, the
/// lowest centroid holding it and the runner-up, whichever code fed the lanes.
#[derive(Clone, Copy)]
pub struct Lanes {
    best: __m512,
    second: __m512,
    best_at: __m512i,
}

impl Lanes {
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn new() -> Self {
        let infinity = _mm512_set1_ps(f32::INFINITY);
        Self { best: infinity, second: infinity, best_at: _mm512_setzero_si512() }
    }

    /// Takes the dots `d` of centroids `first..first + 16` with their squared norms `c`
    /// (infinite for lanes past the last centroid).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn step(&mut self, d: __m512, c: __m512, first: usize) {
        let at = _mm512_add_epi32(
            _mm512_set1_epi32(first as i32),
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        );
        // `c − 2·d`, rounded once as the scalar scan's (doubling is exact).
        let v = _mm512_sub_ps(c, _mm512_add_ps(d, d));
        let better = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, self.best);
        let displaced = _mm512_mask_blend_ps(better, v, self.best);
        let lower = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(displaced, self.second);
        self.second = _mm512_mask_blend_ps(lower, self.second, displaced);
        self.best = _mm512_mask_blend_ps(better, self.best, v);
        self.best_at = _mm512_mask_blend_epi32(better, self.best_at, at);
    }

    /// The least value, the lowest centroid holding it, and the least of every other value.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn finish(self) -> (f32, usize, f32) {
        let value = _mm512_reduce_min_ps(self.best);
        let holding = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(self.best, _mm512_set1_ps(value));
        // Lane `l` holds only indices `l mod 16`, so one lane holds the winner (where `value`
        // is finite; otherwise every value is infinite and so is the runner-up).
        let (index, winner) = if holding.count_ones() == 1 {
            let mut at = [0i32; LANES];
            // SAFETY: `at` holds 16 values.
            unsafe { _mm512_storeu_si512(at.as_mut_ptr().cast(), self.best_at) };
            (at[holding.trailing_zeros() as usize], holding)
        } else {
            let index = _mm512_mask_reduce_min_epi32(holding, self.best_at);
            (index, holding & _mm512_cmpeq_epi32_mask(self.best_at, _mm512_set1_epi32(index)))
        };
        let others = _mm512_mask_blend_ps(winner, self.best, _mm512_set1_ps(f32::INFINITY));
        let runner_up = _mm512_reduce_min_ps(_mm512_min_ps(self.second, others));
        (value, index as usize, runner_up)
    }
}

/// Rows per tile of [`thin_dots_f32`] and most candidates per tile.
const THIN_ROWS: usize = 3;
pub const THIN_MAX: usize = 8;

/// `out[i][j] = x_{rows[i]} · c_j` (row-major, `ldo` per entry of `rows`) for rows of the
/// `d`-wide matrix `x` and at most [`THIN_MAX`] centroids `c` (`t × d`): few columns (k-means++
/// candidates), so the vectors run along the features, each row load serves every
/// candidate, and each sum ends with one horizontal add. A row's values do not depend on the
/// other rows listed with it (each is summed alone, in the same order).
///
/// # Safety
/// AVX-512F must be supported; every listed row lies in `x`; `c` holds `t × d` values and
/// `out` `(rows.len() − 1) × ldo + t`.
#[target_feature(enable = "avx512f")]
pub unsafe fn thin_dots_f32(x: &[f32], d: usize, rows: &[usize], c: &[f32], t: usize, out: &mut [f32], ldo: usize) {
    let m = rows.len();
    assert!(t <= THIN_MAX && c.len() >= t * d && (m == 0 || out.len() >= (m - 1) * ldo + t));
    assert!(rows.iter().all(|&i| (i + 1) * d <= x.len()));
    for r0 in (0..m).step_by(THIN_ROWS) {
        let tile = &rows[r0..(r0 + THIN_ROWS).min(m)];
        let mut starts = [x.as_ptr(); THIN_ROWS];
        for (start, &i) in starts.iter_mut().zip(tile) {
            *start = x.as_ptr().add(i * d);
        }
        let out = out.as_mut_ptr().add(r0 * ldo);
        macro_rules! run {
            ($rows:literal) => {
                match t {
                    1 => thin_tile::<$rows, 1>(&starts, d, c.as_ptr(), out, ldo),
                    2 => thin_tile::<$rows, 2>(&starts, d, c.as_ptr(), out, ldo),
                    3 => thin_tile::<$rows, 3>(&starts, d, c.as_ptr(), out, ldo),
                    4 => thin_tile::<$rows, 4>(&starts, d, c.as_ptr(), out, ldo),
                    5 => thin_tile::<$rows, 5>(&starts, d, c.as_ptr(), out, ldo),
                    6 => thin_tile::<$rows, 6>(&starts, d, c.as_ptr(), out, ldo),
                    7 => thin_tile::<$rows, 7>(&starts, d, c.as_ptr(), out, ldo),
                    _ => thin_tile::<$rows, 8>(&starts, d, c.as_ptr(), out, ldo),
                }
            };
        }
        match tile.len() {
            1 => run!(1),
            2 => run!(2),
            _ => run!(3),
        }
    }
}

/// `R` rows (starting at `starts`) by `T` centroids of [`thin_dots_f32`].
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn thin_tile<const R: usize, const T: usize>(
    starts: &[*const f32; THIN_ROWS],
    d: usize,
    c: *const f32,
    out: *mut f32,
    ldo: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    let mut p = 0;
    while p < d {
        let mask = first_lanes(d - p);
        let mut rows = [_mm512_setzero_ps(); R];
        for (row, start) in rows.iter_mut().zip(starts) {
            *row = _mm512_maskz_loadu_ps(mask, start.add(p));
        }
        for j in 0..T {
            let centroid = _mm512_maskz_loadu_ps(mask, c.add(j * d + p));
            for (acc_row, &row) in acc.iter_mut().zip(&rows) {
                acc_row[j] = _mm512_fmadd_ps(row, centroid, acc_row[j]);
            }
        }
        p += LANES;
    }
    for (r, acc_row) in acc.iter().enumerate() {
        let mut all = [_mm512_setzero_si512(); 8];
        for (v, &a) in all.iter_mut().zip(acc_row) {
            *v = _mm512_castps_si512(a);
        }
        let mut sums = [0f32; 8];
        _mm256_storeu_ps(sums.as_mut_ptr(), sum_each_of_eight_ps(all));
        for (j, &sum) in sums[..T].iter().enumerate() {
            *out.add(r * ldo + j) = sum;
        }
    }
}

/// [`sum_each_of_eight`] in float32: the same tree of shuffles, with float additions.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn sum_each_of_eight_ps(v: [__m512i; 8]) -> __m256 {
    let add =
        |a: __m512i, b: __m512i| _mm512_castps_si512(_mm512_add_ps(_mm512_castsi512_ps(a), _mm512_castsi512_ps(b)));
    let pair = |a: __m512i, b: __m512i| add(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    let (ab, cd, ef, gh) = (pair(v[0], v[1]), pair(v[2], v[3]), pair(v[4], v[5]), pair(v[6], v[7]));
    let quad = |x: __m512i, y: __m512i| add(_mm512_unpacklo_epi64(x, y), _mm512_unpackhi_epi64(x, y));
    let (abcd, efgh) = (quad(ab, cd), quad(ef, gh));
    let halves =
        add(_mm512_shuffle_i32x4::<0b10_00_10_00>(abcd, efgh), _mm512_shuffle_i32x4::<0b11_01_11_01>(abcd, efgh));
    let ordered = _mm512_castsi512_ps(_mm512_shuffle_i32x4::<0b11_01_10_00>(halves, halves));
    _mm256_add_ps(
        _mm512_castps512_ps256(ordered),
        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(ordered))),
    )
}

/// Tiles ahead whose rows [`thin_dots_u8i8`] prefetches.
const PREFETCH_TILES: usize = 6;

/// Whether this CPU has the 8-bit dot products [`thin_dots_u8i8`] runs on (AVX512-VNNI).
pub fn vnni_ready() -> bool {
    static READY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *READY.get_or_init(|| {
        crate::matrix::wide_vectors() && is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vnni")
    })
}

/// `out[i][j] = Σ_p a_{rows[i]}[p] · c_j[p]` (row-major, `ldo` per entry of `rows`), exact in
/// 32-bit integers, for rows of unsigned bytes `a` and at most [`THIN_MAX`] candidates of
/// signed bytes `c`, `stride` bytes each (a multiple of 4, zero-padded): [`thin_dots_f32`]'s
/// layout on `vpdpbusd` (64 bytes a vector), reading the listed rows where they lie. Exact
/// while `stride · 255 · 128` fits in an `i32`.
///
/// # Safety
/// [`vnni_ready`] must hold; every listed row lies in `a`; `c` holds `t × stride` bytes and
/// `out` `(rows.len() − 1) × ldo + t` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn thin_dots_u8i8(a: &[u8], stride: usize, rows: &[usize], c: &[i8], t: usize, out: &mut [i32], ldo: usize) {
    let m = rows.len();
    assert!(stride.is_multiple_of(4) && stride * 255 * 128 < i32::MAX as usize);
    assert!(t <= THIN_MAX && c.len() >= t * stride && (m == 0 || out.len() >= (m - 1) * ldo + t));
    assert!(rows.iter().all(|&i| (i + 1) * stride <= a.len()));
    let words = stride / 4;
    for r0 in (0..m).step_by(THIN_ROWS) {
        // The rows six tiles ahead are fetched into L2 meanwhile: the tiles' own loads do not
        // keep enough in flight to hide the memory's latency (measured on AMD Zen 4: a pass
        // from memory took 2.1× as long without it, and 1.6× with hints into L1).
        for &i in rows.iter().skip(r0 + PREFETCH_TILES * THIN_ROWS).take(THIN_ROWS) {
            let row = a.as_ptr().add(i * stride);
            for offset in (0..stride).step_by(64) {
                _mm_prefetch::<_MM_HINT_T1>(row.add(offset).cast());
            }
        }
        let tile = &rows[r0..(r0 + THIN_ROWS).min(m)];
        let mut starts = [a.as_ptr(); THIN_ROWS];
        for (start, &i) in starts.iter_mut().zip(tile) {
            *start = a.as_ptr().add(i * stride);
        }
        let out = out.as_mut_ptr().add(r0 * ldo);
        let c = c.as_ptr();
        macro_rules! run {
            ($rows:literal) => {
                match t {
                    1 => thin_tile_u8i8::<$rows, 1>(&starts, words, c, out, ldo),
                    2 => thin_tile_u8i8::<$rows, 2>(&starts, words, c, out, ldo),
                    3 => thin_tile_u8i8::<$rows, 3>(&starts, words, c, out, ldo),
                    4 => thin_tile_u8i8::<$rows, 4>(&starts, words, c, out, ldo),
                    5 => thin_tile_u8i8::<$rows, 5>(&starts, words, c, out, ldo),
                    6 => thin_tile_u8i8::<$rows, 6>(&starts, words, c, out, ldo),
                    7 => thin_tile_u8i8::<$rows, 7>(&starts, words, c, out, ldo),
                    _ => thin_tile_u8i8::<$rows, 8>(&starts, words, c, out, ldo),
                }
            };
        }
        match tile.len() {
            1 => run!(1),
            2 => run!(2),
            _ => run!(3),
        }
    }
}

/// `R` rows (starting at `starts`, `words` 4-byte groups each) by `T` candidates of
/// [`thin_dots_u8i8`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn thin_tile_u8i8<const R: usize, const T: usize>(
    starts: &[*const u8; THIN_ROWS],
    words: usize,
    c: *const i8,
    out: *mut i32,
    ldo: usize,
) {
    let mut acc = [[_mm512_setzero_si512(); T]; R];
    let mut p = 0;
    while p < words {
        let mask = first_lanes(words - p);
        let mut rows = [_mm512_setzero_si512(); R];
        for (row, start) in rows.iter_mut().zip(starts) {
            *row = _mm512_maskz_loadu_epi32(mask, start.add(4 * p).cast());
        }
        for j in 0..T {
            let centre = _mm512_maskz_loadu_epi32(mask, c.add(j * words * 4 + 4 * p).cast());
            for (acc_row, &row) in acc.iter_mut().zip(&rows) {
                acc_row[j] = _mm512_dpbusd_epi32(acc_row[j], row, centre);
            }
        }
        p += LANES;
    }
    for (r, acc_row) in acc.iter().enumerate() {
        let mut all = [_mm512_setzero_si512(); 8];
        all[..T].copy_from_slice(acc_row);
        let mut sums = [0i32; 8];
        _mm256_storeu_si256(sums.as_mut_ptr().cast(), sum_each_of_eight(all));
        for (j, &sum) in sums[..T].iter().enumerate() {
            *out.add(r * ldo + j) = sum;
        }
    }
}

/// The lane sums of eight vectors, in order, by a transposing tree of shuffles and adds (a
/// third of the instructions of eight separate reductions).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn sum_each_of_eight(v: [__m512i; 8]) -> __m256i {
    // Per 128-bit lane, pairs: [a0+a2, b0+b2, a1+a3, b1+b3].
    let pair = |a: __m512i, b: __m512i| _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    let (ab, cd, ef, gh) = (pair(v[0], v[1]), pair(v[2], v[3]), pair(v[4], v[5]), pair(v[6], v[7]));
    // Per 128-bit lane, each vector's lane sum: [a, b, c, d] and [e, f, g, h].
    let quad = |x: __m512i, y: __m512i| _mm512_add_epi32(_mm512_unpacklo_epi64(x, y), _mm512_unpackhi_epi64(x, y));
    let (abcd, efgh) = (quad(ab, cd), quad(ef, gh));
    // Lanes [abcd0 + abcd1, abcd2 + abcd3, efgh0 + efgh1, efgh2 + efgh3].
    let halves = _mm512_add_epi32(
        _mm512_shuffle_i32x4::<0b10_00_10_00>(abcd, efgh),
        _mm512_shuffle_i32x4::<0b11_01_11_01>(abcd, efgh),
    );
    // [abcd, efgh]: lanes 0 and 1 added, lanes 2 and 3 added.
    let ordered = _mm512_shuffle_i32x4::<0b11_01_10_00>(halves, halves);
    _mm256_add_epi32(_mm512_castsi512_si256(ordered), _mm512_extracti64x4_epi64::<1>(ordered))
}
