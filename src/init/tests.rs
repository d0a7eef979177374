//! Each init against a plain reference on data whose distances and sums are exact in float64
//! (small integers), so the engine's order of summation cannot change a pick.

use super::*;
use crate::kernel::cpu::CpuKernel;
use crate::matrix::row_sq_norms;
use crate::strategy::HostEngine;
use rand::SeedableRng;

const CPU: HostEngine<CpuKernel> = HostEngine {
    kernel: CpuKernel,
    bounds: true,
    bounds_kind: None,
    seeding: crate::options::SeedingOptions { prune: true, screen: None },
};

/// `n × d` small integers, every fifth row a copy of the one before (duplicates).
fn integer_rows(n: usize, d: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x: Vec<f64> = (0..n * d).map(|_| rng.random_range(-20..=20) as f64).collect();
    for i in (5..n).step_by(5) {
        let (before, row) = x.split_at_mut(i * d);
        row[..d].copy_from_slice(&before[(i - 1) * d..i * d]);
    }
    x
}

fn sq(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(u, v)| (u - v) * (u - v)).sum()
}

/// Index of the first running sum of `values` that reaches `target` (NumPy's searchsorted
/// on the cumulative sum, side "left"), clipped to the last.
fn first_reaching(values: &[f64], target: f64) -> usize {
    let mut running = 0.0;
    for (i, v) in values.iter().enumerate() {
        running += v;
        if running >= target {
            return i;
        }
    }
    values.len() - 1
}

/// Greedy k-means++ as scikit-learn writes it, drawing from `rng` as the engine does.
fn reference_seeds(x: &[f64], d: usize, weights: &[f64], k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let n = weights.len();
    let total: f64 = weights.iter().sum();
    let first = first_reaching(weights, rng.random::<f64>() * total);
    let first = (first..n).find(|&i| weights[i] > 0.0).unwrap_or(first);
    let row = |i: usize| &x[i * d..(i + 1) * d];
    let mut closest: Vec<f64> = (0..n).map(|i| sq(row(i), row(first))).collect();
    let mut chosen = vec![first];
    for _ in 1..k {
        let weighted: Vec<f64> = closest.iter().zip(weights).map(|(c, w)| c * w).collect();
        let potential: f64 = weighted.iter().sum();
        let candidates: Vec<usize> =
            (0..candidates_per_step(k)).map(|_| first_reaching(&weighted, rng.random::<f64>() * potential)).collect();
        let potentials: Vec<f64> =
            candidates.iter().map(|&c| (0..n).map(|i| weights[i] * closest[i].min(sq(row(i), row(c)))).sum()).collect();
        let best = (1..candidates.len()).fold(0, |b, t| if potentials[t] < potentials[b] { t } else { b });
        for (i, near) in closest.iter_mut().enumerate() {
            *near = near.min(sq(row(i), row(candidates[best])));
        }
        chosen.push(candidates[best]);
    }
    chosen
}

#[test]
fn greedy_kmeans_plusplus_picks_what_the_reference_picks() {
    // Sizes on both sides of a reduction chunk, with and without weights (some zero).
    for (n, d, k, seed) in [(300, 3, 12, 1), (5000, 8, 40, 2), (60, 40, 60, 3)] {
        let x = integer_rows(n, d, seed);
        let m = MatRef::new(&x, n, d).unwrap();
        let norms = row_sq_norms(m);
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 10);
        let weights: Vec<f64> = (0..n).map(|i| if i % 7 == 3 { 0.0 } else { rng.random_range(1..4) as f64 }).collect();
        for weighted in [false, true] {
            let w = weighted.then_some(&weights[..]);
            let points = Points { x: m, x_sq_norms: &norms, weights: w };
            let ones = vec![1.0; n];
            let expected = reference_seeds(&x, d, w.unwrap_or(&ones), k, &mut ChaCha8Rng::seed_from_u64(seed));
            let mut engine_rng = ChaCha8Rng::seed_from_u64(seed);
            let centroids = kmeans_plusplus(&CPU, points, k, &mut engine_rng, 0, &mut |_| true).unwrap();
            assert_eq!(centroids, m.gather(&expected), "n={n} d={d} k={k} weighted={weighted}");
            if weighted {
                assert!(expected.iter().all(|&i| weights[i] > 0.0), "a zero-weight row was picked");
            }
        }
    }
}

#[test]
fn runs_seeded_in_lockstep_pick_what_each_picks_alone() {
    // Three runs over the same rows (a fit's `n_init`), through the entry the fits use.
    for (n, d, k) in [(5000, 8, 40), (300, 3, 12)] {
        let x = integer_rows(n, d, 7);
        let m = MatRef::new(&x, n, d).unwrap();
        let norms = row_sq_norms(m);
        let weights: Vec<f64> = (0..n).map(|i| (i % 3) as f64).collect();
        for weighted in [false, true] {
            let w = weighted.then_some(&weights[..]);
            let points = Points { x: m, x_sq_norms: &norms, weights: w };
            let seeds = [21u64, 22, 23];
            let mut rngs: Vec<ChaCha8Rng> = seeds.iter().map(|&s| ChaCha8Rng::seed_from_u64(s)).collect();
            let runs =
                initial_centroids_of_runs(&CPU, &[points; 3], k, Init::KMeansPlusPlus, &mut rngs, 0, &mut |_| true)
                    .unwrap();
            let ones = vec![1.0; n];
            for (run, &seed) in runs.iter().zip(&seeds) {
                let expected = reference_seeds(&x, d, w.unwrap_or(&ones), k, &mut ChaCha8Rng::seed_from_u64(seed));
                assert_eq!(run, &m.gather(&expected), "n={n} k={k} weighted={weighted} seed={seed}");
            }
            // Each generator is left where a lone run leaves it.
            for (rng, &seed) in rngs.iter_mut().zip(&seeds) {
                let mut alone = ChaCha8Rng::seed_from_u64(seed);
                kmeans_plusplus(&CPU, points, k, &mut alone, 0, &mut |_| true).unwrap();
                assert_eq!(rng.random::<u64>(), alone.random::<u64>());
            }
        }
    }
}

#[test]
fn random_init_draws_distinct_rows_of_positive_weight() {
    let (n, d, k) = (40, 2, 25);
    let x = integer_rows(n, d, 4);
    let m = MatRef::new(&x, n, d).unwrap();
    let norms = row_sq_norms(m);
    let weights: Vec<f64> = (0..n).map(|i| if i % 3 == 0 { 0.0 } else { 1.0 }).collect();
    let points = Points { x: m, x_sq_norms: &norms, weights: Some(&weights) };
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let centroids = initial_centroids(&CPU, points, k, Init::Random, &mut rng, 0, &mut |_| true).unwrap();
    let rows =
        weighted_sample_without_replacement(n, Some(&weights[..]), k, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
    assert_eq!(centroids, m.gather(&rows));
    let mut distinct = rows.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), k);
    assert!(rows.iter().all(|&i| weights[i] > 0.0));
    // More rows than have weight: an error, not a panic.
    assert!(initial_centroids(&CPU, points, 27, Init::Random, &mut rng, 0, &mut |_| true).is_err());
}

#[test]
fn given_centroids_are_taken_as_they_are_and_a_wrong_shape_is_an_error() {
    let x = integer_rows(10, 3, 6);
    let m = MatRef::new(&x, 10, 3).unwrap();
    let norms = row_sq_norms(m);
    let points = Points { x: m, x_sq_norms: &norms, weights: None };
    let given: Vec<f64> = (0..6).map(|v| v as f64 * 0.5).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    assert_eq!(initial_centroids(&CPU, points, 2, Init::Given(&given), &mut rng, 0, &mut |_| true).unwrap(), given);
    assert!(initial_centroids(&CPU, points, 3, Init::Given(&given), &mut rng, 0, &mut |_| true).is_err());
}

#[test]
fn search_cumulative_is_searchsorted_on_the_running_sum() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let values: Vec<f64> =
        (0..3 * REDUCE_CHUNK + 17).map(|i| if i % 11 == 0 { 0.0 } else { rng.random_range(1..5) as f64 }).collect();
    let totals = chunk_totals(&values);
    let sum: f64 = values.iter().sum();
    for target in [0.0, 1.0, 2.5, sum / 3.0, sum - 1.0, sum, sum + 5.0] {
        assert_eq!(search_cumulative(&values, &totals, target), first_reaching(&values, target), "target {target}");
    }
    for _ in 0..200 {
        let target = rng.random::<f64>() * sum;
        assert_eq!(search_cumulative(&values, &totals, target), first_reaching(&values, target));
    }
}

#[test]
fn candidates_per_step_is_two_plus_the_whole_part_of_ln_k() {
    // scikit-learn: 2 + int(np.log(n_clusters)).
    for (k, expected) in [(1, 2), (2, 2), (3, 3), (7, 3), (8, 4), (500, 8), (1000, 8), (1097, 9)] {
        assert_eq!(candidates_per_step(k), expected, "k={k}");
    }
}
