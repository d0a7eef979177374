//! A bounded pass from the lists: Hamerly's test, then each run's rows against its rows'
//! lists' centroids, then a full search of the rows the lists cannot settle.

use rayon::prelude::*;

use super::{distinct_centroids, CandidatePass, ListedSearch, Slack, FAIL_SHARE, GROUP_MIN, NEAREST};
use crate::error::Result;
use crate::kernel::{KeptRows, Kernel};
use crate::matrix::{MatRef, Points};
use crate::monitor::{for_each_chunk, KeepGoing};
use crate::scalar::Scalar;

/// One run's rows to search and its centroids.
struct Group {
    rows: Vec<usize>,
    set: Vec<u32>,
}

/// What a search of a run's rows found: labels (among all centroids), upper bounds on the
/// squared distances, lower bounds on the squared distance to the runner-up among the run's
/// centroids.
struct Found<T> {
    labels: Vec<u32>,
    upper: Vec<T>,
    second: Vec<T>,
}

impl Group {
    /// The run `g`'s rows to search, with their lists' centroids and the far movers
    /// (ascending, so that ties go to the lowest index as in a dense pass), at least
    /// `GROUP_MIN` of them (`marks`: as [`distinct_centroids`] takes them, `g` the stamp).
    fn of(rows: Vec<usize>, nearest: &[u32], far: &[u32], k: usize, marks: &mut [usize], g: usize) -> Self {
        let listed = rows.iter().flat_map(|&i| nearest[i * NEAREST..(i + 1) * NEAREST].iter().copied());
        let mut set = distinct_centroids(listed.chain(far.iter().copied()), k, marks, g);
        let wanted = GROUP_MIN.min(k).saturating_sub(set.len());
        let extra: Vec<u32> = (0..k as u32).filter(|j| set.binary_search(j).is_err()).take(wanted).collect();
        set.extend(extra);
        set.sort_unstable();
        Group { rows, set }
    }
}

impl CandidatePass {
    /// Labels of every row for `centroids` from the lists (distances upper bounds within the
    /// kernel's error bound); rows the lists cannot settle are searched in full.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn search<T: Scalar>(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        kept: &KeptRows,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<()> {
        let (x, norms, n) = (points.x, points.x_sq_norms, points.rows());
        let (k, d) = (centroids.rows(), x.cols());
        // A row whose own distance's bound lies below its bound on every other centroid keeps
        // its label unread (Hamerly's test); the others are searched.
        let (own, lower) = (&self.own, &self.lower);
        let sure: Vec<bool> = (own.par_iter().zip(lower.par_iter())).map(|(own, lower)| own < lower).collect();
        let (nearest, far, members, starts) = (&self.nearest, &self.far, &self.members, &self.starts);
        // Each run's rows to search, and its centroids (`Group::of`).
        let groups: Vec<Group> = (0..starts.len().saturating_sub(1))
            .into_par_iter()
            .map_init(
                || vec![usize::MAX; k],
                |marks, g| {
                    let run = &members[starts[g]..starts[g + 1]];
                    let rows: Vec<usize> = run.iter().copied().filter(|&i| !sure[i]).collect();
                    (!rows.is_empty()).then(|| Group::of(rows, nearest, far, k, marks, g))
                },
            )
            .flatten()
            .collect();
        let searched: Vec<Found<T>> = groups
            .par_iter()
            .map(|group| {
                let (rows, set) = (&group.rows[..], &group.set);
                // Whole rows copied at once (a flat map's collect grows and copies value by value).
                let mut values: Vec<T> = Vec::with_capacity(set.len() * d);
                set.iter().for_each(|&j| values.extend_from_slice(centroids.row(j as usize)));
                let subset = MatRef::new(&values, set.len(), d)?;
                let m = rows.len();
                let (mut found, mut upper, mut second) = (vec![0u32; m], vec![T::zero(); m], vec![T::zero(); m]);
                kernel.assign_top2_rows_labels(
                    x,
                    norms,
                    rows,
                    Some(kept),
                    subset,
                    &mut found,
                    &mut upper,
                    &mut second,
                )?;
                let found = found.iter().map(|&l| set[l as usize]).collect();
                Ok(Found { labels: found, upper, second })
            })
            .collect::<Result<_>>()?;
        if !keep_going() {
            return Err(crate::error::Error::Interrupted);
        }
        let slack = Slack::of(centroids, d);
        let (since, beyond) = (&self.since, &self.beyond);
        // A row keeps the nearest of its run's centroids where that lies below its bound less
        // the farthest move since the bound among the centroids outside the set (strictly:
        // every other centroid is farther, so ties cannot differ from a dense pass). Its bound
        // on every other centroid: the runner-up among the set, or that bound.
        let decided: Vec<Vec<Option<(f64, f64)>>> = (groups.par_iter().zip(&searched))
            .map(|(group, found)| {
                let mut loosen: Vec<(u32, f64)> = Vec::new();
                (group.rows.iter().enumerate())
                    .map(|(r, &i)| {
                        let at = since[i];
                        let moved = match loosen.iter().find(|(s, _)| *s == at) {
                            Some(&(_, moved)) => moved,
                            None => {
                                // A relative margin for the float64 sums of the moves.
                                let moved = self.moved_outside(at, &group.set) * (1.0 + 1e-9);
                                loosen.push((at, moved));
                                moved
                            }
                        };
                        let (own, outside) = (slack.raised(found.upper[r], norms[i]), beyond[i] - moved);
                        let runner_up = found.second[r].as_f64().max(0.0).sqrt();
                        (own < outside).then_some((own, runner_up.min(outside)))
                    })
                    .collect()
            })
            .collect();
        let mut failing = Vec::new();
        let mut measured = 0;
        for ((group, found), decided) in groups.iter().zip(&searched).zip(&decided) {
            measured += group.set.len() * group.rows.len();
            for (r, &i) in group.rows.iter().enumerate() {
                match decided[r] {
                    Some((own, lower)) => {
                        (labels[i], distances[i]) = (found.labels[r], found.upper[r]);
                        (self.own[i], self.lower[i]) = (own, lower);
                    }
                    None => failing.push(i),
                }
            }
        }
        // Rows left unread keep their label; their bound's square stands for the distance.
        let unread = sure.iter().filter(|&&sure| sure).count();
        (distances.par_iter_mut().zip(&self.own).zip(&sure))
            .filter(|(_, &sure)| sure)
            .for_each(|((distance, &own), _)| *distance = T::of_f64(own * own));
        failing.sort_unstable();
        let made_at = (self.paths.len() - 1) as u32;
        let step = kernel.rows_per_check(k, d).min(n).max(1);
        for_each_chunk(failing.len(), step, keep_going, |start, end| {
            let rows = &failing[start..end];
            let mut listed = ListedSearch::of(kernel, points, rows, kept, centroids)?;
            if !listed.given {
                // Not expected after lists were made: a search without them, and no bounds.
                let (found, upper, second) = (&mut listed.labels, &mut listed.upper, &mut listed.second);
                kernel.assign_top2_rows_labels(x, norms, rows, Some(kept), centroids, found, upper, second)?;
                listed.beyond.fill(T::zero());
                listed.second.fill(T::zero());
            }
            for (r, &i) in rows.iter().enumerate() {
                (labels[i], distances[i], self.since[i]) = (listed.labels[r], listed.upper[r], made_at);
                self.nearest[i * NEAREST..(i + 1) * NEAREST].copy_from_slice(listed.nearest(r));
                self.beyond[i] = listed.beyond[r].as_f64().max(0.0).sqrt();
                self.own[i] = slack.raised(listed.upper[r], norms[i]);
                self.lower[i] = listed.second[r].as_f64().max(0.0).sqrt();
            }
            Ok(())
        })?;
        log::debug!(
            "{unread} of {n} rows kept their label unread, {} settled among their run's centroids ({:.1} a row \
             searched), {} searched all centroids",
            n - unread - failing.len(),
            measured as f64 / (n - unread).max(1) as f64,
            failing.len()
        );
        if failing.len() as f64 > FAIL_SHARE * n as f64 {
            self.valid = false;
        }
        Ok(())
    }
}
