//! Lloyd iterations on sparse rows: each step assigns every row (`super::assign`), adds the
//! rows' nonzeros into per-cluster float64 sums (one pass, in row order, so a fit is
//! reproducible), repairs empty clusters and moves the centroids, through the shared update.

use rand_chacha::ChaCha8Rng;

use super::{kmeans_plusplus, nearest, CsrIndex, CsrRef};
use crate::error::{invalid, Result};
use crate::init::Init;
use crate::kernel::ClusterSums;
use crate::lloyd::{best_of_runs, lloyd, KMeansFit};
use crate::matrix::{normalize_rows, weight_at, weighted_sum, MatRef};
use crate::monitor::{KeepGoing, Monitor};
use crate::params::{check_weights, KMeansParams};
use crate::sampling::weighted_sample_without_replacement;
use crate::scalar::Scalar;
use crate::strategy::{Assignment, LloydStep, StepReport};
use crate::update::{average, move_row, squared_shift};

/// Runs `n_init` initialisations of sparse rows `x`, each followed by Lloyd iterations;
/// keeps the lowest inertia. Every iteration is a dense pass (bounds are not kept).
pub fn fit<T: Scalar, I: CsrIndex>(
    x: CsrRef<'_, T, I>,
    weights: Option<&[T]>,
    params: &KMeansParams,
    init: Init<'_, T>,
    monitor: Monitor<'_>,
) -> Result<KMeansFit<T>> {
    let (n, d, k) = (x.rows(), x.cols(), params.n_clusters);
    params.check(n)?;
    check_weights(weights, n)?;
    let norms = x.row_sq_norms();
    let tol = if params.tol > 0.0 { params.tol * x.mean_feature_variance() } else { 0.0 };
    best_of_runs(params, |run, rng: &mut ChaCha8Rng| {
        let mut centroids = initial_centroids(x, &norms, weights, k, init, rng, run, &mut *monitor)?;
        if params.spherical {
            normalize_rows(&mut centroids, d);
        }
        let steps = SparseLloyd { x, norms: &norms, weights, centroids, spherical: params.spherical, last: None };
        lloyd(Box::new(steps), params.max_iter, || Ok(tol), run, &mut *monitor)
    })
}

/// `k` initial centroids (`k × d`) from sparse rows `x` (squared norms `norms`).
#[allow(clippy::too_many_arguments)]
pub fn initial_centroids<T: Scalar, I: CsrIndex>(
    x: CsrRef<'_, T, I>,
    norms: &[f64],
    weights: Option<&[T]>,
    k: usize,
    init: Init<'_, T>,
    rng: &mut ChaCha8Rng,
    run: usize,
    monitor: Monitor<'_>,
) -> Result<Vec<T>> {
    let d = x.cols();
    match init {
        Init::KMeansPlusPlus => kmeans_plusplus(x, norms, weights, k, rng, run, monitor),
        Init::Random => {
            let rows = weighted_sample_without_replacement(x.rows(), weights, k, rng)?;
            Ok(rows.iter().flat_map(|&i| x.dense_row(i)).collect())
        }
        Init::Given(centroids) if centroids.len() == k * d => Ok(centroids.to_vec()),
        Init::Given(centroids) => {
            invalid(format!("init has {} values; expected n_clusters × n_features = {k} × {d}", centroids.len()))
        }
    }
}

/// Lloyd steps on sparse rows, with the centroids and last labels on the host.
pub struct SparseLloyd<'a, T, I> {
    x: CsrRef<'a, T, I>,
    norms: &'a [f64],
    weights: Option<&'a [T]>,
    /// `k × d`, row-major.
    centroids: Vec<T>,
    spherical: bool,
    /// The last step's labels and distances (to the centroids before its update).
    last: Option<(Vec<u32>, Vec<T>)>,
}

impl<T: Scalar, I: CsrIndex> SparseLloyd<'_, T, I> {
    fn k(&self) -> usize {
        self.centroids.len() / self.x.cols()
    }

    fn assignment(&self) -> Result<(Vec<u32>, Vec<T>)> {
        Ok(nearest(self.x, self.norms, MatRef::new(&self.centroids, self.k(), self.x.cols())?))
    }

    /// Weighted per-cluster sums of the rows, in row order.
    fn sums(&self, labels: &[u32]) -> ClusterSums {
        let (k, d) = (self.k(), self.x.cols());
        let mut sums = ClusterSums::zeros(k, d);
        for (i, &label) in labels.iter().enumerate() {
            let (w, label) = (weight_at(self.weights, i), label as usize);
            sums.weights[label] += w;
            let (indices, values) = self.x.row(i);
            for (&j, &v) in indices.iter().zip(values) {
                sums.sums[label * d + j.at()] += v.as_f64() * w;
            }
        }
        sums
    }

    /// scikit-learn's repair: each empty cluster takes the positive-weight row farthest from
    /// its centroid (by this step's distances; ties by lowest index), which leaves its old
    /// cluster's sums.
    fn relocate_empty(&self, labels: &[u32], distances: &[T], sums: &mut ClusterSums) {
        let d = self.x.cols();
        let empty: Vec<usize> = (0..sums.weights.len()).filter(|&j| !(sums.weights[j] > 0.0)).collect();
        if empty.is_empty() {
            return;
        }
        let mut rows: Vec<usize> = (0..labels.len()).filter(|&i| weight_at(self.weights, i) > 0.0).collect();
        rows.sort_by(|&a, &b| distances[b].as_f64().total_cmp(&distances[a].as_f64()).then(a.cmp(&b)));
        // Every row on its centroid: nothing to gain by moving one (as the dense repair).
        if rows.first().is_none_or(|&i| !(distances[i].as_f64() > 0.0)) {
            return;
        }
        for (&cluster, &i) in empty.iter().zip(&rows) {
            let (indices, values) = self.x.row(i);
            let entries = indices.iter().map(|j| j.at()).zip(values);
            move_row(sums, d, labels[i] as usize, cluster, weight_at(self.weights, i), entries);
        }
    }
}

impl<T: Scalar, I: CsrIndex> LloydStep<T> for SparseLloyd<'_, T, I> {
    fn step(&mut self, _keep_going: KeepGoing<'_>) -> Result<StepReport> {
        let (labels, distances) = self.assignment()?;
        let inertia = weighted_sum(&distances, self.weights);
        let labels_changed = self.last.as_ref().is_none_or(|(previous, _)| *previous != labels);
        let mut sums = self.sums(&labels);
        self.relocate_empty(&labels, &distances, &mut sums);
        let updated = average(&sums, &self.centroids, self.x.cols(), self.spherical);
        let center_shift = squared_shift(&updated, &self.centroids);
        self.centroids = updated;
        self.last = Some((labels, distances));
        Ok(StepReport { inertia, center_shift, labels_changed })
    }

    fn finish(self: Box<Self>, labels_current: bool, _keep_going: KeepGoing<'_>) -> Result<Assignment<T>> {
        let (labels, distances) = match (labels_current, &self.last) {
            (true, Some((labels, distances))) => (labels.clone(), distances.clone()),
            _ => self.assignment()?,
        };
        let inertia = weighted_sum(&distances, self.weights);
        Ok(Assignment { centroids: self.centroids, labels, distances, inertia })
    }
}
