//! Near ties decided on the device where that can be proven right. A row whose GEMM distances
//! leave several centroids within the error band is measured again by differences (float32)
//! against the few centroids with the smallest partial distances: when every centroid in the
//! band is among them and the best beats the second by more than the error of differences,
//! the decision is the exact one. Other rows (more centroids in the band, a margin too thin,
//! data re-centred by a shift, whose rounding the bound does not cover) go to the host's exact
//! float64 search. On clustered data, where neighbouring centroids split one cluster, this
//! leaves the host a small fraction of the rows it would otherwise decide.

use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::ops::{argpartition_axis, argsort_axis};
use mlx_rs::Array;

use rayon::prelude::*;

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

/// How the rows' exact decisions are made: on the device first when `on_device` (data not
/// re-centred by a shift), else all on the host from `row(i)`, the values of row `i` as given.
pub(super) struct Exact<'a> {
    pub on_device: bool,
    pub row: &'a (dyn Fn(usize) -> &'a [f32] + Sync),
}

/// Decides the near ties (rows with more than one centroid in their band, `in_band`)
/// exactly: on the device where it can be proven, the rest by the host's float64 search
/// against `host_centroids()` (the centroids as given, fetched only when needed).
pub(super) fn settle(
    rows: &TieRows<'_>,
    exact: &Exact<'_>,
    in_band: &[i32],
    host_centroids: &mut dyn FnMut() -> Result<Vec<f32>>,
    labels: &mut [u32],
    distances: &mut [f32],
) -> Result<()> {
    let flagged: Vec<u32> = (0..in_band.len() as u32).filter(|&i| in_band[i as usize] > 1).collect();
    let decided = match exact.on_device {
        true => {
            let counts: Vec<i32> = flagged.iter().map(|&i| in_band[i as usize]).collect();
            decide_on_device(rows, &flagged, &counts)?
        }
        false => vec![None; flagged.len()],
    };
    let mut on_host = Vec::new();
    for (&i, decision) in flagged.iter().zip(&decided) {
        match decision {
            Some((label, distance)) => (labels[i as usize], distances[i as usize]) = (*label, *distance),
            None => on_host.push(i as usize),
        }
    }
    log::debug!(target: crate::LOG_TARGET, "near ties: {} rows, {} decided on the host", flagged.len(), on_host.len());
    if on_host.is_empty() {
        return Ok(());
    }
    let centroids = host_centroids()?;
    let d = rows.centroids.shape()[1] as usize;
    let centroids = MatRef::new(&centroids, centroids.len() / d, d)?;
    let results: Vec<(u32, f64)> = on_host.par_iter().map(|&i| exact_nearest((exact.row)(i), centroids)).collect();
    for (&i, (label, distance)) in on_host.iter().zip(results) {
        (labels[i], distances[i]) = (label, distance as f32);
    }
    Ok(())
}

/// For each row in `flagged` (indices, with `in_band[r]` centroids in its band), its exact
/// label and squared distance when the device can prove them, else `None`.
fn decide_on_device(data: &TieRows<'_>, flagged: &[u32], in_band: &[i32]) -> Result<Vec<Option<(u32, f32)>>> {
    let (k, d) = (data.centroids.shape()[0] as usize, data.centroids.shape()[1] as usize);
    let r = CANDIDATES.min(k);
    // Each of the d squared differences and the running sum round once: (d + 2) units of
    // float32 relative to the sum; twice that, to spare.
    let bound = 2.0 * (d + 2) as f32 * f32::EPSILON / 2.0;
    let chunk = (DIFFERENCE_ENTRIES / (r * d).max(1)).min((1usize << 27) / k.max(1)).max(1);
    let mut decided = Vec::with_capacity(flagged.len());
    for (rows, counts) in flagged.chunks(chunk).zip(in_band.chunks(chunk)) {
        let m = rows.len() as i32;
        let indices = Array::from_slice(rows, &[m]);
        let partial = partial_distances(&data.lifted.take_axis(&indices, 0)?, data.c, data.c_norms)?;
        let nearest = if r < k {
            argpartition_axis(&partial, r as i32 - 1, 1)?.index((.., 0..r as i32))
        } else {
            argsort_axis(&partial, 1)?
        };
        let candidates = data.centroids.take_axis(nearest.reshape(&[-1])?, 0)?.reshape(&[m, r as i32, d as i32])?;
        let points = data.centred.take_axis(&indices, 0)?.reshape(&[m, 1, d as i32])?;
        let distances = points.subtract(&candidates)?.square()?.sum_axis(2, false)?;
        let order = argsort_axis(&distances, 1)?;
        let sorted = distances.take_along_axis(&order, 1)?;
        let labels = nearest.take_along_axis(order.index((.., 0..1)), 1)?.as_type::<u32>()?;
        eval_all(&[&sorted, &labels])?;
        let (sorted, labels) = (sorted.as_slice::<f32>(), labels.as_slice::<u32>());
        for (i, &count) in counts.iter().enumerate() {
            let (best, second) = (sorted[i * r], if r > 1 { sorted[i * r + 1] } else { f32::INFINITY });
            let proven = count as usize <= r && second - best > bound * (best + second);
            decided.push(proven.then_some((labels[i], best)));
        }
    }
    Ok(decided)
}
