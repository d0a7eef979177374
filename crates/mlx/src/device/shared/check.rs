//! The shared kernels' first-use check: each kernel on a small problem against MLX's ops or
//! float64 values made on the host.

use mlx_rs::Array;

use super::super::kernel::{nearest_in_band_by_ops, runner_up};
use super::super::{eval_all, partial_distances, row_norms};
use super::{seeding_rounding, SharedKernels};
use mlx_kmeans::error::{Error, Result};

/// Runs each kernel on a small problem (uneven clusters, one empty, weights): `band_argmin`
/// against MLX's ops on the same distances (labels, runners-up and band counts equal, distances within
/// float32 rounding), the sums against float64 sums made on the host.
pub(super) fn self_check(kernels: &SharedKernels) -> Result<()> {
    let (n, d, k) = (300usize, 37usize, 11usize);
    // Deterministic values with a spread of scales, no generator needed.
    let values: Vec<f32> = (0..n * d).map(|i| ((i * 7919 % 1009) as f32 / 1009.0 - 0.5) * (1 + i % 5) as f32).collect();
    let x = Array::from_slice(&values, &[n as i32, d as i32]);
    let centroids = Array::from_slice(&values[..k * d], &[k as i32, d as i32]);
    let norms = x.square()?.sum_axis(1, false)?;
    let c_norms = row_norms(&centroids, k)?;
    let partial = partial_distances(&x, &centroids, &c_norms)?;
    let bound = 1e-3;
    let by_ops = nearest_in_band_by_ops(&partial, &norms, &c_norms, bound, false)?;
    let ours = kernels.nearest(&partial, &norms, &c_norms, bound)?;
    let ops_second = runner_up(&partial, &by_ops.labels.reshape(&[-1, 1])?)?;
    // Labels pointing at clusters 0..k-1 except the last (left empty), some rows weighted 0;
    // the sums' reference is computed on the host in float64.
    let label_values: Vec<u32> = (0..n).map(|i| ((i * 37 + i / 7) % (k - 1)) as u32).collect();
    let labels = Array::from_slice(&label_values, &[n as i32]);
    let weight_values: Vec<f32> = (0..n).map(|i| (i % 4) as f32 * 0.5 + (i % 3) as f32 * 0.1).collect();
    let weights = Array::from_slice(&weight_values, &[n as i32]);
    let (sums, cluster_weights, means) = kernels.cluster_means(&x, &weights, &labels, k)?;
    let (mut exact_sums, mut exact_weights) = (vec![0f64; k * d], vec![0f64; k]);
    for (i, (&label, &w)) in label_values.iter().zip(&weight_values).enumerate() {
        let j = label as usize;
        exact_weights[j] += w as f64;
        for c in 0..d {
            exact_sums[j * d + c] += w as f64 * values[i * d + c] as f64;
        }
    }
    let exact_means: Vec<f64> = (0..k * d)
        .map(|e| if exact_weights[e / d] > 0.0 { exact_sums[e] / exact_weights[e / d] } else { 0.0 })
        .collect();
    eval_all(&[&sums, &cluster_weights, &means])?;
    // Float32 results within a few units of the float64 values' scale.
    let near = |got: &[f32], exact: &[f64]| {
        let scale = exact.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
        got.len() == exact.len() && got.iter().zip(exact).all(|(&g, &e)| (g as f64 - e).abs() <= 1e-5 * scale)
    };
    let same = |a: &Array, b: &Array| -> Result<bool> {
        let equal = a.eq(b)?.all(None)?;
        eval_all(&[&equal])?;
        Ok(equal.item_exact::<bool>())
    };
    let distances_close = {
        let diff = ours.distances.subtract(&by_ops.distances)?.abs()?.max(None)?;
        let scale = by_ops.distances.abs()?.max(None)?;
        eval_all(&[&diff, &scale])?;
        diff.item_exact::<f32>() <= 1e-5 * scale.item_exact::<f32>()
    };
    let (seeding_close, seeding_same, seeding_skipped) = check_seeding(kernels)?;
    let checks = [
        ("band_argmin labels", same(&ours.labels, &by_ops.labels)?),
        ("band_argmin band counts", same(&ours.in_band, &by_ops.in_band)?),
        ("band_argmin runners-up", same(ours.second.as_ref().expect("the kernel's runner-up"), &ops_second)?),
        ("band_argmin distances", distances_close),
        ("cluster_means weights", near(cluster_weights.as_slice::<f32>(), &exact_weights)),
        ("cluster_means sums", near(sums.as_slice::<f32>(), &exact_sums)),
        ("cluster_means means", near(means.as_slice::<f32>(), &exact_means)),
        ("seeding_distances distances", seeding_close),
        ("seeding_distances pruned results", seeding_same),
        ("seeding_distances skipped candidates", seeding_skipped),
    ];
    match checks.iter().find(|(_, ok)| !ok) {
        Some((what, _)) => Err(Error::Backend(format!("{what} differ from MLX's ops on the check problem"))),
        None => Ok(()),
    }
}

/// `seeding_distances` on two runs of rows in four tight groups, each run with four chosen
/// centres (one per group) and three candidates: whether its distances are float64's within
/// float32 rounding, whether pruning left every result as it was, and whether it skipped any
/// candidate (the groups lie far apart, so most are).
fn check_seeding(kernels: &SharedKernels) -> Result<(bool, bool, bool)> {
    let (runs, per, d, m, groups) = (2usize, 120usize, 19usize, 3usize, 4usize);
    let n = runs * per;
    let values: Vec<f32> = (0..n * d)
        .map(|e| {
            let (i, j) = (e / d, e % d);
            let noise = ((e * 7919 % 1009) as f32 / 1009.0 - 0.5) * 0.2;
            noise + if j == i % groups { 6.0 * (i % groups + 1) as f32 } else { 0.0 }
        })
        .collect();
    let row = |i: usize| &values[i * d..(i + 1) * d];
    let sq = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(&p, &q)| (p as f64 - q as f64).powi(2)).sum::<f64>();
    // Per run: rows 0..4 are the centres (groups 0..3), rows 5, 6 and 10 the candidates.
    let centre = |r: usize, a: usize| r * per + a;
    let candidate = |r: usize, t: usize| r * per + [5, 6, 10][t];
    let (mut assigned, mut closest) = (vec![0i32; n], vec![0f32; n]);
    for i in 0..n {
        let r = i / per;
        let (a, dist) = (0..groups)
            .map(|a| (a, sq(row(i), row(centre(r, a)))))
            .fold((0, f64::INFINITY), |best, next| if next.1 < best.1 { next } else { best });
        assigned[i] = a as i32;
        closest[i] = dist as f32;
    }
    let mut lower = vec![0f32; runs * groups * m];
    let mut cand = Vec::with_capacity(runs * m * d);
    for r in 0..runs {
        for t in 0..m {
            cand.extend_from_slice(row(candidate(r, t)));
            for a in 0..groups {
                // Below the float64 distance, so a true lower bound after rounding.
                lower[(r * groups + a) * m + t] =
                    (sq(row(centre(r, a)), row(candidate(r, t))).sqrt() * (1.0 - 1e-6)) as f32;
            }
        }
    }
    let x = Array::from_slice(&values, &[n as i32, d as i32]);
    let xnorm = x.square()?.sum_axis(1, false)?;
    let cand = Array::from_slice(&cand, &[runs as i32, m as i32, d as i32]);
    let cnorm = cand.square()?.sum_axis(2, false)?;
    let closest_array = Array::from_slice(&closest, &[n as i32]);
    let scale = mlx_rs::ops::stack(&[Array::from_f32(seeding_rounding(d)), xnorm.max(None)?], 0)?;
    let assigned_array = Array::from_slice(&assigned, &[n as i32]);
    let lower_array = Array::from_slice(&lower, &[runs as i32, groups as i32, m as i32]);
    let (all, all_measured) = kernels.seeding_distances(&x, &xnorm, &cand, &cnorm, &closest_array, None, &scale)?;
    let (pruned, measured) = kernels.seeding_distances(
        &x,
        &xnorm,
        &cand,
        &cnorm,
        &closest_array,
        Some((&assigned_array, &lower_array)),
        &scale,
    )?;
    let all_measured = all_measured.as_type::<i64>()?.sum(None)?;
    let measured = measured.as_type::<i64>()?.sum(None)?;
    eval_all(&[&all, &pruned, &all_measured, &measured])?;
    let (all, pruned) = (all.as_slice::<f32>(), pruned.as_slice::<f32>());
    let origin = vec![0f32; d];
    let close = (0..n * m).all(|e| {
        let (i, t) = (e / m, e % m);
        let c = row(candidate(i / per, t));
        let exact = sq(row(i), c).min(closest[i] as f64);
        let scale = sq(row(i), &origin) + sq(c, &origin);
        (all[e] as f64 - exact).abs() <= 1e-5 * scale
    });
    let same = all.iter().zip(pruned).all(|(a, p)| a.to_bits() == p.to_bits());
    let total = (n * m) as i64;
    let skipped = all_measured.item_exact::<i64>() == total && measured.item_exact::<i64>() < total / 2;
    Ok((close, same, skipped))
}
