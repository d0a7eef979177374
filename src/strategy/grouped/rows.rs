//! The per-row work of a bounded pass of [`super::GroupedPass`]: each row settled by its
//! bounds, by measuring the centroids they leave, or listed for the kernel's full search.

use super::{PassCounts, MARGIN};
use crate::matrix::{dot, sq_distance, MatRef};
use crate::scalar::Scalar;

/// One pass's view of the bounds, shared by the tasks.
pub(super) struct Bounds<'a, T: Scalar> {
    pub(super) x: MatRef<'a, T>,
    pub(super) x_sq_norms: &'a [T],
    pub(super) centroids: MatRef<'a, T>,
    /// The centroids' squared norms (in `T`, as float64), the largest, and the error bound
    /// of partial distances relative to `‖x‖² + 2 max ‖c‖²`.
    pub(super) c_norms: Vec<f64>,
    pub(super) c_norm_max: f64,
    pub(super) error: f64,
    pub(super) groups: &'a [u32],
    pub(super) members: &'a [Vec<u32>],
    pub(super) drift: &'a [f64],
    pub(super) group_drift: &'a [f64],
    /// The most centroids a row measures one by one.
    pub(super) most: usize,
}

impl<T: Scalar> Bounds<'_, T> {
    /// Rows `first..` (with their bounds, labels and distances): each settled by its bounds,
    /// by measuring the centroids they leave, or listed for the kernel's full search (their
    /// bounds are left for it to renew).
    pub(super) fn rows(
        &self,
        first: usize,
        lower: &mut [f32],
        labels: &mut [u32],
        distances: &mut [T],
    ) -> (Vec<usize>, PassCounts) {
        let t = self.members.len();
        let mut counts = PassCounts::default();
        let mut full = Vec::new();
        let mut open: Vec<usize> = Vec::with_capacity(t);
        // Per open group's centroid (in order): its squared distance, or NaN where skipped.
        let mut measured: Vec<f64> = Vec::new();
        for (r, bounds) in lower.chunks_exact_mut(t).enumerate() {
            let i = first + r;
            let own_label = labels[r] as usize;
            // First without reading the row: its last distance (exact, rounded to `T`) grown
            // by its centroid's move bounds the distance now.
            let upper = (distances[r].as_f64() * (1.0 + 4.0 * T::epsilon().as_f64())).sqrt() * (1.0 + MARGIN)
                + self.drift[own_label];
            if bounds.iter().zip(self.group_drift).all(|(&bound, &moved)| bound as f64 - moved > upper) {
                self.loosen(bounds);
                counts.settled += 1;
                continue;
            }
            let row = self.x.row(i);
            let own_sq = sq_distance(row, self.centroids.row(own_label));
            let own = own_sq.sqrt();
            let reach = own * (1.0 + MARGIN);
            open.clear();
            let mut left = 0;
            for (g, (&bound, &moved)) in bounds.iter().zip(self.group_drift).enumerate() {
                if bound as f64 - moved <= reach {
                    open.push(g);
                    let last = bound as f64;
                    left += self.members[g].iter().filter(|&&c| last - self.drift[c as usize] <= reach).count();
                }
            }
            if open.is_empty() {
                self.loosen(bounds);
                distances[r] = T::of_f64(own_sq);
                counts.settled += 1;
                continue;
            }
            if left > self.most {
                full.push(i);
                counts.full += 1;
                continue;
            }
            // The open groups' centroids the local bounds leave: their partial distances
            // `‖c‖² − 2x·c` (within `slack`), and exactly (by differences) those that may be
            // nearer than the best so far; the nearest kept, ties to the lowest index as in a
            // dense pass. `measured`: per open group's centroid, its squared distance or a
            // lower bound on it, NaN where the local bound skipped it.
            let x_sq = self.x_sq_norms[i].as_f64();
            let slack = self.error * (x_sq + 2.0 * self.c_norm_max);
            let (mut best, mut best_sq, mut best_distance) = (own_label, own_sq, own);
            measured.clear();
            for &g in &open {
                let last = bounds[g] as f64;
                for &c in &self.members[g] {
                    let c = c as usize;
                    if c == own_label || last - self.drift[c] > best_distance * (1.0 + MARGIN) {
                        measured.push(f64::NAN);
                        continue;
                    }
                    counts.measured += 1;
                    let partial = self.c_norms[c] - 2.0 * dot(row, self.centroids.row(c));
                    let low = partial + x_sq - slack;
                    if low > best_sq * (1.0 + MARGIN) {
                        measured.push(low);
                        continue;
                    }
                    let sq = sq_distance(row, self.centroids.row(c));
                    measured.push(sq);
                    if sq < best_sq || (sq == best_sq && c < best) {
                        (best, best_sq, best_distance) = (c, sq, sq.sqrt());
                    }
                }
            }
            counts.partial += 1;
            // New bounds: closed groups loosened; open ones from what was measured, or what
            // their last bound says of each centroid skipped. The old centroid, if left,
            // joins its group's bound.
            let own_group = self.groups[own_label] as usize;
            let mut next = open.iter().peekable();
            let mut at = 0;
            for (g, bound) in bounds.iter_mut().enumerate() {
                let mut value = if next.peek() == Some(&&g) {
                    next.next();
                    let last = *bound as f64;
                    let mut value = f64::INFINITY;
                    for &c in &self.members[g] {
                        let c = c as usize;
                        let sq = measured[at];
                        at += 1;
                        if c == best || c == own_label {
                            continue;
                        }
                        value = value.min(if sq.is_nan() { last - self.drift[c] } else { sq.max(0.0).sqrt() });
                    }
                    value
                } else {
                    *bound as f64 - self.group_drift[g]
                };
                if g == own_group && best != own_label {
                    value = value.min(own);
                }
                *bound = round_down(value);
            }
            labels[r] = best as u32;
            distances[r] = T::of_f64(best_sq);
        }
        (full, counts)
    }

    /// A row kept by its bounds: each group's bound loosened by its farthest move.
    fn loosen(&self, bounds: &mut [f32]) {
        for (bound, &moved) in bounds.iter_mut().zip(self.group_drift) {
            *bound = round_down(*bound as f64 - moved);
        }
    }
}

/// `value` less the margin, as a float32 no larger (never negative; infinity stays).
pub(super) fn round_down(value: f64) -> f32 {
    if value == f64::INFINITY {
        return f32::INFINITY;
    }
    let value = (value * (1.0 - MARGIN)).max(0.0);
    let rounded = value as f32;
    if rounded as f64 > value {
        rounded.next_down().max(0.0)
    } else {
        rounded
    }
}
