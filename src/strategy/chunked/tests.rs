use std::cell::{Cell, RefCell};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::kernel::cpu::CpuKernel;
use crate::lloyd::{fit, lloyd_step};
use crate::matrix::{exact_sq_distance, Points};
use crate::monitor::{Progress, Stage};
use crate::strategy::bounds::BoundedPass;
use crate::strategy::HostEngine;
use crate::Init;

/// A chunk's labels and lower bounds from its last pass.
type Kept = Option<(Vec<u32>, Option<Vec<f64>>)>;

/// In-memory rows split into chunks of `chunk` rows, each pass run chunk by chunk through
/// the chunk-level kernels, as a Dask worker or a streamed file runs them.
struct MemoryChunks<'a> {
    x: &'a [f64],
    d: usize,
    chunk: usize,
    init: &'a [f64],
    kept: RefCell<Vec<Kept>>,
    passes: Cell<usize>,
    bounded_passes: Cell<usize>,
}

impl<'a> MemoryChunks<'a> {
    fn new(x: &'a [f64], d: usize, chunk: usize, init: &'a [f64]) -> Self {
        Self { x, d, chunk, init, kept: RefCell::new(Vec::new()), passes: Cell::new(0), bounded_passes: Cell::new(0) }
    }

    fn chunk_rows(&self) -> Vec<MatRef<'a, f64>> {
        self.x.chunks(self.chunk * self.d).map(|c| MatRef::new(c, c.len() / self.d, self.d).unwrap()).collect()
    }
}

impl Chunks<f64> for MemoryChunks<'_> {
    fn rows(&self) -> usize {
        self.x.len() / self.d
    }

    fn initial_centroids(&self, _run: usize, _seed: u64) -> Result<Vec<f64>> {
        Ok(self.init.to_vec())
    }

    fn mean_feature_variance(&self) -> Result<f64> {
        CpuKernel.mean_feature_variance(MatRef::new(self.x, self.rows(), self.d)?)
    }

    fn pass(&self, centroids: MatRef<'_, f64>, bounds: Option<PassBounds<'_>>) -> Result<ChunkPass> {
        self.passes.set(self.passes.get() + 1);
        self.bounded_passes.set(self.bounded_passes.get() + usize::from(bounds.is_some()));
        let k = centroids.rows();
        let mut total = ChunkPass {
            sums: ClusterSums { sums: vec![0.0; k * self.d], weights: vec![0.0; k] },
            inertia: 0.0,
            searched: 0,
            changed: 0,
        };
        let chunks = self.chunk_rows();
        let mut kept = self.kept.borrow_mut();
        kept.resize(chunks.len(), None);
        for (x, kept) in chunks.into_iter().zip(kept.iter_mut()) {
            let norms = CpuKernel.row_sq_norms(x)?;
            let points = Points { x, x_sq_norms: &norms, weights: None };
            let previous = kept.as_ref().map(|(labels, _)| labels.clone());
            let (labels, lower, sums, inertia, searched) = match bounds {
                None => {
                    let step = lloyd_step(&CpuKernel, points, centroids, &mut || true)?;
                    (step.labels, None, step.sums, step.inertia, x.rows())
                }
                Some(bounds) => {
                    let resumed = bounds.shifts.and_then(|shifts| {
                        let (labels, lower) = kept.take()?;
                        let mut pass = BoundedPass::resume(lower, x.rows());
                        pass.loosen_by(shifts, &labels);
                        Some((labels, pass))
                    });
                    let (mut labels, mut pass) =
                        resumed.unwrap_or_else(|| (vec![0; x.rows()], BoundedPass::resume(None, x.rows())));
                    let mut distances = vec![0.0; x.rows()];
                    let (sums, searched) = pass.chunk_pass(
                        &CpuKernel,
                        points,
                        centroids,
                        bounds.half_gaps,
                        &mut labels,
                        &mut distances,
                        &mut || true,
                    )?;
                    (labels, Some(pass.into_lower()), sums, distances.iter().sum(), searched)
                }
            };
            total.changed += previous.map_or(labels.len(), |p| p.iter().zip(&labels).filter(|(a, b)| a != b).count());
            total.searched += searched;
            total.inertia += inertia;
            total.sums.sums.iter_mut().zip(&sums.sums).for_each(|(t, s)| *t += s);
            total.sums.weights.iter_mut().zip(&sums.weights).for_each(|(t, s)| *t += s);
            *kept = Some((labels, lower));
        }
        Ok(total)
    }

    fn farthest(&self, centroids: MatRef<'_, f64>, count: usize) -> Result<Vec<FarRow<f64>>> {
        let labels: Vec<u32> = self.kept.borrow().iter().flat_map(|k| k.as_ref().unwrap().0.clone()).collect();
        let x = MatRef::new(self.x, self.rows(), self.d)?;
        let found = crate::update::farthest_rows(x, None, &labels, centroids.as_slice(), count);
        Ok(found
            .into_iter()
            .map(|(distance, i)| FarRow { distance, label: labels[i], weight: 1.0, values: x.row(i).to_vec() })
            .collect())
    }

    fn inertia(&self, centroids: MatRef<'_, f64>) -> Result<f64> {
        let x = MatRef::new(self.x, self.rows(), self.d)?;
        Ok((0..x.rows())
            .map(|i| {
                (0..centroids.rows()).map(|j| exact_sq_distance(x.row(i), centroids.row(j))).fold(f64::MAX, f64::min)
            })
            .sum())
    }
}

fn mixture(n: usize, d: usize, centres: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let means: Vec<f64> = (0..centres * d).map(|_| rng.random::<f64>() * 10.0).collect();
    (0..n)
        .flat_map(|i| (0..d).map(|p| means[(i % centres) * d + p] + rng.random::<f64>()).collect::<Vec<_>>())
        .collect()
}

fn params(k: usize, algorithm: Algorithm, tol: f64) -> KMeansParams {
    KMeansParams { n_clusters: k, n_init: 1, max_iter: 100, tol, seed: 3, spherical: false, algorithm, distances: true }
}

#[test]
fn chunked_fit_takes_the_in_memory_steps() {
    let (n, d, k) = (600, 3, 7);
    let x = mixture(n, d, 9, 1);
    let init = x[..k * d].to_vec();
    for algorithm in [Algorithm::Dense, Algorithm::Bounded] {
        for tol in [0.0, 1e-4] {
            for chunk in [1, 77, 600] {
                let chunks = MemoryChunks::new(&x, d, chunk, &init);
                let ours =
                    fit_chunks(&chunks, &HostEngine::new(CpuKernel, true), d, &params(k, algorithm, tol), &mut |_| {
                        true
                    })
                    .unwrap();
                let engine = HostEngine::new(CpuKernel, true);
                let xm = MatRef::new(&x, n, d).unwrap();
                let whole =
                    fit(&engine, xm, None, &params(k, algorithm, tol), Init::Given(&init), &mut |_| true).unwrap();
                assert_eq!(ours.n_iter, whole.n_iter, "{algorithm:?} tol {tol} chunk {chunk}");
                for (a, b) in ours.centroids.iter().zip(&whole.centroids) {
                    assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()), "{a} vs {b}");
                }
                assert!((ours.inertia - whole.inertia).abs() <= 1e-9 * whole.inertia);
                assert_eq!(ours.inertia_history.len(), whole.inertia_history.len());
            }
        }
    }
}

#[test]
fn empty_clusters_take_the_farthest_rows_as_in_memory() {
    let (n, d) = (300, 2);
    let x = mixture(n, d, 4, 5);
    // Duplicated initial centroids: the copies empty out at once.
    let init: Vec<f64> = [&x[..3 * d], &x[..2 * d]].concat();
    let chunks = MemoryChunks::new(&x, d, 41, &init);
    let ours =
        fit_chunks(&chunks, &HostEngine::new(CpuKernel, true), d, &params(5, Algorithm::Dense, 0.0), &mut |_| true)
            .unwrap();
    let engine = HostEngine::new(CpuKernel, true);
    let xm = MatRef::new(&x, n, d).unwrap();
    let whole = fit(&engine, xm, None, &params(5, Algorithm::Dense, 0.0), Init::Given(&init), &mut |_| true).unwrap();
    assert_eq!(ours.n_iter, whole.n_iter);
    for (a, b) in ours.centroids.iter().zip(&whole.centroids) {
        assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

/// Chunks whose passes report moving sums but, from the second pass on, no changed label.
struct NoChangeAfterFirst {
    passes: Cell<usize>,
}

impl Chunks<f64> for NoChangeAfterFirst {
    fn rows(&self) -> usize {
        10
    }
    fn initial_centroids(&self, _run: usize, _seed: u64) -> Result<Vec<f64>> {
        Ok(vec![0.0, 1.0])
    }
    fn mean_feature_variance(&self) -> Result<f64> {
        Ok(1.0)
    }
    fn pass(&self, _centroids: MatRef<'_, f64>, _bounds: Option<PassBounds<'_>>) -> Result<ChunkPass> {
        let pass = self.passes.get() + 1;
        self.passes.set(pass);
        let moving = pass as f64;
        Ok(ChunkPass {
            sums: ClusterSums { sums: vec![moving * 5.0, 5.0 * (moving + 10.0)], weights: vec![5.0, 5.0] },
            inertia: 1.0,
            searched: 10,
            changed: if pass == 1 { 10 } else { 0 },
        })
    }
    fn farthest(&self, _centroids: MatRef<'_, f64>, _count: usize) -> Result<Vec<FarRow<f64>>> {
        unreachable!("no cluster is empty")
    }
    fn inertia(&self, _centroids: MatRef<'_, f64>) -> Result<f64> {
        Ok(2.0)
    }
}

#[test]
fn strict_convergence_is_no_changed_label_even_while_centroids_move() {
    let chunks = NoChangeAfterFirst { passes: Cell::new(0) };
    let mut events = Vec::new();
    let fit = fit_chunks(
        &chunks,
        &HostEngine::new(CpuKernel, true),
        1,
        &params(2, Algorithm::Dense, 0.0),
        &mut |p: &Progress| {
            events.push(p.stage);
            true
        },
    )
    .unwrap();
    assert_eq!(fit.n_iter, 2);
    assert!(events.contains(&Stage::Converged(crate::monitor::Convergence::Strict)));
    // The final inertia is measured on the final centroids, not taken from the last pass.
    assert_eq!(fit.inertia, 2.0);
}

#[test]
fn a_stop_from_the_monitor_ends_the_fit() {
    let (d, k) = (3, 4);
    let x = mixture(200, d, 4, 9);
    let init = x[..k * d].to_vec();
    let chunks = MemoryChunks::new(&x, d, 50, &init);
    let outcome = fit_chunks(
        &chunks,
        &HostEngine::new(CpuKernel, true),
        d,
        &params(k, Algorithm::Dense, 0.0),
        &mut |p: &Progress| p.stage != Stage::Iteration,
    );
    assert!(matches!(outcome, Err(Error::Interrupted)));
    assert_eq!(chunks.passes.get(), 1);
}

#[test]
fn an_engine_without_bounds_gets_dense_passes_only() {
    let (n, d, k) = (600, 3, 7);
    let x = mixture(n, d, 9, 1);
    let init = x[..k * d].to_vec();
    let with = MemoryChunks::new(&x, d, 90, &init);
    let fit =
        fit_chunks(&with, &HostEngine::new(CpuKernel, true), d, &params(k, Algorithm::Bounded, 0.0), &mut |_| true);
    assert!(fit.unwrap().n_iter > 2);
    assert!(with.bounded_passes.get() > 0);
    let without = MemoryChunks::new(&x, d, 90, &init);
    let dense =
        fit_chunks(&without, &HostEngine::new(CpuKernel, false), d, &params(k, Algorithm::Bounded, 0.0), &mut |_| true);
    assert!(dense.unwrap().n_iter > 2);
    assert_eq!(without.bounded_passes.get(), 0);
}
