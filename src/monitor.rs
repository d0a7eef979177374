//! What a fit reports while it runs, and how the caller stops it: the monitor is asked
//! between iterations and between chunks of rows inside one pass over the data.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};

/// Which phase of a fit a [`Progress`] report comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Choosing initial centroids (k-means++ steps).
    Init,
    /// One of a mini-batch fit's initial centroid sets, scored on the validation rows
    /// (`run` is its index, `inertia` its validation inertia).
    Candidate,
    /// A Lloyd iteration or a mini-batch step.
    Iteration,
    /// Mini-batch: this many starved centres moved onto batch rows in step `iteration`
    /// (reported before that step's [`Stage::Iteration`]).
    Reassigned(usize),
    /// The run stopped at `iteration`, for this reason (`center_shift` as last reported).
    Converged(Convergence),
    /// Between chunks of rows inside one pass over the data (a chance to stop, nothing to report).
    Block,
}

/// Why a run stopped before its iteration limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convergence {
    /// No label changed in the last iteration.
    Strict,
    /// The squared centre shift fell to the tolerance.
    Tolerance,
    /// Mini-batch: the smoothed inertia stopped improving.
    NoImprovement,
}

impl Convergence {
    pub fn name(self) -> &'static str {
        match self {
            Self::Strict => "strict",
            Self::Tolerance => "tolerance",
            Self::NoImprovement => "no_improvement",
        }
    }
}

/// What the loop reports during a fit; the monitor returns `false` to stop it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub stage: Stage,
    /// 1-based iteration (or k-means++ step) number within the current run.
    pub iteration: usize,
    /// Which of the `n_init` runs this is (0-based).
    pub run: usize,
    /// Weighted inertia of the assignment made in this iteration (before the update).
    pub inertia: f64,
    /// Sum over centroids of the squared distance each one moved.
    pub center_shift: f64,
}

impl Progress {
    /// A report between chunks of rows: only a chance to stop.
    pub fn block(iteration: usize, run: usize) -> Self {
        Self { stage: Stage::Block, iteration, run, inertia: f64::NAN, center_shift: f64::NAN }
    }

    /// The run stopped at `iteration` for `reason`, with the last squared centre shift.
    pub fn converged(reason: Convergence, iteration: usize, run: usize, center_shift: f64) -> Self {
        Self { stage: Stage::Converged(reason), iteration, run, inertia: f64::NAN, center_shift }
    }
}

/// A callback between iterations: progress display, Ctrl-C checks. `false` stops the fit.
pub type Monitor<'a> = &'a mut dyn FnMut(&Progress) -> bool;

/// Asked between chunks of one pass: `false` stops it.
pub type KeepGoing<'a> = &'a mut dyn FnMut() -> bool;

/// Asks `monitor` about `progress`: `Err(Interrupted)` when it says stop.
pub fn report(monitor: Monitor<'_>, progress: Progress) -> Result<()> {
    if monitor(&progress) {
        Ok(())
    } else {
        Err(Error::Interrupted)
    }
}

/// Distance work (2·rows·k·d flops) between two interrupt checks within one pass over the
/// data: a fraction of a second on one core, so Ctrl-C is answered quickly on any size.
const FLOPS_PER_CHECK: usize = 1 << 35;

/// Rows per kernel call when a pass is split for interrupt checks (fixed by the shapes, never
/// by the thread count, so results stay reproducible): whole pieces of 64 rows, so that each
/// chunk starts where a kernel's kept rows start a tile (`Kernel::keep_rows`).
pub fn rows_per_check(k: usize, d: usize) -> usize {
    (FLOPS_PER_CHECK / (2 * k * d).max(1)).max(4096).next_multiple_of(64)
}

/// The one interruptible chunk loop: calls `work(start, end)` on consecutive runs of `step`
/// rows of `0..n`, asking `keep_going` between them.
pub fn for_each_chunk(
    n: usize,
    step: usize,
    keep_going: KeepGoing<'_>,
    mut work: impl FnMut(usize, usize) -> Result<()>,
) -> Result<()> {
    let step = step.max(1);
    for start in (0..n).step_by(step) {
        let end = (start + step).min(n);
        work(start, end)?;
        if end < n && !keep_going() {
            return Err(Error::Interrupted);
        }
    }
    Ok(())
}

/// Runs `tasks` at once on the engine's threads while the calling thread keeps asking
/// `monitor` (Python sees Ctrl-C only on its main thread): a `false` stops every task at its
/// next report. The tasks' own reports carry only that stop. Results come in task order.
/// Already on an engine thread (a forked child's pool), the tasks run one after another.
pub fn run_together<R: Send, F: FnOnce(Monitor<'_>) -> Result<R> + Send>(
    tasks: Vec<F>,
    monitor: Monitor<'_>,
) -> Result<Vec<R>> {
    if rayon::current_thread_index().is_some() || rayon::current_num_threads() < 2 || tasks.len() < 2 {
        return tasks.into_iter().map(|task| task(&mut *monitor)).collect();
    }
    let stop = AtomicBool::new(false);
    let slots: Vec<Mutex<Option<Result<R>>>> = tasks.iter().map(|_| Mutex::new(None)).collect();
    let running = (Mutex::new(tasks.len()), Condvar::new());
    rayon::in_place_scope(|scope| {
        for (task, slot) in tasks.into_iter().zip(&slots) {
            let (stop, running) = (&stop, &running);
            scope.spawn(move |_| {
                let outcome = task(&mut |_: &Progress| !stop.load(Ordering::Relaxed));
                *lock(slot) = Some(outcome);
                *lock(&running.0) -= 1;
                running.1.notify_all();
            });
        }
        loop {
            let left = lock(&running.0);
            let (left, _) = running.1.wait_timeout(left, Duration::from_millis(20)).unwrap_or_else(|e| e.into_inner());
            if *left == 0 {
                break;
            }
            drop(left);
            if !stop.load(Ordering::Relaxed) && !monitor(&Progress::block(0, 0)) {
                stop.store(true, Ordering::Relaxed);
            }
        }
    });
    slots.into_iter().map(|slot| slot.into_inner().unwrap_or_else(|e| e.into_inner()).expect("each task ran")).collect()
}

fn lock<V>(mutex: &Mutex<V>) -> std::sync::MutexGuard<'_, V> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
