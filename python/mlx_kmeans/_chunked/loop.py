"""Lloyd's k-means over data held in chunks: partitions of a Dask array on a cluster
(`mlx_kmeans.dask`), or a file larger than memory read piece by piece (`_stream`).

The data is never gathered. The engine's own loop drives the fit (`kmeans_fit_chunks`, from
`src/strategy/chunked.rs`): `n_init`, the stopping rules, empty-cluster repair, the
spherical update and the bounds schedule exist there only. Here is the `Driver` it calls
back: each pass runs a task on every chunk where the chunk is (the native kernel:
assignment, per-cluster weighted sums and weights, inertia; the chunk keeps its labels, and
bounds, for the next pass) and combines the small per-chunk results; only centroids and
those `k × d` partial sums move. Given the same initial centroids a fit takes the same steps
as the in-memory fit.

A source of chunks implements `map_reduce` (run a task on each chunk, combine the results in
chunk order; optionally keep a per-chunk state for the next pass). Rows are gathered by
index through the same (`init.gather_rows`): chunk by chunk, so that a memory map releases
each chunk's pages as it goes (rows scattered over a mapped file would otherwise map most of
it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

import numpy as np

from .._validation import check_weight_scale, outside_float32_range
from .init import initial_centroids
from .tasks import (
    CombineStatsAnd,
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
    choose_backend: Optional[Callable] = None,
) -> ChunkedFit:
    """Lloyd's k-means over `source`; the best of `n_init` runs. `keep_labels` gathers the
    final labels and distances (a streamed file); a Dask fit leaves them on the cluster.
    `source` may already be a `CheckedFirstPass` (whose statistics the caller reads).
    `choose_backend(dtype)` chooses the backend again when the first pass finds that the data
    must be computed in float64 (an automatic choice may have picked a float32-only one)."""
    if source.n_rows < n_clusters:
        raise ValueError(f"n_samples={source.n_rows} should be >= n_clusters={n_clusters}.")
    checked = source if isinstance(source, CheckedFirstPass) else CheckedFirstPass(source, owner)
    dtype = fit_dtype(source.dtype)
    seeding = dict(init=init, backend=backend, init_size=init_size, factor=oversampling_factor, rounds=init_rounds)
    while True:
        driver = Driver(checked, dtype, n_clusters, backend, keep_labels, seeding)
        module, native = kernel(backend)
        try:
            result = module.kmeans_fit_chunks(
                driver,
                n_rows=source.n_rows,
                n_features=source.n_features,
                float64=dtype == np.float64,
                n_clusters=n_clusters,
                n_init=n_init,
                max_iter=max_iter,
                tol=tol,
                seed=seed,
                spherical=spherical,
                algorithm="lloyd" if algorithm == "lloyd" else "elkan",
                progress=progress,
                backend=native,
            )
            break
        except DtypeChanged as change:
            # float32 data beyond the float32-safe range, found by the first pass: again in float64.
            dtype = change.dtype
            if choose_backend is not None:
                backend = choose_backend(dtype)
                seeding["backend"] = backend
    fit = ChunkedFit(result["centroids"], float(result["inertia"]), int(result["n_iter"]), list(result["inertia_history"]))
    if keep_labels:
        fit.labels, fit.distances, fit.inertia = driver.final_labels(fit.centroids)
    return fit


class Driver:
    """What the engine's loop calls for a fit over chunks: each run's initial centroids, the
    statistics `tol` is relative to, and passes over every chunk (a Lloyd pass, the rows
    farthest from their centroid, the final inertia). Each chunk keeps its labels (and, after
    a bounded pass, Hamerly's lower bounds) as its state from pass to pass."""

    def __init__(self, source: "CheckedFirstPass", dtype, n_clusters: int, backend: str, keep_labels: bool, seeding: dict):
        self.source, self.dtype, self.n_clusters, self.backend = source, dtype, n_clusters, backend
        self.keep_labels, self.seeding = keep_labels, seeding
        self.states = None
        # The last final assignment with its centroids (kept when labels are wanted).
        self.assigned = None

    def initial_centroids(self, run: int, seed: int) -> np.ndarray:
        s = self.seeding
        centroids = initial_centroids(self.source, s["init"], self.n_clusters, self.dtype, seed, s["backend"], s["init_size"], s["factor"], s["rounds"])
        self.states = None
        return np.ascontiguousarray(centroids, dtype=self.dtype)

    def mean_feature_variance(self) -> float:
        return self.source.tol(1.0)

    def lloyd_pass(self, centroids, half_gaps, shifts):
        if half_gaps is None:
            task, shared = lloyd_task, (centroids, self.backend)
        else:
            task, shared = bounded_task, (centroids, half_gaps, shifts, self.backend)
        parts, self.states = self.source.map_reduce(task, combine_lloyd, shared, self.states, keep_states=True)
        return parts.sums, parts.weights, float(parts.inertia), int(parts.searched), int(parts.changed)

    def farthest(self, centroids, count: int):
        found, _ = self.source.map_reduce(farthest_task, combine_farthest, (centroids, count, self.backend), self.states)
        return found.distances, found.labels.astype(np.int64), found.weights, np.ascontiguousarray(found.rows, dtype=self.dtype)

    def inertia(self, centroids) -> float:
        inertia, states = self.source.map_reduce(assign_task, sum_all, (centroids, self.backend, self.keep_labels), keep_states=self.keep_labels)
        if self.keep_labels:
            self.assigned = (centroids, states, float(inertia))
        return float(inertia)

    def final_labels(self, centroids):
        """Labels, distances and inertia for `centroids`: those of the last final assignment
        when it was made for these centroids, else one more pass."""
        if self.assigned is None or not np.array_equal(self.assigned[0], centroids):
            self.inertia(centroids)
        _, states, inertia = self.assigned
        return np.concatenate([s[0] for s in states]), np.concatenate([s[1] for s in states]), inertia


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
