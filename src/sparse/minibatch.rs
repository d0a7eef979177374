//! Mini-batch k-means on sparse rows: the one mini-batch loop (`crate::minibatch::fit`) over
//! [`SparseRows`]. Samples and batches are gathered as small CSR matrices of their own; between
//! steps the centroids stay on the host in the products' transposed float64 layout.

use rand_chacha::ChaCha8Rng;

use super::{assign_to, initial_centroids, nearest, Centres, CsrIndex, CsrRef};
use crate::error::Result;
use crate::init::Init;
use crate::matrix::{weight_at, weighted_sum, MatRef};
use crate::minibatch::{random_indices, MiniBatchRows, Scorer};
use crate::monitor::{KeepGoing, Monitor};
use crate::scalar::Scalar;
use crate::strategy::{starved_reassignment, MiniBatchState, MiniBatchSteps, StepOutcome};

/// Sparse rows, their squared norms and sample weights, as a mini-batch fit draws from them.
pub struct SparseRows<'a, T, I> {
    x: CsrRef<'a, T, I>,
    norms: Vec<f64>,
    weights: Option<&'a [T]>,
}

impl<'a, T: Scalar, I: CsrIndex> SparseRows<'a, T, I> {
    pub fn new(x: CsrRef<'a, T, I>, weights: Option<&'a [T]>) -> Self {
        Self { norms: x.row_sq_norms(), x, weights }
    }

    /// Rows `indices` (in that order, repeats allowed) as a CSR matrix of their own.
    fn gather(&self, indices: &[usize]) -> Gathered<T, I> {
        let mut rows = Gathered {
            indptr: Vec::with_capacity(indices.len() + 1),
            indices: Vec::new(),
            data: Vec::new(),
            norms: indices.iter().map(|&i| self.norms[i]).collect(),
            weights: self.weights.map(|w| indices.iter().map(|&i| w[i]).collect()),
        };
        rows.indptr.push(I::of(0));
        for &i in indices {
            let (columns, values) = self.x.row(i);
            rows.indices.extend_from_slice(columns);
            rows.data.extend_from_slice(values);
            rows.indptr.push(I::of(rows.data.len()));
        }
        rows
    }
}

/// Rows gathered from [`SparseRows`], owning their arrays.
struct Gathered<T, I> {
    indptr: Vec<I>,
    indices: Vec<I>,
    data: Vec<T>,
    norms: Vec<f64>,
    weights: Option<Vec<T>>,
}

impl<T: Scalar, I: CsrIndex> Gathered<T, I> {
    fn view(&self, cols: usize) -> Result<CsrRef<'_, T, I>> {
        CsrRef::new(&self.indptr, &self.indices, &self.data, cols)
    }
}

/// Labels and distances of the rows `x` (squared norms `norms`) to `centroids` (`k × d`).
fn nearest_rows<T: Scalar, I: CsrIndex>(
    x: CsrRef<'_, T, I>,
    norms: &[f64],
    centroids: &[T],
) -> Result<(Vec<u32>, Vec<T>)> {
    let d = x.cols();
    Ok(nearest(x, norms, MatRef::new(centroids, centroids.len() / d.max(1), d)?))
}

impl<T: Scalar, I: CsrIndex> MiniBatchRows<T> for SparseRows<'_, T, I> {
    fn rows(&self) -> usize {
        self.x.rows()
    }

    fn cols(&self) -> usize {
        self.x.cols()
    }

    fn weights(&self) -> Option<&[T]> {
        self.weights
    }

    fn mean_feature_variance(&self) -> Result<f64> {
        Ok(self.x.mean_feature_variance())
    }

    fn initial_centroids(
        &self,
        k: usize,
        init: Init<'_, T>,
        init_size: usize,
        rngs: &mut [ChaCha8Rng],
        monitor: Monitor<'_>,
    ) -> Result<Vec<Vec<T>>> {
        let n = self.rows();
        let mut runs = Vec::with_capacity(rngs.len());
        for (run, rng) in rngs.iter_mut().enumerate() {
            runs.push(if init_size < n {
                let sample = self.gather(&random_indices(rng, n, init_size));
                let (x, w) = (sample.view(self.cols())?, sample.weights.as_deref());
                initial_centroids(x, &sample.norms, w, k, init, rng, run, &mut *monitor)?
            } else {
                initial_centroids(self.x, &self.norms, self.weights, k, init, rng, run, &mut *monitor)?
            });
        }
        Ok(runs)
    }

    fn scorer<'s>(&'s self, indices: &[usize]) -> Result<Scorer<'s, T>> {
        let sample = self.gather(indices);
        let cols = self.cols();
        Ok(Box::new(move |centroids: &[T]| {
            let (_, distances) = nearest_rows(sample.view(cols)?, &sample.norms, centroids)?;
            Ok(weighted_sum(&distances, sample.weights.as_deref()))
        }))
    }

    fn steps<'s>(
        &'s self,
        mut state: MiniBatchState<T>,
        reassignment_ratio: f64,
        spherical: bool,
    ) -> Result<Box<dyn MiniBatchSteps<T> + 's>> {
        // The transposed copy is the working state; `finish` gives the rows back.
        let rows = std::mem::take(&mut state.centroids);
        let centres = Centres::new(MatRef::new(&rows, state.counts.len(), self.cols())?);
        Ok(Box::new(SparseMiniBatch { rows: self, state, centres, reassignment_ratio, spherical }))
    }

    fn labels(&self, centroids: &[T], _keep_going: KeepGoing<'_>) -> Result<(Vec<u32>, Vec<T>, f64)> {
        let (labels, distances) = nearest_rows(self.x, &self.norms, centroids)?;
        let inertia = weighted_sum(&distances, self.weights);
        Ok((labels, distances, inertia))
    }
}

/// Mini-batch steps on sparse rows: each batch gathered, assigned, and its rows added into
/// the centroids they were assigned to. The centroids live in the products' layout
/// ([`Centres`], float64) between steps, so that a step needs no transposition.
struct SparseMiniBatch<'s, 'a, T, I> {
    rows: &'s SparseRows<'a, T, I>,
    /// Counts and reassignment turn; its centroids are in `centres` until `finish`.
    state: MiniBatchState<T>,
    centres: Centres,
    reassignment_ratio: f64,
    spherical: bool,
}

impl<T: Scalar, I: CsrIndex> MiniBatchSteps<T> for SparseMiniBatch<'_, '_, T, I> {
    fn step(
        &mut self,
        batch: &[usize],
        turn_rows: usize,
        rng: &mut ChaCha8Rng,
        measure_shift: bool,
    ) -> Result<StepOutcome> {
        let (d, k) = (self.rows.cols(), self.state.counts.len());
        let gathered = self.rows.gather(batch);
        let (xb, wb) = (gathered.view(d)?, gathered.weights.as_deref());
        let (mut labels, mut distances) = (vec![0u32; batch.len()], vec![T::zero(); batch.len()]);
        assign_to(xb, &gathered.norms, &self.centres, &mut labels, &mut distances);
        let inertia = weighted_sum(&distances, wb);
        let previous = measure_shift.then(|| self.centres.transposed().to_vec());
        let reassign = self.state.take_reassign_turn(turn_rows);

        // Each hit centre moves to (count · centre + Σ w·x) / (count + Σ w): scaled by
        // count / total in one sweep, then each row added with weight w / total.
        let mut hit = vec![0.0f64; k];
        for (r, &label) in labels.iter().enumerate() {
            hit[label as usize] += weight_at(wb, r);
        }
        let totals: Vec<f64> = self.state.counts.iter().zip(&hit).map(|(&c, &h)| c + h).collect();
        let factors: Vec<f64> =
            (0..k).map(|j| if hit[j] > 0.0 { self.state.counts[j] / totals[j] } else { 1.0 }).collect();
        self.centres.scale(&factors);
        for (r, &label) in labels.iter().enumerate() {
            let (j, (columns, values)) = (label as usize, xb.row(r));
            self.centres.add(j, columns, values, weight_at(wb, r) / totals[j]);
        }
        for j in (0..k).filter(|&j| hit[j] > 0.0) {
            self.state.counts[j] = totals[j];
        }
        let mut reassigned = 0;
        if reassign && self.reassignment_ratio > 0.0 {
            let pairs = starved_reassignment(&mut self.state.counts, batch.len(), rng, self.reassignment_ratio)?;
            for &(j, r) in &pairs {
                self.centres.set(j, &xb.dense_row(r));
            }
            reassigned = pairs.len();
        }
        self.centres.refresh_norms();
        if self.spherical {
            let inverse: Vec<f64> =
                self.centres.sq_norms().iter().map(|&s| if s > 0.0 { 1.0 / s.sqrt() } else { 1.0 }).collect();
            self.centres.scale(&inverse);
            self.centres.refresh_norms();
        }
        let shift = previous.map_or(0.0, |p| self.centres.squared_shift(&p));
        Ok(StepOutcome { inertia, shift, reassigned })
    }

    fn finish(self: Box<Self>) -> Result<MiniBatchState<T>> {
        Ok(MiniBatchState { centroids: self.centres.to_rows(), ..self.state })
    }
}
