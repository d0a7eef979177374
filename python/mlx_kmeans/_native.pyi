"""Type stubs for the engine's extension module (no libmlx; `backend="mlx"` runs only in
`_mlx`). Arrays are C-contiguous float32 or float64; every array argument of one call
shares the dtype of `x`."""

from typing import Any, Callable, Literal, Optional, TypedDict, Union

import numpy as np
import numpy.typing as npt

__version__: str
__all__ = [
    "configure",
    "kmeans_fit",
    "minibatch_fit",
    "minibatch_partial_fit",
    "init_centroids",
    "arrow_matrix",
    "value_summary",
    "chunk_summary",
    "assign",
    "kmeans_fit_chunks",
    "lloyd_partials",
    "farthest_rows",
    "bounded_partials",
    "sq_distances",
    "kmeans_fit_sparse",
    "minibatch_fit_sparse",
    "init_centroids_sparse",
    "minibatch_partial_fit_sparse",
    "assign_sparse",
    "sq_distances_sparse",
    "cpu_kernel",
    "_panic_for_test",
    "__version__",
]

_Float = Union[np.float32, np.float64]
_Matrix = npt.NDArray[_Float]
_Init = Union[Literal["k-means++", "random"], _Matrix]
# (run, iteration, inertia, center_shift, event): see mlx_kmeans._verbose.
_Progress = Callable[[int, int, float, float, str], Any]
# "cpu", "mlx", or a callable `assign(x, centroids) -> (squared_distances, labels)`; None is "cpu".
_Backend = Union[Literal["cpu", "mlx"], Callable[[_Matrix, _Matrix], Any], None]

class _KMeansFit(TypedDict):
    centroids: _Matrix
    labels: npt.NDArray[np.int32]
    distances: npt.NDArray[_Float]
    inertia: float
    n_iter: int
    inertia_history: list[float]

class _MiniBatchFit(TypedDict):
    centroids: _Matrix
    counts: npt.NDArray[np.float64]
    n_since_last_reassign: int
    labels: Optional[npt.NDArray[np.int32]]
    distances: Optional[npt.NDArray[_Float]]
    inertia: float
    n_steps: int
    n_iter: int
    batch_size: int
    init_size: int
    inertia_history: list[float]

def configure(options: dict[str, Any]) -> None:
    """Takes the runtime switches (`_options.Options.engine()`) for every native call that
    begins after it."""
def kmeans_fit(
    x: _Matrix,
    sample_weight: Optional[npt.NDArray[_Float]],
    *,
    n_clusters: int,
    init: _Init,
    n_init: int,
    max_iter: int,
    tol: float,
    seed: int,
    spherical: bool = False,
    algorithm: Literal["auto", "lloyd", "elkan"] = "auto",
    progress: Optional[_Progress] = None,
    backend: _Backend = None,
    distances: bool = True,
) -> _KMeansFit:
    """Lloyd's k-means on a matrix in memory. Without `distances` the result's may be empty
    (the inertia is then taken from the cluster sums where the engine keeps them)."""
def kmeans_fit_chunks(
    driver: Any,
    *,
    n_rows: int,
    n_features: int,
    float64: bool,
    n_clusters: int,
    n_init: int,
    max_iter: int,
    tol: float,
    seed: int,
    spherical: bool = False,
    algorithm: Literal["auto", "lloyd", "elkan"] = "auto",
    progress: Optional[_Progress] = None,
    backend: _Backend = None,
) -> _KMeansFit:
    """Lloyd's k-means over chunks held elsewhere, by the engine's loop: `driver` has
    `initial_centroids(run, seed)`, `mean_feature_variance()`, `lloyd_pass(centroids,
    half_gaps, shifts) -> (sums, weights, inertia, searched, changed)`, `farthest(centroids,
    count) -> (distances, labels, weights, rows)` and `inertia(centroids)`. Labels and
    distances come back empty (they stay with the chunks)."""
def minibatch_fit(
    x: _Matrix,
    sample_weight: Optional[npt.NDArray[_Float]],
    *,
    n_clusters: int,
    init: _Init,
    n_init: int,
    max_iter: int,
    batch_size: int,
    init_size: Optional[int],
    tol: float,
    max_no_improvement: Optional[int],
    reassignment_ratio: float,
    seed: int,
    compute_labels: bool,
    spherical: bool = False,
    progress: Optional[_Progress] = None,
    backend: _Backend = None,
) -> _MiniBatchFit: ...
def init_centroids(
    x: _Matrix,
    sample_weight: Optional[npt.NDArray[_Float]],
    *,
    n_clusters: int,
    init: _Init,
    batch_size: int,
    init_size: Optional[int],
    seed: int,
    spherical: bool = False,
    backend: _Backend = None,
) -> _Matrix: ...
def minibatch_partial_fit(
    x: _Matrix,
    sample_weight: Optional[npt.NDArray[_Float]],
    *,
    centroids: _Matrix,
    counts: list[float],
    n_since_last_reassign: int,
    batch_size: int,
    reassignment_ratio: float,
    seed: int,
    spherical: bool = False,
    backend: _Backend = None,
) -> tuple[_Matrix, npt.NDArray[np.float64], int, int]:
    """(centroids, counts, rows since the last reassignment, centres reassigned)."""
def arrow_matrix(data: Any) -> _Matrix:
    """An Arrow array/stream (one list of numbers per row) as a 2-D float array; one chunk of
    float32/float64 without nulls is a read-only view of the Arrow buffer."""
def value_summary(x: _Matrix) -> tuple[bool, bool, float]:
    """(has_nan, has_inf, largest finite magnitude) of a C-contiguous float matrix."""
def chunk_summary(x: _Matrix) -> tuple[bool, bool, float, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(has_nan, has_inf, largest finite magnitude, column means, column sums of squared
    deviations from those means) of a C-contiguous float matrix."""
def assign(
    x: _Matrix,
    centroids: _Matrix,
    sample_weight: Optional[npt.NDArray[_Float]] = None,
    backend: _Backend = None,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[_Float], float]: ...
def lloyd_partials(
    x: _Matrix,
    centroids: _Matrix,
    sample_weight: Optional[npt.NDArray[_Float]] = None,
    backend: _Backend = None,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[_Float], npt.NDArray[np.float64], npt.NDArray[np.float64], float]:
    """One chunk's share of a Lloyd iteration: (labels, squared distances, per-cluster
    weighted sums k × d, per-cluster weights, weighted inertia); sums in float64."""
def farthest_rows(
    x: _Matrix,
    centroids: _Matrix,
    labels: npt.NDArray[np.int32],
    count: int,
    sample_weight: Optional[npt.NDArray[_Float]] = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """The `count` positive-weight rows farthest from their labelled centroid, farthest
    first (ties by lowest index): exact squared distances and row indices."""
def bounded_partials(
    x: _Matrix,
    centroids: _Matrix,
    half_gaps: npt.NDArray[np.float64],
    labels: Optional[npt.NDArray[np.int32]] = None,
    lower: Optional[npt.NDArray[np.float64]] = None,
    shifts: Optional[npt.NDArray[np.float64]] = None,
    sample_weight: Optional[npt.NDArray[_Float]] = None,
    backend: _Backend = None,
) -> tuple[
    npt.NDArray[np.int32],
    npt.NDArray[_Float],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    float,
    npt.NDArray[np.float64],
    int,
]:
    """A chunk's Lloyd pass with Hamerly's bounds from its previous pass (labels, lower
    bounds, loosened by the centroids' `shifts`); none on the first pass. Returns (labels,
    squared distances, sums k × d, cluster weights, inertia, lower bounds, rows searched)."""
def sq_distances(x: _Matrix, centroids: _Matrix) -> _Matrix: ...
# CSR arrays of scipy.sparse (canonical: duplicates summed): indptr and indices int32 or
# int64 (one type), data float32 or float64; other arrays of the call share data's dtype.
_Index = npt.NDArray[Union[np.int32, np.int64]]
_Values = npt.NDArray[_Float]

def kmeans_fit_sparse(
    indptr: _Index,
    indices: _Index,
    data: _Values,
    n_features: int,
    sample_weight: Optional[_Values],
    *,
    n_clusters: int,
    init: _Init,
    n_init: int,
    max_iter: int,
    tol: float,
    seed: int,
    spherical: bool = False,
    progress: Optional[_Progress] = None,
) -> _KMeansFit: ...
def minibatch_fit_sparse(
    indptr: _Index,
    indices: _Index,
    data: _Values,
    n_features: int,
    sample_weight: Optional[_Values],
    *,
    n_clusters: int,
    init: _Init,
    n_init: int,
    max_iter: int,
    batch_size: int,
    init_size: Optional[int],
    tol: float,
    max_no_improvement: Optional[int],
    reassignment_ratio: float,
    seed: int,
    compute_labels: bool,
    spherical: bool = False,
    progress: Optional[_Progress] = None,
) -> _MiniBatchFit: ...
def init_centroids_sparse(
    indptr: _Index,
    indices: _Index,
    data: _Values,
    n_features: int,
    sample_weight: Optional[_Values],
    *,
    n_clusters: int,
    init: _Init,
    batch_size: int,
    init_size: Optional[int],
    seed: int,
    spherical: bool = False,
) -> _Matrix: ...
def minibatch_partial_fit_sparse(
    indptr: _Index,
    indices: _Index,
    data: _Values,
    n_features: int,
    sample_weight: Optional[_Values],
    *,
    centroids: _Matrix,
    counts: list[float],
    n_since_last_reassign: int,
    batch_size: int,
    reassignment_ratio: float,
    seed: int,
    spherical: bool = False,
) -> tuple[_Matrix, npt.NDArray[np.float64], int, int]:
    """(centroids, counts, rows since the last reassignment, centres reassigned)."""
def assign_sparse(
    indptr: _Index,
    indices: _Index,
    data: _Values,
    n_features: int,
    centroids: _Matrix,
    sample_weight: Optional[_Values] = None,
) -> tuple[npt.NDArray[np.int32], _Values, float]: ...
def sq_distances_sparse(indptr: _Index, indices: _Index, data: _Values, n_features: int, centroids: _Matrix) -> _Matrix: ...
def cpu_kernel() -> str:
    """How the cpu backend computes float32 distances here: "amx", "bf16", "f32" or "gemm"."""
def _panic_for_test() -> None:
    """Panics inside the engine wrapper (test builds only: the cargo feature `test-hooks`)."""
