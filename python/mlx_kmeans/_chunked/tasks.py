"""The tasks a fit over chunks runs on each chunk, and how their results combine. They are
module-level functions (workers import them by name), take `(chunk, weights, offset, shared,
state)` and return `(part, new_state)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .._backend import native
from .._validation import check_array, check_weights_fit_float32

def kernel(backend: str):
    """The extension module that runs `backend` and what its functions take for it."""
    from .._backend import engine_module, native_backend

    return engine_module(backend), native_backend(backend)


def checked_chunk(chunk, dtype) -> np.ndarray:
    """An array as the kernel takes it: C-contiguous and aligned, in the fit's float type
    (arrays unpickled on a worker may sit at an unaligned address)."""
    return np.require(chunk, dtype=dtype, requirements=["C", "A"])


def against(chunk, weights, centroids):
    """A chunk, its weights and the centroids it is compared with, as the kernel takes them
    (all in the centroids' float type)."""
    centroids = checked_chunk(centroids, centroids.dtype)
    X = checked_chunk(chunk, centroids.dtype)
    if weights is None:
        return X, None, centroids
    weights = np.asarray(weights)
    if weights.size:
        check_weights_fit_float32(float(np.max(weights)), centroids.dtype)
    return X, checked_chunk(weights, centroids.dtype), centroids


@dataclass
class Stats:
    """Per-feature count, mean and sum of squared deviations (merged by Chan's formula, which
    keeps the variance accurate where `E[x²] − E[x]²` would cancel), the largest magnitude,
    whether any chunk must compute in float64, and the total sample weight."""

    n: int
    mean: np.ndarray
    m2: np.ndarray
    top: float
    weight: float
    heaviest: float = 0.0  # the largest single weight


def stats_task(chunk, weights, offset, shared, state):
    """The first pass: checks the chunk as the in-memory fit checks its data (same errors),
    and its statistics."""
    owner = shared
    X = check_array(chunk, owner=owner)
    n = X.shape[0]
    _, _, top, mean, m2 = native().chunk_summary(X)
    weight, heaviest = float(n), 1.0
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (n,):
            raise ValueError(f"sample_weight has {w.shape} values for the {n} rows from row {offset}")
        if not np.isfinite(w).all():
            raise ValueError(f"Input sample_weight contains {'NaN' if np.isnan(w).any() else 'infinity'}.")
        if (w < 0).any():
            raise ValueError("Negative values in data passed to `sample_weight`")
        with np.errstate(over="ignore"):
            weight = float(w.sum())
        heaviest = float(w.max(initial=0.0))
    return Stats(n, mean, m2, top, weight, heaviest), None


def stats_and_task(chunk, weights, offset, shared, state):
    """The statistics pass riding along with another: `shared` is (owner, task, its shared)."""
    owner, task, inner = shared
    stats, _ = stats_task(chunk, weights, offset, owner, None)
    part, new_state = task(chunk, weights, offset, inner, state)
    return (stats, part), new_state


class CombineStatsAnd:
    """Combines `stats_and_task` results: the statistics, and the other task's parts by its
    own `combine` (a class, so that workers unpickle it by name)."""

    def __init__(self, combine):
        self.combine = combine

    def __call__(self, parts):
        return combine_stats([p[0] for p in parts]), self.combine([p[1] for p in parts])


def combine_stats(parts: Sequence[Stats]) -> Stats:
    total = parts[0]
    for part in parts[1:]:
        n = total.n + part.n
        delta = part.mean - total.mean
        mean = total.mean + delta * (part.n / n)
        m2 = total.m2 + part.m2 + delta**2 * (total.n * part.n / n)
        total = Stats(n, mean, m2, max(total.top, part.top), total.weight + part.weight, max(total.heaviest, part.heaviest))
    return total


@dataclass
class LloydParts:
    """A Lloyd iteration's partial results: per-cluster weighted sums (`k × d`, float64),
    per-cluster weights, the weighted inertia, the rows that searched every centroid and
    the rows whose label changed since the chunk's previous pass (all on its first)."""

    sums: np.ndarray
    weights: np.ndarray
    inertia: float
    searched: int
    changed: int


def changed_labels(labels: np.ndarray, state) -> int:
    """How many of `labels` differ from those the chunk kept from its previous pass."""
    if state is None:
        return len(labels)
    return int(np.count_nonzero(labels != state[0]))


def lloyd_task(chunk, weights, offset, shared, state):
    """A dense Lloyd pass. The state, kept with the chunk: its labels (a pass for empty
    clusters needs them, and the next pass counts the changes) and no bounds."""
    centroids, backend = shared
    X, w, centroids = against(chunk, weights, centroids)
    module, native = kernel(backend)
    labels, _, sums, cluster_weights, inertia = module.lloyd_partials(X, centroids, w, backend=native)
    return LloydParts(sums, cluster_weights, inertia, len(labels), changed_labels(labels, state)), (labels, None)


def bounded_task(chunk, weights, offset, shared, state):
    """A Lloyd pass with Hamerly's bounds kept per chunk (the state: labels and lower
    bounds): only rows the bounds cannot settle search every centroid (same labels). Without
    `shifts` (or bounds in the state) every row searches, which makes the bounds."""
    centroids, gaps, shifts, backend = shared
    X, w, centroids = against(chunk, weights, centroids)
    module, native = kernel(backend)
    resume = shifts is not None and state is not None and state[1] is not None
    labels, lower = state if resume else (None, None)
    new_labels, _, sums, cluster_weights, inertia, lower, searched = module.bounded_partials(
        X, centroids, checked_chunk(gaps, np.float64), labels, lower, checked_chunk(shifts, np.float64) if resume else None, w, backend=native
    )
    return LloydParts(sums, cluster_weights, inertia, searched, changed_labels(new_labels, state)), (new_labels, lower)


def combine_lloyd(parts: Sequence[LloydParts]) -> LloydParts:
    sums = parts[0].sums.copy()
    weights = parts[0].weights.copy()
    inertia, searched, changed = parts[0].inertia, parts[0].searched, parts[0].changed
    # Weights too large for float64 sums overflow here in the first pass, which then refuses them.
    with np.errstate(over="ignore", invalid="ignore"):
        for part in parts[1:]:
            sums += part.sums
            weights += part.weights
            inertia += part.inertia
            searched += part.searched
            changed += part.changed
    return LloydParts(sums, weights, inertia, searched, changed)


@dataclass
class Farthest:
    """Rows farthest from their centroid, farthest first (ties by lowest global row index):
    exact squared distances, global row indices, labels, weights and the rows."""

    distances: np.ndarray
    indices: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    rows: np.ndarray


def farthest_task(chunk, weights, offset, shared, state):
    """The chunk's `count` rows farthest from their centroid, by the labels its last Lloyd
    pass kept (`state`: labels and bounds), or where they were lost by assigning the rows to
    `centroids` again (the pass's own centroids: the same labels)."""
    centroids, count, backend = shared
    X, w, centroids = against(chunk, weights, centroids)
    if state is None:
        module, native_name = kernel(backend)
        labels, _, _ = module.assign(X, centroids, w, backend=native_name)
    else:
        labels = state[0]
    distances, rows = native().farthest_rows(X, centroids, labels, count, w)
    row_weights = np.ones(len(rows)) if w is None else w[rows].astype(np.float64)
    return Farthest(distances, rows + offset, labels[rows], row_weights, X[rows].copy()), None


def combine_farthest(parts: Sequence[Farthest]) -> Farthest:
    count = max(len(p.indices) for p in parts)
    merged = Farthest(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("distances", "indices", "labels", "weights", "rows")))
    order = np.lexsort((merged.indices, -merged.distances))[:count]
    return Farthest(*(getattr(merged, f)[order] for f in ("distances", "indices", "labels", "weights", "rows")))


def assign_task(chunk, weights, offset, shared, state):
    """Labels, distances and inertia on fixed centroids (the final pass)."""
    centroids, backend, keep_labels = shared
    X, w, centroids = against(chunk, weights, centroids)
    module, native = kernel(backend)
    labels, distances, inertia = module.assign(X, centroids, w, backend=native)
    return inertia, ((labels, distances) if keep_labels else None)


def sum_all(parts):
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total

