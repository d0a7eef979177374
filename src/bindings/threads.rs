//! Where engine threads come from, so that a process forked after a fit still works.
//!
//! A fork copies only the calling thread: in a child forked after a fit, rayon's global pool
//! still looks alive but its workers are gone, and work handed to them would wait forever
//! (Dask, joblib and multiprocessing's 'fork' start method all fork). The process that loaded
//! the module uses the global pool; a forked child builds a pool of its own on first use
//! (once per process) and runs engine work in it.

use std::sync::{Arc, Mutex, OnceLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::error::{Error, Result};

/// The process that loaded the module.
static LOADED_IN: OnceLock<u32> = OnceLock::new();

/// A forked child's pool, with the child's process id.
static CHILD_POOL: Mutex<Option<(u32, Arc<ThreadPool>)>> = Mutex::new(None);

/// Records the loading process (called when the module is initialised).
pub fn record_loading_process() {
    LOADED_IN.get_or_init(std::process::id);
}

/// Runs `work` where rayon's parallel iterators find live workers: on the calling thread with
/// the global pool in the loading process, inside a pool of its own in a forked child.
pub fn with_engine_threads<R: Send>(work: impl FnOnce() -> Result<R> + Send) -> Result<R> {
    let pid = std::process::id();
    if LOADED_IN.get().is_none_or(|&loaded| loaded == pid) {
        return work();
    }
    child_pool(pid)?.install(work)
}

fn child_pool(pid: u32) -> Result<Arc<ThreadPool>> {
    let mut slot = CHILD_POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((owner, pool)) = slot.as_ref() {
        if *owner == pid {
            return Ok(pool.clone());
        }
    }
    let pool = ThreadPoolBuilder::new()
        .thread_name(|i| format!("mlx-kmeans-{i}"))
        .build()
        .map_err(|e| Error::Backend(format!("cannot start engine threads in this forked process: {e}")))?;
    let pool = Arc::new(pool);
    // A pool inherited from a parent that was itself a forked child has no threads left to
    // stop: it is forgotten, not dropped.
    if let Some((_, inherited)) = slot.replace((pid, pool.clone())) {
        std::mem::forget(inherited);
    }
    Ok(pool)
}
