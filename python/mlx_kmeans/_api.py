"""`kmeans(X, k)`: one call, plain results."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validation import is_mlx_array, to_mlx


class KMeansResult(NamedTuple):
    """What `kmeans` returns."""

    centroids: np.ndarray
    """(k, n_features) cluster centres, in the data's float type."""
    labels: np.ndarray
    """(n_samples,) int32 index of each row's centroid."""
    distances: np.ndarray
    """(n_samples,) squared Euclidean distance from each row to its centroid."""
    inertia: float
    """Sum of `distances` (weighted by `sample_weight` when given)."""
    n_iter: int
    """Lloyd iterations run (in the best of the `n_init` runs)."""
    backend: str
    """The backend that ran the fit."""


def kmeans(
    X,
    k: int,
    *,
    init="k-means++",
    n_init: int = 1,
    max_iter: int = 300,
    tol: float = 1e-4,
    sample_weight=None,
    seed: int | None = 0,
    spherical: bool = False,
    algorithm: str = "elkan",
    backend: str = "auto",
    verbose: bool = False,
) -> KMeansResult:
    """Cluster the rows of X into k groups with Lloyd's algorithm.

    X may be a NumPy array, an MLX array (results are then MLX arrays too) or a list of lists.

    `init` is 'k-means++', 'random' or a (k, n_features) array; `tol` is relative to the
    mean feature variance (as in scikit-learn); `seed` makes the result reproducible;
    `algorithm` is 'lloyd' (dense passes) or 'elkan' (bounded passes, same labels). The
    same checks and engine call as `KMeans(...).fit`.
    C-contiguous float32/float64 arrays are used without a copy; float32 stays float32.
    """
    from ._kmeans import KMeans

    estimator = KMeans(
        n_clusters=k,
        init=init,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        random_state=seed,
        algorithm=algorithm,
        backend=backend,
        spherical=spherical,
        verbose=verbose,
    )
    result, chosen = estimator._fit(X, sample_weight, desc="kmeans")
    wrap = to_mlx if is_mlx_array(X) else (lambda a: a)
    return KMeansResult(
        centroids=wrap(result["centroids"]),
        labels=wrap(result["labels"]),
        distances=wrap(result["distances"]),
        inertia=float(result["inertia"]),
        n_iter=int(result["n_iter"]),
        backend=chosen,
    )
