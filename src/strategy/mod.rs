//! Where the steps of a fit run. A backend is an [`Engine`]: its [`Kernel`] of primitives,
//! and the strategies it offers for each kind of step, chosen once per fit:
//! - a Lloyd iteration ([`LloydStep`]): dense host passes and bounded host passes
//!   ([`HostEngine`]), or steps resident on a device (the MLX kernel's);
//! - greedy k-means++: the whole seeding resident on a device ([`Engine::kmeans_plusplus`]),
//!   else the host loop with the engine's candidate evaluation ([`Engine::candidate_potentials`]);
//! - mini-batch steps ([`Engine::minibatch`]: rows gathered on the host, or resident on a
//!   device), for a fit and for each `partial_fit` call.
//!
//! The loops (`crate::lloyd`, `crate::init`, `crate::minibatch`) are written once against
//! these; a new backend or trick is a new strategy, never a new branch inside a loop.

pub mod bounds;
pub(crate) mod candidates;
pub mod chunked;
pub mod grouped;
mod host;
mod minibatch_step;
mod seeding;

use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::kernel::Kernel;
use crate::matrix::{MatRef, Points};
use crate::monitor::{KeepGoing, Monitor};
use crate::options::{BoundsKind, SeedingOptions};
use crate::params::{Algorithm, KMeansParams};
use crate::scalar::Scalar;

pub use host::{DensePass, HostLloyd, HostPass};
pub use minibatch_step::{
    host_minibatch_step, starved_reassignment, HostMiniBatch, MiniBatchState, MiniBatchSteps, StepOutcome,
};
pub use seeding::{potentials_by_chunk, RunCandidates};

/// What one Lloyd iteration reports to the loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// Weighted inertia of the assignment made in this iteration (before the update).
    pub inertia: f64,
    /// Sum over centroids of the squared distance each one moved.
    pub center_shift: f64,
    /// Whether any label differs from the previous iteration's (true on the first).
    pub labels_changed: bool,
}

/// Centroids with the labels and exact squared distances that belong to them.
#[derive(Debug, Clone)]
pub struct Assignment<T> {
    /// `k × d`, row-major.
    pub centroids: Vec<T>,
    pub labels: Vec<u32>,
    pub distances: Vec<T>,
    /// Weighted sum of `distances`, in f64.
    pub inertia: f64,
}

/// Lloyd iterations over one fit's data, from given centroids: the state lives wherever the
/// strategy keeps it (host memory, a device).
pub trait LloydStep<T> {
    /// One iteration: assigns every row to its nearest centroid, then moves each centroid to
    /// the weighted mean of its rows (empty clusters repaired, normalised when spherical).
    fn step(&mut self, keep_going: KeepGoing<'_>) -> Result<StepReport>;

    /// The current centroids, the labels of their nearest rows and exact squared distances.
    /// `labels_current`: the last step's labels already belong to the current centroids
    /// (strict convergence), so no assignment is needed beyond what the strategy prefers.
    fn finish(self: Box<Self>, labels_current: bool, keep_going: KeepGoing<'_>) -> Result<Assignment<T>>;
}

/// A backend: its kernel and the strategies by which fits run their steps on it.
pub trait Engine<T: Scalar>: Sync {
    fn kernel(&self) -> &dyn Kernel<T>;

    /// The switches of greedy k-means++ on the host loop (pruning, the kernel's screen).
    fn seeding(&self) -> SeedingOptions {
        SeedingOptions::default()
    }

    /// Whether triangle-inequality bounds may replace this kernel's search (fits over
    /// chunks ask; in-memory fits choose through [`Engine::lloyd`]). They need the kernel's
    /// distances within the host's error bound (`kernel::partial_error_bound`): true of the
    /// host kernels, not of a device whose products round more (TF32) or of a library called
    /// back for assignments only.
    fn bounds(&self) -> bool {
        false
    }

    /// The Lloyd strategy for a fit of `points` from `centroids`.
    fn lloyd<'s>(
        &'s self,
        points: Points<'s, T>,
        centroids: Vec<T>,
        params: &KMeansParams,
    ) -> Result<Box<dyn LloydStep<T> + 's>>;

    /// Greedy k-means++ run by the engine itself (e.g. resident on a device) for one or
    /// more runs at once: the rows of each sample it picks, in order. Run `r` draws from
    /// `rngs[r]` what the host loop draws (one number for the first centre, then one per
    /// candidate), so a seed picks the same rows on every engine. `None`: the engine has no
    /// such strategy, and `crate::init::kmeans_plusplus` runs each sample.
    fn kmeans_plusplus(
        &self,
        _samples: &[Points<'_, T>],
        _k: usize,
        _rngs: &mut [ChaCha8Rng],
        _first_run: usize,
        _monitor: Monitor<'_>,
    ) -> Result<Option<Vec<Vec<usize>>>> {
        Ok(None)
    }

    /// k-means++ candidate evaluation for one or more runs over the same rows (`runs`, see
    /// [`RunCandidates`]): each row's squared distance to each of a run's candidates
    /// (`n × candidates`, into its `distances`) and, per candidate, the weighted potential were
    /// it added, `Σ_i w_i · min(closest_i, distance_ij)`, summed over fixed chunks of rows then
    /// in chunk order (so the sums never depend on the thread count, nor on the other runs).
    /// With `measured` (ascending rows), only those rows are measured, and with `screen` only
    /// those of them it keeps; the others' distances are their `closest`. The default sums
    /// each chunk's distances while they are still in cache, reading each chunk once for all
    /// runs: right where kernel calls are cheap.
    fn candidate_potentials(
        &self,
        points: Points<'_, T>,
        row_weights: &[f64],
        runs: Vec<RunCandidates<'_, T>>,
    ) -> Result<Vec<Vec<f64>>> {
        potentials_by_chunk(self.kernel(), points, row_weights, runs)
    }

    /// The mini-batch strategy for a fit over `x` from `state`. The default gathers each
    /// batch on the host ([`HostMiniBatch`]).
    fn minibatch<'s>(
        &'s self,
        x: MatRef<'s, T>,
        weights: Option<&'s [T]>,
        state: MiniBatchState<T>,
        reassignment_ratio: f64,
        spherical: bool,
    ) -> Result<Box<dyn MiniBatchSteps<T> + 's>> {
        Ok(Box::new(HostMiniBatch { kernel: self.kernel(), x, weights, state, reassignment_ratio, spherical }))
    }
}

/// A kernel that computes on the host: Lloyd steps run as host passes, bounded ones where
/// the kernel's own search is what the bounds save (`bounds`) and the parameters ask for it.
pub struct HostEngine<K> {
    pub kernel: K,
    /// Whether bounds may replace this kernel's search (false where the search runs
    /// elsewhere, e.g. in a library called back for assignments only).
    pub bounds: bool,
    /// Which bounds (`None`: chosen per fit, see [`HostEngine::lloyd`]).
    pub bounds_kind: Option<BoundsKind>,
    pub seeding: SeedingOptions,
}

impl<K> HostEngine<K> {
    pub fn new(kernel: K, bounds: bool) -> Self {
        Self { kernel, bounds, bounds_kind: None, seeding: SeedingOptions::default() }
    }

    pub fn with_seeding(self, seeding: SeedingOptions) -> Self {
        Self { seeding, ..self }
    }

    pub fn with_bounds_kind(self, bounds_kind: Option<BoundsKind>) -> Self {
        Self { bounds_kind, ..self }
    }
}

impl<T: Scalar, K: Kernel<T>> Engine<T> for HostEngine<K> {
    fn kernel(&self) -> &dyn Kernel<T> {
        &self.kernel
    }

    fn seeding(&self) -> SeedingOptions {
        self.seeding
    }

    fn bounds(&self) -> bool {
        self.bounds
    }

    fn lloyd<'s>(
        &'s self,
        points: Points<'s, T>,
        centroids: Vec<T>,
        params: &KMeansParams,
    ) -> Result<Box<dyn LloydStep<T> + 's>> {
        let (n, k) = (points.rows(), centroids.len() / points.cols());
        // Bounds pay off once there are several centroids and rows to spare per centroid.
        let bounded = self.bounds && params.algorithm != Algorithm::Dense && k > 1 && n >= 4 * k;
        // Unless asked for others: lists of nearest centroids on wide rows with many rows per
        // centroid, Hamerly's bounds elsewhere (benchmarks/README.md, "Lists of nearest
        // centroids"). Grouped bounds cost more than they saved wherever the kernel's dense
        // search runs on matrix tiles or bfloat16 ("Grouped bounds").
        let wide = points.cols() >= LISTS_MIN_FEATURES && n >= LISTS_MIN_ROWS_PER_CENTROID * k;
        let chosen =
            if wide && params.algorithm == Algorithm::Auto { BoundsKind::Candidates } else { BoundsKind::Hamerly };
        let kind = self.bounds_kind.unwrap_or(chosen);
        if bounded {
            log::debug!("bounded Lloyd passes: {kind:?} bounds");
        }
        Ok(if bounded && kind == BoundsKind::Candidates {
            host_lloyd(&self.kernel, points, centroids, params, candidates::CandidatePass::new(n))
        } else if bounded && kind == BoundsKind::Grouped {
            host_lloyd(
                &self.kernel,
                points,
                centroids,
                params,
                grouped::GroupedPass::new(grouped::group_count(k, points.cols())),
            )
        } else if bounded {
            let pass = match params.algorithm {
                Algorithm::Auto => bounds::BoundedPass::chosen(n),
                _ => bounds::BoundedPass::new(n),
            };
            host_lloyd(&self.kernel, points, centroids, params, pass)
        } else {
            host_lloyd(&self.kernel, points, centroids, params, host::DensePass)
        })
    }
}

/// Fewest features for which `algorithm="auto"` takes lists of nearest centroids (on 128
/// features they cost more than Hamerly's bounds).
const LISTS_MIN_FEATURES: usize = 256;
/// Fewest rows per centroid for the same (a run of rows per label amortises its centroids).
const LISTS_MIN_ROWS_PER_CENTROID: usize = 32;

/// Host Lloyd steps by `pass`; a fit of more than one pass keeps its rows and sums from the first.
fn host_lloyd<'s, T: Scalar, P: HostPass<T> + 's>(
    kernel: &'s dyn Kernel<T>,
    points: Points<'s, T>,
    centroids: Vec<T>,
    params: &KMeansParams,
    pass: P,
) -> Box<dyn LloydStep<T> + 's> {
    let steps = HostLloyd::new(kernel, points, centroids, params.spherical, pass);
    Box::new(steps.keeping_from_first(params.max_iter > 1).sparing_distances(!params.distances))
}
