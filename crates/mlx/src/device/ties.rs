//! Near ties decided on the device where that can be proven right, inside the step's graph.
//! A row whose GEMM distances leave several centroids within the error band is measured
//! again by differences (float32) against the candidates: when every centroid in the band is
//! among them and the best beats the second by more than the error of differences, the
//! decision is the exact one. Where the first pass found each row's runner-up (the shared
//! `band_argmin` kernel), rows with two centroids in their band (nearly all near ties: a
//! cluster split between two centroids) go to a pair buffer that reads only the row and
//! those two centroids; the rest go to a general buffer that finds the few centroids with
//! the smallest partial distances by a GEMM of its rows. The flagged rows are gathered into
//! buffers of fixed capacity on the device (a running count gives each its slot), so no row
//! index crosses to the host; only the count of rows left unproven is read, with the step's
//! other scalars. Those rows (more centroids in the band, a margin too thin, more flagged
//! rows than the buffers hold, data re-centred by a shift, whose rounding the bound does not
//! cover) are decided by further buffers or by the host's exact float64 search, in the rare
//! steps that have any.

use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::ops::{argpartition_axis, argsort_axis, concatenate, maximum, minimum, select};
use mlx_rs::Array;

use rayon::prelude::*;

use super::kernel::Nearest;
use super::{eval_all, partial_distances, DIFFERENCE_ENTRIES};
use mlx_kmeans::error::Result;
use mlx_kmeans::matrix::{exact_nearest, MatRef};

/// Centroids per flagged row measured by differences in the general buffer.
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
/// undecided (`unproven`, `n`, bool) and those of them no buffer took (`untried`), and float32
/// scalars read with a step's scalars: the rows undecided (`unproven_count`), flagged
/// (`flagged_count`), flagged with two centroids in their band (`pair_count`), and left by
/// the pair buffer to the general one (`rest_count`). `on_device`: whether buffers may take
/// rows (not for re-centred data).
pub(super) struct Settled {
    pub labels: Array,
    pub distances: Array,
    pub in_band: Array,
    pub unproven: Array,
    pub untried: Array,
    pub unproven_count: Array,
    pub flagged_count: Array,
    pub pair_count: Array,
    pub rest_count: Array,
    pub on_device: bool,
}

impl Settled {
    /// Every array of it, to evaluate at once.
    pub(super) fn outputs(&self) -> [&Array; 9] {
        [
            &self.labels,
            &self.distances,
            &self.in_band,
            &self.unproven,
            &self.untried,
            &self.unproven_count,
            &self.flagged_count,
            &self.pair_count,
            &self.rest_count,
        ]
    }
}

/// The slots of a step's two buffers: rows with two centroids in their band (`pairs`), and
/// the rest of the flagged rows (`rest`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Capacity {
    pub pairs: usize,
    pub rest: usize,
}

impl Capacity {
    /// The buffers a step starts with where nothing better is known: every slot costs work
    /// whether filled or not, so they start small; rows past them are decided by
    /// [`settle_rest`] (on the device again, in further buffers), and Lloyd steps fit them to
    /// the counts they see.
    pub(super) fn default_for(n: usize, k: usize, d: usize) -> Self {
        Self { pairs: (n / 64).max(256), rest: (n / 64).max(256) }.clamped(n, k, d)
    }

    /// Buffers fitted to a step's counts of pair rows and of the rest, with a quarter to
    /// spare (a power of two, so that nearby counts share compiled shapes).
    pub(super) fn fitted(pairs: usize, rest: usize, n: usize, k: usize, d: usize) -> Self {
        let fit = |count: usize| (count + count / 4).max(256).next_power_of_two();
        Self { pairs: fit(pairs), rest: fit(rest) }.clamped(n, k, d)
    }

    fn clamped(self, n: usize, k: usize, d: usize) -> Self {
        Self { pairs: self.pairs.clamp(1, max_pairs(n, d)), rest: self.rest.clamp(1, max_capacity(n, k, d)) }
    }
}

/// Flagged rows the general buffer may take in one evaluation at most: bounded so that the
/// candidates' differences and the rows' partial distances stay within
/// [`DIFFERENCE_ENTRIES`], and below 2^16: MLX's CUDA sorts launch one block row per sorted
/// row, and a grid has at most 65,535 of them.
fn max_capacity(n: usize, k: usize, d: usize) -> usize {
    let r = CANDIDATES.min(k);
    let by_memory = (DIFFERENCE_ENTRIES / (r * d).max(1)).min(DIFFERENCE_ENTRIES / k.max(1));
    by_memory.min(n).min(u16::MAX as usize).max(1)
}

/// Pair rows the pair buffer may take: their differences against two centroids within
/// [`DIFFERENCE_ENTRIES`].
fn max_pairs(n: usize, d: usize) -> usize {
    (DIFFERENCE_ENTRIES / (2 * d).max(1)).min(n).max(1)
}

/// Each row's place among the rows of `mask` (`n`, int32; meaningful where `mask`).
fn positions(mask: &Array) -> Result<Array> {
    Ok(mask.as_type::<i32>()?.cumsum(0, false, true)?.subtract(Array::from_int(1))?)
}

fn count(mask: &Array) -> Result<Array> {
    Ok(mask.as_type::<i32>()?.sum(false)?.as_type::<f32>()?)
}

/// One buffer's rows: those of `mask` whose place among them (`position`) lies in
/// `offset..offset + cap`, `count` being how many `mask` has.
struct Slots {
    /// Row number in each slot (`cap`, uint32; row 0 in an empty slot).
    rows: Array,
    /// Whether each slot holds a row (`cap`).
    filled: Array,
    /// The rows taken (`n`, bool).
    taken: Array,
}

fn slots(mask: &Array, position: &Array, count: &Array, offset: usize, cap: usize) -> Result<Slots> {
    let n = mask.shape()[0];
    // Row number offset + q goes to slot q while q < cap; the others, and every row not in
    // `mask`, to the discarded slot `cap`.
    let local = position.subtract(Array::from_int(offset as i32))?;
    let taken =
        mask.logical_and(&local.ge(Array::from_int(0))?)?.logical_and(&local.lt(Array::from_int(cap as i32))?)?;
    let slot = select(&taken, &local, Array::from_int(cap as i32))?;
    let row_numbers = mlx_rs::ops::arange::<_, u32>(0, n, 1)?;
    let empty = mlx_rs::ops::zeros::<u32>(&[cap as i32 + 1])?;
    let rows = empty.put_along_axis(&slot, &row_numbers, 0)?.index(0..cap as i32);
    let filled = mlx_rs::ops::arange::<_, f32>(offset as f64, (offset + cap) as f64, 1.0)?.lt(count)?;
    Ok(Slots { rows, filled, taken })
}

/// `settled` with the rows a buffer proved (`proven`, per slot of `rows`) given their
/// `best_label` and `best` distance, and every row the buffer `taken` no longer untried.
fn write_proven(
    settled: Settled,
    rows: &Array,
    taken: &Array,
    proven: &Array,
    best_label: &Array,
    best: &Array,
) -> Result<Settled> {
    let Settled { labels, distances, unproven, untried, .. } = &settled;
    let n = labels.shape()[0];
    // Proven rows write their decision; every other slot writes to the discarded entry `n`.
    let target = select(proven, rows, Array::from_int(n))?;
    let put = |values: &Array, decided: &Array| -> Result<Array> {
        let extended = concatenate(&[values, &values.index(0..1)], 0)?;
        Ok(extended.put_along_axis(&target, decided, 0)?.index(0..n))
    };
    let labels = put(labels, best_label)?;
    let distances = put(distances, best)?;
    let decided = put(&mlx_rs::ops::zeros::<bool>(&[n])?, proven)?;
    let unproven = unproven.logical_and(&decided.logical_not()?)?;
    let untried = untried.logical_and(&taken.logical_not()?)?.logical_and(&unproven)?;
    let unproven_count = count(&unproven)?;
    Ok(Settled { labels, distances, unproven, untried, unproven_count, ..settled })
}

/// Whether the best of two squared distances measured by differences beats the other by
/// more than their error: each of the `d` squared differences and the running sum round
/// once, (d + 2) units of float32 relative to the sum; twice that, to spare.
fn margin_holds(best: &Array, second: &Array, d: usize) -> Result<Array> {
    let bound = 2.0 * (d + 2) as f32 * f32::EPSILON / 2.0;
    Ok(second.subtract(best)?.gt(&best.add(second)?.multiply(Array::from_f32(bound))?)?)
}

/// Decides on the device what it can of `nearest`'s near ties (rows with more than one
/// centroid in their band), in a pair buffer and a general one of `capacity` (by default
/// [`Capacity::default_for`]); with `on_device` false (re-centred data) none is, and every
/// flagged row is left to the host. Adds to the graph; evaluates nothing.
pub(super) fn settle_on_device(
    data: &TieRows<'_>,
    nearest: Nearest,
    on_device: bool,
    capacity: Option<Capacity>,
) -> Result<Settled> {
    let Nearest { labels, distances, in_band, second } = nearest;
    let n = labels.shape()[0] as usize;
    let flagged = in_band.gt(Array::from_int(1))?;
    let flagged_count = count(&flagged)?;
    // Without the runner-up (MLX's ops) every flagged row goes to the general buffer.
    let pairs = match &second {
        Some(second) => Some((in_band.eq(Array::from_int(2))?, second)),
        None => None,
    };
    let pair_count = match &pairs {
        Some((mask, _)) => count(mask)?,
        None => Array::from_f32(0.0),
    };
    let on_device = on_device && n > 0;
    let settled = Settled {
        labels,
        distances,
        in_band,
        untried: if on_device { flagged.clone() } else { mlx_rs::ops::zeros::<bool>(&[n as i32])? },
        unproven_count: flagged_count.clone(),
        unproven: flagged,
        rest_count: flagged_count.clone(),
        flagged_count,
        pair_count,
        on_device,
    };
    if !on_device {
        return Ok(settled);
    }
    let (k, d) = (data.centroids.shape()[0] as usize, data.centroids.shape()[1] as usize);
    let capacity = capacity.unwrap_or_else(|| Capacity::default_for(n, k, d)).clamped(n, k, d);
    let settled = match &pairs {
        Some((mask, second)) => settle_pairs(data, settled, mask, second, capacity.pairs)?,
        None => settled,
    };
    let rest = settled.untried.clone();
    let rest_count = count(&rest)?;
    let position = positions(&rest)?;
    let settled = Settled { rest_count: rest_count.clone(), ..settled };
    settle_round(data, settled, (&rest, &position, &rest_count), 0, capacity.rest)
}

/// The pair buffer: rows of `pairs` (two centroids in the band: the best and the runner-up
/// `second`), `cap` of them, measured by differences against those two.
fn settle_pairs(data: &TieRows<'_>, settled: Settled, pairs: &Array, second: &Array, cap: usize) -> Result<Settled> {
    let d = data.centroids.shape()[1] as usize;
    let Slots { rows, filled, taken } = slots(pairs, &positions(pairs)?, &settled.pair_count, 0, cap)?;
    let first = settled.labels.take_axis(&rows, 0)?;
    let other = second.take_axis(&rows, 0)?;
    let points = data.centred.take_axis(&rows, 0)?;
    let measure = |labels: &Array| -> Result<Array> {
        let centroids = data.centroids.take_axis(labels, 0)?;
        Ok(points.subtract(&centroids)?.square()?.sum_axis(1, false)?)
    };
    let (to_first, to_other) = (measure(&first)?, measure(&other)?);
    let (best, worse) = (minimum(&to_first, &to_other)?, maximum(&to_first, &to_other)?);
    let best_label = select(&to_first.le(&to_other)?, &first, &other)?;
    let proven = filled.logical_and(&margin_holds(&best, &worse, d)?)?;
    write_proven(settled, &rows, &taken, &proven, &best_label, &best)
}

/// One general buffer: rows of `mask` (`position` their place among its `count` rows) in
/// `offset..offset + cap`, each measured by differences against the [`CANDIDATES`] centroids
/// with the smallest partial distances (a GEMM of the buffer's rows).
fn settle_round(
    data: &TieRows<'_>,
    settled: Settled,
    (mask, position, count): (&Array, &Array, &Array),
    offset: usize,
    cap: usize,
) -> Result<Settled> {
    let (k, d) = (data.centroids.shape()[0] as usize, data.centroids.shape()[1] as usize);
    let r = CANDIDATES.min(k);
    let Slots { rows, filled, taken } = slots(mask, position, count, offset, cap)?;
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
    let all_in_candidates = settled.in_band.take_axis(&rows, 0)?.le(Array::from_int(r as i32))?;
    let proven = filled.logical_and(&all_in_candidates)?.logical_and(&margin_holds(&best, &second, d)?)?;
    write_proven(settled, &rows, &taken, &proven, &best_label, &best)
}

/// Labels and squared distances of an evaluated [`Settled`] on the host, every near tie
/// decided: flagged rows no buffer took are decided on the device in further general
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
    if settled.on_device {
        let mask = settled.untried.clone();
        let (position, untried) = (positions(&mask)?, count(&mask)?);
        eval_all(&[&position, &untried])?;
        let (total, cap) = (untried.item_exact::<f32>() as usize, max_capacity(n, k, d));
        let mut offset = 0;
        while offset < total {
            settled = settle_round(data, settled, (&mask, &position, &untried), offset, cap)?;
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
    let pairs = settled.pair_count.item_exact::<f32>() as usize;
    log::debug!(
        target: crate::LOG_TARGET,
        "near ties: {flagged} rows, {pairs} of them for the pair buffer, {} decided on the host",
        on_host.len()
    );
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
