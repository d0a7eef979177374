//! Mini-batch steps resident on the MLX device: the data (held by the kernel) and the
//! centroids stay there; each step uploads its batch's row indices, gathers the rows on the
//! device, assigns them, and moves the hit centres by their learning rates there. The host
//! keeps the per-centre counts (float64, as on the `cpu` backend) for the reassignment
//! decisions; each step reads back only the batch's inertia and per-centre weights (`k`
//! numbers), and reassignments upload the chosen rows' positions. Batch labels are the exact
//! nearest centres, as on the `cpu` backend: near ties are decided again on the device in the
//! same evaluation (`ties.rs`); only rows it cannot prove cost a second one, on the host.

use mlx_rs::ops::{maximum, select};
use mlx_rs::Array;
use rand_chacha::ChaCha8Rng;

use super::kernel::cluster_sums;
use super::ties::{settle_on_device, settle_rest, Exact, TieRows};
use super::{eval_all, finish_centroids, fold_sums, lift_centroid_array, uncentred_host, CentredData, MlxKernel};
use mlx_kmeans::error::Result;
use mlx_kmeans::matrix::MatRef;
use mlx_kmeans::strategy::{starved_reassignment, MiniBatchState, MiniBatchSteps, StepOutcome};

pub(super) struct MlxMiniBatch<'s, 'a> {
    kernel: &'s MlxKernel<'a>,
    /// The data on the host (rows whose near ties the device cannot settle) and on the device.
    x: MatRef<'s, f32>,
    data: CentredData,
    /// Sample weights (`n`), if any.
    weights: Option<Array>,
    /// The shift that centred the data (`1 × d`), if any.
    shift: Option<Array>,
    /// Centred, like the data (`k × d`).
    centroids: Array,
    /// The counts as the device update takes them (`k`, float32); `state.counts` are the
    /// host's float64 counts, and `state.centroids` is filled in by `finish`.
    device_counts: Array,
    state: MiniBatchState<f32>,
    reassignment_ratio: f64,
    spherical: bool,
}

impl<'s, 'a> MlxMiniBatch<'s, 'a> {
    pub(super) fn new(
        kernel: &'s MlxKernel<'a>,
        x: MatRef<'s, f32>,
        data: CentredData,
        weights: Option<&[f32]>,
        state: MiniBatchState<f32>,
        reassignment_ratio: f64,
        spherical: bool,
    ) -> Result<Self> {
        let (n, d) = (data.centred.shape()[0], x.cols());
        let centroids = kernel.centred_centroids(MatRef::new(&state.centroids, state.counts.len(), d)?)?;
        let shift = data.shift.clone();
        let device_counts = counts_array(&state.counts);
        Ok(Self {
            kernel,
            x,
            weights: weights.map(|w| Array::from_slice(w, &[n])),
            data,
            shift,
            centroids,
            device_counts,
            state,
            reassignment_ratio,
            spherical,
        })
    }
}

impl MlxMiniBatch<'_, '_> {
    /// The centroids as the user sees them (shifted back), on the host.
    fn host_centroids(&self) -> Result<Vec<f32>> {
        uncentred_host(&self.centroids, self.shift.as_ref())
    }
}

/// One step's outcome on the device: the batch's weighted inertia, the weight each centre
/// received, and the moved centroids and counts.
struct Update {
    inertia: Array,
    hits: Array,
    updated: Array,
    counts: Array,
}

impl MlxMiniBatch<'_, '_> {
    /// Each hit centre moves to (centre · count + sum) / (count + weight), for the batch's
    /// rows as the GEMMs take them, their labels and squared distances.
    fn update(&self, lifted: &Array, labels: &Array, distances: &Array, weights: Option<&Array>) -> Result<Update> {
        let (k, d) = (self.state.counts.len() as i32, self.centroids.shape()[1] as usize);
        let inertia = match weights {
            Some(w) => distances.multiply(w)?.sum(false)?,
            None => distances.sum(false)?,
        };
        let (sums, hits) = cluster_sums(lifted, labels, weights, k as usize, self.kernel.split)?;
        let sums = fold_sums(sums, d, self.kernel.split)?;
        let totals = self.device_counts.add(&hits)?;
        let hit = hits.gt(Array::from_f32(0.0))?;
        let moved = self
            .centroids
            .multiply(&self.device_counts.reshape(&[k, 1])?)?
            .add(&sums)?
            .divide(&maximum(&totals, Array::from_f32(f32::MIN_POSITIVE))?.reshape(&[k, 1])?)?;
        let updated = select(&hit.reshape(&[k, 1])?, &moved, &self.centroids)?;
        let counts = select(&hit, &totals, &self.device_counts)?;
        Ok(Update { inertia, hits, updated, counts })
    }
}

fn counts_array(counts: &[f64]) -> Array {
    let values: Vec<f32> = counts.iter().map(|&c| c as f32).collect();
    Array::from_slice(&values, &[values.len() as i32])
}

impl MiniBatchSteps<f32> for MlxMiniBatch<'_, '_> {
    fn step(
        &mut self,
        batch: &[usize],
        turn_rows: usize,
        rng: &mut ChaCha8Rng,
        measure_shift: bool,
    ) -> Result<StepOutcome> {
        let (m, k) = (batch.len() as i32, self.state.counts.len());
        let reassign = self.state.take_reassign_turn(turn_rows);
        let indices: Vec<u32> = batch.iter().map(|&i| i as u32).collect();
        let indices = Array::from_slice(&indices, &[m]);
        let lifted = self.data.lifted.take_axis(&indices, 0)?;
        let norms = self.data.norms.take_axis(&indices, 0)?;
        let weights = self.weights.as_ref().map(|w| w.take_axis(&indices, 0)).transpose()?;
        let (c, c_norms) = lift_centroid_array(self.centroids.clone(), k, self.kernel.split)?;
        let nearest = self.kernel.nearest_in_band(&lifted, &norms, &c, &c_norms)?;
        // The batch's rows centred (gathered lazily: used by ties and reassignments only).
        let centred = self.data.centred.take_axis(&indices, 0)?;
        let rows = TieRows { lifted: &lifted, centred: &centred, c: &c, c_norms: &c_norms, centroids: &self.centroids };
        let settled = settle_on_device(&rows, nearest, self.shift.is_none(), None)?;
        // One evaluation: the step from the labels the device settled, and how many rows it
        // could not; in the rare steps with some, they are decided on the host and the step
        // is made again from the exact labels.
        let mut update = self.update(&lifted, &settled.labels, &settled.distances, weights.as_ref())?;
        eval_all(&[&settled.unproven_count, &update.inertia, &update.hits, &update.updated, &update.counts])?;
        if settled.unproven_count.item_exact::<f32>() > 0.0 {
            eval_all(&settled.outputs())?;
            let x = self.x;
            let exact = Exact { row: &|i| x.row(batch[i]) };
            let (labels, distances) = settle_rest(&rows, settled, &exact, &mut || self.host_centroids())?;
            let (labels, distances) = (Array::from_slice(&labels, &[m]), Array::from_slice(&distances, &[m]));
            update = self.update(&lifted, &labels, &distances, weights.as_ref())?;
            eval_all(&[&update.inertia, &update.hits])?;
        }
        let Update { inertia, hits, mut updated, counts } = update;
        self.device_counts = counts;
        for (count, &w) in self.state.counts.iter_mut().zip(hits.as_slice::<f32>()) {
            if w > 0.0 {
                *count += w as f64;
            }
        }
        let mut reassigned = 0;
        if reassign && self.reassignment_ratio > 0.0 {
            let pairs = starved_reassignment(&mut self.state.counts, batch.len(), rng, self.reassignment_ratio)?;
            reassigned = pairs.len();
            if !pairs.is_empty() {
                // Centre j takes the batch row at position[j] when moving[j].
                let (mut position, mut moving) = (vec![0u32; k], vec![false; k]);
                for &(j, row) in &pairs {
                    (position[j], moving[j]) = (row as u32, true);
                }
                let rows = centred.take_axis(Array::from_slice(&position, &[k as i32]), 0)?;
                updated = select(Array::from_slice(&moving, &[k as i32, 1]), &rows, &updated)?;
                self.device_counts = counts_array(&self.state.counts);
            }
        }
        let updated = finish_centroids(updated, self.spherical, self.shift.as_ref())?;
        let shift = if measure_shift {
            let shift = updated.subtract(&self.centroids)?.square()?.sum(false)?;
            eval_all(&[&shift, &updated])?;
            shift.item_exact::<f32>() as f64
        } else {
            0.0
        };
        self.centroids = updated;
        Ok(StepOutcome { inertia: inertia.item_exact::<f32>() as f64, shift, reassigned })
    }

    fn finish(self: Box<Self>) -> Result<MiniBatchState<f32>> {
        let centroids = self.host_centroids()?;
        Ok(MiniBatchState { centroids, ..self.state })
    }
}
