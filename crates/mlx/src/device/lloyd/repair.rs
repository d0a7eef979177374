//! Empty-cluster repair on the device, by the shared policy (`mlx_kmeans::update::
//! relocate_empty_clusters`): each empty cluster takes over the positive-weight row farthest
//! from its centroid, farthest first, and that row's weight and sum move from its old cluster
//! (nothing moves when every row lies on its centroid).
//! Distances are measured by differences, so far rows rank as they do on the host; the moved
//! sums go through the kernel's lifted GEMM, so rounded (TF32-class) products leave them
//! float32-accurate.

use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::ops::{argsort_axis, maximum, select};
use mlx_rs::Array;

use super::MlxLloyd;
use crate::device::{fold_sums, own_sq_distances};
use mlx_kmeans::error::Result;

impl MlxLloyd<'_, '_> {
    /// The centroids of the last pass once its empty clusters are repaired.
    pub(super) fn repaired_centroids(&self) -> Result<Array> {
        let (labels, _, sums, weights, means) = self.last.as_ref().expect("a step ran");
        let (k, d) = (self.k(), self.centroids.shape()[1] as usize);
        // The pass's weights were evaluated with it: which clusters are empty is known here.
        let host_weights = weights.as_slice::<f32>();
        let positive_rows = self.points.weights.map_or(self.points.rows(), |w| w.iter().filter(|&&v| v > 0.0).count());
        let empty_clusters: Vec<u32> = (0..k as u32).filter(|&j| !(host_weights[j as usize] > 0.0)).collect();
        let m = empty_clusters.len().min(positive_rows);
        if m == 0 {
            return self.updated_centroids(&self.centroids, means, weights);
        }
        let (order, farthest) = self.farthest_rows(labels)?;
        // Every row on its centroid (more clusters than distinct rows): moving one would only
        // swap equal centres, and the fit would never settle (the shared policy skips it).
        if !(farthest > 0.0) {
            return self.updated_centroids(&self.centroids, means, weights);
        }
        let moved = order.index(0..m as i32);
        let row_weights = match &self.weights {
            Some(w) => w.take_axis(&moved, 0)?,
            None => mlx_rs::ops::ones::<f32>(&[m as i32])?,
        };
        let row_weights = row_weights.reshape(&[m as i32, 1])?;
        let moved_sums = self.plain.take_axis(&moved, 0)?.multiply(&row_weights)?;
        // change[j, r] = +1 if moved row r joins cluster j, -1 if it leaves it.
        let clusters = Array::from_iter(0..k as u32, &[k as i32, 1]);
        let leaves = clusters.eq(&labels.take_axis(&moved, 0)?.reshape(&[1, m as i32])?)?;
        let joins = clusters.eq(Array::from_slice(&empty_clusters[..m], &[1, m as i32]))?;
        let change = joins.as_type::<f32>()?.subtract(&leaves.as_type::<f32>()?)?;
        let lifted = self.kernel.lift_rows(mlx_rs::ops::concatenate(&[&moved_sums, &row_weights], 1)?)?;
        let delta = fold_sums(change.matmul(&lifted)?, d + 1, self.kernel.split)?;
        let new_sums = sums.add(delta.index((.., 0..d as i32)))?;
        let after = weights.add(delta.index((.., d as i32)))?;
        // Cancellation can leave a sliver of weight behind: treat it as empty.
        let kept = after.gt(&weights.multiply(Array::from_f32(1e-12))?)?;
        let new_weights = select(&kept, &after, Array::from_f32(0.0))?;
        let column = new_weights.reshape(&[k as i32, 1])?;
        let recomputed = new_sums.divide(&maximum(&column, Array::from_f32(f32::MIN_POSITIVE))?)?;
        // Clusters the repair left alone keep the pass's means.
        let touched = change.abs()?.sum_axis(1, true)?.gt(Array::from_f32(0.0))?;
        let means = select(&touched, &recomputed, means)?;
        log::debug!(target: crate::LOG_TARGET, "relocated {m} empty cluster(s) to the farthest points");
        self.updated_centroids(&self.centroids, &means, &new_weights)
    }

    /// Row indices (int32), farthest from their labelled centroid first, zero-weight rows
    /// last; and the largest squared distance of a positive-weight row.
    fn farthest_rows(&self, labels: &Array) -> Result<(Array, f32)> {
        let mut distances = own_sq_distances(&self.plain, &self.centroids, labels)?;
        if let Some(w) = &self.weights {
            distances = select(&w.gt(Array::from_f32(0.0))?, &distances, Array::from_f32(-1.0))?;
        }
        let largest = distances.max(None)?;
        largest.eval()?;
        Ok((argsort_axis(&distances.negative()?, 0)?, largest.as_slice::<f32>()[0]))
    }
}
