"""The extension modules and how the MLX one is loaded.

- `_native`: the engine and its CPU kernel. It needs nothing but NumPy, so `import mlx_kmeans`
  works on every machine, MLX installed or not.
- `_mlx`: the same native functions with the MLX kernel. It is the one module that links
  libmlx, and it is imported only when the `mlx` backend is probed or asked for, after the
  installed MLX is checked to be the release it was built against (a libmlx of another release
  may fail to load or, worse, load and crash). The copy of libmlx in the installed `mlx` wheels
  is loaded first, by path, so that `_mlx` and `import mlx.core` share one libmlx in the
  process whatever the import order or install layout.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import importlib.util
import os
import sys

MLX_VERSION = "0.32.4"
"""The MLX release `_mlx` is built against; pyproject.toml pins the same one (build
requirement and extras), and `_mlx.MLX_BUILT_AGAINST` reports what the build really used."""

# The distributions that make up an MLX install: the Python package and the library wheels
# (one of them ships lib/libmlx with the headers and CMake files).
MLX_DISTRIBUTIONS = ("mlx", "mlx-cpu", "mlx-cuda-13", "mlx-cuda-12", "mlx-metal")


def install_hint(platform: str | None = None) -> str:
    """What to install for the `mlx` backend on this platform."""
    platform = platform or sys.platform
    if platform == "darwin":
        return f"pip install 'mlx=={MLX_VERSION}'"
    if platform.startswith("linux"):
        return (
            "pip install 'mlx-kmeans[cuda]' for NVIDIA GPUs (MLX's CUDA 13 build), or "
            "'mlx-kmeans[mlx]' for MLX's CPU build"
        )
    return "MLX has no build for this platform"


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


def installed_mlx() -> dict[str, str]:
    """The installed MLX distributions and their versions."""
    versions = {}
    for name in MLX_DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def mlx_problem(libmlx: str | None, versions: dict[str, str], platform: str | None = None) -> str | None:
    """Why the MLX kernel cannot be loaded with this MLX install (`libmlx`: the path of the
    installed libmlx, `versions`: the installed MLX distributions), or None when it can."""
    hint = install_hint(platform)
    if libmlx is None:
        if not versions:
            return f"MLX is not installed; {hint}"
        found = ", ".join(f"{name} {version}" for name, version in sorted(versions.items()))
        return f"the installed MLX ({found}) has no libmlx: its library wheel is missing; {hint}"
    others = {name: version for name, version in versions.items() if version != MLX_VERSION}
    if others:
        found = ", ".join(f"{name} {version}" for name, version in sorted(others.items()))
        return (
            f"mlx_kmeans's MLX kernel was built against MLX {MLX_VERSION}, but {found} is installed; "
            f"install MLX {MLX_VERSION} ({hint}), or rebuild mlx-kmeans against the installed MLX"
        )
    return None


@functools.lru_cache(maxsize=1)
def load_mlx():
    """`(module, None)` with the `_mlx` extension module, or `(None, reason)` saying why the
    MLX kernel is unavailable and what to install."""
    libmlx = _libmlx_path()
    problem = mlx_problem(libmlx, installed_mlx())
    if problem is not None:
        return None, problem
    try:
        ctypes.CDLL(libmlx)
        from . import _mlx
    except ModuleNotFoundError:
        return None, (
            "this install of mlx-kmeans has no MLX kernel (mlx_kmeans._mlx was not built here; "
            "the build log says why)"
        )
    except (ImportError, OSError) as exc:
        return None, f"the MLX kernel could not be loaded ({exc}); {install_hint()}"
    if _mlx.MLX_BUILT_AGAINST != MLX_VERSION:
        return None, (
            f"mlx_kmeans._mlx was built against MLX {_mlx.MLX_BUILT_AGAINST}, not {MLX_VERSION}: "
            "rebuild mlx-kmeans with the MLX its pyproject.toml pins"
        )
    return _mlx, None
