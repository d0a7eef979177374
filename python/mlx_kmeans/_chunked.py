"""Lloyd's k-means over data held in chunks: partitions of a Dask array on a cluster
(`mlx_kmeans.dask`), or a file larger than memory read piece by piece (`_stream`).

The data is never gathered. Each pass runs a task on every chunk where the chunk is (the
native kernel: assignment, per-cluster weighted sums and weights, inertia) and combines the
small per-chunk results; only centroids and those `k × d` partial sums move. The loop keeps
the rules of the engine's own (`src/lloyd.rs`): scikit-learn's `tol` on the squared centre
shift, relative to the mean feature variance; strict convergence when the labels no longer
change (then the centroids do not move either, which is how it is detected here without
keeping labels between passes); empty clusters take the farthest rows, as
`src/update.rs` does; `n_init` keeps the lowest inertia. Given the same initial centroids it
takes the same steps as the in-memory fit.

A source of chunks implements `map_reduce` (run a task on each chunk, combine the results in
chunk order; optionally keep a per-chunk state for the next pass) and `take_rows` (the rows
at given global indices).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Sequence

import numpy as np

from . import _native
from ._validation import FLOAT32_SAFE_RANGE, check_array

logger = logging.getLogger("mlx_kmeans")

__all__ = ["ChunkSource", "ChunkedFit", "fit_chunked", "INIT_METHODS"]

INIT_METHODS = ("k-means||", "k-means++", "random")


class ChunkSource(Protocol):
    """Data in row chunks, wherever they live."""

    n_rows: int
    n_features: int

    def map_reduce(self, task: Callable, combine: Callable, shared: Any, states: Optional[list] = None, keep_states: bool = False):
        """`task(chunk, weights, offset, shared, state) -> (part, new_state)` on every chunk
        (`chunk`: the checked C-contiguous float matrix; `offset`: its first global row);
        returns `(combine(parts), new_states)`, parts combined in chunk order. `new_states`
        is None unless `keep_states`."""

    def take_rows(self, indices: np.ndarray, dtype) -> tuple:
        """The rows at sorted global `indices`, in that order, in `dtype`, and their sample
        weights (float64; ones when unweighted)."""


# -- per-chunk tasks: module-level functions, so that workers import them ----------------------


def kernel(backend: str):
    """The extension module that runs `backend` and what its functions take for it."""
    from ._backend import engine_module, native_backend

    return engine_module(backend), native_backend(backend)


def checked_chunk(chunk, dtype) -> np.ndarray:
    """An array as the kernel takes it: C-contiguous and aligned, in the fit's float type
    (arrays unpickled on a worker may sit at an unaligned address)."""
    return np.require(chunk, dtype=dtype, requirements=["C", "A"])


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


def stats_task(chunk, weights, offset, shared, state):
    """The first pass: checks the chunk as the in-memory fit checks its data (same errors),
    and its statistics."""
    owner = shared
    X = check_array(chunk, owner=owner)
    n = X.shape[0]
    _, _, top, mean, m2 = _native.chunk_summary(X)
    weight = float(n)
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (n,):
            raise ValueError(f"sample_weight has {w.shape} values for the {n} rows from row {offset}")
        if not np.isfinite(w).all():
            raise ValueError(f"Input sample_weight contains {'NaN' if np.isnan(w).any() else 'infinity'}.")
        if (w < 0).any():
            raise ValueError("Negative values in data passed to `sample_weight`")
        weight = float(w.sum())
    return Stats(n, mean, m2, top, weight), None


def combine_stats(parts: Sequence[Stats]) -> Stats:
    total = parts[0]
    for part in parts[1:]:
        n = total.n + part.n
        delta = part.mean - total.mean
        mean = total.mean + delta * (part.n / n)
        m2 = total.m2 + part.m2 + delta**2 * (total.n * part.n / n)
        total = Stats(n, mean, m2, max(total.top, part.top), total.weight + part.weight)
    return total


@dataclass
class LloydParts:
    """A Lloyd iteration's partial results: per-cluster weighted sums (`k × d`, float64),
    per-cluster weights and the weighted inertia."""

    sums: np.ndarray
    weights: np.ndarray
    inertia: float


def lloyd_task(chunk, weights, offset, shared, state):
    centroids, backend = shared
    centroids = checked_chunk(centroids, centroids.dtype)
    X = checked_chunk(chunk, centroids.dtype)
    w = None if weights is None else checked_chunk(weights, centroids.dtype)
    module, native = kernel(backend)
    _, _, sums, cluster_weights, inertia = module.lloyd_partials(X, centroids, w, backend=native)
    return LloydParts(sums, cluster_weights, inertia), None


def combine_lloyd(parts: Sequence[LloydParts]) -> LloydParts:
    sums = parts[0].sums.copy()
    weights = parts[0].weights.copy()
    inertia = parts[0].inertia
    for part in parts[1:]:
        sums += part.sums
        weights += part.weights
        inertia += part.inertia
    return LloydParts(sums, weights, inertia)


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
    centroids, count, backend = shared
    centroids = checked_chunk(centroids, centroids.dtype)
    X = checked_chunk(chunk, centroids.dtype)
    w = None if weights is None else checked_chunk(weights, centroids.dtype)
    module, native = kernel(backend)
    labels, _, _ = module.assign(X, centroids, w, backend=native)
    distances, rows = _native.farthest_rows(X, centroids, labels, count, w)
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
    centroids = checked_chunk(centroids, centroids.dtype)
    X = checked_chunk(chunk, centroids.dtype)
    w = None if weights is None else checked_chunk(weights, centroids.dtype)
    module, native = kernel(backend)
    labels, distances, inertia = module.assign(X, centroids, w, backend=native)
    return inertia, ((labels, distances) if keep_labels else None)


def sum_all(parts):
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def sample_keys_task(chunk, weights, offset, shared, state):
    """Weighted sampling without replacement, one chunk at a time (Efraimidis–Spirakis):
    each positive-weight row draws the key `log(u) / w`; the rows with the largest keys over
    all chunks are the sample. Returns this chunk's best `count` (keys, global indices)."""
    count, seed, weighted = shared
    n = chunk.shape[0]
    rng = np.random.default_rng([seed, offset])
    u = rng.random(n)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if not weighted:
        w = (w > 0).astype(np.float64)
    with np.errstate(divide="ignore"):
        keys = np.where(w > 0, np.log(u) / np.where(w > 0, w, 1.0), -np.inf)
    best = np.argsort(-keys, kind="stable")[:count]
    best = best[np.isfinite(keys[best])]
    return (keys[best], best + offset), None


def combine_keys(parts):
    keys = np.concatenate([p[0] for p in parts])
    indices = np.concatenate([p[1] for p in parts])
    return keys, indices


def rows_task(chunk, weights, offset, shared, state):
    """This chunk's rows among the sorted global `indices`: (indices, rows, weights)."""
    indices, dtype = shared
    lo, hi = np.searchsorted(indices, [offset, offset + chunk.shape[0]])
    local = indices[lo:hi] - offset
    X = checked_chunk(chunk, dtype)
    w = np.ones(len(local)) if weights is None else np.asarray(weights, dtype=np.float64)[local]
    return (local + offset, X[local].copy(), w), None


def combine_rows(parts):
    """Rows gathered from chunks, in global row order whatever order the chunks came in."""
    indices = np.concatenate([p[0] for p in parts])
    order = np.argsort(indices, kind="stable")
    return indices[order], np.concatenate([p[1] for p in parts])[order], np.concatenate([p[2] for p in parts])[order]


def gather_rows(source, indices, dtype):
    """The rows at sorted global `indices` and their weights, by `rows_task`."""
    (_, rows, weights), _ = source.map_reduce(rows_task, combine_rows, (np.asarray(indices), np.dtype(dtype)))
    return rows, weights


def parallel_cost_task(chunk, weights, offset, shared, state):
    """k-means‖: each row's squared distance to the nearest candidate so far (the state),
    updated with the newest candidates; returns the weighted cost."""
    candidates, backend = shared
    candidates = checked_chunk(candidates, candidates.dtype)
    X = checked_chunk(chunk, candidates.dtype)
    module, native = kernel(backend)
    _, distances, _ = module.assign(X, candidates, backend=native)
    distances = distances.astype(np.float64)
    nearest = distances if state is None else np.minimum(state, distances)
    w = 1.0 if weights is None else np.asarray(weights, dtype=np.float64)
    return float(np.sum(w * nearest)), nearest


def parallel_sample_task(chunk, weights, offset, shared, state):
    """k-means‖: keeps each row with probability `min(1, ℓ · w · d² / cost)`."""
    factor, cost, seed, dtype = shared
    rng = np.random.default_rng([seed, offset])
    w = 1.0 if weights is None else np.asarray(weights, dtype=np.float64)
    p = factor * w * state / cost if cost > 0 else np.zeros(chunk.shape[0])
    keep = np.flatnonzero(rng.random(chunk.shape[0]) < p)
    X = checked_chunk(chunk, dtype)
    return (keep + offset, X[keep].copy(), np.ones(len(keep))), state


def candidate_weight_task(chunk, weights, offset, shared, state):
    """k-means‖: the sample weight of the rows nearest to each candidate."""
    candidates, backend = shared
    candidates = checked_chunk(candidates, candidates.dtype)
    X = checked_chunk(chunk, candidates.dtype)
    module, native = kernel(backend)
    labels, _, _ = module.assign(X, candidates, backend=native)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    return np.bincount(labels, weights=w, minlength=candidates.shape[0]).astype(np.float64), None


# -- the fit ----------------------------------------------------------------------------------


@dataclass
class ChunkedFit:
    centroids: np.ndarray
    inertia: float
    n_iter: int
    inertia_history: list
    labels: Optional[np.ndarray] = None
    distances: Optional[np.ndarray] = None


def fit_chunked(
    source: ChunkSource,
    *,
    n_clusters: int,
    init="k-means||",
    n_init: int = 1,
    max_iter: int = 300,
    tol: float = 1e-4,
    seed: int = 0,
    spherical: bool = False,
    backend: str = "cpu",
    init_size: Optional[int] = None,
    oversampling_factor: float = 2.0,
    init_rounds: int = 5,
    keep_labels: bool = False,
    owner: str = "KMeans",
    progress: Optional[Callable] = None,
) -> ChunkedFit:
    """Lloyd's k-means over `source`; the best of `n_init` runs. `keep_labels` gathers the
    final labels and distances (a streamed file); a Dask fit leaves them on the cluster."""
    if source.n_rows < n_clusters:
        raise ValueError(f"n_samples={source.n_rows} should be >= n_clusters={n_clusters}.")
    stats, _ = source.map_reduce(stats_task, combine_stats, owner)
    if not stats.weight > 0:
        raise ValueError("sample_weight must not sum to zero")
    dtype = fit_dtype(source.dtype, stats.top)
    variance = float(np.mean(stats.m2 / stats.n))
    tol_abs = tol * variance if tol > 0 else 0.0
    rng = np.random.default_rng(seed)
    best: Optional[ChunkedFit] = None
    for run in range(n_init):
        run_seed = int(rng.integers(2**63))
        centroids = initial_centroids(source, init, n_clusters, dtype, run_seed, backend, init_size, oversampling_factor, init_rounds)
        if spherical:
            centroids = normalized(centroids)
        result = lloyd(source, centroids, max_iter, tol_abs, spherical, backend, run, progress)
        logger.debug("run %d: inertia %.6e after %d iterations", run, result.inertia, result.n_iter)
        if best is None or result.inertia < best.inertia:
            best = result
    assert best is not None
    inertia, states = source.map_reduce(assign_task, sum_all, (best.centroids, backend, keep_labels), keep_states=keep_labels)
    best.inertia = float(inertia)
    if keep_labels:
        best.labels = np.concatenate([s[0] for s in states])
        best.distances = np.concatenate([s[1] for s in states])
    return best


def fit_dtype(dtype, top: float) -> np.dtype:
    """The float type the fit computes in, as `check_array` decides it for in-memory data:
    float32 stays float32 unless its magnitudes leave the float32-safe range."""
    dtype = np.dtype(dtype)
    if dtype == np.float16:
        dtype = np.dtype(np.float32)
    if dtype not in (np.float32, np.float64):
        return np.dtype(np.float64)
    low, high = FLOAT32_SAFE_RANGE
    if dtype == np.float32 and (top > high or 0.0 < top < low):
        return np.dtype(np.float64)
    return dtype


def normalized(centroids: np.ndarray) -> np.ndarray:
    norms = np.sqrt((centroids.astype(np.float64) ** 2).sum(axis=1, keepdims=True))
    return np.where(norms > 0, centroids / np.where(norms > 0, norms, 1.0), centroids).astype(centroids.dtype)


def lloyd(source, centroids, max_iter, tol_abs, spherical, backend, run, progress) -> ChunkedFit:
    history = []
    n_iter = 0
    for iteration in range(1, max_iter + 1):
        n_iter = iteration
        parts, _ = source.map_reduce(lloyd_task, combine_lloyd, (centroids, backend))
        history.append(float(parts.inertia))
        if not (parts.weights > 0).all():
            relocate_empty_clusters(source, centroids, parts, backend)
        updated = average(parts, centroids, spherical)
        shift = float(((updated.astype(np.float64) - centroids.astype(np.float64)) ** 2).sum())
        centroids = updated
        if progress is not None:
            progress(run, iteration, float(parts.inertia), shift)
        logger.debug("iteration %d: inertia %.6e, centre shift %.3e", iteration, parts.inertia, shift)
        if shift == 0.0:
            # The labels did not change (the same sums give the same centroids): strict convergence.
            break
        if shift <= tol_abs:
            break
    return ChunkedFit(centroids, history[-1], n_iter, history)


def average(parts: LloydParts, previous: np.ndarray, spherical: bool) -> np.ndarray:
    """Each cluster's weighted mean; a cluster with no weight keeps its centroid."""
    out = previous.copy()
    filled = parts.weights > 0
    out[filled] = (parts.sums[filled] / parts.weights[filled, None]).astype(previous.dtype)
    return normalized(out) if spherical else out


def relocate_empty_clusters(source, centroids, parts: LloydParts, backend) -> None:
    """Each cluster with no weight takes over one of the rows farthest from their centroid
    (farthest first, ties by lowest row index); that row's sums move from its old cluster
    (one more pass over the data, only in iterations that leave a cluster empty)."""
    empty = np.flatnonzero(~(parts.weights > 0))
    found, _ = source.map_reduce(farthest_task, combine_farthest, (centroids, len(empty), backend))
    for cluster, old, w, row in zip(empty, found.labels, found.weights, found.rows):
        contribution = row.astype(np.float64) * w
        parts.sums[old] -= contribution
        parts.sums[cluster] = contribution
        before = parts.weights[old]
        parts.weights[old] -= w
        if parts.weights[old] <= 1e-12 * before:
            parts.weights[old] = 0.0
        parts.weights[cluster] = w
    logger.debug("relocated %d empty cluster(s) to the farthest points", min(len(empty), len(found.indices)))


# -- initialisation ---------------------------------------------------------------------------


def sample_rows(source, count: int, seed: int, weighted: bool, dtype):
    """`count` distinct rows drawn without replacement (by sample weight when `weighted`,
    else uniformly among the positive-weight rows) and their weights."""
    (keys, indices), _ = source.map_reduce(sample_keys_task, combine_keys, (count, seed, weighted))
    chosen = np.sort(indices[np.argsort(-keys, kind="stable")[:count]])
    return source.take_rows(chosen, np.dtype(dtype))


def initial_centroids(source, init, k, dtype, seed, backend, init_size, factor, rounds) -> np.ndarray:
    if not isinstance(init, str):
        return np.ascontiguousarray(init, dtype=dtype).copy()
    if init == "random":
        rows, _ = sample_rows(source, k, seed, weighted=True, dtype=dtype)
        return checked_chunk(rows, dtype).copy()
    if init == "k-means++":
        size = source.n_rows if init_size is None else init_size
        size = min(source.n_rows, max(size if init_size is not None else max(10 * k, 20_000), k))
        rows, weights = sample_rows(source, size, seed, weighted=False, dtype=dtype)
        return seed_plusplus(rows, weights, k, seed, backend)
    if init == "k-means||":
        return kmeans_parallel(source, k, dtype, seed, backend, factor, rounds)
    raise ValueError(f"init should be one of {INIT_METHODS} or an array of shape (n_clusters, n_features); got {init!r}")


def seed_plusplus(rows, weights, k, seed, backend) -> np.ndarray:
    """Greedy k-means++ (the engine's) on weighted rows held here."""
    module, native = kernel(backend)
    rows = checked_chunk(rows, rows.dtype)
    return module.init_centroids(
        rows,
        checked_chunk(weights, rows.dtype),
        n_clusters=k,
        init="k-means++",
        batch_size=rows.shape[0],
        init_size=rows.shape[0],
        seed=seed % 2**63,
        backend=native,
    )


def kmeans_parallel(source, k, dtype, seed, backend, factor, rounds) -> np.ndarray:
    """k-means‖ (Bahmani et al.): `rounds` passes that each keep about `factor · k` rows
    with probability proportional to their weighted squared distance to the candidates so
    far, then greedy k-means++ on the candidates weighted by the rows nearest to each."""
    rng = np.random.default_rng(seed)
    candidates, _ = sample_rows(source, 1, int(rng.integers(2**63)), weighted=True, dtype=dtype)
    cost, states = source.map_reduce(parallel_cost_task, sum_all, (candidates, backend), keep_states=True)
    newest = candidates
    for _ in range(rounds):
        if not cost > 0:
            break
        round_seed = int(rng.integers(2**63))
        (_, newest, _), states = source.map_reduce(parallel_sample_task, combine_rows, (factor * k, cost, round_seed, np.dtype(dtype)), states, keep_states=True)
        if newest.shape[0] == 0:
            continue
        candidates = np.concatenate([candidates, newest])
        cost, states = source.map_reduce(parallel_cost_task, sum_all, (newest, backend), states, keep_states=True)
    logger.debug("k-means||: %d candidates for %d clusters", candidates.shape[0], k)
    if candidates.shape[0] < k:
        # Too few distinct candidates (tiny or duplicated data): fill with random rows.
        extra, _ = sample_rows(source, k, int(rng.integers(2**63)), weighted=True, dtype=dtype)
        candidates = np.concatenate([candidates, extra])
    weights, _ = source.map_reduce(candidate_weight_task, sum_all, (candidates, backend))
    if candidates.shape[0] == k:
        return np.ascontiguousarray(candidates)
    return seed_plusplus(np.ascontiguousarray(candidates), weights, k, int(rng.integers(2**63)), backend)


def check_init_options(factor: float, rounds: int) -> None:
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
        raise ValueError(f"oversampling_factor must be a positive number; got {factor!r}")
    if not (isinstance(rounds, int) and rounds >= 0):
        raise ValueError(f"init_max_iter must be a non-negative integer; got {rounds!r}")
