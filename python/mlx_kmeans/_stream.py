"""Out-of-core Lloyd fits on one machine: a matrix larger than memory (a `.npy` file, an
`np.memmap`) read one chunk of rows at a time, so that memory stays bounded by the chunk
size and the per-row results (labels, distances), whatever the file's size."""

from __future__ import annotations

import logging
import mmap
import os
from typing import Optional

import numpy as np

from ._api import KMeansResult
from ._backend import resolve
from ._base import checked_centers
from ._chunked import fit_chunked, fit_dtype
from ._io import load_npy
from ._params import CHUNKED_CONSTRAINTS, Int, Seed, check_params, n_init_for
from ._validation import check_weight_shape, seed_from

logger = logging.getLogger("mlx_kmeans")

__all__ = ["kmeans_streaming", "ArrayChunks", "DEFAULT_CHUNK_BYTES", "available_memory"]

# 256 MiB of rows per chunk: large enough that each kernel call is efficient, small enough
# that a fit of a file of any size stays well under 1 GB.
DEFAULT_CHUNK_BYTES = 256 << 20


def available_memory() -> Optional[int]:
    """Bytes of memory available to new allocations (Linux `MemAvailable`), else None."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class ArrayChunks:
    """Row chunks of a NumPy array or memory map, read in order. After each chunk of a
    memory map is used, its pages are dropped from this process's memory (`MADV_DONTNEED`;
    the file stays in the page cache), so the resident size does not grow with the file."""

    def __init__(self, X, sample_weight=None, chunk_bytes: int = DEFAULT_CHUNK_BYTES):
        if not hasattr(X, "shape") or len(X.shape) != 2:
            raise ValueError(f"expected a 2-D array or memory map; got {type(X).__name__} of shape {getattr(X, 'shape', None)}")
        self.X = X
        self.n_rows, self.n_features = int(X.shape[0]), int(X.shape[1])
        self.dtype = np.dtype(X.dtype)
        if self.n_rows < 1 or self.n_features < 1:
            raise ValueError(f"Found array with shape {X.shape}; k-means needs at least one row and one feature.")
        self.weights = None
        if sample_weight is not None:
            weights = np.asarray(sample_weight)
            if weights.ndim == 0:
                weights = np.full(self.n_rows, float(weights))
            check_weight_shape(weights, self.n_rows)
            self.weights = weights
        row_bytes = self.n_features * max(self.dtype.itemsize, 4)
        self.chunk_rows = max(1, int(chunk_bytes) // row_bytes)
        self._pages = _mapping(X)

    def bounds(self):
        return [(s, min(s + self.chunk_rows, self.n_rows)) for s in range(0, self.n_rows, self.chunk_rows)]

    def map_reduce(self, task, combine, shared, states=None, keep_states=False):
        total, new_states = None, [] if keep_states else None
        for i, (start, end) in enumerate(self.bounds()):
            chunk = self.X[start:end]
            w = None if self.weights is None else self.weights[start:end]
            part, state = task(chunk, w, start, shared, None if states is None else states[i])
            del chunk
            self._release(start, end)
            total = part if total is None else combine([total, part])
            if keep_states:
                new_states.append(state)
        return total, new_states

    def _release(self, start: int, end: int) -> None:
        if self._pages is None:
            return
        buffer, base, row_bytes = self._pages
        first = (base + start * row_bytes) // mmap.PAGESIZE * mmap.PAGESIZE
        last = min(len(buffer), base + end * row_bytes)
        if last > first:
            buffer.madvise(mmap.MADV_DONTNEED, first, last - first)


def _mapping(X):
    """For a read-only or shared memory map: (the mmap, X's byte offset in it, bytes per
    row); None for other arrays, and for copy-on-write maps, whose private changes
    `MADV_DONTNEED` would discard."""
    buffer = getattr(X, "_mmap", None)
    if not isinstance(X, np.memmap) or buffer is None or getattr(X, "mode", "r") == "c" or not hasattr(mmap, "MADV_DONTNEED"):
        return None
    if not X.flags.c_contiguous:
        return None
    start = np.frombuffer(buffer, dtype=np.uint8, count=0).__array_interface__["data"][0]
    base = X.__array_interface__["data"][0] - start
    return buffer, base, X.shape[1] * X.dtype.itemsize


def kmeans_streaming(
    X,
    k: int,
    *,
    init="k-means++",
    n_init: int = 1,
    max_iter: int = 300,
    tol: float = 1e-4,
    sample_weight=None,
    seed: Optional[int] = 0,
    spherical: bool = False,
    algorithm: str = "auto",
    backend: str = "auto",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    init_size: Optional[int] = None,
    oversampling_factor: float = 2.0,
    init_max_iter: Optional[int] = 5,
    progress=None,
) -> KMeansResult:
    """Lloyd's k-means over a matrix read one chunk at a time: a path to a `.npy` file, an
    `np.memmap`, or any 2-D array. Memory stays bounded by `chunk_bytes` plus two numbers
    per row (labels and distances) and the centroids, whatever the size of the data.

    `init`: "k-means++" (greedy, on `init_size` rows sampled from the whole file: by default
    `max(10·k, 20000)`), "k-means||" (over the chunks, `init_max_iter` rounds of about
    `oversampling_factor · k` candidates), "random", or an array. `algorithm`: "elkan"
    keeps each row's label and Hamerly's lower bound between passes (12 bytes per row), so
    rows whose bounds prove they keep their centroid skip the search; "lloyd" searches every
    row in every pass; "auto" (the default) is "elkan". All give the same labels. Returns a `KMeansResult`.
    """
    values = dict(
        k=k, init=init, n_init=n_init, max_iter=max_iter, tol=tol, verbose=0, spherical=spherical, backend=backend,
        algorithm=algorithm, init_size=init_size, oversampling_factor=oversampling_factor, init_max_iter=init_max_iter,
        seed=seed, chunk_bytes=chunk_bytes,
    )
    check_params({**CHUNKED_CONSTRAINTS, "seed": Seed(), "chunk_bytes": Int(1)}, values, names={"n_clusters": "k"})
    if isinstance(X, (str, os.PathLike)):
        X = load_npy(X)
    source = ArrayChunks(X, sample_weight, chunk_bytes)
    if not isinstance(init, str):
        init = checked_centers(init, int(k), source.n_features, "kmeans_streaming")
    name = resolve(backend, fit_dtype(source.dtype))
    fit = fit_chunked(
        source,
        n_clusters=int(k),
        init=init,
        n_init=n_init_for(n_init, init, 10, "kmeans_streaming"),
        max_iter=int(max_iter),
        tol=float(tol),
        seed=seed_from(seed, name="seed"),
        spherical=bool(spherical),
        backend=name,
        choose_backend=lambda dtype: resolve(backend, dtype),
        init_size=init_size,
        oversampling_factor=oversampling_factor,
        init_rounds=5 if init_max_iter is None else int(init_max_iter),
        keep_labels=True,
        algorithm=algorithm,
        owner="kmeans_streaming",
        progress=progress,
    )
    return KMeansResult(fit.centroids, fit.labels, fit.distances, fit.inertia, fit.n_iter, name)
