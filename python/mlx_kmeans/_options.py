"""The runtime switches: the one place that reads the environment. Every `MLX_KMEANS_*`
variable is read here when a native call begins (`synced`, through `_backend.native()` and
`engine_module()`) and handed to the engine explicitly (`configure`), which reads nothing from
the environment itself; README's "Runtime switches" lists them. A value outside those listed
is a `ValueError` naming the variable.

Only `MLX_KMEANS_BACKEND` is for users; the others choose among implementations that give the
same results, for the tests and the benchmarks that compare them.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Optional

BACKEND = "MLX_KMEANS_BACKEND"


@dataclass(frozen=True)
class Options:
    backend: str  # "" when unset: the automatic choice
    cpu_dots: Optional[str]
    cpu_bounds: Optional[str]
    seeding_prune: bool
    seeding_screen: Optional[bool]
    mlx_cuda_kernels: bool
    mlx_fused: Optional[bool]
    mlx_products: Optional[int]
    mlx_share: bool
    mlx_device_bytes: Optional[int]
    mlx_ahead: Optional[bool]
    mlx_pairs: Optional[bool]
    mlx_shared: Optional[str]
    mlx_split: bool

    def engine(self) -> dict:
        """The switches the engine takes (`configure`): all but the backend's name."""
        values = asdict(self)
        del values["backend"]
        return values


def _value(name: str) -> str:
    return os.environ.get(name, "").strip().lower()


def _choice(name: str, allowed: tuple) -> Optional[str]:
    value = _value(name)
    if not value:
        return None
    if value not in allowed:
        raise ValueError(f"the environment variable {name} must be one of {', '.join(allowed)} (or unset); got {value!r}")
    return value


def _forced(name: str) -> Optional[bool]:
    """`1` forces a choice on, `0` off; unset leaves it to the engine."""
    value = _choice(name, ("1", "0"))
    return None if value is None else value == "1"


def _products(name: str) -> Optional[int]:
    """`1` or `3` float16 products per distance in the fused kernel; unset leaves it to the engine."""
    value = _choice(name, ("1", "3"))
    return None if value is None else int(value)


def _count(name: str) -> Optional[int]:
    value = _value(name)
    if not value:
        return None
    if not value.isdigit():
        raise ValueError(f"the environment variable {name} must be a whole number of bytes (or unset); got {value!r}")
    return int(value)


def current() -> Options:
    """The switches as the environment sets them now."""
    shared = _choice("MLX_KMEANS_MLX_SHARED", ("metal", "cuda", "0", "off"))
    return Options(
        backend=_value(BACKEND),
        cpu_dots=_choice("MLX_KMEANS_CPU_DOTS", ("amx", "bf16", "f32", "gemm")),
        cpu_bounds=_choice("MLX_KMEANS_CPU_BOUNDS", ("hamerly", "grouped", "candidates")),
        seeding_prune=_forced("MLX_KMEANS_SEEDING_PRUNE") is not False,
        seeding_screen=_forced("MLX_KMEANS_SEEDING_SCREEN"),
        mlx_cuda_kernels=_forced("MLX_KMEANS_MLX_CUDA_KERNELS") is not False,
        mlx_fused=_forced("MLX_KMEANS_MLX_FUSED"),
        mlx_products=_products("MLX_KMEANS_MLX_PRODUCTS"),
        mlx_share=_forced("MLX_KMEANS_MLX_SHARE") is not False,
        mlx_device_bytes=_count("MLX_KMEANS_MLX_DEVICE_BYTES"),
        mlx_ahead=_forced("MLX_KMEANS_MLX_AHEAD"),
        mlx_pairs=_forced("MLX_KMEANS_MLX_PAIRS"),
        mlx_shared="off" if shared == "0" else shared,
        mlx_split=_forced("MLX_KMEANS_MLX_SPLIT") is True,
    )


# What each extension module was last given, by module name.
_given: dict = {}


def synced(module):
    """`module` (an extension module of the engine) with the switches of this moment."""
    switches = current().engine()
    if _given.get(module.__name__) != switches:
        module.configure(switches)
        _given[module.__name__] = switches
    return module
