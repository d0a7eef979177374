use super::*;
use crate::kernel::{cpu::CpuKernel, Kernel};
use crate::matrix::row_sq_norms;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(rng: &mut ChaCha8Rng, len: usize, scale: f32) -> Vec<f32> {
    (0..len).map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale).collect()
}

/// The 8-bit dot products of listed rows (out of order) against exact integer sums, with
/// candidate counts on both sides of a tile's and strides that leave partial vectors.
#[test]
fn thin_dots_are_exact_integer_sums() {
    if !vnni_ready() {
        eprintln!("no 8-bit dot products on this CPU");
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (n, stride, t) in [(40, 36, 1), (17, 64, 8), (29, 100, 11), (9, 256, 16)] {
        let a: Vec<u8> = (0..n * stride).map(|_| rng.random::<u8>()).collect();
        let c: Vec<i8> = (0..t * stride).map(|_| rng.random::<i8>()).collect();
        let rows: Vec<usize> = (0..n).filter(|i| i % 3 != 1).rev().collect();
        let mut out = vec![0i32; rows.len() * t];
        for j0 in (0..t).step_by(THIN_MAX) {
            unsafe { thin_dots(&a, stride, &rows, &c[j0 * stride..], THIN_MAX.min(t - j0), &mut out[j0..], t) };
        }
        for (r, &i) in rows.iter().enumerate() {
            for j in 0..t {
                let exact: i64 = (0..stride).map(|p| a[i * stride + p] as i64 * c[j * stride + p] as i64).sum();
                assert_eq!(out[r * t + j] as i64, exact, "{n} rows, stride {stride}, t={t}: row {i} candidate {j}");
            }
        }
    }
}

/// Every row the screen lets go has float32 kernel distances to every candidate at least its
/// closest distance (closest distances set on both sides of the nearest candidate's), with
/// and without a common offset, and rows well clear of every candidate are let go.
#[test]
fn rows_let_go_are_no_nearer_to_any_candidate_by_the_kernel() {
    let kernel = CpuKernel;
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for (n, d, t, offset) in [(3000, 64, 8, 0.0f32), (2000, 200, 5, 30.0), (1500, 33, 12, 0.0)] {
        let x: Vec<f32> = random(&mut rng, n * d, 2.0).iter().map(|v| v + offset).collect();
        let xm = MatRef::new(&x, n, d).unwrap();
        let norms = row_sq_norms(xm);
        let bound = Kernel::<f32>::seeding_error_bound(&kernel, d).unwrap();
        let Some(screen) = Screen::build(xm, crate::kernel::seeding_slack(&norms, bound)) else {
            eprintln!("no screen on this CPU");
            return;
        };
        let picks: Vec<usize> = (0..t).map(|j| j * 37 % n).collect();
        let candidates = xm.gather(&picks);
        let cm = MatRef::new(&candidates, t, d).unwrap();
        let mut distances = vec![0f32; n * t];
        kernel.pairwise(xm, &norms, cm, &mut distances).unwrap();
        let nearest: Vec<f32> =
            distances.chunks_exact(t).map(|row| row.iter().fold(f32::INFINITY, |m, &v| m.min(v))).collect();
        // Closest distances spread around the kernel's nearest distance, by up to a half.
        let closest: Vec<f32> = nearest.iter().map(|&v| v * (0.5 + rng.random::<f32>())).collect();
        let step = SeedingScreen::<f32>::step(&screen, cm).expect("the first step is screened");
        let all: Vec<usize> = (0..n).collect();
        let kept = step.rows_to_measure(&all, &closest);
        let let_go: Vec<usize> = all.iter().copied().filter(|i| kept.binary_search(i).is_err()).collect();
        for &i in &let_go {
            assert!(
                nearest[i] >= closest[i],
                "{n}x{d} row {i}: kernel distance {} below closest {}",
                nearest[i],
                closest[i]
            );
        }
        // A row (not a candidate itself) whose closest distance lies a third below every
        // candidate is let go: the bounds are that tight on these shapes.
        let far: Vec<usize> = (0..n).filter(|&i| !picks.contains(&i) && closest[i] < 0.67 * nearest[i]).collect();
        let missed: Vec<usize> = far.iter().copied().filter(|i| let_go.binary_search(i).is_err()).collect();
        assert!(!far.is_empty() && missed.is_empty(), "{n}x{d}: {} of {} rows far below kept", missed.len(), far.len());
    }
}

/// A row's smallest bound over the candidates equals the formula evaluated one candidate at
/// a time, for candidate counts on both sides of a vector's eight, with NaN bounds passed
/// over.
#[test]
fn nearest_bound_is_the_per_candidate_minimum() {
    if !vnni_ready() {
        eprintln!("no 8-bit dot products on this CPU");
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut value = |scale: f64| (rng.random::<f64>() * 2.0 - 1.0) * scale;
    for t in [1, 5, 8, 9, 16, 19] {
        for case in 0..20 {
            let mut lane = |scale: f64| (0..t).map(|_| value(scale)).collect::<Vec<f64>>();
            let mut lanes = Lanes {
                offset: lane(1e4),
                scale: lane(1e-2),
                residual: lane(1.0),
                norm: lane(30.0),
                sq_norm: lane(900.0),
            };
            if case % 5 == 4 {
                lanes.sq_norm[case % t] = f64::NAN;
            }
            let dots: Vec<i32> = (0..t).map(|_| value(1e6) as i32).collect();
            let row = (value(1e-2), value(30.0).abs(), value(1.0).abs());
            let mut expected = f64::INFINITY;
            for (j, &dot) in dots.iter().enumerate() {
                let estimate = row.0 * lanes.scale[j] * (dot as f64 - lanes.offset[j]);
                let error = row.1 * lanes.residual[j] + row.2 * lanes.norm[j];
                let bound = lanes.sq_norm[j] - 2.0 * (estimate + error);
                if bound < expected {
                    expected = bound;
                }
            }
            // SAFETY: the 8-bit dot products imply AVX-512 (checked above).
            #[allow(unused_unsafe)]
            let got = unsafe { nearest_bound(&dots, &lanes, row) };
            assert_eq!(got.to_bits(), expected.to_bits(), "t={t}, case {case}");
        }
    }
}
