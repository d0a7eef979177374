//! Lloyd iterations that stay on the MLX device. Each step is one MLX graph: distances,
//! nearest centroids, per-cluster sums, the centroid update, and four scalars (inertia,
//! whether labels changed, empty clusters, centre shift), which are all that comes back to
//! the host. On a CUDA GPU whose memory is managed, every array read on the host costs page
//! migrations; keeping labels, distances, sums and centroids on the device removes them.

use mlx_rs::ops::{concatenate, maximum, select, stack};
use mlx_rs::Array;

use super::{check, cluster_sums, eval_all, nearest, partial_distances, rows_per_block, MlxKernel};
use crate::kernel::{ClusterSums, DeviceLloyd, DeviceStep};

pub(super) struct MlxLloyd<'s, 'a> {
    kernel: &'s MlxKernel<'a>,
    /// The data as the GEMMs take it, its squared row norms (`n`), and sample weights (`n`).
    rows: Array,
    x_norms: Array,
    weights: Option<Array>,
    centroids: Array,
    spherical: bool,
    /// The last step's labels (`n`, uint32), squared distances (`n`), sums and weights.
    last: Option<(Array, Array, Array, Array)>,
}

impl<'s, 'a> MlxLloyd<'s, 'a> {
    pub(super) fn new(
        kernel: &'s MlxKernel<'a>,
        plain: Array,
        rows: Array,
        weights: Option<&[f32]>,
        centroids: &[f32],
        spherical: bool,
    ) -> Self {
        let n = plain.shape()[0];
        let d = plain.shape()[1];
        let x_norms = check(check(plain.square()).sum_axis(1, false));
        let weights = weights.map(|w| Array::from_slice(w, &[n]));
        let centroids = Array::from_slice(centroids, &[centroids.len() as i32 / d, d]);
        Self { kernel, rows, x_norms, weights, centroids, spherical, last: None }
    }

    fn k(&self) -> usize {
        self.centroids.shape()[0] as usize
    }
}

impl DeviceLloyd<f32> for MlxLloyd<'_, '_> {
    fn step(&mut self) -> DeviceStep {
        let (k, d) = (self.k(), self.centroids.shape()[1] as usize);
        let n = self.x_norms.shape()[0] as usize;
        let (c, c_norms) = self.kernel.lift_centroid_array(self.centroids.clone(), k);
        let step = rows_per_block(k);
        let (mut labels, mut distances, mut sums, mut totals) = (Vec::new(), Vec::new(), None::<Array>, None::<Array>);
        for start in (0..n).step_by(step) {
            let end = (start + step).min(n);
            let range = start as i32..end as i32;
            let (block, block_norms, block_weights) = if start == 0 && end == n {
                (self.rows.clone(), self.x_norms.clone(), self.weights.clone())
            } else {
                use mlx_rs::ops::indexing::IndexOp;
                let w = self.weights.as_ref().map(|w| w.index(range.clone()));
                (self.rows.index((range.clone(), ..)), self.x_norms.index(range), w)
            };
            let (best, best_value) = nearest(&partial_distances(&block, &c, &c_norms));
            let dist = check(maximum(check(check(best_value.reshape(&[-1])).add(&block_norms)), Array::from_f32(0.0)));
            let (s, w) = cluster_sums(&block, &best, block_weights.as_ref(), k);
            let s = self.kernel.fold_sums(s, d);
            sums = Some(match sums { Some(total) => check(total.add(&s)), None => s });
            totals = Some(match totals { Some(total) => check(total.add(&w)), None => w });
            labels.push(check(best.reshape(&[-1])));
            distances.push(dist);
        }
        let (sums, weights) = (sums.expect("at least one row"), totals.expect("at least one row"));
        let labels = if labels.len() == 1 { labels.pop().unwrap() } else { check(concatenate(&labels, 0)) };
        let distances = if distances.len() == 1 { distances.pop().unwrap() } else { check(concatenate(&distances, 0)) };
        let weighted = match &self.weights {
            Some(w) => check(distances.multiply(w)),
            None => distances.clone(),
        };
        let inertia = check(weighted.sum(false));
        let changed = match &self.last {
            Some((previous, ..)) => check(check(check(previous.ne(&labels)).any(false)).as_type::<f32>()),
            None => Array::from_f32(1.0),
        };
        let occupied = check(weights.gt(Array::from_f32(0.0)));
        let empty = check(check(check(occupied.logical_not()).as_type::<f32>()).sum(false));
        let column = check(weights.reshape(&[k as i32, 1]));
        let means = check(sums.divide(&check(maximum(&column, Array::from_f32(f32::MIN_POSITIVE)))));
        let mut updated = check(select(&check(occupied.reshape(&[k as i32, 1])), &means, &self.centroids));
        if self.spherical {
            let norms = check(check(check(updated.square()).sum_axis(1, true)).sqrt());
            let scaled = check(updated.divide(&check(maximum(&norms, Array::from_f32(f32::MIN_POSITIVE)))));
            updated = check(select(&check(norms.gt(Array::from_f32(0.0))), &scaled, &updated));
        }
        let shift = check(check(check(updated.subtract(&self.centroids)).square()).sum(false));
        let scalars = check(stack(&[&inertia, &changed, &empty, &shift], 0));
        eval_all(&[&scalars, &updated, &labels, &distances, &sums, &weights]);
        let values = scalars.as_slice::<f32>().to_vec();
        let empty_clusters = values[2] as usize;
        if empty_clusters == 0 {
            self.centroids = updated;
        }
        self.last = Some((labels, distances, sums, weights));
        DeviceStep {
            inertia: values[0] as f64,
            labels_changed: values[1] != 0.0,
            center_shift: if empty_clusters == 0 { values[3] as f64 } else { f64::NAN },
            empty_clusters,
        }
    }

    fn sums(&self) -> ClusterSums {
        let (_, _, sums, weights) = self.last.as_ref().expect("a step ran");
        ClusterSums {
            sums: sums.as_slice::<f32>().iter().map(|&v| v as f64).collect(),
            weights: weights.as_slice::<f32>().iter().map(|&v| v as f64).collect(),
        }
    }

    fn assignment(&self, labels: &mut [u32], distances: &mut [f32]) {
        let (l, dist, ..) = self.last.as_ref().expect("a step ran");
        labels.copy_from_slice(l.as_slice::<u32>());
        distances.copy_from_slice(dist.as_slice::<f32>());
    }

    fn centroids(&self) -> Vec<f32> {
        eval_all(&[&self.centroids]);
        self.centroids.as_slice::<f32>().to_vec()
    }

    fn set_centroids(&mut self, centroids: &[f32]) {
        self.centroids = Array::from_slice(centroids, self.centroids.shape());
    }
}
