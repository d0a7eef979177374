use super::*;
use crate::matrix::{exact_sq_distance, row_sq_norms};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn supported_kinds() -> Vec<Dots> {
    Dots::ALL.into_iter().filter(|kind| kind.supported()).collect()
}

/// The value of one bfloat16 half of a word.
fn bf16_value(word: u32, high: bool) -> f64 {
    f32::from_bits(if high { word & 0xffff_0000 } else { word << 16 }) as f64
}

/// The dots of the rows `xm` with the centroids `cm` as a pass of `kind` computes them (rows
/// rounded as the kind rounds them): the packed centroids, `tiled × padded` dots, and the
/// rows' norm bounds.
fn dots_of(kind: Dots, xm: MatRef<'_, f32>, cm: MatRef<'_, f32>) -> (Packed, Vec<f32>, RowNorms) {
    let (m, d) = (xm.rows(), xm.cols());
    let layout = kind.layout(d);
    let depth = layout.depth;
    let packed = pack_centroids(kind, cm);
    let tiled = m.next_multiple_of(layout.rows);
    let mut words = vec![0u32; tiled * depth];
    let (a, made) = match kind {
        Dots::F32 => (as_words(xm.as_slice()), exact_row_norms(&row_sq_norms(xm), d)),
        Dots::Bf16 | Dots::Amx => {
            let made = round_rows(xm, depth, kind == Dots::Amx, &mut words);
            (&words[..], made)
        }
    };
    let mut dots = vec![0f32; tiled * packed.padded];
    unsafe { kernel_dots(kind, a, tiled, depth, &packed.strips, packed.padded, &mut dots) };
    (packed, dots, made)
}

/// The kernels' dot products against float64 sums of the same (rounded) values, over shapes
/// that leave partial tiles (rows not a multiple of 6, centroids not of 16 or 64, an odd
/// number of features).
#[test]
fn dots_match_float64_sums_of_the_same_values() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for kind in supported_kinds() {
        for (m, k, d) in [(13, 37, 33), (6, 64, 32), (1, 1, 1), (20, 130, 7)] {
            let x: Vec<f32> = (0..m * d).map(|_| rng.random::<f32>() * 4.0 - 2.0).collect();
            let c: Vec<f32> = (0..k * d).map(|_| rng.random::<f32>() * 4.0 - 2.0).collect();
            let (xm, cm) = (MatRef::new(&x, m, d).unwrap(), MatRef::new(&c, k, d).unwrap());
            let depth = kind.layout(d).depth;
            let (packed, dots, _) = dots_of(kind, xm, cm);
            let padded = packed.padded;
            // The values each kernel multiplies: float32 as given, or rounded to bfloat16.
            let (x_values, c_values): (Vec<f64>, Vec<f64>) = match kind {
                Dots::F32 => (x.iter().map(|&v| v as f64).collect(), c.iter().map(|&v| v as f64).collect()),
                Dots::Bf16 | Dots::Amx => {
                    let unpack = |mat: MatRef<'_, f32>| {
                        let mut words = vec![0u32; mat.rows() * depth];
                        round_rows(mat, depth, false, &mut words);
                        let values = words.iter().flat_map(|&w| [bf16_value(w, false), bf16_value(w, true)]);
                        values.collect::<Vec<f64>>()
                    };
                    (unpack(xm), unpack(cm))
                }
            };
            let width = x_values.len() / m;
            for r in 0..m {
                for j in 0..k {
                    let exact: f64 = (0..width).map(|p| x_values[r * width + p] * c_values[j * width + p]).sum();
                    let got = dots[r * padded + j] as f64;
                    let scale: f64 =
                        (0..width).map(|p| (x_values[r * width + p] * c_values[j * width + p]).abs()).sum();
                    assert!(
                        (got - exact).abs() <= 1e-6 * (1.0 + scale),
                        "{kind:?} ({m},{k},{d}) [{r},{j}]: {got} vs {exact}"
                    );
                }
                // Rounding keeps 8 significant bits in bfloat16, all of them in float32.
                let first = x_values[r * width];
                assert!((first - x[r * d] as f64).abs() <= (x[r * d].abs() as f64) / 256.0);
            }
        }
    }
}

/// Rows near the midpoints of pairs of centroids, on a common offset, so that many rows fall
/// within the error bound: labels must be the exact nearest centroids (float64 by
/// differences, ties to the lowest index), distances exact rounded once, and `second` a lower
/// bound on the true runner-up, never below the row's own distance; a listed subset of the
/// rows gets what the whole gave them, as do rows kept rounded, and labels only the same labels.
#[test]
fn labels_are_exact_and_second_is_a_lower_bound() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for kind in supported_kinds() {
        // The last case scales each centroid apart (norms from 0.1 to 3), so that each
        // centroid's own share of the error bound differs from the largest.
        for (n, k, d, offset, scaled) in [
            (3000, 70, 96, 30.0f64, false),
            (500, 17, 33, 0.0, false),
            (400, 1100, 20, 2.0, false),
            (2000, 90, 64, 1.0, true),
        ] {
            let mut c: Vec<f32> = (0..k * d).map(|_| (offset + rng.random::<f64>()) as f32).collect();
            if scaled {
                for centroid in c.chunks_exact_mut(d) {
                    let scale = 0.1 + 2.9 * rng.random::<f64>();
                    centroid.iter_mut().for_each(|v| *v = (*v as f64 * scale) as f32);
                }
            }
            let mut x = vec![0f32; n * d];
            for i in 0..n {
                let (a, b) = (rng.random_range(0..k), rng.random_range(0..k));
                let t = if i % 3 == 0 { 0.5 } else { rng.random::<f64>() };
                for p in 0..d {
                    let v = t * c[a * d + p] as f64 + (1.0 - t) * c[b * d + p] as f64;
                    x[i * d + p] = (v + 1e-3 * (rng.random::<f64>() - 0.5)) as f32;
                }
            }
            // A duplicated centroid, and a row on it: a tie the lower index must win.
            let twin = c[..d].to_vec();
            c[d..2 * d].copy_from_slice(&twin);
            x[..d].copy_from_slice(&twin);
            let (xm, cm) = (MatRef::new(&x, n, d).unwrap(), MatRef::new(&c, k, d).unwrap());
            let (mut labels, mut dist, mut second) = (vec![0u32; n], vec![0f32; n], vec![0f32; n]);
            assign(kind, xm, &row_sq_norms(xm), cm, &mut labels, &mut dist, Extra::RunnerUp(&mut second));
            let (mut plain_labels, mut plain_dist) = (vec![0u32; n], vec![0f32; n]);
            assign(kind, xm, &row_sq_norms(xm), cm, &mut plain_labels, &mut plain_dist, Extra::None);
            assert_eq!(plain_labels, labels);
            assert_eq!(plain_dist, dist);
            // Runner-up bounds of a pass that measures only near ties: the same labels, and
            // still lower bounds (checked with the others below).
            let (mut loose_labels, mut loose_dist, mut loose_second) = (vec![0u32; n], vec![0f32; n], vec![0f32; n]);
            let extra = Extra::RunnerUp(&mut loose_second);
            assign_rows(kind, Rows::All(xm), &row_sq_norms(xm), cm, &mut loose_labels, &mut loose_dist, extra, false);
            assert_eq!(loose_labels, labels, "{kind:?}");
            // Labels only: the same labels, and distances within the products' error.
            let (mut unmeasured_labels, mut unmeasured_dist) = (vec![0u32; n], vec![0f32; n]);
            let rows = Rows::All(xm);
            assign_rows(
                kind,
                rows,
                &row_sq_norms(xm),
                cm,
                &mut unmeasured_labels,
                &mut unmeasured_dist,
                Extra::None,
                false,
            );
            assert_eq!(unmeasured_labels, labels, "{kind:?}");
            let c_max = (0..k).map(|j| cm.row(j).iter().map(|&v| (v as f64).powi(2)).sum::<f64>()).fold(0.0, f64::max);
            for i in 0..n {
                let x_sq: f64 = xm.row(i).iter().map(|&v| (v as f64).powi(2)).sum();
                let slack = 0.02 * (x_sq + c_max);
                assert!((unmeasured_dist[i] as f64 - dist[i] as f64).abs() <= slack, "{kind:?} row {i}");
                // An upper bound on the exact distance, up to the rounding of both to float32.
                let floor = dist[i] as f64 * (1.0 - f32::EPSILON as f64);
                assert!(
                    unmeasured_dist[i] as f64 >= floor,
                    "{kind:?} row {i}: {} below {}",
                    unmeasured_dist[i],
                    dist[i]
                );
            }
            // Rows kept rounded, for the whole and for rows from a tile's start on (and from a
            // row that starts none, which rounds them again): what rounding each pass gives.
            let kept = RoundedRows::new(kind, xm);
            // 96 features pad to no more words than the rows' bfloat16 halves take.
            assert!(d != 96 || kept.is_some() == (kind != Dots::F32), "{kind:?}");
            if let Some(kept) = kept {
                for first in [0, 64, 65] {
                    let part = xm.slice_rows(first.min(n), n);
                    let m = part.rows();
                    let (mut kept_labels, mut kept_dist) = (vec![0u32; m], vec![0f32; m]);
                    let rows = Rows::Kept(part, &kept, first);
                    assign_rows(
                        kind,
                        rows,
                        &row_sq_norms(part),
                        cm,
                        &mut kept_labels,
                        &mut kept_dist,
                        Extra::None,
                        true,
                    );
                    assert_eq!(kept_labels, labels[first.min(n)..], "{kind:?} from row {first}");
                    assert_eq!(kept_dist, dist[first.min(n)..], "{kind:?} from row {first}");
                }
            }
            // A listed subset of the rows (out of order, one listed twice) as the whole gives them.
            let subset: Vec<usize> = (0..n).rev().step_by(3).chain([n / 2, n / 2]).collect();
            let m = subset.len();
            let (mut sub_labels, mut sub_dist, mut sub_second) = (vec![0u32; m], vec![0f32; m], vec![0f32; m]);
            let extra = Extra::RunnerUp(&mut sub_second);
            assign_rows(
                kind,
                Rows::Listed(xm, &subset, None),
                &row_sq_norms(xm),
                cm,
                &mut sub_labels,
                &mut sub_dist,
                extra,
                true,
            );
            for (r, &i) in subset.iter().enumerate() {
                assert_eq!(
                    (sub_labels[r], sub_dist[r], sub_second[r]),
                    (labels[i], dist[i], second[i]),
                    "{kind:?} row {i}"
                );
            }
            // The same subset from the rows kept rounded, labels only: the same labels, the
            // runner-up bounds of a pass that measures only near ties, close distances.
            if let Some(kept) = RoundedRows::new(kind, xm) {
                let (mut kept_labels, mut kept_dist, mut kept_second) = (vec![0u32; m], vec![0f32; m], vec![0f32; m]);
                let extra = Extra::RunnerUp(&mut kept_second);
                let rows = Rows::Listed(xm, &subset, Some(&kept));
                assign_rows(kind, rows, &row_sq_norms(xm), cm, &mut kept_labels, &mut kept_dist, extra, false);
                for (r, &i) in subset.iter().enumerate() {
                    assert_eq!((kept_labels[r], kept_second[r]), (labels[i], loose_second[i]), "{kind:?} kept row {i}");
                    assert!(
                        (kept_dist[r] - unmeasured_dist[i]).abs() <= 1e-6 * unmeasured_dist[i].abs(),
                        "{kind:?} row {i}"
                    );
                }
            }
            if let Some(kept) = RoundedRows::new(kind, xm) {
                listed_rows_of_a_laid_out_copy_match_the_copy_in_order(kind, xm, cm, &kept, &subset);
            }
            for i in 0..n {
                let exact: Vec<f64> = (0..k).map(|j| exact_sq_distance(xm.row(i), cm.row(j))).collect();
                let best = (0..k).fold(0, |b, j| if exact[j] < exact[b] { j } else { b });
                assert_eq!(labels[i] as usize, best, "{kind:?} ({n},{k},{d}) row {i}");
                assert_eq!(dist[i], exact[best] as f32, "{kind:?} row {i}");
                let runner_up = (0..k).filter(|&j| j != best).map(|j| exact[j]).fold(f64::INFINITY, f64::min);
                // A lower bound, up to the rounding of a tie to float32.
                assert!(second[i] <= runner_up as f32, "{kind:?} row {i}: {} above {runner_up}", second[i]);
                assert!(loose_second[i] <= runner_up as f32, "{kind:?} row {i}: {} above {runner_up}", loose_second[i]);
                assert!(second[i] >= dist[i], "{kind:?} row {i}: second below the row's own distance");
            }
        }
    }
}

/// Lists of nearest centroids on every kind, against float64 distances: `t` distinct
/// centroids a row, a bound on every centroid outside the list at most its exact distance,
/// and not loose (above the `t + 1`-th least exact distance less a small share), on rows
/// near many centroids (so that the lists' limit takes several) and with ties.
#[test]
fn lists_of_nearest_centroids_bound_every_other_centroid() {
    let mut rng = ChaCha8Rng::seed_from_u64(33);
    for kind in supported_kinds() {
        for (n, k, d, t) in [(400, 300, 64, 8), (300, 40, 33, 8), (200, 12, 48, 8), (100, 9, 40, 3)] {
            let c: Vec<f32> = (0..k * d).map(|_| rng.random::<f32>()).collect();
            let mut x: Vec<f32> = (0..n * d).map(|_| rng.random::<f32>()).collect();
            // Rows on a centroid, and one halfway between two.
            x[..d].copy_from_slice(&c[..d]);
            for p in 0..d {
                x[d + p] = 0.5 * (c[p] + c[d + p]);
            }
            let (xm, cm) = (MatRef::new(&x, n, d).unwrap(), MatRef::new(&c, k, d).unwrap());
            let (mut labels, mut dist, mut second) = (vec![0u32; n], vec![0f32; n], vec![0f32; n]);
            let (mut nearest, mut beyond) = (vec![0u32; n * t], vec![0f32; n]);
            let extra = Extra::Nearest { t, nearest: &mut nearest, beyond: &mut beyond, second: &mut second };
            assign_rows(kind, Rows::All(xm), &row_sq_norms(xm), cm, &mut labels, &mut dist, extra, false);
            for i in 0..n {
                let mut exact: Vec<(f64, usize)> =
                    (0..k).map(|j| (exact_sq_distance(xm.row(i), cm.row(j)), j)).collect();
                let list = &nearest[i * t..(i + 1) * t];
                let mut distinct = list.to_vec();
                distinct.sort_unstable();
                distinct.dedup();
                assert_eq!(distinct.len(), t, "{kind:?} row {i}: {list:?}");
                assert!(list.iter().all(|&j| (j as usize) < k), "{kind:?} row {i}: {list:?}");
                for &(sq, j) in &exact {
                    if !list.contains(&(j as u32)) {
                        assert!(
                            beyond[i] as f64 <= sq,
                            "{kind:?} row {i}: bound {} above centroid {j}'s {sq}",
                            beyond[i]
                        );
                    }
                }
                exact.sort_by(|a, b| a.0.total_cmp(&b.0));
                let x_sq: f64 = xm.row(i).iter().map(|&v| (v as f64).powi(2)).sum();
                let slack = 0.02 * (x_sq + 1.0);
                assert!(beyond[i] as f64 >= exact[t].0 - slack, "{kind:?} row {i}: bound {} loose", beyond[i]);
            }
        }
    }
}

/// Rows kept and laid out in an order of their own (`RoundedRows::lay_out`): listed rows in
/// that order (read in place, from a row inside a tile, with gaps) and out of it (copied) get
/// exactly what the copy in the rows' own order gives them; a pass over every row in its own
/// order gets the labels of the copy in order; bad orders change nothing; the rows' own order
/// restores the copy.
fn listed_rows_of_a_laid_out_copy_match_the_copy_in_order(
    kind: Dots,
    xm: MatRef<'_, f32>,
    cm: MatRef<'_, f32>,
    kept: &RoundedRows,
    subset: &[usize],
) {
    let (n, norms) = (xm.rows(), row_sq_norms(xm));
    let pass = |rows: Rows<'_>, m: usize| {
        let (mut labels, mut dist, mut second) = (vec![0u32; m], vec![0f32; m], vec![0f32; m]);
        assign_rows(kind, rows, &norms, cm, &mut labels, &mut dist, Extra::RunnerUp(&mut second), false);
        (labels, dist, second)
    };
    // An order of the rows far from their own: odd rows first, each half backwards.
    let order: Vec<usize> = (0..n).rev().filter(|i| i % 2 == 1).chain((0..n).rev().filter(|i| i % 2 == 0)).collect();
    let mut laid = RoundedRows::new(kind, xm).expect("kept as before");
    assert!(!laid.lay_out(xm, &order[1..]), "{kind:?}: an order missing a row");
    let twice: Vec<usize> = order.iter().map(|&i| if i == 0 { 1 } else { i }).collect();
    assert!(!laid.lay_out(xm, &twice), "{kind:?}: an order with a row twice");
    assert!(!laid.laid_out());
    assert!(laid.lay_out(xm, &order));
    let in_place: Vec<usize> = (5..n).filter(|place| place % 5 != 2).map(|place| order[place]).collect();
    for listed in [&in_place[..], subset] {
        let expected = pass(Rows::Listed(xm, listed, Some(kept)), listed.len());
        let got = pass(Rows::Listed(xm, listed, Some(&laid)), listed.len());
        assert_eq!(got, expected, "{kind:?}: {} listed rows", listed.len());
    }
    assert!(laid.stretch(&in_place[..100.min(in_place.len())], 16, 1 << 20).is_some(), "{kind:?}: read in place");
    let every = pass(Rows::Kept(xm, &laid, 0), n);
    assert_eq!(every.0, pass(Rows::Kept(xm, kept, 0), n).0, "{kind:?}: every row in its own order");
    let labels: Vec<u32> = (0..n).map(|i| (i % cm.rows()) as u32).collect();
    let (mut bounds, mut laid_bounds) = (vec![0.0; n], vec![0.0; n]);
    let all: Vec<usize> = (0..n).collect();
    assert!(kept.labelled_sq_distance_bounds(&all, cm, &labels, &mut bounds));
    assert!(laid.labelled_sq_distance_bounds(&all, cm, &labels, &mut laid_bounds));
    assert_eq!(bounds, laid_bounds, "{kind:?}: distance bounds");
    // Laid out again in the rows' own order: every pass reads them as the copy in order.
    let own: Vec<usize> = (0..n).collect();
    assert!(laid.lay_out(xm, &own));
    assert!(!laid.laid_out(), "{kind:?}: rows in their own order");
    assert_eq!(pass(Rows::Kept(xm, &laid, 0), n), pass(Rows::Kept(xm, kept, 0), n), "{kind:?}: own order");
}

/// Group bounds on every kind: labels as without them, and each row's bound for each group at
/// most its exact distance to the group's nearest centroid other than its own (infinite for a
/// group holding only that one), and not loose (within 5 % where the data sit at the origin
/// or the products are float32).
#[test]
fn group_bounds_are_lower_bounds_of_each_groups_distances() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for kind in supported_kinds() {
        for (n, k, d, offset) in [(700, 70, 96, 3.0f64), (300, 40, 33, 0.0)] {
            let c: Vec<f32> = (0..k * d).map(|_| (offset + rng.random::<f64>()) as f32).collect();
            let x: Vec<f32> = (0..n * d).map(|_| (offset + rng.random::<f64>()) as f32).collect();
            // Uneven groups, one of a single centroid, members in ascending order.
            let mut members: Vec<Vec<u32>> = vec![vec![5]];
            members.extend((0..7).map(|g| (0..k as u32).filter(|&j| j != 5 && j % 7 == g).collect::<Vec<_>>()));
            let t = members.len();
            let (xm, cm) = (MatRef::new(&x, n, d).unwrap(), MatRef::new(&c, k, d).unwrap());
            let (mut labels, mut dist, mut lower) = (vec![0u32; n], vec![0f32; n], vec![0f32; n * t]);
            let extra = Extra::Groups { members: &members, lower: &mut lower };
            assign(kind, xm, &row_sq_norms(xm), cm, &mut labels, &mut dist, extra);
            let (mut plain_labels, mut plain_dist) = (vec![0u32; n], vec![0f32; n]);
            assign(kind, xm, &row_sq_norms(xm), cm, &mut plain_labels, &mut plain_dist, Extra::None);
            assert_eq!(plain_labels, labels);
            assert_eq!(plain_dist, dist);
            for i in 0..n {
                for (g, group) in members.iter().enumerate() {
                    let nearest = group
                        .iter()
                        .filter(|&&j| j != labels[i])
                        .map(|&j| exact_sq_distance(xm.row(i), cm.row(j as usize)))
                        .fold(f64::INFINITY, f64::min);
                    let bound = lower[i * t + g] as f64;
                    assert!(bound <= nearest, "{kind:?} row {i} group {g}: {bound} above {nearest}");
                    // bfloat16 products err by far more where the data sit off the origin.
                    let tight = if offset == 0.0 || kind == Dots::F32 { 0.95 } else { 0.0 };
                    if nearest.is_finite() {
                        assert!(bound >= tight * nearest, "{kind:?} row {i} group {g}: {bound} far below {nearest}");
                    } else {
                        assert_eq!(bound, f64::INFINITY, "{kind:?} row {i} group {g}: no other centroid");
                    }
                }
            }
        }
    }
}

/// The few-centroid kernel against float64 sums, across its tile edges (3 rows, 8
/// centroids) and feature counts that leave a partial vector.
#[test]
fn thin_dots_match_float64_sums() {
    if !(Dots::F32.supported() && Dots::chosen().is_some()) {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (m, k, d) in [(7, 1, 16), (10, 8, 33), (4, 9, 100), (1, 16, 17), (300, 11, 768)] {
        let x: Vec<f32> = (0..m * d).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
        let c: Vec<f32> = (0..k * d).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
        let mut out = vec![f32::NAN; m * k];
        assert!(thin_dots(MatRef::new(&x, m, d).unwrap(), MatRef::new(&c, k, d).unwrap(), &mut out));
        for r in 0..m {
            for j in 0..k {
                let exact: f64 = (0..d).map(|p| x[r * d + p] as f64 * c[j * d + p] as f64).sum();
                let scale: f64 = (0..d).map(|p| (x[r * d + p] as f64 * c[j * d + p] as f64).abs()).sum();
                let got = out[r * k + j] as f64;
                assert!((got - exact).abs() <= 1e-6 * scale + 1e-30, "({m},{k},{d}) [{r},{j}]: {got} vs {exact}");
            }
        }
    }
}

/// The vector scan of partial distances against a plain left-to-right one: smallest value,
/// its first index, and the smallest of the others, over lengths around the 16-lane width,
/// values drawn from a few (ties across and within lanes), signed zeros, infinities and
/// not-a-number partials (never taken).
#[test]
fn vector_argmin_equals_a_plain_scan() {
    if !Dots::F32.supported() {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let pool = [1.0f32, 0.5, -0.0, 0.0, 2.0, f32::INFINITY, f32::NAN, 0.25, -3.0];
    for n in (1..=70).chain([127, 128, 129, 1024]) {
        for trial in 0..40 {
            let few = trial % 2 == 0;
            let mut draw = || if few { pool[rng.random_range(0..pool.len())] } else { rng.random::<f32>() * 8.0 - 4.0 };
            let dots: Vec<f32> = (0..n).map(|_| draw()).collect();
            let c_norms: Vec<f32> = (0..n).map(|_| draw().abs()).collect();
            let partial: Vec<f32> = (0..n).map(|j| c_norms[j] - 2.0 * dots[j]).collect();
            let (mut value, mut index) = (f32::INFINITY, 0usize);
            for (j, &v) in partial.iter().enumerate() {
                if v < value {
                    (value, index) = (v, j);
                }
            }
            let runner_up = partial
                .iter()
                .enumerate()
                .filter(|&(j, v)| j != index && !v.is_nan())
                .fold(f32::INFINITY, |m, (_, &v)| m.min(v));
            let got = unsafe { settle::argmin2(&dots, &c_norms) };
            assert_eq!((got.0, got.1), (value, index), "n={n} trial {trial}: {partial:?}");
            assert_eq!(got.2, runner_up, "n={n} trial {trial}: {partial:?}");
        }
    }
}

/// The AMX kernel's scan as it multiplies gives each row what `argmin2` gives on its stored
/// dots (the same least value, centroid and runner-up), over depths of one step to more than
/// 32 (rows scanned one per step), centroids not a multiple of 32, ties from duplicated
/// centroids, and rows holding an infinity or a not-a-number.
#[test]
fn amx_scan_equals_the_scan_of_its_dots() {
    if !Dots::Amx.supported() {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    for (m, k, d) in [(64, 37, 20), (96, 500, 768), (32, 70, 1100), (64, 1, 64), (32, 33, 129)] {
        let mut x: Vec<f32> = (0..m * d).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
        let mut c: Vec<f32> = (0..k * d).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
        if k > 3 {
            let twin = c[..d].to_vec();
            c[2 * d..3 * d].copy_from_slice(&twin);
            x[..d].copy_from_slice(&twin);
        }
        x[d] = f32::INFINITY;
        x[2 * d + 1] = f32::NAN;
        let (xm, cm) = (MatRef::new(&x, m, d).unwrap(), MatRef::new(&c, k, d).unwrap());
        let depth = Dots::Amx.layout(d).depth;
        let packed = pack_centroids(Dots::Amx, cm);
        let mut words = vec![0u32; m * depth];
        round_rows(xm, depth, true, &mut words);
        let mut dots = vec![0f32; m * packed.padded];
        let firsts = unsafe { kernel_dots_scanned(Dots::Amx, &words, m, depth, &packed, &mut dots, &[]) }.unwrap();
        for r in 0..m {
            let row = &dots[r * packed.padded..r * packed.padded + k];
            let want = unsafe { settle::argmin2(row, &packed.c_norms) };
            let got = firsts[r];
            let same = |a: f32, b: f32| a == b || (a.is_nan() && b.is_nan());
            assert!(
                same(got.0, want.0) && got.1 == want.1 && same(got.2, want.2),
                "({m},{k},{d}) row {r}: {got:?} vs {want:?}"
            );
        }
    }
}

/// The kept rows' bounds on each row's distance to its labelled centroid lie above the exact
/// float64 distance of the float32 row, and within the rounding of the kept row above it, for
/// every kind that keeps rows, from the first row and from a later piece, at widths that
/// leave partial chunks.
#[test]
fn kept_distance_bounds_lie_above_the_exact_distances() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for kind in supported_kinds() {
        for (n, k, d) in [(300, 9, 40), (200, 5, 33), (130, 17, 96), (150, 3, 300)] {
            // Rows far from the origin: the bound must hold where cancellation would bite.
            let x: Vec<f32> = (0..n * d).map(|e| rng.random::<f32>() * 2.0 - 1.0 + (e % d) as f32 * 10.0).collect();
            let c: Vec<f32> = (0..k * d).map(|e| rng.random::<f32>() * 2.0 - 1.0 + (e % d) as f32 * 10.0).collect();
            let (xm, cm) = (MatRef::new(&x, n, d).unwrap(), MatRef::new(&c, k, d).unwrap());
            let Some(kept) = RoundedRows::new(kind, xm) else {
                continue;
            };
            for first in [0, 64] {
                let rows: Vec<usize> = (first..n).collect();
                let labels: Vec<u32> = rows.iter().map(|&i| (i % k) as u32).collect();
                let mut bounds = vec![0.0; labels.len()];
                assert!(kept.labelled_sq_distance_bounds(&rows, cm, &labels, &mut bounds));
                for (r, (&bound, &label)) in bounds.iter().zip(&labels).enumerate() {
                    let i = first + r;
                    let exact = exact_sq_distance(xm.row(i), cm.row(label as usize));
                    let residual = kept.norms.residual[i];
                    assert!(bound >= exact, "{kind:?} d={d} row {i}: bound {bound} below {exact}");
                    let loose = (exact.sqrt() + 2.0 * residual).powi(2) * (1.0 + 1e-5);
                    assert!(bound <= loose, "{kind:?} d={d} row {i}: bound {bound} far above {exact}");
                }
            }
            // Listed rows (out of order, one twice) get the bounds they get in order.
            let labels: Vec<u32> = (0..n).map(|i| (i % k) as u32).collect();
            let mut in_order = vec![0.0; n];
            let all: Vec<usize> = (0..n).collect();
            assert!(kept.labelled_sq_distance_bounds(&all, cm, &labels, &mut in_order));
            let listed: Vec<usize> = (0..n).rev().step_by(3).chain([1, 1]).collect();
            let listed_labels: Vec<u32> = listed.iter().map(|&i| labels[i]).collect();
            let mut bounds = vec![0.0; listed.len()];
            assert!(kept.labelled_sq_distance_bounds(&listed, cm, &listed_labels, &mut bounds));
            for (&i, &bound) in listed.iter().zip(&bounds) {
                assert_eq!(bound, in_order[i], "{kind:?} d={d} row {i}");
            }
            assert!(!kept.labelled_sq_distance_bounds(&[n], cm, &[0], &mut [0.0]), "a row past the end");
            // Another width than the one kept: no bounds.
            let narrow = MatRef::new(&c[..k * (d - 1)], k, d - 1).unwrap();
            assert!(!kept.labelled_sq_distance_bounds(&[0], narrow, &[0], &mut [0.0]));
        }
    }
}

/// Each centroid's own share of the error bound: at least the error of every computed partial
/// distance `‖c_j‖² − 2x·c_j` (float32 as the scans compute it, against float64 sums of the
/// values as given) and at most the row's whole bound, on centroids of norms 0.05 to 4 with a
/// common offset (where the rounding residuals matter most).
#[test]
fn each_centroids_share_of_the_bound_holds() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for kind in supported_kinds() {
        for (m, k, d, offset) in [(64, 200, 96, 3.0f64), (32, 37, 33, 0.0), (48, 500, 768, 0.5)] {
            let x: Vec<f32> = (0..m * d).map(|_| (offset + rng.random::<f64>() * 2.0 - 1.0) as f32).collect();
            let mut c: Vec<f32> = (0..k * d).map(|_| (offset + rng.random::<f64>() * 2.0 - 1.0) as f32).collect();
            for centroid in c.chunks_exact_mut(d) {
                let scale = 0.05 + 3.95 * rng.random::<f64>();
                centroid.iter_mut().for_each(|v| *v = (*v as f64 * scale) as f32);
            }
            let (xm, cm) = (MatRef::new(&x, m, d).unwrap(), MatRef::new(&c, k, d).unwrap());
            let norms = row_sq_norms(xm);
            let (packed, dots, made) = dots_of(kind, xm, cm);
            let padded = packed.padded;
            let bound = Bound::new(kind, d, &packed);
            let mut tighter = 0;
            for r in 0..m {
                let x_sq = norms[r] as f64;
                let whole = bound.of_row(made.rounded[r], made.residual[r], x_sq);
                let own = bound.per_centroid(made.rounded[r], made.residual[r], x_sq);
                for j in 0..k {
                    let computed = (packed.c_norms[j] - 2.0 * dots[r * padded + j]) as f64;
                    let c_sq: f64 = cm.row(j).iter().map(|&v| (v as f64).powi(2)).sum();
                    let dot: f64 = xm.row(r).iter().zip(cm.row(j)).map(|(&a, &b)| a as f64 * b as f64).sum();
                    let error = (computed - (c_sq - 2.0 * dot)).abs();
                    let share = own.of(&bound, j, packed.c_norms[j]);
                    assert!(error <= share, "{kind:?} ({m},{k},{d}) [{r},{j}]: error {error} above {share}");
                    assert!(share <= whole * (1.0 + 1e-4), "{kind:?} [{r},{j}]: {share} above the row's {whole}");
                    tighter += (share < 0.5 * whole) as usize;
                }
            }
            // Most centroids are well inside the largest norm: their share is far below it.
            assert!(tighter > m * k / 4, "{kind:?} ({m},{k},{d}): {tighter} of {}", m * k);
        }
    }
}
