"""k-means on Dask: `KMeans` fits a `dask.array` (or a Dask DataFrame) where its chunks live,
on a `distributed` cluster or Dask's local schedulers.

Each Lloyd iteration runs the engine's kernel on every chunk, on the worker that holds it
(assignment, per-cluster weighted sums and weights, inertia), adds up each worker's chunks
there, adds the workers' `k × d` partial sums in a tree, and updates the centroids once on
the client. Only the centroids (once per iteration) and the partial sums cross the network.
Initialisation: k-means‖ (as dask-ml, Spark and cuML), greedy k-means++ on a sample,
"random", or an array. The loop is the one in
`mlx_kmeans._chunked`, with the in-memory fit's rules (same result from the same initial
centroids). Needs `pip install 'mlx-kmeans[dask]'`.

    from dask.distributed import Client
    import dask.array as da
    from mlx_kmeans.dask import KMeans

    client = Client("tcp://scheduler:8786")            # or Client() for a local cluster
    X = da.from_zarr("embeddings.zarr")                 # rows in chunks, all features per chunk
    km = KMeans(n_clusters=10_000, random_state=0).fit(X)
    km.cluster_centers_, km.inertia_, km.labels_        # labels_: a lazy dask array
"""

from __future__ import annotations

import contextlib
import logging
import math
import operator
import time
import uuid
from dataclasses import dataclass
from typing import Optional

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError("mlx_kmeans.dask needs Dask: pip install 'mlx-kmeans[dask]' (dask[array] and distributed)") from exc

from ._backend import engine_module, native, native_backend, resolve
from ._base import checked_centers
from ._chunked import fit_chunked, fit_dtype
from ._chunked.tasks import bounded_task, lloyd_task, stats_and_task
from ._progress import progress_bar
from ._sklearn_compat import ESTIMATOR_BASES, NotFittedError
from ._params import n_init_for
from ._validation import check_array, check_feature_names, check_n_features, check_names, check_weight_shape, feature_names

logger = logging.getLogger("mlx_kmeans")

__all__ = ["KMeans", "from_npy"]

# Partial results are added eight at a time, in a tree.
SPLIT_EVERY = 8
# Values shared by a pass's tasks up to this size travel inside each task (one hop less);
# larger ones are a task of their own that each worker fetches once.
SHARED_INLINE = 1 << 20


def _run(task, combine, blocks, weights, offsets, shared, states, keep_states):
    """`task` on the chunks of one group (held by one worker), their parts combined there."""
    total, new_states = None, []
    for i, block in enumerate(blocks):
        part, state = task(block, weights[i], offsets[i], shared, None if states is None else states[i])
        total = part if total is None else combine([total, part])
        new_states.append(state)
    return (total, new_states) if keep_states else total


# On each worker: the chunk states that passes of fits in progress keep there, by
# `(fit, group)`: when last used, and `{pass: [state of each chunk of the group]}` for the
# pass last read and the pass last written (a task run twice reads the same states again).
_KEPT: dict = {}
# States unused this long belong to a fit whose client went away without dropping them
# (a pass of a fit in progress uses them every few seconds): the next pass stored drops them.
KEPT_SECONDS = 3600.0


@dataclass(frozen=True)
class _KeptStates:
    """Where a pass left its chunks' states: on the workers that ran it, under `fit` and
    `pass_no` (no future per state: a pass is one task per worker)."""

    fit: str
    pass_no: int


def _lloyd_pass(task, shared) -> bool:
    """Whether `task` is a Lloyd pass (alone or with the first pass's statistics): the tasks
    that run right without their chunks' states, so those can stay on the workers."""
    lloyd = (lloyd_task, bounded_task)
    return task in lloyd or (task is stats_and_task and shared[1] in lloyd)


def _run_keeping(task, combine, blocks, weights, offsets, shared, key, read, write):
    """`_run` on one group with its states kept on this worker under `key`: those of pass
    `read` taken (None: none), those the task returns stored as pass `write` (None: kept as
    they are). For Lloyd passes and the farthest rows only: states are missing where the
    task ran elsewhere (its worker lost), and then a Lloyd pass searches every row (the same
    labels; every row counts as changed) and the farthest rows are found by labelling again."""
    now = time.monotonic()
    _, kept = _KEPT.get(key, (now, {}))
    states = kept.get(read) if read is not None else None
    if key in _KEPT:
        _KEPT[key] = (now, kept)
    if write is None:
        return _run(task, combine, blocks, weights, offsets, shared, states, False)
    total, new_states = _run(task, combine, blocks, weights, offsets, shared, states, True)
    for stale in [k for k, (used, _) in _KEPT.items() if now - used > KEPT_SECONDS]:
        _KEPT.pop(stale, None)
    _KEPT[key] = (now, {read: states, write: new_states} if states is not None else {write: new_states})
    return total


def _forget(fit):
    """Drops the states every pass of `fit` kept on this worker."""
    for key in [key for key in _KEPT if key[0] == fit]:
        del _KEPT[key]


def _identity(value):
    return value


def _nbytes(value) -> int:
    """The bytes of the arrays in `value` (a tuple of arrays and small values)."""
    items = value if isinstance(value, (tuple, list)) else (value,)
    return sum(_nbytes(v) if isinstance(v, (tuple, list)) else getattr(v, "nbytes", 0) for v in items)


def _combine(combine, *parts):
    return combine(list(parts))


class DaskChunks:
    """The row chunks of a Dask array (and its sample weights), as a `_chunked` source."""

    def __init__(self, X, sample_weight=None, persist: bool = True):
        if X.ndim != 2:
            raise ValueError(f"Expected 2D array, got {X.ndim}D array instead")
        if any(math.isnan(c) for c in X.chunks[0]):
            X = X.compute_chunk_sizes()
        if X.numblocks[1] != 1:
            X = X.rechunk({1: -1})  # every chunk holds whole rows
        self.n_rows, self.n_features = int(X.shape[0]), int(X.shape[1])
        self.dtype = np.dtype(X.dtype)
        weights = None
        if sample_weight is not None:
            weights = sample_weight if isinstance(sample_weight, da.Array) else da.from_array(np.asarray(sample_weight))
            if weights.ndim == 0:
                weights = da.full(self.n_rows, weights, chunks=(X.chunks[0],))
            check_weight_shape(weights, self.n_rows)
            weights = weights.rechunk((X.chunks[0],))
        if persist:
            X, weights = dask.persist(X, weights)
        # Held for the fit: persisted chunks live as long as their collection.
        self.X, self.weights = X, weights
        rows = X.chunks[0]
        offsets = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(int)
        blocks = X.to_delayed()[:, 0]
        weight_blocks = [None] * len(blocks) if weights is None else list(weights.to_delayed())
        # Chunks without rows would only add empty partial results.
        keys = [k[0] for k in X.__dask_keys__()]
        weight_keys = [None] * len(keys) if weights is None else list(weights.__dask_keys__())
        self.chunks = [
            (b, w, int(o), key, wkey) for b, w, o, r, key, wkey in zip(blocks, weight_blocks, offsets, rows, keys, weight_keys) if r > 0
        ]
        self.persisted = persist
        # Found on the first pass: the chunks grouped by worker, and the futures of the
        # persisted chunks on a `distributed` cluster (False: none).
        self._groups: Optional[list] = None
        self._holders: list = []
        self._remote = None
        # The key of this source's states kept on the workers, and the passes that kept some.
        self._fit, self._passes = uuid.uuid4().hex, 0

    def groups(self) -> list:
        """Chunk indices grouped by the worker that holds them (persisted data on a
        `distributed` cluster: each pass adds up a worker's chunks there, so one partial
        result per worker crosses the network); else one group per chunk. Found once: a
        chunk recomputed elsewhere after a worker is lost is still found by its key."""
        if self._groups is None:
            self._groups, self._holders = self._find_groups()
        return self._groups

    def _find_groups(self) -> tuple:
        """The groups, and the address of the worker that holds each (None: none)."""
        singles = [[i] for i in range(len(self.chunks))], [None] * len(self.chunks)
        if not self.persisted:
            return singles
        try:
            from distributed import default_client, futures_of, wait

            client = default_client()
        except (ImportError, ValueError):
            return singles
        futures = futures_of(self.X)
        wait(futures)  # placed once computed
        who_has = client.who_has(futures)
        by_worker: dict = {}
        for i, chunk in enumerate(self.chunks):
            holders = who_has.get(chunk[3]) or who_has.get(str(chunk[3])) or ()
            by_worker.setdefault(sorted(holders)[0] if holders else None, []).append(i)
        held = sorted(((ids, worker) for worker, ids in by_worker.items() if worker is not None), key=lambda item: item[0][0])
        # Chunks no worker holds (being recomputed after a loss) go one by one.
        held += [([i], None) for i in by_worker.get(None, [])]
        return [ids for ids, _ in held], [worker for _, worker in held]

    def _share(self, value):
        """`value` (the centroids of a pass) as one node of the pass's graph: the scheduler
        keeps it and hands it to each worker that needs it, and can hand it again after a
        worker is lost (data scattered to a worker would be lost with it)."""
        return dask.delayed(value, name=f"shared-{uuid.uuid4().hex}", traverse=False)

    def remote(self):
        """`(client, chunk futures, weight futures)` for chunks persisted on a `distributed`
        cluster, else None."""
        if self._remote is None:
            self._remote = False
            try:
                from distributed import default_client, futures_of

                client = default_client() if self.persisted else None
            except (ImportError, ValueError):
                client = None
            if client is not None:
                held = {f.key: f for f in futures_of(self.X)}
                if self.weights is not None:
                    held.update({f.key: f for f in futures_of(self.weights)})
                blocks = [held.get(c[3]) for c in self.chunks]
                weights = [None if c[4] is None else held.get(c[4]) for c in self.chunks]
                found = all(b is not None for b in blocks) and all((w is None) == (c[4] is None) for w, c in zip(weights, self.chunks))
                if found:
                    self._remote = (client, blocks, weights)
        return self._remote or None

    def map_reduce(self, task, combine, shared, states=None, keep_states=False):
        remote = self.remote()
        if remote is not None:
            return self._map_reduce_remote(remote, task, combine, shared, states, keep_states)
        ref = self._share(shared)
        groups = self.groups()
        outs = []
        for ids in groups:
            blocks, weights, offsets = ([self.chunks[i][f] for i in ids] for f in range(3))
            group_states = None if states is None else [states[i] for i in ids]
            outs.append(dask.delayed(_run, pure=False)(task, combine, blocks, weights, offsets, ref, group_states, keep_states))
        new_states = None
        if keep_states:
            outs = list(dask.persist(*outs))
            new_states = [None] * len(self.chunks)
            for out, ids in zip(outs, groups):
                states_of_group = dask.delayed(operator.getitem, pure=False)(out, 1)
                for j, i in enumerate(ids):
                    new_states[i] = dask.delayed(operator.getitem, pure=False)(states_of_group, j)
            outs = [dask.delayed(operator.getitem, pure=False)(o, 0) for o in outs]
        while len(outs) > 1:
            outs = [dask.delayed(_combine, pure=False)(combine, *outs[i : i + SPLIT_EVERY]) for i in range(0, len(outs), SPLIT_EVERY)]
        (total,) = dask.compute(outs[0])
        return total, new_states

    def _map_reduce_remote(self, remote, task, combine, shared, states, keep_states):
        """One task per worker on its persisted chunks (scheduled where they are), `shared`
        sent to the cluster once; the per-worker parts combined here. States stay on the
        workers: a Lloyd pass's in the worker's memory (`_run_keeping`, no future for them),
        k-means‖'s as one future per group. A large `shared` (centroids beyond `SHARED_INLINE`
        bytes) is a task of its own, made once and fetched by each worker, rather than data
        scattered to them: after a worker is lost the scheduler can make it again."""
        client, blocks, weights = remote
        ref = shared if _nbytes(shared) <= SHARED_INLINE else client.submit(_identity, shared, pure=False)
        on_workers = isinstance(states, _KeptStates) or (states is None and keep_states and _lloyd_pass(task, shared))
        read = states.pass_no if isinstance(states, _KeptStates) else None
        write = self._passes + 1 if keep_states and on_workers else None
        runs = []
        for g, ids in enumerate(self.groups()):
            group = ([blocks[i] for i in ids], [weights[i] for i in ids], [self.chunks[i][2] for i in ids])
            if on_workers:
                # Where the chunks (and the group's states) are, unless that worker is gone.
                where = dict(workers=[self._holders[g]], allow_other_workers=True) if self._holders[g] else {}
                runs.append(client.submit(_run_keeping, task, combine, *group, ref, (self._fit, g), read, write, pure=False, **where))
            else:
                group_state = None if states is None else states[g]
                runs.append(client.submit(_run, task, combine, *group, ref, group_state, keep_states, pure=False))
        if on_workers:
            total = combine(client.gather(runs))
            if write is None:
                return total, None
            self._passes = write
            return total, _KeptStates(self._fit, write)
        new_states = None
        if keep_states:
            new_states = [client.submit(operator.getitem, r, 1, pure=False) for r in runs]
            runs = [client.submit(operator.getitem, r, 0, pure=False) for r in runs]
        return combine(client.gather(runs)), new_states

    def release(self):
        """Drops the chunk states this source's passes kept on the workers."""
        remote = self.remote()
        if remote is not None and self._passes:
            remote[0].run(_forget, self._fit)
            self._passes = 0


@contextlib.contextmanager
def _released(source: DaskChunks):
    """`source` whose states kept on the workers are dropped on leaving, whatever happened."""
    try:
        yield source
    finally:
        source.release()


def _predict_block(block, centroids, backend):
    centroids = np.require(centroids, requirements=["C", "A"])
    if block.shape[0] == 0:  # a partition left empty (by a filter, say)
        return np.empty(0, dtype=np.int32)
    X = check_array(block, dtype=centroids.dtype)
    labels, _, _ = engine_module(backend).assign(X, centroids.astype(X.dtype, copy=False), None, backend=native_backend(backend))
    return labels


def _transform_block(block, centroids):
    centroids = np.require(centroids, requirements=["C", "A"])
    if block.shape[0] == 0:
        return np.empty((0, centroids.shape[0]), dtype=centroids.dtype)
    X = check_array(block, dtype=centroids.dtype)
    return np.sqrt(native().sq_distances(X, centroids.astype(X.dtype, copy=False)))


def _partition_matrix(frame, columns):
    """A Dask DataFrame partition as a matrix: its numeric columns, or one column holding a
    list or array per row."""
    if len(columns) == 1 and frame[columns[0]].dtype.kind not in "biuf":
        values = frame[columns[0]].to_numpy()
        if len(values) and isinstance(values[0], str):
            raise ValueError(
                f"column {columns[0]!r} holds text; expected one list or array of numbers per row "
                "(with pandas object columns, set dask.config 'dataframe.convert-string' to False)"
            )
        matrix = np.stack([np.asarray(v) for v in values])
        if matrix.ndim != 2:
            raise ValueError(f"column {columns[0]!r} must hold one list or array of numbers per row")
        return matrix
    return frame[columns].to_numpy()


def as_dask_array(X):
    """X as a 2-D Dask array with known chunk sizes: a Dask array as it is; a Dask DataFrame
    of numeric columns, or of one column of lists/arrays; a NumPy array or anything NumPy
    reads, split into chunks of about 128 MiB."""
    if isinstance(X, da.Array):
        return X, None
    try:
        import dask.dataframe as dd
    except ImportError:
        dd = None
    if dd is not None and isinstance(X, (dd.DataFrame, dd.Series)):
        frame = X.to_frame() if isinstance(X, dd.Series) else X
        columns = list(frame.columns)
        if all(isinstance(t, np.dtype) and t.kind in "biuf" for t in frame.dtypes):
            names = np.asarray(columns, dtype=object) if all(isinstance(c, str) for c in columns) else None
            return frame.to_dask_array(lengths=True), names
        if len(columns) != 1:
            raise ValueError(
                f"a Dask DataFrame must hold numeric columns, or one column of lists/arrays; got columns {columns} "
                f"of types {list(map(str, frame.dtypes))}"
            )
        lengths = frame.map_partitions(len).compute()
        if not np.asarray(lengths).any():
            raise ValueError("the Dask DataFrame has no rows")
        blocks = frame.to_delayed()
        first = dask.compute(dask.delayed(_partition_matrix)(frame.partitions[int(np.argmax(np.asarray(lengths) > 0))], columns))[0]
        d = first.shape[1]
        parts = [
            da.from_delayed(dask.delayed(_partition_matrix)(b, columns), shape=(int(n), d), dtype=first.dtype)
            for b, n in zip(blocks, lengths)
            if n > 0
        ]
        return da.concatenate(parts, axis=0), None
    array = check_array(X, owner="KMeans")
    rows = max(1, (128 << 20) // max(1, array.shape[1] * array.dtype.itemsize))
    return da.from_array(array, chunks=(rows, -1)), feature_names(X)


def from_npy(path, rows_per_chunk: Optional[int] = None, chunk_bytes: int = 128 << 20):
    """A `.npy` file as a Dask array whose chunks each read their rows from the file (memory
    mapped, on whichever worker computes them): a small graph, and data that never passes
    through the client. The file must be readable at the same path by every worker; a file
    in Fortran order is read too (each chunk gathers its rows, more slowly)."""
    from ._io import load_npy
    from ._params import Int, check_params

    check_params({"rows_per_chunk": Int(1, optional=True), "chunk_bytes": Int(1)}, dict(rows_per_chunk=rows_per_chunk, chunk_bytes=chunk_bytes))
    header = load_npy(path)
    n, d = header.shape
    dtype = header.dtype
    del header
    if n == 0 or d == 0:
        raise ValueError(f"{path} holds an array of shape {(n, d)}; k-means needs at least one row and one feature")
    if rows_per_chunk is None:
        rows_per_chunk = max(1, chunk_bytes // max(1, d * dtype.itemsize))
    path = str(path)
    parts = [
        da.from_delayed(dask.delayed(_read_rows)(path, s, min(s + rows_per_chunk, n)), shape=(min(s + rows_per_chunk, n) - s, d), dtype=dtype)
        for s in range(0, n, rows_per_chunk)
    ]
    return da.concatenate(parts, axis=0)


def _read_rows(path, start, end):
    rows = np.load(path, mmap_mode="r", allow_pickle=False)
    return np.array(rows[start:end], order="C")  # a copy: the mapping closes with `rows`


class KMeans(*ESTIMATOR_BASES):
    """K-means (Lloyd's algorithm) on a Dask array or DataFrame, computed where its chunks
    are. Parameters as `mlx_kmeans.KMeans`, and:

    - `init`: "k-means||" (the default: `init_max_iter` rounds, default 5, each keeping about
      `oversampling_factor · n_clusters` rows; then greedy k-means++ on those candidates
      weighted by the rows nearest to each), "k-means++" (greedy, on `init_size` rows
      sampled from all chunks, default `max(10·k, 20000)`), "random" or an array.
    - `algorithm`: "elkan" keeps each chunk's labels and Hamerly's lower bounds on its worker
      between passes (12 bytes per row), so that rows whose bounds prove they keep their
      centroid skip the search; "lloyd" searches every row in every pass; "auto" (the
      default) is "elkan". All give the same labels.
    - `persist`: keep the data in the workers' memory during the fit (True, as dask-ml);
      False recomputes each chunk from its source in every pass (data larger than the
      cluster's memory, read from files).

    Attributes: `cluster_centers_` (NumPy), `labels_` (a lazy Dask array), `inertia_`,
    `n_iter_`, `inertia_history_`, `n_features_in_`, `feature_names_in_` (DataFrames with
    string column names), `backend_`.
    """

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means||",
        n_init=1,
        max_iter=300,
        tol=1e-4,
        verbose=0,
        random_state=None,
        oversampling_factor=2.0,
        init_max_iter=None,
        init_size=None,
        algorithm="auto",
        backend="auto",
        spherical=False,
        persist=True,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state
        self.oversampling_factor = oversampling_factor
        self.init_max_iter = init_max_iter
        self.init_size = init_size
        self.algorithm = algorithm
        self.backend = backend
        self.spherical = spherical
        self.persist = persist

    def _check_params(self):
        from ._params import CHUNKED_CONSTRAINTS, Bool, Seed, check_params

        table = {**CHUNKED_CONSTRAINTS, "persist": Bool(), "random_state": Seed()}
        check_params(table, {name: getattr(self, name) for name in table})

    def _worker_backend(self, dtype) -> str:
        """The backend the workers run for data computed in `dtype`."""
        backend = resolve(self.backend, dtype)
        if backend == "faiss":
            raise ValueError("mlx_kmeans.dask runs the 'cpu' or 'mlx' backend on the workers; got 'faiss'")
        return backend

    def fit(self, X, y=None, sample_weight=None):
        """Compute k-means clustering of X (a Dask array or DataFrame, or an in-memory array)."""
        self._check_params()
        X, names = as_dask_array(X)
        source = DaskChunks(X, sample_weight, persist=bool(self.persist))
        backend = self._worker_backend(fit_dtype(source.dtype))
        init = self.init
        if not isinstance(init, str):
            init = checked_centers(init, self.n_clusters, source.n_features, "KMeans")
        n_init = n_init_for(self.n_init, init, 10, "KMeans")
        seed = _seed(self.random_state)
        with progress_bar(self.verbose, int(self.max_iter) * n_init, "KMeans (dask)", "it") as bar, _released(source):
            fit = fit_chunked(
                source,
                n_clusters=int(self.n_clusters),
                init=init,
                n_init=n_init,
                max_iter=int(self.max_iter),
                tol=float(self.tol),
                seed=seed,
                spherical=bool(self.spherical),
                backend=backend,
                choose_backend=self._worker_backend,
                init_size=self.init_size,
                oversampling_factor=float(self.oversampling_factor),
                init_rounds=5 if self.init_max_iter is None else int(self.init_max_iter),
                algorithm=self.algorithm,
                progress=bar,
            )
        self.cluster_centers_ = fit.centroids
        self.inertia_ = float(fit.inertia)
        self.n_iter_ = int(fit.n_iter)
        self.inertia_history_ = np.asarray(fit.inertia_history)
        self.n_features_in_ = source.n_features
        check_names(self, names, reset=True)
        self.backend_ = backend
        self._n_features_out = int(self.n_clusters)
        self.labels_ = self._labels(source.X)
        return self

    def _check_fitted(self):
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with appropriate arguments before using this estimator."
            )

    def _dask_input(self, X):
        """A Dask collection as a checked Dask array (feature names and count as at fit)."""
        self._check_fitted()
        X, names = as_dask_array(X)
        check_names(self, names, reset=False)
        check_n_features(self, X, reset=False)
        return X.rechunk({1: -1}) if X.numblocks[1] != 1 else X

    def _memory_input(self, X) -> np.ndarray:
        """In-memory data (NumPy, lists, pandas, Arrow, ...) checked as `mlx_kmeans.KMeans` checks it."""
        self._check_fitted()
        check_feature_names(self, X, reset=False)
        data = check_array(X, owner="KMeans", dtype=self.cluster_centers_.dtype)
        check_n_features(self, data, reset=False)
        return data

    def _labels(self, X):
        return X.map_blocks(_predict_block, self.cluster_centers_, self.backend_, dtype=np.int32, drop_axis=1)

    def predict(self, X):
        """Index of the nearest centre for each row: a lazy Dask array for Dask input, NumPy
        for in-memory input."""
        if not dask.is_dask_collection(X):
            return _predict_block(self._memory_input(X), self.cluster_centers_, self.backend_)
        return self._labels(self._dask_input(X))

    def transform(self, X):
        """Euclidean distance from each row to every centre (lazy for Dask input, NumPy for
        in-memory input)."""
        if not dask.is_dask_collection(X):
            return _transform_block(self._memory_input(X), self.cluster_centers_)
        X = self._dask_input(X)
        return X.map_blocks(_transform_block, self.cluster_centers_, dtype=self.cluster_centers_.dtype, chunks=(X.chunks[0], (int(self.n_clusters),)))

    def fit_predict(self, X, y=None, sample_weight=None):
        return self.fit(X, sample_weight=sample_weight).labels_

    def fit_transform(self, X, y=None, sample_weight=None):
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the (weighted) inertia of X on the fitted centres."""
        from ._chunked.tasks import assign_task, sum_all

        self._check_fitted()
        X = self._dask_input(X) if dask.is_dask_collection(X) else da.from_array(self._memory_input(X))
        source = DaskChunks(X, sample_weight, persist=False)
        inertia, _ = source.map_reduce(assign_task, sum_all, (self.cluster_centers_, self.backend_, False))
        return -float(inertia)


def _seed(random_state) -> int:
    from ._validation import seed_from

    return seed_from(random_state)
