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
chunk order; optionally keep a per-chunk state for the next pass). Rows are gathered by
index through the same (`init.gather_rows`): chunk by chunk, so that a memory map releases
each chunk's pages as it goes (rows scattered over a mapped file would otherwise map most of
it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

import numpy as np

from .._validation import check_weight_scale, outside_float32_range
from .init import initial_centroids
from .tasks import (
    CombineStatsAnd,
    LloydParts,
    assign_task,
    bounded_task,
    combine_farthest,
    combine_lloyd,
    farthest_task,
    kernel,
    lloyd_task,
    stats_and_task,
    sum_all,
)

logger = logging.getLogger("mlx_kmeans")


class ChunkSource(Protocol):
    """Data in row chunks, wherever they live."""

    n_rows: int
    n_features: int

    def map_reduce(self, task: Callable, combine: Callable, shared: Any, states: Optional[list] = None, keep_states: bool = False):
        """`task(chunk, weights, offset, shared, state) -> (part, new_state)` on every chunk
        (`chunk`: the checked C-contiguous float matrix; `offset`: its first global row);
        returns `(combine(parts), new_states)`, parts combined in chunk order. `new_states`
        is None unless `keep_states`."""


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
    algorithm: str = "auto",
    owner: str = "KMeans",
    progress: Optional[Callable] = None,
) -> ChunkedFit:
    """Lloyd's k-means over `source`; the best of `n_init` runs. `keep_labels` gathers the
    final labels and distances (a streamed file); a Dask fit leaves them on the cluster."""
    if source.n_rows < n_clusters:
        raise ValueError(f"n_samples={source.n_rows} should be >= n_clusters={n_clusters}.")
    checked = CheckedFirstPass(source, owner)
    dtype = fit_dtype(source.dtype)
    while True:
        try:
            best = runs(checked, dtype, n_clusters, init, n_init, max_iter, tol, seed, spherical, backend, init_size, oversampling_factor, init_rounds, algorithm, progress)
            break
        except DtypeChanged as change:
            # float32 data beyond the float32-safe range, found by the first pass: again in float64.
            dtype = change.dtype
    inertia, states = source.map_reduce(assign_task, sum_all, (best.centroids, backend, keep_labels), keep_states=keep_labels)
    best.inertia = float(inertia)
    if keep_labels:
        best.labels = np.concatenate([s[0] for s in states])
        best.distances = np.concatenate([s[1] for s in states])
    return best


def runs(source, dtype, n_clusters, init, n_init, max_iter, tol, seed, spherical, backend, init_size, factor, rounds, algorithm, progress) -> ChunkedFit:
    """The best of `n_init` initialisations, each followed by Lloyd iterations."""
    rng = np.random.default_rng(seed)
    best: Optional[ChunkedFit] = None
    for run in range(n_init):
        run_seed = int(rng.integers(2**63))
        centroids = initial_centroids(source, init, n_clusters, dtype, run_seed, backend, init_size, factor, rounds)
        if spherical:
            centroids = normalized(centroids)
        bounded = algorithm != "lloyd" and n_clusters > 1
        result = lloyd(source, centroids, max_iter, tol, spherical, backend, run, progress, bounded)
        logger.debug("run %d: inertia %.6e after %d iterations", run, result.inertia, result.n_iter)
        if best is None or result.inertia < best.inertia:
            best = result
    assert best is not None
    return best


class DtypeChanged(Exception):
    def __init__(self, dtype):
        self.dtype = dtype


class CheckedFirstPass:
    """A source whose first pass, whatever it computes, also checks every chunk as the
    in-memory fit checks its data (the same errors) and gathers the statistics the fit needs
    (mean feature variance for `tol`, the largest magnitude, the total weight): no pass of its
    own for them."""

    def __init__(self, source, owner: str):
        self.source, self.owner, self.stats = source, owner, None
        self.n_rows, self.n_features, self.dtype = source.n_rows, source.n_features, source.dtype

    def map_reduce(self, task, combine, shared, states=None, keep_states=False):
        if self.stats is not None:
            return self.source.map_reduce(task, combine, shared, states, keep_states)
        (stats, total), new_states = self.source.map_reduce(stats_and_task, CombineStatsAnd(combine), (self.owner, task, shared), states, keep_states)
        if not stats.weight > 0:
            raise ValueError("sample_weight must not sum to zero")
        dtype = fit_dtype(self.dtype, stats.top)
        if getattr(self.source, "weights", None) is not None:
            check_weight_scale(stats.weight, stats.heaviest, self.n_features, stats.top, dtype)
        self.stats = stats
        if dtype != fit_dtype(self.dtype):
            raise DtypeChanged(dtype)
        return total, new_states

    def tol(self, tol: float) -> float:
        """scikit-learn's `tol` in absolute terms: relative to the mean feature variance."""
        assert self.stats is not None, "the first pass has run"
        return tol * float(np.mean(self.stats.m2 / self.stats.n)) if tol > 0 else 0.0


def fit_dtype(dtype, top: float = 0.0) -> np.dtype:
    """The float type the fit computes in, as `check_array` decides it for in-memory data:
    float16 becomes float32, other non-float types float64; float32 stays float32 unless
    its largest magnitude `top` leaves the float32-safe range."""
    dtype = np.dtype(dtype)
    if dtype == np.float16:
        dtype = np.dtype(np.float32)
    if dtype not in (np.float32, np.float64):
        return np.dtype(np.float64)
    if dtype == np.float32 and outside_float32_range(None, top):
        return np.dtype(np.float64)
    return dtype


def normalized(centroids: np.ndarray) -> np.ndarray:
    norms = np.sqrt((centroids.astype(np.float64) ** 2).sum(axis=1, keepdims=True))
    return np.where(norms > 0, centroids / np.where(norms > 0, norms, 1.0), centroids).astype(centroids.dtype)


def lloyd(source, centroids, max_iter, tol, spherical, backend, run, progress, bounded) -> ChunkedFit:
    """Lloyd iterations from `centroids`. `bounded`: each chunk keeps its labels and
    Hamerly's lower bounds from pass to pass (where it lives), so that rows whose bounds
    prove they keep their centroid skip the search, as the in-memory "elkan" fit does."""
    history = []
    n_iter = 0
    states, previous = None, None
    # As the in-memory bounded passes do: the first pass is dense; bounds that leave most
    # rows to search (centroids still moving far) give way to dense passes, for twice as
    # long after each such try.
    dense_left, failures, have_bounds = 1, 0, False
    for iteration in range(1, max_iter + 1):
        n_iter = iteration
        if bounded and dense_left == 0:
            module, native = kernel(backend)
            gaps = module.half_gaps(centroids, backend=native)
            shifts = None if previous is None else np.sqrt(((centroids.astype(np.float64) - previous.astype(np.float64)) ** 2).sum(axis=1))
            tested = have_bounds
            parts, states = source.map_reduce(bounded_task, combine_lloyd, (centroids, gaps, shifts, backend), states if tested else None, keep_states=True)
            have_bounds = True
            if tested and 2 * parts.searched > source.n_rows:
                failures += 1
                dense_left = 2 << min(failures, 16)
            elif tested:
                failures = 0
            logger.debug("iteration %d: %d of %d rows searched every centroid", iteration, parts.searched, source.n_rows)
        else:
            parts, states = source.map_reduce(lloyd_task, combine_lloyd, (centroids, backend), keep_states=True)
            dense_left, have_bounds = max(dense_left - 1, 0), False
        history.append(float(parts.inertia))
        if not (parts.weights > 0).all():
            relocate_empty_clusters(source, centroids, parts, backend, states)
        updated = average(parts, centroids, spherical)
        shift = float(((updated.astype(np.float64) - centroids.astype(np.float64)) ** 2).sum())
        previous, centroids = centroids, updated
        if progress is not None:
            progress(run, iteration, float(parts.inertia), shift)
        logger.debug("iteration %d: inertia %.6e, centre shift %.3e", iteration, parts.inertia, shift)
        if shift == 0.0:
            # The labels did not change (the same sums give the same centroids): strict convergence.
            break
        if shift <= source.tol(tol):
            break
    return ChunkedFit(centroids, history[-1], n_iter, history)


def average(parts: LloydParts, previous: np.ndarray, spherical: bool) -> np.ndarray:
    """Each cluster's weighted mean; a cluster with no weight keeps its centroid."""
    out = previous.copy()
    filled = parts.weights > 0
    out[filled] = (parts.sums[filled] / parts.weights[filled, None]).astype(previous.dtype)
    return normalized(out) if spherical else out


def relocate_empty_clusters(source, centroids, parts: LloydParts, backend, states) -> None:
    """Each cluster with no weight takes over one of the rows farthest from their centroid
    (farthest first, ties by lowest row index); that row's sums move from its old cluster
    (one more pass over the data, by the labels each chunk kept, only in iterations that
    leave a cluster empty)."""
    empty = np.flatnonzero(~(parts.weights > 0))
    found, _ = source.map_reduce(farthest_task, combine_farthest, (centroids, len(empty), backend), states)
    if len(found.distances) == 0 or not found.distances[0] > 0:
        # Every row on its centroid: nothing to gain by moving one (as the engine's repair).
        return
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

