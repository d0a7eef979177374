"""Loads the native extension. Builds with the MLX kernel link libmlx: the copy of the
installed `mlx` wheels is loaded first, by path, so that the extension and `import mlx.core`
share one libmlx in the process whatever the import order or install layout."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys


def _libmlx_path() -> str | None:
    spec = importlib.util.find_spec("mlx")
    if spec is None or not spec.submodule_search_locations:
        return None
    name = "libmlx.dylib" if sys.platform == "darwin" else "libmlx.so"
    for folder in spec.submodule_search_locations:
        candidate = os.path.join(folder, "lib", name)
        if os.path.exists(candidate):
            return candidate
    return None


def load_native():
    path = _libmlx_path()
    if path is not None:
        try:
            ctypes.CDLL(path)
        except OSError:
            pass  # the import below says what is missing
    try:
        from . import _native
    except ImportError as exc:
        if "libmlx" in str(exc):
            raise ImportError(
                f"mlx_kmeans was built with the MLX kernel but libmlx could not be loaded ({exc}). "
                "Install the MLX wheels it was built against (pip install 'mlx==0.32.2' "
                "'mlx-cpu==0.32.2' on Linux), or rebuild CPU-only: "
                "MATURIN_PEP517_ARGS=--no-default-features pip install ."
            ) from exc
        raise
    return _native
