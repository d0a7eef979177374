//! Rows rounded once for a kind's products and kept between passes, with their norms'
//! bounds: the rows' words for blocks of listed rows, and bounds on each row's distance to
//! its centroid read from them.

use rayon::prelude::*;

use super::{inflation, round_rows, round_rows_of, row_words, Dots, RowNorms, LANES};
use crate::matrix::MatRef;

/// Rows per piece of [`RoundedRows`]: whole tiles of every kind.
const PIECE_ROWS: usize = 64;

/// A matrix's rows rounded once, laid out as a kind's products read them, with their norms'
/// bounds: passes over the same rows read half the bytes of float32 and round nothing.
pub struct RoundedRows {
    kind: Dots,
    cols: usize,
    pub(super) words: Vec<u32>,
    pub(super) norms: RowNorms,
    /// Where the rows were laid out in an order of their own ([`RoundedRows::lay_out`]),
    /// each row's place in it; the rows in their own order otherwise.
    places: Option<Vec<u32>>,
}

impl RoundedRows {
    /// `x` rounded for `kind`; `None` for a kind that reads float32 rows as they are, one
    /// this CPU lacks, or a width whose padded words would take over 5/8 of the data's bytes.
    pub fn new(kind: Dots, x: MatRef<'_, f32>) -> Option<Self> {
        Self::with_spreads(kind, x, None)
    }

    /// [`RoundedRows::new`], and with `spreads` (a centre, one entry per row) each row's
    /// `matrix::sq_distance` to the centre, measured while the row is in cache (where rows
    /// are kept; otherwise `spreads` is left as it is).
    pub fn with_spreads(kind: Dots, x: MatRef<'_, f32>, mut spreads: Option<(&[f32], &mut [f64])>) -> Option<Self> {
        if kind == Dots::F32 || !kind.supported() {
            return None;
        }
        let (n, d) = (x.rows(), x.cols());
        let depth = kind.layout(d).depth;
        // A kept copy is half the data's size; where padding to whole tiles makes it much
        // more (a few features past a multiple of 32), rounding each pass is the cheaper way.
        if 8 * depth > 5 * d {
            return None;
        }
        let len = n.next_multiple_of(PIECE_ROWS) * depth;
        let mut words = crate::pages::with_capacity::<u32>(len);
        let (centre, mut spreads) = match spreads.as_mut() {
            Some((centre, spreads)) => {
                assert!(centre.len() == d && spreads.len() == n, "a centre and a spread per row");
                (Some(*centre), spreads.chunks_mut(PIECE_ROWS).map(Some).collect())
            }
            None => (None, Vec::new()),
        };
        spreads.resize_with(n.div_ceil(PIECE_ROWS), || None);
        let pieces: Vec<RowNorms> = words.spare_capacity_mut()[..len]
            .par_chunks_mut((PIECE_ROWS * depth).max(1))
            .zip(spreads.par_iter_mut())
            .enumerate()
            .map(|(p, (words, spreads))| {
                let words = crate::pages::zeroed(words);
                let rows = x.slice_rows(p * PIECE_ROWS, ((p + 1) * PIECE_ROWS).min(n));
                let norms = round_rows(rows, depth, kind == Dots::Amx, words);
                if let (Some(centre), Some(spreads)) = (centre, spreads) {
                    for (r, spread) in spreads.iter_mut().enumerate() {
                        *spread = crate::matrix::sq_distance(rows.row(r), centre);
                    }
                }
                norms
            })
            .collect();
        // SAFETY: the pieces cover `len` words, each zeroed before it was written.
        unsafe { words.set_len(len) };
        Some(Self { kind, cols: d, words, norms: RowNorms::joined(&pieces), places: None })
    }

    /// The rows of `x` (those kept here) rounded again and laid out in `order` (a permutation
    /// of the rows): listed rows that lie in order here are then read where they lie, with no
    /// copy (`Rows::Listed`), while passes over every row in its own order round the rows
    /// again. The words are written over in place (every row's padding is zeros, as before);
    /// the rows' own order makes them serve every pass again. False (nothing changed) where
    /// `x` or `order` do not fit the rows kept.
    pub fn lay_out(&mut self, x: MatRef<'_, f32>, order: &[usize]) -> bool {
        let (n, d) = (self.norms.rounded.len(), self.cols);
        if x.rows() != n || x.cols() != d || order.len() != n {
            return false;
        }
        let mut places = vec![u32::MAX; n];
        for (place, &i) in order.iter().enumerate() {
            if i >= n || places[i] != u32::MAX {
                return false;
            }
            places[i] = place as u32;
        }
        let depth = self.kind.layout(d).depth;
        let tiles = self.kind == Dots::Amx;
        let pieces: Vec<RowNorms> = (self.words)
            .par_chunks_mut((PIECE_ROWS * depth).max(1))
            .enumerate()
            .map(|(p, words)| {
                let listed = &order[(p * PIECE_ROWS).min(n)..((p + 1) * PIECE_ROWS).min(n)];
                round_rows_of(listed.len(), d, |r| x.row(listed[r]), depth, tiles, words)
            })
            .collect();
        // Rows laid out in their own order are read as any kept rows are.
        let own_order = order.iter().enumerate().all(|(place, &i)| place == i);
        (self.norms, self.places) = (RowNorms::joined(&pieces), (!own_order).then_some(places));
        true
    }

    /// Where row `i` lies among the rows kept.
    fn place(&self, i: usize) -> usize {
        self.places.as_ref().map_or(i, |places| places[i] as usize)
    }

    /// Where the listed rows lie in order among the rows kept, from a whole tile (of `rows`
    /// rows) on: the first tile's first row and the listed rows' offsets from it, where they
    /// all lie, ascending, within `most` rows of it.
    pub(super) fn stretch(&self, listed: &[usize], tile_rows: usize, most: usize) -> Option<(usize, Vec<usize>)> {
        let places = self.places.as_ref()?;
        let first = (places[*listed.first()?] as usize) / tile_rows * tile_rows;
        let offsets: Vec<usize> = listed.iter().map(|&i| (places[i] as usize).wrapping_sub(first)).collect();
        let ascending = offsets.windows(2).all(|pair| pair[0] < pair[1]);
        (ascending && offsets.last().is_some_and(|&last| last < most)).then_some((first, offsets))
    }

    /// The words [`RoundedRows::stretch`] reads for the listed rows (from the first's tile to
    /// the last row), as bytes to ask for ahead; none where they lie out of order or apart.
    pub(super) fn stretch_bytes(&self, listed: &[usize], tile_rows: usize, most: usize) -> &[u8] {
        let (Some(places), Some(&first), Some(&last)) = (self.places.as_ref(), listed.first(), listed.last()) else {
            return &[];
        };
        let (start, end) = ((places[first] as usize) / tile_rows * tile_rows, places[last] as usize + 1);
        if end <= start || end - start > most {
            return &[];
        }
        let depth = self.kind.layout(self.cols).depth;
        super::as_bytes(&self.words[start * depth..end * depth])
    }

    /// Whether the rows lie in an order of their own (then only listed rows read them).
    pub(super) fn laid_out(&self) -> bool {
        self.places.is_some()
    }

    /// The norms' bounds of the listed rows, wherever they lie among the rows kept.
    pub(super) fn norms_of(&self, listed: &[usize]) -> RowNorms {
        RowNorms {
            rounded: listed.iter().map(|&i| self.norms.rounded[self.place(i)]).collect(),
            residual: listed.iter().map(|&i| self.norms.residual[self.place(i)]).collect(),
        }
    }

    /// Upper bounds on `‖x_i − c_{labels[r]}‖²` for the kept rows `i = rows[r]` into `out`:
    /// `(‖x̃_i − c‖ + ‖x_i − x̃_i‖)²`, with `x̃_i` the kept (rounded) row, its distance summed
    /// in float32 and inflated by its rounding bound, and the rounding residual's norm kept
    /// with it: half the bytes of the float32 rows. False where these rows or the width are
    /// not the ones kept here.
    pub fn labelled_sq_distance_bounds(
        &self,
        rows: &[usize],
        centroids: MatRef<'_, f32>,
        labels: &[u32],
        out: &mut [f64],
    ) -> bool {
        let d = centroids.cols();
        let n = self.norms.rounded.len();
        if d != self.cols || rows.len() != labels.len() || out.len() != labels.len() || rows.iter().any(|&i| i >= n) {
            return false;
        }
        let depth = self.kind.layout(d).depth;
        let chunks = depth.div_ceil(LANES);
        let width = 2 * LANES * chunks;
        let mut padded = vec![0f32; centroids.rows() * width];
        for (row, centre) in padded.chunks_exact_mut(width.max(1)).zip(centroids.as_slice().chunks_exact(d.max(1))) {
            row[..d].copy_from_slice(centre);
        }
        // Float32 sums of up to `d` squares of rounded differences (`inflation` of a few more).
        let inflate = inflation(d + 2);
        let tiles = self.kind == Dots::Amx;
        out.par_chunks_mut(4096).zip(labels.par_chunks(4096)).enumerate().for_each(|(b, (out, labels))| {
            for (r, (bound, &label)) in out.iter_mut().zip(labels).enumerate() {
                let i = self.place(rows[b * 4096 + r]);
                let (start, chunk_stride) = row_words(i, depth, tiles);
                let centre = &padded[label as usize * width..][..width];
                // SAFETY: the kinds that keep rows run on AVX-512F (`RoundedRows::new`); the
                // row's words lie within `words` (whole pieces of rows, padded).
                let sq = unsafe { kept_sq_distance(&self.words[start..], chunk_stride, depth, centre) };
                *bound = ((sq as f64 * inflate).sqrt() + self.norms.residual[i]).powi(2);
            }
        });
        true
    }

    /// The kept words of the rows `listed` laid out as a block of rows `0..listed.len()` of
    /// `depth` words (tiles for AMX) in `words`, and their norms' bounds.
    pub(super) fn gather(&self, listed: &[usize], depth: usize, words: &mut [u32]) -> RowNorms {
        let tiles = self.kind == Dots::Amx;
        for (r, &i) in listed.iter().enumerate() {
            let i = self.place(i);
            let ((from, from_stride), (to, to_stride)) = (row_words(i, depth, tiles), row_words(r, depth, tiles));
            if tiles {
                // Tiles take whole chunks of 16 words (`Layout::depth`).
                for chunk in 0..depth / LANES {
                    let (from, to) = (from + chunk * from_stride, to + chunk * to_stride);
                    words[to..to + LANES].copy_from_slice(&self.words[from..from + LANES]);
                }
            } else {
                words[to..to + depth].copy_from_slice(&self.words[from..from + depth]);
            }
        }
        self.norms_of(listed)
    }

    /// Whether the rows `first..first + rows.rows()` kept here can stand for `rows` in a pass
    /// of `kind` (the caller vouches that they are those rows): the same kind and width, and
    /// `first` where a tile starts.
    pub(super) fn serves(&self, kind: Dots, first: usize, rows: MatRef<'_, f32>) -> bool {
        let layout = kind.layout(rows.cols());
        self.kind == kind
            && self.cols == rows.cols()
            && first.is_multiple_of(layout.rows)
            && first + rows.rows() <= self.norms.rounded.len()
    }
}

/// [`super::x86::kept_sq_distance`] of a row's `depth` kept words.
///
/// # Safety
/// AVX-512F must be supported; `words` holds the row's words as [`row_words`] places them.
unsafe fn kept_sq_distance(words: &[u32], chunk_stride: usize, depth: usize, centre: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    return super::x86::kept_sq_distance(words, chunk_stride, depth, centre);
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("kept rows exist on x86-64 only ({}, {chunk_stride}, {depth}, {})", words.len(), centre.len())
}
