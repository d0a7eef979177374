use super::*;
use crate::error::Error;
use crate::kernel::cpu::CpuKernel;
use crate::kernel::Kernel;
use crate::matrix::Points;
use crate::options::BoundsKind;
use crate::params::Algorithm;
use crate::strategy::candidates::{TEST_SETTLING_FLOOR, TEST_SWITCH_RATIO};
use crate::strategy::{HostEngine, HostLloyd, LloydStep};
use approx::assert_relative_eq;
use rand::{RngExt, SeedableRng};

const CPU: HostEngine<CpuKernel> = HostEngine {
    kernel: CpuKernel,
    bounds: true,
    bounds_kind: None,
    seeding: crate::options::SeedingOptions { prune: true, screen: None },
};

/// `centres.len()` well separated blobs of `per` points each in 2-D.
fn blobs(centres: &[[f64; 2]], per: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::new();
    for c in centres {
        for _ in 0..per {
            x.push(c[0] + rng.random::<f64>() - 0.5);
            x.push(c[1] + rng.random::<f64>() - 0.5);
        }
    }
    x
}

fn params(k: usize) -> KMeansParams {
    KMeansParams {
        n_clusters: k,
        n_init: 1,
        max_iter: 100,
        tol: 0.0,
        seed: 7,
        spherical: false,
        algorithm: Algorithm::Bounded,
        distances: true,
    }
}

#[test]
fn recovers_blob_means_with_kmeanspp() {
    let centres = [[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]];
    let x = blobs(&centres, 50, 1);
    let xm = MatRef::new(&x, 150, 2).unwrap();
    let fit = fit(&CPU, xm, None, &params(3), Init::KMeansPlusPlus, &mut |_| true).unwrap();
    for (b, _) in centres.iter().enumerate() {
        // Every blob is one cluster, and its centroid is the blob's mean.
        let label = fit.labels[b * 50];
        assert!(fit.labels[b * 50..(b + 1) * 50].iter().all(|&l| l == label));
        for p in 0..2 {
            let mean: f64 = (b * 50..(b + 1) * 50).map(|i| x[i * 2 + p]).sum::<f64>() / 50.0;
            assert_relative_eq!(fit.centroids[label as usize * 2 + p], mean, max_relative = 1e-12);
        }
    }
    let recomputed: f64 = fit.distances.iter().sum();
    assert_relative_eq!(fit.inertia, recomputed, max_relative = 1e-12);
}

#[test]
fn empty_cluster_takes_the_farthest_point() {
    let x = vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 10.0, 10.0];
    let xm = MatRef::new(&x, 4, 2).unwrap();
    // The second centroid is far from every row: it starts empty.
    let init = [0.0, 0.0, 1000.0, 1000.0];
    let fit = fit(&CPU, xm, None, &params(2), Init::Given(&init), &mut |_| true).unwrap();
    assert_eq!(fit.labels, vec![0, 0, 0, 1]);
    assert_relative_eq!(fit.centroids[2], 10.0);
    assert_relative_eq!(fit.centroids[0], 1.0 / 3.0, max_relative = 1e-12);
}

#[test]
fn bit_identical_at_one_and_two_threads() {
    let centres: Vec<[f64; 2]> = (0..20).map(|i| [i as f64 * 3.0, (i % 4) as f64 * 3.0]).collect();
    let x = blobs(&centres, 700, 2);
    let xm = MatRef::new(&x, 14000, 2).unwrap();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| fit(&CPU, xm, None, &params(20), Init::KMeansPlusPlus, &mut |_| true).unwrap())
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one.labels, two.labels);
    assert_eq!(one.centroids, two.centroids);
    assert_eq!(one.inertia.to_bits(), two.inertia.to_bits());
}

/// Bounds skip searches but change no result: overlapping blobs in 8-D, where labels
/// keep moving for many iterations, fit with and without them from the same seeds.
#[test]
fn bounds_give_the_dense_result() {
    let (n, d) = (6000, 8);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let means: Vec<f64> = (0..40 * d).map(|_| rng.random::<f64>() * 6.0).collect();
    let x: Vec<f64> = (0..n)
        .flat_map(|i| (0..d).map(move |p| (i, p)).collect::<Vec<_>>())
        .map(|(i, p)| means[(i % 40) * d + p] + rng.random::<f64>() * 2.0 - 1.0)
        .collect();
    let xm = MatRef::new(&x, n, d).unwrap();
    for (seed, kind) in (0..3).flat_map(|s| BOUNDS_KINDS.map(|kind| (s, kind))) {
        let mut p = params(50);
        p.seed = seed;
        let pruned = fit(&with_bounds(kind), xm, None, &p, Init::KMeansPlusPlus, &mut |_| true).unwrap();
        p.algorithm = Algorithm::Auto;
        let chosen = fit(&with_bounds(kind), xm, None, &p, Init::KMeansPlusPlus, &mut |_| true).unwrap();
        assert_same_fit(&chosen, &pruned);
        p.algorithm = Algorithm::Dense;
        let dense = fit(&CPU, xm, None, &p, Init::KMeansPlusPlus, &mut |_| true).unwrap();
        assert!(dense.n_iter > 5, "the fit should take several iterations");
        assert_same_fit(&pruned, &dense);
    }
}

/// The same after empty-cluster repairs: given centroids where several coincide (all but
/// the first of each copy start empty) or lie far from every row, in 8-D overlapping blobs.
#[test]
fn bounds_give_the_dense_result_after_relocations() {
    let (n, d, k) = (3000, 8, 24);
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let means: Vec<f64> = (0..30 * d).map(|_| rng.random::<f64>() * 5.0).collect();
    let x: Vec<f64> = (0..n * d).map(|e| means[((e / d) % 30) * d + e % d] + rng.random::<f64>() * 2.0 - 1.0).collect();
    let xm = MatRef::new(&x, n, d).unwrap();
    let mut init: Vec<f64> = Vec::with_capacity(k * d);
    for j in 0..k {
        match j % 4 {
            // Copies of row 0, and points far from all rows: empty from the first step.
            1 => init.extend_from_slice(xm.row(0)),
            3 => init.extend((0..d).map(|p| 1000.0 + (j * d + p) as f64)),
            _ => init.extend_from_slice(xm.row(j * 97)),
        }
    }
    let mut p = params(k);
    p.algorithm = Algorithm::Dense;
    let dense = fit(&CPU, xm, None, &p, Init::Given(&init), &mut |_| true).unwrap();
    p.algorithm = Algorithm::Bounded;
    for kind in BOUNDS_KINDS {
        let bounded = fit(&with_bounds(kind), xm, None, &p, Init::Given(&init), &mut |_| true).unwrap();
        assert_same_fit(&bounded, &dense);
    }
    assert!(dense.n_iter > 3);
    // Every cluster ends with rows: the repairs took place.
    for j in 0..k as u32 {
        assert!(dense.labels.contains(&j), "cluster {j} is empty");
    }
}

/// The cpu kernel's searches with every pass's sums made afresh (the trait's default), for
/// the fits that keep the sums and move the rows whose labels changed.
struct FreshSums;

impl<T: Scalar> Kernel<T> for FreshSums {
    fn name(&self) -> &'static str {
        "fresh sums"
    }
    fn assign(&self, x: MatRef<'_, T>, n: &[T], c: MatRef<'_, T>, l: &mut [u32], d: &mut [T]) -> Result<()> {
        CpuKernel.assign(x, n, c, l, d)
    }
    fn assign_top2(
        &self,
        x: MatRef<'_, T>,
        n: &[T],
        c: MatRef<'_, T>,
        l: &mut [u32],
        d: &mut [T],
        second: &mut [T],
    ) -> Result<()> {
        CpuKernel.assign_top2(x, n, c, l, d, second)
    }
    fn pairwise(&self, x: MatRef<'_, T>, n: &[T], c: MatRef<'_, T>, out: &mut [T]) -> Result<()> {
        CpuKernel.pairwise(x, n, c, out)
    }
}

/// Sums kept between passes (the rows whose labels changed moved) give the fit of sums made
/// afresh every pass, and the inertia of each pass taken from them the measured one: dense
/// and bounded, through empty-cluster repairs, with weights, near the origin and far from it.
#[test]
fn moved_sums_give_the_fit_of_fresh_sums() {
    let (n, d, k) = (3000, 8, 24);
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let means: Vec<f64> = (0..30 * d).map(|_| rng.random::<f64>() * 5.0).collect();
    let x: Vec<f64> = (0..n * d).map(|e| means[((e / d) % 30) * d + e % d] + rng.random::<f64>() * 2.0 - 1.0).collect();
    let weights: Vec<f64> = (0..n).map(|i| if i % 11 == 0 { 0.0 } else { 0.25 + rng.random::<f64>() }).collect();
    let xm = MatRef::new(&x, n, d).unwrap();
    // Copies of row 1 start empty and are repaired.
    let init: Vec<f64> = (0..k).flat_map(|j| xm.row(if j % 5 == 1 { 1 } else { j * 97 + 1 }).to_vec()).collect();
    // The same rows far from the origin: the inertia from the sums must not cancel away.
    let far: Vec<f64> = x.iter().map(|v| v + 1e6).collect();
    let far_init: Vec<f64> = init.iter().map(|v| v + 1e6).collect();
    let cases = [
        (Algorithm::Dense, None, &x, &init),
        (Algorithm::Bounded, None, &x, &init),
        (Algorithm::Bounded, Some(&weights[..]), &x, &init),
        (Algorithm::Dense, Some(&weights[..]), &far, &far_init),
    ];
    for (algorithm, weights, x, init) in cases {
        let xm = MatRef::new(x, n, d).unwrap();
        let mut p = params(k);
        p.algorithm = algorithm;
        let moved = fit(&CPU, xm, weights, &p, Init::Given(init), &mut |_| true).unwrap();
        let fresh = fit(&HostEngine::new(FreshSums, true), xm, weights, &p, Init::Given(init), &mut |_| true).unwrap();
        assert!(fresh.n_iter > 5, "the fit should take several iterations");
        assert_same_fit(&moved, &fresh);
        // The last pass changed no label, so its inertia (from the sums) is the fit's, measured
        // row by row by differences.
        assert!(moved.n_iter < p.max_iter, "the fit should converge");
        assert_relative_eq!(*moved.inertia_history.last().unwrap(), moved.inertia, max_relative = 1e-8);
        // Each pass's inertia as the kernel measured it row by row (from the expanded form,
        // which far from the origin is the less accurate one).
        if x[0] < 1e3 {
            assert_eq!(moved.inertia_history.len(), fresh.inertia_history.len());
            for (a, b) in moved.inertia_history.iter().zip(&fresh.inertia_history) {
                assert_relative_eq!(a, b, max_relative = 1e-10);
            }
        }
    }
}

/// The same in float32 on the SIMD kernels' shapes, whose passes that keep their sums leave
/// most rows unmeasured: labels and iterations as with every row measured, and each pass's
/// inertia within float32 rounding of the measured one (the last one the fit's).
#[test]
fn unmeasured_passes_give_the_measured_fit_in_float32() {
    let (n, d, k) = (4000, 64, 48);
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let means: Vec<f64> = (0..40 * d).map(|_| rng.random::<f64>() * 3.0).collect();
    let x: Vec<f32> =
        (0..n * d).map(|e| (means[((e / d) % 40) * d + e % d] + rng.random::<f64>() * 2.0 - 1.0) as f32).collect();
    let xm = MatRef::new(&x, n, d).unwrap();
    let init: Vec<f32> = (0..k).flat_map(|j| xm.row(j * 83).to_vec()).collect();
    for algorithm in [Algorithm::Dense, Algorithm::Bounded] {
        let mut p = params(k);
        p.algorithm = algorithm;
        let moved = fit(&CPU, xm, None, &p, Init::Given(&init), &mut |_| true).unwrap();
        let fresh = fit(&HostEngine::new(FreshSums, true), xm, None, &p, Init::Given(&init), &mut |_| true).unwrap();
        assert!(fresh.n_iter > 5 && moved.n_iter < p.max_iter, "{} iterations", fresh.n_iter);
        assert_eq!(moved.labels, fresh.labels);
        assert_eq!(moved.n_iter, fresh.n_iter);
        assert_eq!(moved.inertia_history.len(), fresh.inertia_history.len());
        for (a, b) in moved.inertia_history.iter().zip(&fresh.inertia_history) {
            assert_relative_eq!(a, b, max_relative = 1e-6);
        }
        assert_relative_eq!(*moved.inertia_history.last().unwrap(), moved.inertia, max_relative = 1e-9);
    }
}

const BOUNDS_KINDS: [BoundsKind; 3] = [BoundsKind::Hamerly, BoundsKind::Grouped, BoundsKind::Candidates];

fn with_bounds(kind: BoundsKind) -> HostEngine<CpuKernel> {
    HostEngine::new(CpuKernel, true).with_bounds_kind(Some(kind))
}

fn assert_same_fit<T: Scalar>(bounded: &KMeansFit<T>, dense: &KMeansFit<T>) {
    assert_eq!(bounded.labels, dense.labels);
    assert_eq!(bounded.n_iter, dense.n_iter);
    for (a, b) in bounded.centroids.iter().zip(&dense.centroids) {
        assert_relative_eq!(a.as_f64(), b.as_f64(), max_relative = 1e-12, epsilon = 1e-12);
    }
    assert_relative_eq!(bounded.inertia, dense.inertia, max_relative = 1e-12);
}

/// Grouped bounds with many groups, in float32 (the SIMD kernels' own bounds) and float64,
/// on overlapping blobs in 64-D with several centroids per blob (the case they are for),
/// with duplicated rows and a duplicated initial centroid (exact ties all along).
#[test]
fn grouped_bounds_give_the_dense_result_in_both_float_types() {
    let (n, d, k, blobs) = (4000, 64, 120, 30);
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let means: Vec<f64> = (0..blobs * d).map(|_| rng.random::<f64>() * 3.0).collect();
    let mut x: Vec<f64> =
        (0..n * d).map(|e| means[((e / d) % blobs) * d + e % d] + rng.random::<f64>() * 2.0 - 1.0).collect();
    for i in (7..n).step_by(7) {
        let previous = x[(i - 1) * d..i * d].to_vec();
        x[i * d..(i + 1) * d].copy_from_slice(&previous);
    }
    let xm = MatRef::new(&x, n, d).unwrap();
    let mut init: Vec<f64> = (0..k).flat_map(|j| xm.row(j * 31 + 3).to_vec()).collect();
    let twin = init[..d].to_vec();
    init[5 * d..6 * d].copy_from_slice(&twin);
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let init32: Vec<f32> = init.iter().map(|&v| v as f32).collect();
    let x32m = MatRef::new(&x32, n, d).unwrap();
    let mut p = params(k);
    p.max_iter = 30;
    let grouped = with_bounds(BoundsKind::Grouped);
    p.algorithm = Algorithm::Dense;
    let dense = fit(&CPU, xm, None, &p, Init::Given(&init), &mut |_| true).unwrap();
    let dense32 = fit(&CPU, x32m, None, &p, Init::Given(&init32), &mut |_| true).unwrap();
    p.algorithm = Algorithm::Bounded;
    assert!(dense.n_iter > 5, "the fit should take several iterations");
    assert_same_fit(&fit(&grouped, xm, None, &p, Init::Given(&init), &mut |_| true).unwrap(), &dense);
    assert_same_fit(&fit(&grouped, x32m, None, &p, Init::Given(&init32), &mut |_| true).unwrap(), &dense32);
}

#[test]
fn grouped_bounds_skip_most_distances_on_separated_blobs() {
    // Not a speed test: the bounds must actually rule centroids out, or they are dead weight.
    let (n, d, k) = (3000, 32, 60);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let means: Vec<f64> = (0..20 * d).map(|_| rng.random::<f64>() * 20.0).collect();
    let x: Vec<f64> = (0..n * d).map(|e| means[((e / d) % 20) * d + e % d] + rng.random::<f64>() - 0.5).collect();
    let xm = MatRef::new(&x, n, d).unwrap();
    let init: Vec<f64> = (0..k).flat_map(|j| xm.row(j * 47).to_vec()).collect();
    let points = Points { x: xm, x_sq_norms: &crate::matrix::row_sq_norms(xm), weights: None };
    let mut pass = crate::strategy::grouped::GroupedPass::new(20);
    let mut steps = HostLloyd::new(&CpuKernel, points, init, false, &mut pass);
    for _ in 0..6 {
        steps.step(&mut || true).unwrap();
    }
    drop(steps);
    let later = &pass.history[2..];
    assert!(later.iter().all(|c| c.share(n, k) < 0.3), "{later:?}");
}

#[test]
fn monitor_can_stop_the_fit() {
    let x = blobs(&[[0.0, 0.0], [5.0, 5.0]], 20, 3);
    let xm = MatRef::new(&x, 40, 2).unwrap();
    let result = fit(&CPU, xm, None, &params(2), Init::Random, &mut |_| false);
    assert_eq!(result.unwrap_err(), Error::Interrupted);
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let x = vec![0.0; 8];
    let xm = MatRef::new(&x, 4, 2).unwrap();
    assert!(fit(&CPU, xm, None, &params(5), Init::KMeansPlusPlus, &mut |_| true).is_err());
    assert!(fit(&CPU, xm, None, &params(2), Init::Given(&[0.0; 3]), &mut |_| true).is_err());
    assert!(fit(&CPU, xm, Some(&[1.0, -1.0, 1.0, 1.0]), &params(2), Init::Random, &mut |_| true).is_err());
    assert!(MatRef::new(&x, 3, 2).is_err());
}

/// Lists of nearest centroids (each row's eight, a bound on the others, rows laid out by label,
/// Hamerly's test before the search) give the dense labels at every iteration, in float32
/// where the cpu kernel makes lists (elsewhere Hamerly's bounds stand in) and float64: a
/// mixture with two or three centroids per blob (near ties all along), duplicated rows, and
/// a duplicated initial centroid (an empty cluster to relocate).
#[test]
fn candidate_lists_give_the_dense_labels_at_every_iteration() {
    for seed in 0..6u64 {
        candidate_lists_on_a_mixture(
            seed,
            6000 + 1000 * seed as usize,
            48 + 16 * (seed as usize % 2),
            60 + 10 * seed as usize,
        );
    }
    // Wider rows, as many centroids as blobs, of uneven sizes and spreads.
    candidate_lists_on_a_mixture(7, 20000, 256, 120);
}

fn candidate_lists_on_a_mixture(seed: u64, n: usize, d: usize, k: usize) {
    let blobs = if d > 128 { k } else { k / 2 - 5 };
    let mut rng = ChaCha8Rng::seed_from_u64(31 + seed);
    let means: Vec<f64> = (0..blobs * d).map(|_| rng.random::<f64>() * 6.0).collect();
    let spreads: Vec<f64> = (0..blobs).map(|_| 0.5 + rng.random::<f64>()).collect();
    let mut x: Vec<f64> = (0..n * d)
        .map(|e| {
            let row = e / d;
            // Uneven sizes where wide: blob `b` takes rows in proportion to `b + 1`.
            let b = if d > 128 {
                ((row * 7919) % (blobs * (blobs + 1) / 2) * 2).isqrt().min(blobs - 1)
            } else {
                (row * 7919) % blobs
            };
            means[b * d + e % d] + spreads[b] * (rng.random::<f64>() * 2.0 - 1.0)
        })
        .collect();
    for i in (11..n).step_by(11) {
        let previous = x[(i - 1) * d..i * d].to_vec();
        x[i * d..(i + 1) * d].copy_from_slice(&previous);
    }
    let xm = MatRef::new(&x, n, d).unwrap();
    let mut init: Vec<f64> = (0..k).flat_map(|j| xm.row(j * 97 + 5).to_vec()).collect();
    let twin = init[..d].to_vec();
    init[9 * d..10 * d].copy_from_slice(&twin);
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let init32: Vec<f32> = init.iter().map(|&v| v as f32).collect();
    let x32m = MatRef::new(&x32, n, d).unwrap();
    let lists = with_bounds(BoundsKind::Candidates);
    let counts: &[usize] = if d > 128 { &[6, 9, 14, 25] } else { &[1, 2, 3, 4, 5, 6, 7, 8, 10, 13, 20, 30] };
    for &max_iter in counts {
        let mut p = params(k);
        p.max_iter = max_iter;
        p.algorithm = Algorithm::Dense;
        let dense32 = fit(&CPU, x32m, None, &p, Init::Given(&init32), &mut |_| true).unwrap();
        let dense = fit(&CPU, xm, None, &p, Init::Given(&init), &mut |_| true).unwrap();
        p.algorithm = Algorithm::Auto;
        let listed32 = fit(&lists, x32m, None, &p, Init::Given(&init32), &mut |_| true).unwrap();
        let listed = fit(&lists, xm, None, &p, Init::Given(&init), &mut |_| true).unwrap();
        assert_eq!(listed32.labels, dense32.labels, "float32, seed {seed}, {max_iter} iterations");
        assert_same_fit(&listed32, &dense32);
        assert_same_fit(&listed, &dense);
        // The first pass from the lists hands the fit to Hamerly's bounds (the kept rows back
        // in their own order): the same fit.
        let switching = TEST_SWITCH_RATIO.with(|ratio| ratio.replace(0.0));
        let handed32 = fit(&lists, x32m, None, &p, Init::Given(&init32), &mut |_| true).unwrap();
        TEST_SWITCH_RATIO.with(|ratio| ratio.set(switching));
        assert_eq!(handed32.labels, dense32.labels, "handed over, seed {seed}, {max_iter} iterations");
        assert_same_fit(&handed32, &dense32);
        // Lists made again at every pass once made (from the kept rows laid out by label).
        let floor = TEST_SETTLING_FLOOR.with(|floor| floor.replace(2.0));
        let renewed32 = fit(&lists, x32m, None, &p, Init::Given(&init32), &mut |_| true).unwrap();
        TEST_SETTLING_FLOOR.with(|f| f.set(floor));
        assert_eq!(renewed32.labels, dense32.labels, "renewed, seed {seed}, {max_iter} iterations");
        assert_same_fit(&renewed32, &dense32);
    }
}
