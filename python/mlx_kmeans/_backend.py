"""Which engine runs a fit. The auto order and the reasons a backend is unavailable are
reported by `backends()`; `backend=` and the MLX_KMEANS_BACKEND environment variable
override the automatic choice."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

logger = logging.getLogger("mlx_kmeans")

ENV_VAR = "MLX_KMEANS_BACKEND"
KNOWN = ("cpu", "mlx", "faiss")


@dataclass(frozen=True)
class Backend:
    """A backend as seen on this machine: whether it can run and, if not, why."""

    name: str
    available: bool
    reason: str


def _probe(name: str) -> Backend:
    if name == "cpu":
        return Backend("cpu", True, "pure-Rust engine (rayon + SIMD GEMM), always built in")
    if name == "mlx":
        return Backend("mlx", False, "this build of mlx_kmeans has no MLX kernel")
    return Backend("faiss", False, "this build of mlx_kmeans has no faiss kernel")


def backends() -> list[Backend]:
    """Every backend in the automatic order for this platform, available ones first in
    that order, each with the reason it is (or is not) usable here."""
    return [_probe(name) for name in ("faiss", "mlx", "cpu")]


def resolve(requested: str | None) -> str:
    """The backend that will run: `requested` unless it is "auto" (or None), in which case
    the environment variable, else the first available backend in the auto order."""
    if requested is None:
        requested = "auto"
    if not isinstance(requested, str):
        raise TypeError(f"backend must be a string; got {type(requested).__name__}")
    requested = requested.lower()
    if requested == "auto":
        from_env = os.environ.get(ENV_VAR, "").strip().lower()
        if from_env and from_env != "auto":
            logger.info("backend %r chosen by %s", from_env, ENV_VAR)
            return resolve(from_env)
        for candidate in backends():
            if candidate.available:
                logger.info("backend %r chosen automatically (%s)", candidate.name, candidate.reason)
                return candidate.name
            logger.info("backend %r skipped: %s", candidate.name, candidate.reason)
        raise RuntimeError("no k-means backend is available")  # unreachable: cpu always is
    if requested not in KNOWN:
        raise ValueError(f"unknown backend {requested!r}; expected 'auto' or one of {KNOWN}")
    probe = _probe(requested)
    if not probe.available:
        raise ValueError(f"backend {requested!r} is not available here: {probe.reason}")
    return requested
