//! Running engine code from Python: without the GIL, with panics caught, with a monitor
//! that checks for Ctrl-C and reports progress between iterations.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::{Error, Progress, Stage};

/// Runs `work` with the GIL released. `work` gets a monitor to hand to the engine; the
/// monitor re-attaches between iterations to check for signals and call `progress`.
pub fn detached<T: Send>(
    py: Python<'_>,
    progress: Option<Py<PyAny>>,
    work: impl FnOnce(&mut dyn FnMut(&Progress) -> bool) -> crate::Result<T> + Send,
) -> PyResult<T> {
    let mut pending: Option<PyErr> = None;
    let outcome = py.detach(|| {
        let mut monitor = |p: &Progress| -> bool {
            Python::attach(|py| {
                let result = py.check_signals().and_then(|_| match (&progress, p.stage) {
                    (Some(callback), Stage::Iteration) => {
                        callback.call1(py, (p.run, p.iteration, p.inertia, p.center_shift)).map(|_| ())
                    }
                    _ => Ok(()),
                });
                match result {
                    Ok(()) => true,
                    Err(err) => {
                        pending = Some(err);
                        false
                    }
                }
            })
        };
        catch_unwind(AssertUnwindSafe(|| work(&mut monitor)))
    });
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(Error::Interrupted)) => {
            Err(pending.unwrap_or_else(|| PyRuntimeError::new_err("fit interrupted")))
        }
        Ok(Err(Error::InvalidArgument(message))) => Err(PyValueError::new_err(message)),
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
