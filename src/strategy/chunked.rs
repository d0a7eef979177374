//! Lloyd steps over data held in chunks elsewhere (a Dask cluster's partitions, a file read
//! piece by piece): each pass runs where the chunks are ([`Chunks`]) and hands back only
//! combined per-cluster sums; the update, the empty-cluster repair, the bounds schedule and
//! (through `crate::lloyd`) the stopping rules and `n_init` are the engine's own, as for data
//! in memory.

use rand::RngExt;

use super::bounds::{centroid_half_gaps, centroid_shifts, BoundsSchedule};
use super::{Assignment, Engine, LloydStep, StepReport};
use crate::error::{Error, Result};
use crate::kernel::{ClusterSums, Kernel};
use crate::lloyd::{best_of_runs, lloyd, KMeansFit};
use crate::matrix::{normalize_rows, row_sq_norms, MatRef};
use crate::monitor::{KeepGoing, Monitor};
use crate::params::{Algorithm, KMeansParams};
use crate::scalar::Scalar;
use crate::update::{average, empty_clusters, squared_shift, take_farthest};

/// What one pass over every chunk returns, combined over the chunks.
#[derive(Debug, Clone)]
pub struct ChunkPass {
    /// Per-cluster weighted sums (`k × d`) and weights, in float64.
    pub sums: ClusterSums,
    /// Weighted inertia of the pass's assignment.
    pub inertia: f64,
    /// Rows that searched every centroid (every row in a dense pass).
    pub searched: usize,
    /// Rows whose label differs from the one their chunk kept from its previous pass (every
    /// row on a chunk's first pass).
    pub changed: usize,
}

/// Bounds for a pass: half the gap from each centroid to its nearest other, and how far each
/// centroid moved since the chunks' last pass (`None`: the chunks hold no bounds for their
/// labels; the pass searches every row and makes them).
#[derive(Debug, Clone, Copy)]
pub struct PassBounds<'a> {
    pub half_gaps: &'a [f64],
    pub shifts: Option<&'a [f64]>,
}

/// A row taken by an empty cluster: its exact squared distance to its centroid, its label,
/// weight and values.
#[derive(Debug, Clone)]
pub struct FarRow<T> {
    pub distance: f64,
    pub label: u32,
    pub weight: f64,
    pub values: Vec<T>,
}

/// Data in row chunks, wherever they live. Each chunk keeps its labels (and bounds) from its
/// last pass.
pub trait Chunks<T> {
    fn rows(&self) -> usize;

    /// Run `run`'s initial centroids (`k × d`), drawn with `seed`.
    fn initial_centroids(&self, run: usize, seed: u64) -> Result<Vec<T>>;

    /// The mean feature variance, which `tol` is relative to (known once a pass has read
    /// every chunk).
    fn mean_feature_variance(&self) -> Result<f64>;

    /// Assigns every row to its nearest centroid (searching only rows that `bounds` cannot
    /// settle, when given); the chunks keep the labels.
    fn pass(&self, centroids: MatRef<'_, T>, bounds: Option<PassBounds<'_>>) -> Result<ChunkPass>;

    /// The `count` positive-weight rows farthest from their centroid by the labels of the last
    /// pass, farthest first (ties by lowest row index).
    fn farthest(&self, centroids: MatRef<'_, T>, count: usize) -> Result<Vec<FarRow<T>>>;

    /// The weighted inertia of every row's nearest centroid (the final assignment).
    fn inertia(&self, centroids: MatRef<'_, T>) -> Result<f64>;
}

/// Lloyd state for chunked data: the centroids here, the labels with the chunks.
pub struct ChunkedLloyd<'s, T> {
    chunks: &'s dyn Chunks<T>,
    /// Measures the gaps between centroids for bounded passes.
    kernel: &'s dyn Kernel<T>,
    centroids: Vec<T>,
    d: usize,
    spherical: bool,
    /// Bounded passes allowed, and when they run.
    schedule: Option<BoundsSchedule>,
    /// Whether the chunks hold bounds from their last pass.
    have_bounds: bool,
    /// How far each centroid moved in the last update (kept where bounds may run).
    shifts: Vec<f64>,
}

impl<'s, T: Scalar> ChunkedLloyd<'s, T> {
    pub fn new(
        chunks: &'s dyn Chunks<T>,
        kernel: &'s dyn Kernel<T>,
        centroids: Vec<T>,
        d: usize,
        params: &KMeansParams,
    ) -> Self {
        let k = centroids.len() / d.max(1);
        let bounded = params.algorithm != Algorithm::Dense && k > 1;
        Self {
            chunks,
            kernel,
            centroids,
            d,
            spherical: params.spherical,
            schedule: bounded.then(BoundsSchedule::new),
            have_bounds: false,
            shifts: Vec::new(),
        }
    }

    fn current(&self) -> Result<MatRef<'_, T>> {
        MatRef::new(&self.centroids, self.centroids.len() / self.d.max(1), self.d)
    }

    /// Empty clusters take the rows farthest from their centroids (`update`'s repair, with
    /// the rows found by the chunks).
    fn relocate(&self, sums: &mut ClusterSums) -> Result<()> {
        let empty = empty_clusters(sums);
        if empty.is_empty() {
            return Ok(());
        }
        let farthest = self.chunks.farthest(self.current()?, empty.len())?;
        if farthest.iter().any(|row| row.values.len() != self.d || row.label as usize >= sums.weights.len()) {
            return Err(Error::Backend("a chunk returned a malformed row for an empty cluster".into()));
        }
        let rows = farthest.iter().map(|row| (row.distance, row.label as usize, row.weight, row.values.as_slice()));
        take_farthest(sums, self.d, &empty, rows);
        Ok(())
    }
}

impl<T: Scalar> LloydStep<T> for ChunkedLloyd<'_, T> {
    fn step(&mut self, keep_going: KeepGoing<'_>) -> Result<StepReport> {
        let n = self.chunks.rows();
        let bounded = self.schedule.as_mut().is_some_and(|schedule| !schedule.dense_now());
        let current = MatRef::new(&self.centroids, self.centroids.len() / self.d.max(1), self.d)?;
        let mut pass = if bounded {
            let half_gaps = centroid_half_gaps(self.kernel, current, &row_sq_norms(current))?;
            let shifts = self.have_bounds.then_some(self.shifts.as_slice());
            let pass = self.chunks.pass(current, Some(PassBounds { half_gaps: &half_gaps, shifts }))?;
            if let (Some(schedule), true) = (self.schedule.as_mut(), shifts.is_some()) {
                schedule.tested(pass.searched, n);
            }
            log::debug!("{} of {n} rows searched every centroid", pass.searched);
            pass
        } else {
            self.chunks.pass(current, None)?
        };
        self.have_bounds = bounded;
        if !keep_going() {
            return Err(Error::Interrupted);
        }
        self.relocate(&mut pass.sums)?;
        let updated = average(&pass.sums, &self.centroids, self.d, self.spherical);
        let center_shift = squared_shift(&updated, &self.centroids);
        if self.schedule.is_some() {
            self.shifts = centroid_shifts(&self.centroids, &updated, self.d);
        }
        self.centroids = updated;
        Ok(StepReport { inertia: pass.inertia, center_shift, labels_changed: pass.changed > 0 })
    }

    /// The centroids and their inertia, by one more pass: a pass's own inertia mixes
    /// distances settled by bounds (exact) with the kernel's, so it is not quite what
    /// `score` gives. The labels stay with the chunks (empty here).
    fn finish(self: Box<Self>, _labels_current: bool, _keep_going: KeepGoing<'_>) -> Result<Assignment<T>> {
        let inertia = self.chunks.inertia(self.current()?)?;
        Ok(Assignment { centroids: self.centroids, labels: Vec::new(), distances: Vec::new(), inertia })
    }
}

/// `params.n_init` runs over `chunks`, each from the chunks' initial centroids and on through
/// Lloyd's iterations; the lowest inertia wins. `engine`: the chunks' backend; where it allows
/// bounds ([`Engine::bounds`]) its kernel measures the gaps between centroids for bounded
/// passes, else every pass is dense. Labels stay with the chunks.
pub fn fit_chunks<T: Scalar>(
    chunks: &dyn Chunks<T>,
    engine: &dyn Engine<T>,
    d: usize,
    params: &KMeansParams,
    monitor: Monitor<'_>,
) -> Result<KMeansFit<T>> {
    params.check(chunks.rows())?;
    let kernel = engine.kernel();
    let dense;
    let params = if engine.bounds() {
        params
    } else {
        dense = KMeansParams { algorithm: Algorithm::Dense, ..*params };
        &dense
    };
    best_of_runs(params, |run, rng| {
        let mut centroids = chunks.initial_centroids(run, rng.random::<u64>())?;
        if centroids.len() != params.n_clusters * d {
            return Err(Error::InvalidArgument(format!(
                "initial centroids hold {} values; expected {} × {d}",
                centroids.len(),
                params.n_clusters
            )));
        }
        if params.spherical {
            normalize_rows(&mut centroids, d);
        }
        let steps = ChunkedLloyd::new(chunks, kernel, centroids, d, params);
        let tol = || Ok(if params.tol > 0.0 { params.tol * chunks.mean_feature_variance()? } else { 0.0 });
        lloyd(Box::new(steps), params.max_iter, tol, run, &mut *monitor)
    })
}

#[cfg(test)]
mod tests;
