//! `mlx_kmeans._native`: the engine's native functions with the CPU kernel and the faiss
//! callback; the MLX kernel lives in the plugin `mlx_kmeans_mlx._kernel`, loaded only when it
//! is asked for.

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    mlx_kmeans::bindings::init_module(m)
}
