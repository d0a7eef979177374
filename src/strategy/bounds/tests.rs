use super::*;
use crate::kernel::cpu::CpuKernel;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Half gaps against every pair measured in float64: a twin gives zero, one centroid none.
/// In float32 the SIMD kernels' runner-up is a lower bound within their error bound
/// (bfloat16 products: a few parts in a thousand of the squared norms), never above the gap.
#[test]
fn half_gaps_are_half_the_nearest_other_distance() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for (k, d) in [(1, 4), (7, 3), (130, 40), (40, 200)] {
        let mut c: Vec<f64> = (0..k * d).map(|_| rng.random::<f64>() * 10.0 - 5.0).collect();
        if k > 3 {
            // A twin of centroid 1 at index 3.
            let twin = c[d..2 * d].to_vec();
            c[3 * d..4 * d].copy_from_slice(&twin);
        }
        let expected: Vec<f64> = (0..k)
            .map(|j| {
                let others = (0..k).filter(|&o| o != j);
                let sq = others.map(|o| (0..d).map(|p| (c[j * d + p] - c[o * d + p]).powi(2)).sum::<f64>());
                0.5 * sq.fold(f64::INFINITY, f64::min).sqrt()
            })
            .collect();
        let cm = MatRef::new(&c, k, d).unwrap();
        let got = centroid_half_gaps(&CpuKernel, cm, &row_sq_norms(cm)).unwrap();
        for (g, e) in got.iter().zip(&expected) {
            assert!(g == e || (g - e).abs() <= 1e-9 * e.max(1.0), "float64, k={k}: {g} vs {e}");
        }
        let c32: Vec<f32> = c.iter().map(|&v| v as f32).collect();
        let cm32 = MatRef::new(&c32, k, d).unwrap();
        let got32 = centroid_half_gaps(&CpuKernel, cm32, &row_sq_norms(cm32)).unwrap();
        for (g, e) in got32.iter().zip(&expected) {
            assert!(g == e || (*g <= e * (1.0 + 1e-6) && *g >= 0.98 * e), "float32, k={k}: {g} vs {e}");
        }
        if k > 3 {
            assert_eq!((got[1], got[3], got32[1], got32[3]), (0.0, 0.0, 0.0, 0.0));
        }
    }
}

/// Rows that settled by their own distance bound keep it only as far as their centroid's
/// moves allow: two 64-D clusters (float32, rows kept rounded), three bounded passes, then
/// the first centroid jumps past the second, and the next bounded pass must move its rows to
/// the second (their exact nearest), as a dense pass does.
#[test]
fn own_bounds_loosen_by_their_centroids_moves() {
    use crate::kernel::Kernel;
    use crate::matrix::Points;
    let (n, d) = (400, 64);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x: Vec<f32> = (0..n * d)
        .map(|e| {
            let centre = if (e / d) % 2 == 0 || e % d != 0 { 0.0 } else { 10.0 };
            centre + rng.random::<f32>() * 0.2 - 0.1
        })
        .collect();
    let xm = MatRef::new(&x, n, d).unwrap();
    let norms = row_sq_norms(xm);
    let points = Points { x: xm, x_sq_norms: &norms, weights: None };
    let Some(kept) = Kernel::<f32>::keep_rows(&CpuKernel, xm, None) else {
        return; // no kept rows on this CPU: the path under test does not run
    };
    let mut centroids = vec![0f32; 2 * d];
    centroids[d] = 10.0;
    let (mut labels, mut distances) = (vec![0u32; n], vec![0f32; n]);
    let mut pass = BoundedPass::new(n);
    let mut go = || true;
    for _ in 0..3 {
        let cm = MatRef::new(&centroids, 2, d).unwrap();
        pass.assign_measure(&CpuKernel, points, Some(&kept), cm, &mut labels, &mut distances, &mut go).unwrap();
        pass.moved(&centroids, &centroids, d, &labels);
    }
    assert!(pass.valid && pass.upper.iter().all(|u| u.is_finite()), "the rows settled by their kept bounds");
    assert!(labels.iter().enumerate().all(|(i, &l)| l as usize == i % 2));
    let old = centroids.clone();
    centroids[0] = 25.0;
    pass.moved(&old, &centroids, d, &labels);
    let cm = MatRef::new(&centroids, 2, d).unwrap();
    pass.assign_measure(&CpuKernel, points, Some(&kept), cm, &mut labels, &mut distances, &mut go).unwrap();
    assert!(labels.iter().all(|&l| l == 1), "rows left at a centroid that moved away");
}

/// The cpu kernel with passes split into chunks of 64 rows (as they are on data of millions
/// of rows), so that bounded passes search chunks after the first in place and listed.
struct SmallChunks;

impl Kernel<f32> for SmallChunks {
    fn name(&self) -> &'static str {
        "cpu in small chunks"
    }
    fn assign(&self, x: MatRef<'_, f32>, n: &[f32], c: MatRef<'_, f32>, l: &mut [u32], d: &mut [f32]) -> Result<()> {
        CpuKernel.assign(x, n, c, l, d)
    }
    fn assign_top2(
        &self,
        x: MatRef<'_, f32>,
        n: &[f32],
        c: MatRef<'_, f32>,
        l: &mut [u32],
        d: &mut [f32],
        second: &mut [f32],
    ) -> Result<()> {
        CpuKernel.assign_top2(x, n, c, l, d, second)
    }
    fn assign_top2_labels(
        &self,
        x: MatRef<'_, f32>,
        n: &[f32],
        kept: Option<(&KeptRows, usize)>,
        c: MatRef<'_, f32>,
        l: &mut [u32],
        d: &mut [f32],
        second: &mut [f32],
    ) -> Result<()> {
        CpuKernel.assign_top2_labels(x, n, kept, c, l, d, second)
    }
    fn assign_top2_rows_labels(
        &self,
        x: MatRef<'_, f32>,
        n: &[f32],
        rows: &[usize],
        kept: Option<&KeptRows>,
        c: MatRef<'_, f32>,
        l: &mut [u32],
        d: &mut [f32],
        second: &mut [f32],
    ) -> Result<()> {
        CpuKernel.assign_top2_rows_labels(x, n, rows, kept, c, l, d, second)
    }
    fn labelled_sq_distance_bounds(
        &self,
        kept: (&KeptRows, &[usize]),
        c: MatRef<'_, f32>,
        l: &[u32],
        out: &mut [f64],
    ) -> bool {
        CpuKernel.labelled_sq_distance_bounds(kept, c, l, out)
    }
    fn pairwise(&self, x: MatRef<'_, f32>, n: &[f32], c: MatRef<'_, f32>, out: &mut [f32]) -> Result<()> {
        CpuKernel.pairwise(x, n, c, out)
    }
    fn rows_per_check(&self, _k: usize, _d: usize) -> usize {
        64
    }
}

/// Bounded passes over chunks of 64 rows from rows kept rounded (each row's own bound kept
/// from the chunk that searched it, in place or listed) give the labels of dense passes, pass
/// after pass, while the centroids move as Lloyd's update moves them.
#[test]
fn bounded_passes_in_chunks_give_the_dense_labels() {
    use crate::matrix::{exact_sq_distance, Points};
    use crate::update::average;
    let (n, d, k) = (1500, 64, 20);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let means: Vec<f32> = (0..6 * d).map(|_| rng.random::<f32>() * 2.0).collect();
    let x: Vec<f32> = (0..n * d).map(|e| means[(e / d) % 6 * d + e % d] + rng.random::<f32>() - 0.5).collect();
    let xm = MatRef::new(&x, n, d).unwrap();
    let norms = row_sq_norms(xm);
    let points = Points { x: xm, x_sq_norms: &norms, weights: None };
    let Some(kept) = Kernel::<f32>::keep_rows(&CpuKernel, xm, None) else {
        return; // no kept rows on this CPU: the path under test does not run
    };
    let mut centroids: Vec<f32> = (0..k).flat_map(|j| xm.row(j * 73).to_vec()).collect();
    let (mut labels, mut distances) = (vec![0u32; n], vec![0f32; n]);
    let (mut dense_labels, mut dense_distances) = (vec![0u32; n], vec![0f32; n]);
    let mut pass = BoundedPass::new(n);
    let mut go = || true;
    for step in 0..8 {
        let cm = MatRef::new(&centroids, k, d).unwrap();
        pass.assign_measure(&SmallChunks, points, Some(&kept), cm, &mut labels, &mut distances, &mut go).unwrap();
        CpuKernel.assign(xm, &norms, cm, &mut dense_labels, &mut dense_distances).unwrap();
        assert_eq!(labels, dense_labels, "pass {step}");
        if pass.valid {
            // Each row's kept bound lies above its exact distance to its centroid.
            for (i, &upper) in pass.upper.iter().enumerate() {
                let exact = exact_sq_distance(xm.row(i), cm.row(labels[i] as usize));
                assert!(upper * upper >= exact, "pass {step} row {i}: {upper}² below {exact}");
            }
        }
        let sums = crate::kernel::accumulate_by_cluster(xm, None, &labels, k);
        let updated = average(&sums, &centroids, d, false);
        pass.moved(&centroids, &updated, d, &labels);
        centroids = updated;
    }
    assert!(pass.valid, "bounded passes ran");
    // The final assignment (labels only, from the bounds and the kept rows) gives them too.
    let cm = MatRef::new(&centroids, k, d).unwrap();
    pass.assign(&SmallChunks, points, Some(&kept), cm, &mut labels, &mut distances, &mut go).unwrap();
    CpuKernel.assign(xm, &norms, cm, &mut dense_labels, &mut dense_distances).unwrap();
    assert_eq!(labels, dense_labels, "the final assignment");
}
