//! The parameters of a fit and their checks, shared by every entry point.

use crate::error::{invalid, Result};
use crate::scalar::Scalar;

/// How Lloyd iterations find each row's nearest centroid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// Every row searches all centroids in every iteration.
    Dense,
    /// Rows whose triangle-inequality bounds prove they keep their centroid skip the search
    /// (Hamerly's bounds) in every pass after the first, where the backend can bound its
    /// search; same labels as `Dense`.
    Bounded,
    /// Bounded passes where they save time over dense ones, chosen as the fit runs (in-memory
    /// fits: `strategy::bounds`); fits over chunks make `Bounded`'s schedule. Same labels.
    #[default]
    Auto,
}

/// Parameters of a full k-means fit (the initial centroids are passed apart).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KMeansParams {
    pub n_clusters: usize,
    pub n_init: usize,
    pub max_iter: usize,
    /// Relative tolerance: the fit stops when the squared centre shift falls below
    /// `tol × mean feature variance` (scikit-learn's convention).
    pub tol: f64,
    pub seed: u64,
    /// Keep centroids at unit norm (for cosine similarity on normalised data).
    pub spherical: bool,
    pub algorithm: Algorithm,
    /// Whether the fit returns each row's squared distance to its centroid; without them a
    /// strategy that keeps the cluster sums may take the inertia from the sums and leave
    /// `distances` empty.
    pub distances: bool,
}

impl KMeansParams {
    pub fn check(&self, n: usize) -> Result<()> {
        check_n_clusters(n, self.n_clusters)?;
        if self.max_iter == 0 || self.n_init == 0 {
            return invalid("max_iter and n_init must be at least 1");
        }
        if !(self.tol >= 0.0) {
            return invalid("tol must be non-negative");
        }
        Ok(())
    }
}

/// Parameters of a mini-batch fit (the initial centroids are passed apart).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MiniBatchParams {
    pub n_clusters: usize,
    pub n_init: usize,
    /// Passes over the data: the fit runs at most `max_iter × n / batch_size` steps.
    pub max_iter: usize,
    pub batch_size: usize,
    /// Rows sampled for initialisation; `None`: `3 × batch_size` (at least `3 × k`).
    pub init_size: Option<usize>,
    /// Relative tolerance on the squared centre change per step (0 disables it).
    pub tol: f64,
    /// Stop after this many steps without improvement of the smoothed batch inertia.
    pub max_no_improvement: Option<usize>,
    pub reassignment_ratio: f64,
    pub seed: u64,
    pub compute_labels: bool,
    pub spherical: bool,
}

impl MiniBatchParams {
    pub fn check(&self, n: usize) -> Result<()> {
        check_n_clusters(n, self.n_clusters)?;
        if self.batch_size == 0 || self.max_iter == 0 || self.n_init == 0 {
            return invalid("batch_size, max_iter and n_init must be at least 1");
        }
        if !(self.reassignment_ratio >= 0.0) || !(self.tol >= 0.0) {
            return invalid("reassignment_ratio and tol must be non-negative");
        }
        Ok(())
    }
}

/// `k` must lie in `1..=n`.
pub fn check_n_clusters(n: usize, k: usize) -> Result<()> {
    if k == 0 {
        return invalid("n_clusters must be at least 1");
    }
    if k > n {
        return invalid(format!("n_samples={n} should be >= n_clusters={k}"));
    }
    Ok(())
}

/// Weights, when given, are one finite non-negative value per row with a positive sum.
pub fn check_weights<T: Scalar>(weights: Option<&[T]>, n: usize) -> Result<()> {
    check_weight_values(weights, n)?;
    if let Some(w) = weights {
        if !(w.iter().map(|v| v.as_f64()).sum::<f64>() > 0.0) {
            return invalid("sample_weight sums to zero");
        }
    }
    Ok(())
}

/// Weights of one chunk of a larger fit: one finite non-negative value per row. Their sum
/// may be zero (a chunk of rows weighted out); only the whole fit's total must be positive,
/// which the caller checks.
pub fn check_weight_values<T: Scalar>(weights: Option<&[T]>, n: usize) -> Result<()> {
    if let Some(w) = weights {
        if w.len() != n {
            return invalid(format!("sample_weight has {} entries; expected {n}", w.len()));
        }
        if w.iter().any(|&v| !(v >= T::zero()) || !v.is_finite()) {
            return invalid("sample_weight must be finite and non-negative");
        }
    }
    Ok(())
}
