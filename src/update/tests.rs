//! The update against sums and distances recomputed by hand, in float64.

use super::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Per-cluster weighted sums and weights of `x` (`n × d`) by `labels`, by plain loops.
fn sums_by_hand(x: &[f64], d: usize, weights: Option<&[f64]>, labels: &[u32], k: usize) -> ClusterSums {
    let mut out = ClusterSums::zeros(k, d);
    for (i, &label) in labels.iter().enumerate() {
        let (j, w) = (label as usize, weights.map_or(1.0, |w| w[i]));
        for p in 0..d {
            out.sums[j * d + p] += w * x[i * d + p];
        }
        out.weights[j] += w;
    }
    out
}

fn random(rng: &mut ChaCha8Rng, len: usize) -> Vec<f64> {
    (0..len).map(|_| rng.random::<f64>() * 4.0 - 2.0).collect()
}

#[test]
fn average_is_each_clusters_weighted_mean_and_an_empty_cluster_keeps_its_centroid() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (n, d, k) = (50, 3, 4);
    let x = random(&mut rng, n * d);
    let weights: Vec<f64> = (0..n).map(|_| rng.random::<f64>() + 0.1).collect();
    // Cluster 3 gets no row.
    let labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
    let previous = random(&mut rng, k * d);
    let sums = sums_by_hand(&x, d, Some(&weights), &labels, k);
    let means = average(&sums, &previous, d, false);
    for j in 0..3 {
        let members: Vec<usize> = (0..n).filter(|&i| labels[i] as usize == j).collect();
        let total: f64 = members.iter().map(|&i| weights[i]).sum();
        for p in 0..d {
            let mean = members.iter().map(|&i| weights[i] * x[i * d + p]).sum::<f64>() / total;
            assert!((means[j * d + p] - mean).abs() <= 1e-12, "cluster {j}, feature {p}");
        }
    }
    assert_eq!(&means[3 * d..], &previous[3 * d..]);
    // Spherical: the same directions, at unit length.
    let unit = average(&sums, &previous, d, true);
    for j in 0..k {
        let norm = means[j * d..(j + 1) * d].iter().map(|v| v * v).sum::<f64>().sqrt();
        for p in 0..d {
            assert!((unit[j * d + p] - means[j * d + p] / norm).abs() <= 1e-12);
        }
    }
}

#[test]
fn squared_shift_sums_every_centroids_squared_move() {
    let updated = [1.0f64, 2.0, 3.0, 4.0];
    let previous = [0.5f64, 2.0, 1.0, 7.0];
    assert_eq!(squared_shift(&updated, &previous), 0.25 + 0.0 + 4.0 + 9.0);
}

/// Rows on a line: cluster 0 holds rows 0–3 around 0, cluster 1 rows 4–5 around 10; the
/// farthest from its centroid is row 3 (5 away), then rows 4 and 5 (2 away each).
fn line() -> (Vec<f64>, Vec<u32>, Vec<f64>) {
    let x = vec![0.0, 1.0, -1.0, 5.0, 8.0, 12.0];
    let labels = vec![0, 0, 0, 0, 1, 1];
    let centroids = vec![0.0, 10.0, 100.0, 200.0];
    (x, labels, centroids)
}

#[test]
fn empty_clusters_take_the_farthest_rows_and_their_sums_move_with_them() {
    let (x, labels, centroids) = line();
    let m = MatRef::new(&x, 6, 1).unwrap();
    let mut sums = sums_by_hand(&x, 1, None, &labels, 4);
    let moved = relocate_empty_clusters(m, None, &labels, &centroids, None, &mut sums);
    assert_eq!(moved, 2);
    // Cluster 2 takes row 3, cluster 3 row 4 (tied with row 5: the lower index): the sums
    // are those of the labels so changed.
    let relabelled = [0, 0, 0, 2, 3, 1];
    let expected = sums_by_hand(&x, 1, None, &relabelled, 4);
    for (a, b) in sums.sums.iter().zip(&expected.sums).chain(sums.weights.iter().zip(&expected.weights)) {
        assert!((a - b).abs() <= 1e-12, "{:?} against {:?}", sums.sums, expected.sums);
    }
}

#[test]
fn a_zero_weight_row_is_never_taken_and_ties_go_to_the_lowest_row() {
    let (x, labels, centroids) = line();
    let m = MatRef::new(&x, 6, 1).unwrap();
    // Row 3 weighs nothing: row 5 (at 2) is the farthest row that counts.
    let weights = [1.0, 1.0, 1.0, 0.0, 1.0, 1.0];
    let far = farthest_rows(m, Some(&weights[..]), &labels, &centroids, 2);
    assert_eq!(far[0], (4.0, 4), "rows 4 and 5 lie 2 from centroid 10: the lower index first");
    assert_eq!(far[1], (4.0, 5));
    let mut sums = sums_by_hand(&x, 1, Some(&weights), &labels, 3);
    assert_eq!(relocate_empty_clusters(m, Some(&weights[..]), &labels, &centroids[..3], None, &mut sums), 1);
    let expected = sums_by_hand(&x, 1, Some(&weights), &[0, 0, 0, 0, 2, 1], 3);
    assert_eq!(sums.weights, expected.weights);
    assert_eq!(sums.sums, expected.sums);
}

#[test]
fn nothing_moves_when_every_row_lies_on_its_centroid() {
    let x = vec![1.0, 1.0, 3.0];
    let labels = vec![0, 0, 1];
    let centroids = vec![1.0, 3.0, 7.0];
    let m = MatRef::new(&x, 3, 1).unwrap();
    let mut sums = sums_by_hand(&x, 1, None, &labels, 3);
    let before = (sums.sums.clone(), sums.weights.clone());
    assert_eq!(relocate_empty_clusters(m, None, &labels, &centroids, None, &mut sums), 0);
    assert_eq!((sums.sums, sums.weights), before);
}

/// The spreads the kernel measures while keeping the rows give the inertia by sums the pass
/// of its own gives, bit for bit (rows of 64 and 301 features, an odd count, a last partial
/// piece of rows), and the kernel leaves them alone where it keeps no rows (too narrow).
#[test]
fn spreads_measured_while_keeping_rows_are_a_pass_of_their_own() {
    use crate::kernel::{cpu::CpuKernel, Kernel};
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (n, d, k) in [(1000, 64, 7), (130, 301, 3), (70, 8, 5)] {
        let x: Vec<f32> = (0..n * d).map(|_| 30.0 + rng.random::<f32>() * 4.0).collect();
        let xm = MatRef::new(&x, n, d).unwrap();
        let centroids: Vec<f32> = x[..k * d].to_vec();
        let labels: Vec<u32> = (0..n).map(|i| (i % k) as u32).collect();
        let sums = crate::kernel::accumulate_by_cluster(xm, None, &labels, k);
        let alone = InertiaBySums::new(xm, &centroids).inertia(&sums, &centroids, &labels, None);
        let centre = InertiaBySums::centre(&centroids, d);
        let mut spreads = vec![-1.0; n];
        let kept = Kernel::<f32>::keep_rows(&CpuKernel, xm, Some((&centre, &mut spreads)));
        if kept.is_none() {
            assert!(spreads.iter().all(|&s| s == -1.0), "({n},{d}): spreads written without rows kept");
            continue;
        }
        let by_spreads = InertiaBySums::of_spreads(&centre, spreads).inertia(&sums, &centroids, &labels, None);
        assert_eq!(by_spreads.to_bits(), alone.to_bits(), "({n},{d})");
    }
}

/// The farthest rows found from bounds on their distances are those every row's measure
/// gives, ties included: bounds loose by up to a tenth, bounds equal to the distances, and a
/// measured row's bound below its distance (a faulty pass: every row is measured instead).
#[test]
fn farthest_rows_within_bounds_are_the_farthest_rows() {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let (n, d, k) = (3000, 8, 12);
    // Coordinates on a coarse grid, so that many rows lie equally far from their centroid.
    let x: Vec<f32> = (0..n * d).map(|_| rng.random_range(-4i32..=4) as f32).collect();
    let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..k as u32)).collect();
    let centroids: Vec<f32> = (0..k * d).map(|_| rng.random_range(-2i32..=2) as f32).collect();
    let m = MatRef::new(&x, n, d).unwrap();
    let exact: Vec<f64> = (0..n)
        .map(|i| {
            let c = &centroids[labels[i] as usize * d..(labels[i] as usize + 1) * d];
            x[i * d..(i + 1) * d].iter().zip(c).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum()
        })
        .collect();
    let weights: Vec<f32> = (0..n).map(|i| if i % 7 == 0 { 0.0 } else { 1.0 }).collect();
    for wanted in [1, 5, 40] {
        for w in [None, Some(&weights[..])] {
            let expected = farthest_rows(m, w, &labels, &centroids, wanted);
            assert_eq!(expected.len(), wanted);
            let loose: Vec<f32> = exact.iter().map(|&e| (e * (1.0 + 0.1 * rng.random::<f64>())) as f32).collect();
            let tight: Vec<f32> = exact.iter().map(|&e| e as f32).collect();
            let mut faulty = loose.clone();
            faulty[expected[0].1] = (expected[0].0 * 0.999) as f32;
            for (case, upper) in [&loose, &tight, &faulty].into_iter().enumerate() {
                let got = farthest_rows_within(m, w, &labels, &centroids, wanted, upper);
                assert_eq!(got, expected, "{wanted} rows, case {case}, weights {}", w.is_some());
            }
        }
    }
}
