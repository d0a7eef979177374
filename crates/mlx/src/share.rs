//! The MLX array behind a NumPy view of it, shared with the MLX kernel instead of copied.
//!
//! `np.asarray(mlx_array)` is a view of the array's memory (its `base` is a memoryview of
//! the array). Python's `mlx` and this extension load the same libmlx, so the kernel can hold
//! a second reference to the very same `mlx::core::array` and compute on it in place: on a
//! GPU the data then never crosses to the host and back. MLX's Python binding (nanobind)
//! stores the C++ object inside the Python object; its position is read from nanobind's
//! instance header and accepted only when every check holds, and the shared array must
//! report the view's shape, dtype and data address. Anything else falls back to a copy.
//! The runtime switch `mlx_share` turns sharing off (`mlx_kmeans::options::MlxSwitches`).

use mlx_rs::{Array, Dtype};
use pyo3::prelude::*;
use pyo3::types::PyMemoryView;

/// The `mlx.core.array` that `view` (a C-contiguous `rows × cols` float32 NumPy array at
/// `data`) was made from, shared; `None` when `view` is not such a view.
pub fn shared_mlx(view: &Bound<'_, PyAny>, data: *const f32, rows: usize, cols: usize) -> Option<Array> {
    let base = view.getattr("base").ok()?;
    let owner = if base.is_instance_of::<PyMemoryView>() { base.getattr("obj").ok()? } else { base };
    let ty = owner.get_type();
    let name: String = ty.name().ok()?.extract().ok()?;
    let module: String = ty.module().ok()?.extract().ok()?;
    if name != "array" || module != "mlx.core" {
        return None;
    }
    // nanobind's instance header follows the object header: an i32 offset to the C++ object,
    // then flags whose low two bits are the state (2: ready) and bit 4 "internal" (the
    // object lives inside the Python object, at `offset`).
    let header = std::mem::size_of::<pyo3::ffi::PyObject>();
    let object = owner.as_ptr() as *const u8;
    // An `mlx.core.array` instance is at least `__basicsize__` bytes; that must cover the
    // nanobind header and the C++ object (checked before either is read).
    let basic_size: usize = ty.getattr("__basicsize__").ok()?.extract().ok()?;
    if basic_size < header + 8 {
        return None;
    }
    // SAFETY: within the instance's `basic_size` bytes (checked above).
    let (offset, flags) = unsafe { (*(object.add(header) as *const i32), *(object.add(header + 4) as *const u32)) };
    // `mlx::core::array` is one shared pointer: two words.
    let array_size = 2 * std::mem::size_of::<usize>();
    let offset = usize::try_from(offset).ok()?;
    let ready_and_internal = flags & 0b11 == 2 && flags & (1 << 4) != 0;
    if !ready_and_internal || offset < header + 8 || offset % 8 != 0 || offset + array_size > basic_size {
        return None;
    }
    let source = mlx_sys::mlx_array { ctx: object.wrapping_add(offset) as *mut std::ffi::c_void };
    // SAFETY: `source` points at the live `mlx::core::array` of `owner` (held by `view`);
    // `mlx_array_set` copies the shared pointer, so `shared` outlives `owner` safely.
    let shared = unsafe {
        let mut shared = mlx_sys::mlx_array_new();
        if mlx_sys::mlx_array_set(&mut shared, source) != 0 {
            mlx_sys::mlx_array_free(shared);
            return None;
        }
        Array::from_ptr(shared)
    };
    let same = shared.dtype() == Dtype::Float32
        && shared.shape() == [rows as i32, cols as i32]
        && unsafe { mlx_sys::mlx_array_data_float32(shared.as_ptr()) } == data;
    if !same {
        log::debug!(target: crate::LOG_TARGET, "the MLX array behind the data does not match its NumPy view; copying instead");
        return None;
    }
    log::debug!(target: crate::LOG_TARGET, "sharing the caller's MLX array ({rows}×{cols}) with the MLX kernel");
    Some(shared)
}
