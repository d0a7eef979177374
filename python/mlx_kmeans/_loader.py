"""The extension modules and how the MLX one is loaded.

- `mlx_kmeans._native` (this distribution, `mlx-kmeans`): the engine and its CPU kernel. It
  needs nothing but NumPy, so `import mlx_kmeans` works on every machine, MLX installed or not.
- `mlx_kmeans_mlx._kernel` (the plugin distribution `mlx-kmeans-mlx`): the same native
  functions with the MLX kernel. It is the one module that links libmlx, and it is imported
  only when the `mlx` backend is probed or asked for, after the plugin is checked to be of this
  package's version and the installed MLX to be the release it was built against (a libmlx of
  another release may fail to load or, worse, load and crash). The copy of libmlx in the
  installed `mlx` wheels is loaded first, by path, so that the plugin and `import mlx.core`
  share one libmlx in the process whatever the import order or install layout. Once loaded,
  the plugin runs every backend of the process (`_backend.engine_module`): one engine, one
  thread pool, one log bridge.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import importlib.util
import os
import sys

MLX_VERSION = "0.32.4"
"""The MLX release the plugin is built against; both pyproject.toml files pin the same one
(build requirement, dependencies, extras), and the plugin's `MLX_BUILT_AGAINST` reports what
its build really used."""

PLUGIN = "mlx-kmeans-mlx"
PLUGIN_MODULE = "mlx_kmeans_mlx._kernel"

# The distributions that make up an MLX install: the Python package and the library wheels
# (one of them ships lib/libmlx with the headers and CMake files).
MLX_DISTRIBUTIONS = ("mlx", "mlx-cpu", "mlx-cuda-13", "mlx-cuda-12", "mlx-metal")


def install_hint(platform: str | None = None) -> str:
    """What to install for the `mlx` backend on this platform."""
    platform = platform or sys.platform
    if platform == "darwin":
        return f"pip install 'mlx-kmeans[mlx]' (the MLX kernel plugin {PLUGIN} and mlx=={MLX_VERSION})"
    if platform.startswith("linux"):
        return (
            "pip install 'mlx-kmeans[cuda]' for NVIDIA GPUs (MLX's CUDA 13 build), or "
            "'mlx-kmeans[mlx]' for MLX's CPU build; from a checkout, add the plugin's folder to the "
            "same command: pip install '.[cuda]' ./crates/mlx"
        )
    return "MLX has no build for this platform"


def plugin_problem(installed: str | None, core: str) -> str | None:
    """Why the plugin cannot be loaded (`installed`: its distribution's version, None when it
    is not installed; `core`: this package's version), or None when it can."""
    if installed is None:
        return f"the MLX kernel plugin ({PLUGIN}) is not installed; {install_hint()}"
    if installed != core:
        return (
            f"the MLX kernel plugin {PLUGIN} {installed} is installed, but mlx-kmeans is {core}: "
            f"install {PLUGIN}=={core} (the same command installs both)"
        )
    return None


def installed_plugin() -> str | None:
    """The installed plugin's version; None when it is not installed. A plugin on the path
    without distribution metadata (a development build) counts as this package's version."""
    try:
        return importlib.metadata.version(PLUGIN)
    except importlib.metadata.PackageNotFoundError:
        pass
    if importlib.util.find_spec(PLUGIN_MODULE.split(".")[0]) is not None:
        from . import __version__

        return __version__
    return None


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
    """`(module, None)` with the plugin's extension module, or `(None, reason)` saying why the
    MLX kernel is unavailable and what to install. Nothing is loaded unless every check
    passes first."""
    from . import __version__

    problem = plugin_problem(installed_plugin(), __version__)
    libmlx = _libmlx_path()
    if problem is None:
        problem = mlx_problem(libmlx, installed_mlx())
    if problem is not None:
        return None, problem
    try:
        ctypes.CDLL(libmlx)
        module = importlib.import_module(PLUGIN_MODULE)
    except ModuleNotFoundError:
        return None, f"the MLX kernel plugin ({PLUGIN}) has no module {PLUGIN_MODULE}: reinstall it; {install_hint()}"
    except (ImportError, OSError) as exc:
        return None, f"the MLX kernel could not be loaded ({exc}); {install_hint()}"
    if module.__version__ != __version__:
        return None, f"{PLUGIN_MODULE} is version {module.__version__}, not {__version__}: install {PLUGIN}=={__version__}"
    if module.MLX_BUILT_AGAINST != MLX_VERSION:
        return None, (
            f"{PLUGIN_MODULE} was built against MLX {module.MLX_BUILT_AGAINST}, not {MLX_VERSION}: "
            "rebuild the plugin with the MLX its pyproject.toml pins"
        )
    return module, None


def loaded_plugin():
    """The plugin's module when it is already loaded (no loading here), else None."""
    if load_mlx.cache_info().currsize == 0:
        return None
    return load_mlx()[0]
