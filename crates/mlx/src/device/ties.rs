//! Near ties decided on the device where that can be proven right, inside the step's graph.
//! A row whose GEMM distances leave several centroids within the error band is measured
//! again by differences (float32) against the few centroids with the smallest partial
//! distances: when every centroid in the band is among them and the best beats the second by
//! more than the error of differences, the decision is the exact one. The flagged rows are
//! gathered into a buffer of fixed capacity on the device (a running count gives each its
//! slot), so no row index crosses to the host; only the count of rows left unproven is read,
//! with the step's other scalars. Those rows (more centroids in the band, a margin too thin,
//! more flagged rows than the buffer holds, data re-centred by a shift, whose rounding the
//! bound does not cover) are decided by the host's exact float64 search, in the rare steps
//! that have any.

use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::ops::{argpartition_axis, argsort_axis, concatenate, select};
use mlx_rs::Array;

use rayon::prelude::*;

use super::kernel::Nearest;
use super::{eval_all, partial_distances, DIFFERENCE_ENTRIES};
use mlx_kmeans::error::Result;
use mlx_kmeans::matrix::{exact_nearest, MatRef};

/// Centroids per flagged row measured by differences.
const CANDIDATES: usize = 4;

/// The rows the GEMM could not decide, as the device takes them.
pub(super) struct TieRows<'a> {
    /// All rows: as the GEMMs take them (`n × 3d` or `n × d`) and centred (`n × d`).
    pub lifted: &'a Array,
    pub centred: &'a Array,
    /// Centroids: lifted for the GEMM, their squared norms (`1 × k`), and centred (`k × d`).
    pub c: &'a Array,
    pub c_norms: &'a Array,
    pub centroids: &'a Array,
}

/// Labels after the device decided the near ties it can prove, all lazy: `labels` (`n`,
/// uint32) and squared `distances` (`n`), each row's band count (`in_band`), the rows still
/// undecided (`unproven`, `n`, bool), and two float32 scalars read with a step's scalars:
/// the rows undecided (`unproven_count`) and the rows flagged (`flagged_count`). `capacity`:
/// the flagged rows the device took in its last buffer (0: none decided on the device).
pub(super) struct Settled {
    pub labels: Array,
    pub distances: Array,
    pub in_band: Array,
    pub unproven: Array,
    pub unproven_count: Array,
    pub flagged_count: Array,
    pub capacity: usize,
}

impl Settled {
    /// Every array of it, to evaluate at once.
    pub(super) fn outputs(&self) -> [&Array; 6] {
        [&self.labels, &self.distances, &self.in_band, &self.unproven, &self.unproven_count, &self.flagged_count]
    }
}

/// Flagged rows the device may decide in one evaluation at most: bounded so that the
/// candidates' differences and the rows' partial distances stay within
/// [`DIFFERENCE_ENTRIES`], and below 2^16: MLX's CUDA sorts launch one block row per sorted
/// row, and a grid has at most 65,535 of them.
pub(super) fn max_capacity(n: usize, k: usize, d: usize) -> usize {
    let r = CANDIDATES.min(k);
    let by_memory = (DIFFERENCE_ENTRIES / (r * d).max(1)).min(DIFFERENCE_ENTRIES / k.max(1));
    by_memory.min(n).min(u16::MAX as usize).max(1)
}

/// The buffer a step starts with where nothing better is known: every slot costs work
/// whether filled or not, so it starts small; rows past it are decided by [`settle_rest`]
/// (on the device again, in further buffers), and Lloyd steps fit it to the counts they see.
pub(super) fn default_capacity(n: usize, k: usize, d: usize) -> usize {
    (n / 64).max(256).min(max_capacity(n, k, d))
}

/// Each row's place among the flagged rows (`n`, int32; meaningful where `flagged`).
fn flagged_positions(flagged: &Array) -> Result<Array> {
    Ok(flagged.as_type::<i32>()?.cumsum(0, false, true)?.subtract(Array::from_int(1))?)
}

/// Decides on the device what it can of `nearest`'s near ties (rows with more than one
/// centroid in their band), `capacity` of them at most (by default [`default_capacity`]);
/// with `on_device` false (re-centred data) none is, and every flagged row is left to the
/// host. Adds to the graph; evaluates nothing.
pub(super) fn settle_on_device(
    data: &TieRows<'_>,
    nearest: Nearest,
    on_device: bool,
    capacity: Option<usize>,
) -> Result<Settled> {
    let Nearest { labels, distances, in_band } = nearest;
    let n = labels.shape()[0] as usize;
    let flagged = in_band.gt(Array::from_int(1))?;
    let flagged_count = flagged.as_type::<i32>()?.sum(false)?.as_type::<f32>()?;
    let settled = Settled {
        labels,
        distances,
        in_band,
        unproven_count: flagged_count.clone(),
        unproven: flagged,
        flagged_count,
        capacity: 0,
    };
    if !on_device || n == 0 {
        return Ok(settled);
    }
    let (k, d) = (data.centroids.shape()[0] as usize, data.centroids.shape()[1] as usize);
    let cap = capacity.unwrap_or_else(|| default_capacity(n, k, d)).clamp(1, max_capacity(n, k, d));
    let position = flagged_positions(&settled.unproven)?;
    settle_round(data, settled, &position, 0, cap)
}

/// One buffer of flagged rows decided on the device: those whose place among the flagged
/// rows (`position`) lies in `offset..offset + cap` (no earlier buffer took them, so they are
/// all still `unproven`). Rows it proves get their label and distance and leave `unproven`.
fn settle_round(data: &TieRows<'_>, settled: Settled, position: &Array, offset: usize, cap: usize) -> Result<Settled> {
    let Settled { labels, distances, in_band, unproven, flagged_count, .. } = settled;
    let n = labels.shape()[0] as usize;
    let (k, d) = (data.centroids.shape()[0] as usize, data.centroids.shape()[1] as usize);
    let r = CANDIDATES.min(k);
    // Flagged row number offset + q goes to slot q while q < cap; the others, and every row
    // not flagged, to the discarded slot `cap`.
    let local = position.subtract(Array::from_int(offset as i32))?;
    let kept =
        unproven.logical_and(&local.ge(Array::from_int(0))?)?.logical_and(&local.lt(Array::from_int(cap as i32))?)?;
    let slot = select(&kept, &local, Array::from_int(cap as i32))?;
    let row_numbers = mlx_rs::ops::arange::<_, u32>(0, n as i32, 1)?;
    let slots = mlx_rs::ops::zeros::<u32>(&[cap as i32 + 1])?;
    let rows = slots.put_along_axis(&slot, &row_numbers, 0)?.index(0..cap as i32);
    let valid = mlx_rs::ops::arange::<_, f32>(offset as f64, (offset + cap) as f64, 1.0)?.lt(&flagged_count)?;
    // The slots' candidates: the r smallest partial distances, measured again by differences.
    let m = cap as i32;
    let partial = partial_distances(&data.lifted.take_axis(&rows, 0)?, data.c, data.c_norms)?;
    let nearest = if r < k {
        argpartition_axis(&partial, r as i32 - 1, 1)?.index((.., 0..r as i32))
    } else {
        argsort_axis(&partial, 1)?
    };
    let candidates = data.centroids.take_axis(nearest.reshape(&[-1])?, 0)?.reshape(&[m, r as i32, d as i32])?;
    let points = data.centred.take_axis(&rows, 0)?.reshape(&[m, 1, d as i32])?;
    let measured = points.subtract(&candidates)?.square()?.sum_axis(2, false)?;
    let order = argsort_axis(&measured, 1)?;
    let sorted = measured.take_along_axis(&order, 1)?;
    let best = sorted.index((.., 0));
    let second =
        if r > 1 { sorted.index((.., 1)) } else { mlx_rs::ops::full::<f32>(&[m], Array::from_f32(f32::INFINITY))? };
    let best_label = nearest.take_along_axis(order.index((.., 0..1)), 1)?.reshape(&[-1])?.as_type::<u32>()?;
    // Each of the d squared differences and the running sum round once: (d + 2) units of
    // float32 relative to the sum; twice that, to spare.
    let bound = 2.0 * (d + 2) as f32 * f32::EPSILON / 2.0;
    let margin = second.subtract(&best)?.gt(&best.add(&second)?.multiply(Array::from_f32(bound))?)?;
    let all_in_candidates = in_band.take_axis(&rows, 0)?.le(Array::from_int(r as i32))?;
    let proven = valid.logical_and(&all_in_candidates)?.logical_and(&margin)?;
    // Proven rows write their decision; every other slot writes to the discarded entry `n`.
    let target = select(&proven, &rows, Array::from_int(n as i32))?;
    let put = |values: &Array, decided: &Array| -> Result<Array> {
        let extended = concatenate(&[values, &values.index(0..1)], 0)?;
        Ok(extended.put_along_axis(&target, decided, 0)?.index(0..n as i32))
    };
    let labels = put(&labels, &best_label)?;
    let distances = put(&distances, &best)?;
    let settled = put(&mlx_rs::ops::zeros::<bool>(&[n as i32])?, &proven)?;
    let unproven = unproven.logical_and(&settled.logical_not()?)?;
    let unproven_count = unproven.as_type::<i32>()?.sum(false)?.as_type::<f32>()?;
    Ok(Settled { labels, distances, in_band, unproven, unproven_count, flagged_count, capacity: cap })
}

/// Labels and squared distances of an evaluated [`Settled`] on the host, every near tie
/// decided: flagged rows past the device's buffer are decided on the device in further
/// buffers (one evaluation each); the rows it cannot prove go to the host's exact float64
/// search (`settle_on_host`).
pub(super) fn settle_rest(
    data: &TieRows<'_>,
    mut settled: Settled,
    exact: &Exact<'_>,
    host_centroids: &mut dyn FnMut() -> Result<Vec<f32>>,
) -> Result<(Vec<u32>, Vec<f32>)> {
    let (n, k, d) =
        (settled.labels.shape()[0] as usize, data.centroids.shape()[0] as usize, data.centroids.shape()[1] as usize);
    let flagged = settled.flagged_count.item_exact::<f32>() as usize;
    if settled.capacity > 0 && flagged > settled.capacity {
        let position = flagged_positions(&settled.in_band.gt(Array::from_int(1))?)?;
        let (mut offset, cap) = (settled.capacity, max_capacity(n, k, d));
        while offset < flagged {
            settled = settle_round(data, settled, &position, offset, cap)?;
            eval_all(&settled.outputs())?;
            offset += cap;
        }
    }
    settle_on_host(&settled, exact, d, host_centroids)
}

/// How the host reads the rows it decides: `row(i)`, the values of row `i` as given.
pub(super) struct Exact<'a> {
    pub row: &'a (dyn Fn(usize) -> &'a [f32] + Sync),
}

/// Labels and squared distances of an evaluated [`Settled`] on the host, with its unproven
/// rows decided by the exact float64 search against `host_centroids()` (`k × d`, as given;
/// fetched only when some row needs them).
fn settle_on_host(
    settled: &Settled,
    exact: &Exact<'_>,
    d: usize,
    host_centroids: &mut dyn FnMut() -> Result<Vec<f32>>,
) -> Result<(Vec<u32>, Vec<f32>)> {
    let mut labels = settled.labels.as_slice::<u32>().to_vec();
    let mut distances = settled.distances.as_slice::<f32>().to_vec();
    let unproven = settled.unproven.as_slice::<bool>();
    let on_host: Vec<usize> = (0..unproven.len()).filter(|&i| unproven[i]).collect();
    let flagged = settled.flagged_count.item_exact::<f32>() as usize;
    log::debug!(target: crate::LOG_TARGET, "near ties: {flagged} rows, {} decided on the host", on_host.len());
    if on_host.is_empty() {
        return Ok((labels, distances));
    }
    let centroids = host_centroids()?;
    let centroids = MatRef::new(&centroids, centroids.len() / d.max(1), d)?;
    let results: Vec<(u32, f64)> = on_host.par_iter().map(|&i| exact_nearest((exact.row)(i), centroids)).collect();
    for (&i, (label, distance)) in on_host.iter().zip(results) {
        (labels[i], distances[i]) = (label, distance as f32);
    }
    Ok((labels, distances))
}
