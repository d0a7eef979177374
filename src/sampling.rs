//! Random draws of rows that more than one step needs (initialisation, reassignment).

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::error::{invalid, Result};
use crate::scalar::Scalar;

/// `k` distinct indices in `0..n`, each drawn with probability proportional to its weight
/// (Efraimidis–Spirakis keys; a plain partial shuffle when unweighted).
pub fn weighted_sample_without_replacement<T: Scalar>(
    n: usize,
    weights: Option<&[T]>,
    k: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<usize>> {
    match weights {
        None => {
            if k > n {
                return invalid(format!("cannot draw {k} distinct rows from {n}"));
            }
            let mut indices: Vec<usize> = (0..n).collect();
            for i in 0..k {
                let j = rng.random_range(i..n);
                indices.swap(i, j);
            }
            indices.truncate(k);
            Ok(indices)
        }
        Some(w) => {
            let positive = w.iter().filter(|&&v| v > T::zero()).count();
            if k > positive {
                return invalid(format!(
                    "cannot draw {k} distinct rows: only {positive} have a positive sample weight"
                ));
            }
            let mut keyed: Vec<(f64, usize)> = w
                .iter()
                .enumerate()
                .filter(|(_, &v)| v > T::zero())
                .map(|(i, &v)| {
                    let u: f64 = rng.random::<f64>();
                    (u.max(f64::MIN_POSITIVE).ln() / v.as_f64(), i)
                })
                .collect();
            keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            Ok(keyed.into_iter().take(k).map(|(_, i)| i).collect())
        }
    }
}
