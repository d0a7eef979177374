//! Running engine code from Python: without the GIL, with a monitor that checks for Ctrl-C
//! and reports progress between iterations, and with every failure mapped to an exception.
//! A Python exception raised in a callback (progress, signal handler, a backend's assign
//! function) is kept in a [`PendingError`] and re-raised as it is when the engine stops.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, OnceLock};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use super::threads::with_engine_threads;
use crate::monitor::Monitor;
use crate::{Error, Progress, Stage};

/// Resets the log bridge's cached logger levels (set when the module is loaded).
pub static LOG_CACHE: OnceLock<pyo3_log::ResetHandle> = OnceLock::new();

/// The effective level of the `mlx_kmeans` logger when the cache was last reset.
static LOG_LEVEL: AtomicI64 = AtomicI64::new(-1);

/// Resets the cached levels when the `mlx_kmeans` logger's level has changed since the last
/// call, so that records below the level never run Python code during a fit (where a
/// pending Ctrl-C would be raised inside the log bridge and lost), yet a level set between
/// calls takes effect at once.
pub fn refresh_log_levels(py: Python<'_>) -> PyResult<()> {
    let Some(cache) = LOG_CACHE.get() else { return Ok(()) };
    let logger = py.import("logging")?.call_method1("getLogger", ("mlx_kmeans",))?;
    let level: i64 = logger.call_method0("getEffectiveLevel")?.extract()?;
    if LOG_LEVEL.swap(level, Ordering::Relaxed) != level {
        cache.reset();
    }
    Ok(())
}

/// The first Python exception raised by a callback during one engine call.
#[derive(Default)]
pub struct PendingError(Mutex<Option<PyErr>>);

impl PendingError {
    /// Keeps `err` unless an earlier exception is already kept (the first one is the cause).
    pub fn set(&self, err: PyErr) {
        let mut slot = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_none() {
            *slot = Some(err);
        }
    }

    fn take(&self) -> Option<PyErr> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }

    /// Runs Python code `f` for engine code that has released the GIL; `None` when it raised
    /// (the exception is kept here). An exception already set when it attaches, left by
    /// Python code run outside such a call (the log bridge restores one raised while a record
    /// is forwarded, e.g. Ctrl-C inside `logging`), is kept instead of running `f`: it must
    /// end the fit as it is, not surface inside unrelated code as a `SystemError`.
    pub fn call<R>(&self, f: impl FnOnce(Python<'_>) -> PyResult<R>) -> Option<R> {
        Python::attach(|py| {
            let outcome = match PyErr::take(py) {
                Some(stray) => Err(stray),
                None => f(py),
            };
            outcome.map_err(|err| self.set(err)).ok()
        })
    }
}

/// Runs `work` with the GIL released. `work` gets the call's [`PendingError`] (for kernels
/// that call back into Python) and a monitor to hand to the engine; the monitor re-attaches
/// between iterations to check for signals and call `progress`.
pub fn detached<T: Send>(
    py: Python<'_>,
    progress: Option<Py<PyAny>>,
    work: impl FnOnce(&PendingError, Monitor<'_>) -> crate::Result<T> + Send,
) -> PyResult<T> {
    let pending = PendingError::default();
    let outcome = py.detach(|| {
        let mut monitor = |p: &Progress| -> bool {
            pending
                .call(|py| {
                    py.check_signals()?;
                    // A reassignment's count rides in the value slot.
                    let (event, value) = match p.stage {
                        Stage::Iteration => ("iteration", p.inertia),
                        Stage::Candidate => ("init", p.inertia),
                        Stage::Reassigned(centres) => ("reassign", centres as f64),
                        Stage::Converged(reason) => (reason.name(), p.inertia),
                        Stage::Init | Stage::Block => return Ok(()),
                    };
                    match &progress {
                        Some(callback) => {
                            callback.call1(py, (p.run, p.iteration, value, p.center_shift, event)).map(|_| ())
                        }
                        None => Ok(()),
                    }
                })
                .is_some()
        };
        // A last guard: engine code reports failures as errors, but a bug must not abort
        // the interpreter.
        catch_unwind(AssertUnwindSafe(|| with_engine_threads(|| work(&pending, &mut monitor))))
    });
    // An exception left set by Python code run outside the monitor (e.g. Ctrl-C raised inside
    // a forwarded log record) ends the call with that exception.
    if let Some(err) = PyErr::take(py) {
        pending.set(err);
        if matches!(outcome, Ok(Ok(_))) {
            return Err(pending.take().expect("just set"));
        }
    }
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(Error::Interrupted | Error::Callback)) => {
            Err(pending.take().unwrap_or_else(|| PyRuntimeError::new_err("the fit was stopped by a callback")))
        }
        Ok(Err(Error::InvalidArgument(message))) => Err(PyValueError::new_err(message)),
        Ok(Err(error @ Error::Backend(_))) => Err(PyRuntimeError::new_err(error.to_string())),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(PyRuntimeError::new_err(format!("internal error in the k-means engine: {message}")))
        }
    }
}
