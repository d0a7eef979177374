//! CSR rows against the same rows made dense, measured by plain float64 loops.

use super::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A random CSR matrix (about `density` of the entries stored, some rows empty, an explicit
/// zero kept) and the same values dense.
fn random_csr(n: usize, d: usize, density: f64, seed: u64) -> (Vec<i64>, Vec<i64>, Vec<f64>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut indptr, mut indices, mut data, mut dense) = (vec![0i64], vec![], vec![], vec![0.0; n * d]);
    for i in 0..n {
        if i % 9 != 4 {
            for p in 0..d {
                if rng.random::<f64>() < density {
                    let v = if p % 13 == 0 { 0.0 } else { rng.random_range(-8..=8) as f64 * 0.5 };
                    indices.push(p as i64);
                    data.push(v);
                    dense[i * d + p] = v;
                }
            }
        }
        indptr.push(indices.len() as i64);
    }
    (indptr, indices, data, dense)
}

fn sq(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(u, v)| (u - v) * (u - v)).sum()
}

#[test]
fn nearest_and_distances_equal_the_dense_rows() {
    for (n, d, k, density, seed) in [(200, 30, 7, 0.2, 1), (500, 100, 40, 0.05, 2), (50, 5, 3, 0.9, 3)] {
        let (indptr, indices, data, dense) = random_csr(n, d, density, seed);
        let x = CsrRef::new(&indptr, &indices, &data, d).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 100);
        // Centroids on the same half-integer grid: every distance is exact, ties included.
        let centroids: Vec<f64> = (0..k * d).map(|_| rng.random_range(-4..=4) as f64 * 0.5).collect();
        let c = MatRef::new(&centroids, k, d).unwrap();
        let (labels, distances) = nearest(x, &x.row_sq_norms(), c);
        let all = sq_distances(x, c);
        for i in 0..n {
            let row = &dense[i * d..(i + 1) * d];
            let by_hand: Vec<f64> = (0..k).map(|j| sq(row, &centroids[j * d..(j + 1) * d])).collect();
            let best = (1..k).fold(0, |b, j| if by_hand[j] < by_hand[b] { j } else { b });
            assert_eq!(labels[i] as usize, best, "row {i} of case {seed}: lowest index among equals");
            assert!((distances[i] - by_hand[best]).abs() <= 1e-9 * (1.0 + by_hand[best]), "row {i}");
            for j in 0..k {
                assert!((all[i * k + j] - by_hand[j]).abs() <= 1e-9 * (1.0 + by_hand[j]), "row {i}, centroid {j}");
            }
        }
    }
}

#[test]
fn malformed_structure_is_an_error() {
    let data = [1.0f64, 2.0];
    assert!(CsrRef::new(&[0i64, 1], &[0, 1], &data, 3).is_err(), "indptr must end at the values");
    assert!(CsrRef::new(&[0i64, 2], &[0], &data, 3).is_err(), "indices and data differ in length");
    assert!(CsrRef::new(&[0i64, 2], &[0, 3], &data, 3).is_err(), "a column past the width");
    assert!(CsrRef::new(&[0i64, 2, 1], &[0, 1], &data[..1], 3).is_err(), "indptr decreases");
}
