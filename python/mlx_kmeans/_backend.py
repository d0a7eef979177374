"""Which engine runs a fit.

The automatic order (documented, and reported by `backends()` with reasons):
- macOS: `mlx` (Metal GPU) → `cpu`. faiss is never used on macOS (with MLX or NumPy it brings
  a second OpenMP runtime, which segfaults); asking for it there is an error.
- Linux / Windows: `faiss` → `mlx` → `cpu`, where faiss and MLX are chosen automatically only
  on a GPU: a faiss GPU build that sees a GPU, MLX when it reports one (CUDA). On a CPU, both
  are slower than the `cpu` backend: faiss-cpu as our assignment kernel (same init, same
  iterations: 10k×128 k=500 0.42–0.47 s against 0.25 s on 2 cores) and MLX's CPU path, which
  uses reference BLAS (about 10× slower). Both still run when asked for by name.
- faiss and MLX compute in float32: for float64 data the automatic choice moves on to `cpu`;
  an explicit request converts the data to float32 once.
`backend=` and the MLX_KMEANS_BACKEND environment variable override the automatic choice;
every choice and every skipped candidate is logged (logger "mlx_kmeans") with its reason.
"""

from __future__ import annotations

import functools
import logging
import sys
from dataclasses import dataclass

import numpy as np

from . import _native
from ._loader import load_mlx, loaded_plugin
from ._options import BACKEND as ENV_VAR
from ._options import current, synced

logger = logging.getLogger("mlx_kmeans")

KNOWN = ("cpu", "mlx", "faiss")
FLOAT32_ONLY = ("mlx", "faiss")


@dataclass(frozen=True)
class Backend:
    """A backend as seen on this machine."""

    name: str
    available: bool
    """Whether it can run here (when asked for by name)."""
    reason: str
    """Why it is (or is not) usable, and what it runs on."""
    auto: bool = False
    """Whether the automatic choice may pick it here."""
    gpu: bool = False
    """Whether it computes on a GPU here."""
    kernels: tuple[str, ...] = ()
    """The custom device kernels its fits run here beside the library's own operations,
    each as "name (dialect)": on an Apple GPU the Metal kernels, once they passed their
    first-use check."""


def _platform(platform: str | None) -> str:
    platform = platform or sys.platform
    return "darwin" if platform == "darwin" else ("windows" if platform.startswith("win") else "linux")


@functools.lru_cache(maxsize=1)
def _mlx_info():
    """`(loads, runs, gpu, description)` of the MLX kernel: whether its module loads (else
    the description says why not and what to install), whether MLX makes a device, and
    whether that device is a GPU."""
    module, problem = load_mlx()
    if module is None:
        return False, False, False, problem
    runs, gpu, description = synced(module).mlx_info()
    return True, runs, gpu, description


# How the cpu backend's float32 distances run, by `_native.cpu_kernel()`.
_CPU_KERNELS = {
    "amx": "AMX bfloat16 tiles",
    "bf16": "AVX512-BF16 dot products",
    "f32": "AVX-512 float32",
    "gemm": "SIMD GEMM",
}


def _probe_cpu(platform: str) -> Backend:
    kernel = _CPU_KERNELS[synced(_native).cpu_kernel()]
    return Backend("cpu", True, f"pure-Rust engine (rayon threads, {kernel}, labels exact), always built in", auto=True)


def _shared_kernels(gpu: bool) -> tuple[tuple[str, ...], str]:
    """The shared-source kernels (Metal on an Apple GPU) that MLX fits run here (`gpu`: MLX's
    device is a GPU), each as "name (dialect)", and a note on them for the backend's reason
    ("" where none applies)."""
    plugin = loaded_plugin()
    if plugin is None:
        return (), ""
    dialect, names, active, reason = synced(plugin).shared_kernels(gpu)
    if dialect is None:
        return (), ""
    if active:
        return tuple(f"{name} ({dialect})" for name in names), f"; {dialect} kernels active ({reason})"
    return (), f"; {dialect} kernels off, MLX's own operations run ({reason})"


def _probe_mlx(platform: str) -> Backend:
    loads, runs, gpu, description = _mlx_info()
    if not (loads and runs):
        return Backend("mlx", False, description)
    kernels, note = _shared_kernels(gpu)
    if gpu:
        return Backend("mlx", True, f"MLX on its GPU device ({description}){note}", auto=True, gpu=True, kernels=kernels)
    return Backend(
        "mlx",
        True,
        f"MLX reports no GPU ({description}); its CPU path uses reference BLAS, about 10x "
        f"slower than the cpu backend, so it runs only when asked for{note}",
        auto=False,
        kernels=kernels,
    )


def _probe_faiss(platform: str) -> Backend:
    if platform == "darwin":
        return Backend(
            "faiss",
            False,
            "never used on macOS: faiss brings a second OpenMP runtime, which segfaults there",
        )
    try:
        import faiss
    except Exception as exc:  # not installed, or a broken install
        return Backend("faiss", False, f"faiss does not import ({type(exc).__name__}: {exc})")
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    build = f"GPU build, {gpus} GPU(s)" if gpus else "CPU build"
    reason = f"faiss {getattr(faiss, '__version__', '')} {build}: flat L2 search in our loop"
    if not gpus:
        reason += "; on a CPU it is slower than the cpu backend, so it runs only when asked for"
    return Backend("faiss", True, reason, auto=gpus > 0, gpu=gpus > 0)


PROBES = {"cpu": _probe_cpu, "mlx": _probe_mlx, "faiss": _probe_faiss}


def auto_order(platform: str | None = None) -> tuple[str, ...]:
    """The documented automatic order for a platform."""
    return ("mlx", "cpu") if _platform(platform) == "darwin" else ("faiss", "mlx", "cpu")


def backends(platform: str | None = None) -> list[Backend]:
    """Every backend, in the automatic order for this platform (faiss last, unavailable, on
    macOS), each with the reason it is or is not usable here."""
    platform = _platform(platform)
    order = auto_order(platform)
    names = list(order) + [n for n in KNOWN if n not in order]
    return [PROBES[name](platform) for name in names]


def check_name(requested, source: str = "backend") -> str:
    """The normalised backend name ("auto" for None); TypeError/ValueError for anything else
    than "auto" or a known backend, naming where the value came from (`source`). Probes
    nothing."""
    if requested is None:
        return "auto"
    if not isinstance(requested, str):
        raise TypeError(f"{source} must be a string; got {type(requested).__name__}")
    requested = requested.strip().lower()
    if requested != "auto" and requested not in KNOWN:
        raise ValueError(f"unknown backend {requested!r} in {source}; expected 'auto' or one of {KNOWN}")
    return requested


def resolve(requested: str | None, dtype=np.float32, platform: str | None = None) -> str:
    """The backend that runs: `requested` unless it is "auto" (or None); then the environment
    variable, else the first backend of the automatic order that is available, allowed to be
    chosen automatically and able to compute in `dtype`, one on a GPU before any other."""
    requested = check_name(requested)
    platform = _platform(platform)
    if requested == "auto":
        from_env = current().backend
        if from_env and from_env != "auto":
            from_env = check_name(from_env, f"the environment variable {ENV_VAR}")
            logger.info("backend %r chosen by %s", from_env, ENV_VAR)
            return resolve(from_env, dtype, platform)
        eligible = []
        for name in auto_order(platform):
            candidate = PROBES[name](platform)
            if not candidate.available:
                logger.info("backend %r skipped: %s", name, candidate.reason)
            elif not candidate.auto:
                logger.info("backend %r skipped: %s", name, candidate.reason)
            elif name in FLOAT32_ONLY and np.dtype(dtype) != np.float32:
                logger.info("backend %r skipped: it computes in float32 and the data is %s", name, np.dtype(dtype))
            else:
                eligible.append(candidate)
        if eligible:
            chosen = next((c for c in eligible if c.gpu), eligible[0])
            for other in eligible[: eligible.index(chosen)]:
                logger.info("backend %r passed over: %r runs on a GPU", other.name, chosen.name)
            logger.info("backend %r chosen automatically: %s", chosen.name, chosen.reason)
            return chosen.name
        raise RuntimeError("no k-means backend is available")  # unreachable: cpu always is
    probe = PROBES[requested](platform)
    if not probe.available:
        raise ValueError(f"backend {requested!r} is not available here: {probe.reason}")
    logger.info("backend %r requested: %s", requested, probe.reason)
    return requested


def _faiss_assign(x: np.ndarray, centroids: np.ndarray):
    """The two nearest centroids of each row, by a faiss flat L2 search (on all GPUs when
    faiss sees any): `(n, 2)` squared distances and labels (one column for one centroid).
    The engine decides rows whose two distances are too close for float32 again exactly."""
    import faiss

    index = faiss.IndexFlatL2(x.shape[1])
    if hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    return index.search(np.ascontiguousarray(x, dtype=np.float32), min(2, centroids.shape[0]))


def native_backend(name: str):
    """What the native functions take for a backend: a kernel name or an assign callable."""
    return _faiss_assign if name == "faiss" else name


def native():
    """The extension module for the native functions that belong to no backend (input
    summaries, Arrow reading, sparse kernels): the MLX plugin once it is loaded, else
    `_native`, so that one engine serves the process."""
    return synced(loaded_plugin() or _native)


def engine_module(name: str):
    """The extension module whose native functions run a backend: the MLX plugin (which links
    libmlx) for `mlx`, and for every backend once it is loaded (one engine, one thread pool and
    one log bridge in the process); `_native` before that."""
    if name != "mlx":
        return native()
    module, problem = load_mlx()
    if module is None:
        raise ValueError(f"backend 'mlx' is not available here: {problem}")
    return synced(module)


def compute_dtype(name: str, dtype) -> np.dtype:
    """The dtype a backend computes in for data of `dtype`."""
    return np.dtype(np.float32) if name in FLOAT32_ONLY else np.dtype(dtype)


def prepare(X: np.ndarray, sample_weight, requested):
    """For checked data X: the backend that runs, X in that backend's compute dtype (a copy
    only when it differs) and the checked sample weights: (X, weights, backend)."""
    from ._validation import check_sample_weight, outside_float32_range

    backend = resolve(requested, X.dtype)
    if backend in FLOAT32_ONLY and X.dtype != np.float32 and outside_float32_range(X):
        raise ValueError(
            f"backend {backend!r} computes in float32, but X has magnitudes beyond the float32-safe "
            "range for squared distances; use backend='cpu' (which computes in float64 here)"
        )
    X = X.astype(compute_dtype(backend, X.dtype), copy=False)
    return X, check_sample_weight(sample_weight, X), backend
