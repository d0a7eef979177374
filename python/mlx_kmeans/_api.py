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
    algorithm: str = "auto",
    backend: str = "auto",
    verbose: bool | int | str = False,
    random_state=None,
) -> KMeansResult:
    """Cluster the rows of X into k groups with Lloyd's algorithm.

    X may be a NumPy array, an MLX array (results are then MLX arrays too) or a list of lists.

    `init` is 'k-means++', 'random' or a (k, n_features) array; `tol` is relative to the
    mean feature variance (as in scikit-learn); `seed` makes the result reproducible;
    `algorithm` is 'lloyd' (dense passes), 'elkan' (bounded passes, same labels) or 'auto'
    (bounded passes where they save time, chosen as the fit runs);
    `random_state` (scikit-learn's name; an int or a `RandomState`) replaces `seed` when
    given. The same checks and engine call as `KMeans(...).fit`.
    C-contiguous float32/float64 arrays are used without a copy; float32 stays float32.
    """
    from ._kmeans import KMeans

    estimator = KMeans(
        n_clusters=k,
        init=init,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        random_state=seed if random_state is None else random_state,
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


def k_means(
    X,
    n_clusters,
    *,
    sample_weight=None,
    init="k-means++",
    n_init="auto",
    max_iter=300,
    verbose=False,
    tol=1e-4,
    random_state=None,
    copy_x=True,
    algorithm="lloyd",
    return_n_iter=False,
):
    """scikit-learn's `k_means`: `(centroid, label, inertia)`, and `best_n_iter` when
    `return_n_iter`; the same fit as `KMeans(...).fit(X)`."""
    from ._kmeans import KMeans

    estimator = KMeans(
        n_clusters=n_clusters,
        init=init,
        n_init=n_init,
        max_iter=max_iter,
        verbose=verbose,
        tol=tol,
        random_state=random_state,
        copy_x=copy_x,
        algorithm=algorithm,
    ).fit(X, sample_weight=sample_weight)
    result = (estimator.cluster_centers_, estimator.labels_, estimator.inertia_)
    return (*result, estimator.n_iter_) if return_n_iter else result


def kmeans_plusplus(X, n_clusters, *, sample_weight=None, x_squared_norms=None, random_state=None, n_local_trials=None):
    """scikit-learn's `kmeans_plusplus`: `n_clusters` rows of X (dense, or scipy.sparse) chosen
    by greedy k-means++ (the engine's, `2 + ln k` candidates per step, sample weights
    respected) and their indices; the centres come back dense, as scikit-learn returns them.
    `x_squared_norms` is checked and not needed (the engine computes the norms); another
    number of local trials than `2 + int(ln k)` is refused."""
    import math

    from ._backend import native
    from ._params import Int, Seed, check_params
    from ._validation import check_array, check_sample_weight, check_sparse, csr_arrays, is_sparse, seed_from

    check_params({"n_clusters": Int(1), "random_state": Seed(), "n_local_trials": Int(1, optional=True)}, dict(n_clusters=n_clusters, random_state=random_state, n_local_trials=n_local_trials))
    sparse = is_sparse(X)
    X = check_sparse(X, owner="kmeans_plusplus") if sparse else check_array(X, owner="kmeans_plusplus")
    n = X.shape[0]
    if n_clusters > n:
        raise ValueError(f"n_samples={n} should be >= n_clusters={n_clusters}.")
    trials = 2 + int(math.log(n_clusters))
    if n_local_trials is not None and n_local_trials != trials:
        raise ValueError(f"n_local_trials must be None or {trials} (2 + int(ln n_clusters)), the engine's number; got {n_local_trials}")
    if x_squared_norms is not None and np.shape(x_squared_norms) != (n,):
        length = np.shape(x_squared_norms)[0] if np.ndim(x_squared_norms) else np.shape(x_squared_norms)
        raise ValueError(f"The length of x_squared_norms {length} should be equal to the length of n_samples {n}.")
    weights = check_sample_weight(sample_weight, X)
    options = dict(n_clusters=int(n_clusters), init="k-means++", batch_size=n, init_size=n, seed=seed_from(random_state))
    if not sparse:
        centers = native().init_centroids(X, weights, **options)
        # The chosen rows themselves: each centre's nearest row is a row equal to it.
        indices, _, _ = native().assign(centers, X)
        return centers, indices.astype(np.intp)
    centers = native().init_centroids_sparse(*csr_arrays(X), weights, **options)
    return centers, _nearest_rows_sparse(X, centers)


def _nearest_rows_sparse(X, centers) -> np.ndarray:
    """For each centre, the index of its nearest CSR row (the first of equals), a block of
    rows at a time so that no `n × k` matrix is held."""
    from ._backend import native
    from ._validation import csr_arrays

    best = np.full(centers.shape[0], np.inf)
    where = np.zeros(centers.shape[0], dtype=np.intp)
    block = max(1, (1 << 24) // max(1, centers.shape[0]))
    for start in range(0, X.shape[0], block):
        distances = native().sq_distances_sparse(*csr_arrays(X[start : start + block]), centers)
        rows = np.argmin(distances, axis=0)
        values = distances[rows, np.arange(centers.shape[0])]
        closer = values < best
        best[closer], where[closer] = values[closer], rows[closer] + start
    return where
