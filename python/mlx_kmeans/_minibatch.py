"""scikit-learn compatible `MiniBatchKMeans` on the Rust engine."""

from __future__ import annotations

import functools
import warnings

import numpy as np

from ._backend import engine_module, native, native_backend
from ._base import _BaseKMeans
from ._params import Bool, Int, Real
from ._validation import check_sample_weight, csr_arrays, is_mlx_array, is_sparse, seed_from
from ._verbose import MiniBatchLines, reassigning

__all__ = ["MiniBatchKMeans"]


class MiniBatchKMeans(_BaseKMeans):
    """Mini-batch k-means, a drop-in for `sklearn.cluster.MiniBatchKMeans`.

    Same algorithm as scikit-learn's: per-centre counts as learning rates, random
    reassignment of starved centres (`reassignment_ratio`), early stopping on the smoothed
    batch inertia (`max_no_improvement`) or on the centre change (`tol`), initialisation on
    `init_size` sampled rows with `n_init` candidates compared on a validation sample,
    `partial_fit` for streaming. Extra parameters: `backend`, `spherical`. scipy.sparse input
    (CSR borrowed as it is; other formats converted once) runs on the `cpu` backend's sparse
    kernel, never densified; each batch's rows are gathered as a small CSR matrix.

    Attributes: `cluster_centers_`, `labels_` (if `compute_labels`), `inertia_`, `n_iter_`,
    `n_steps_`, `n_features_in_`, `backend_`, `inertia_history_` (mean batch inertia per step).
    """

    _default_n_init = 3

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means++",
        max_iter=100,
        batch_size=1024,
        verbose=0,
        compute_labels=True,
        random_state=None,
        tol=0.0,
        max_no_improvement=10,
        init_size=None,
        n_init="auto",
        reassignment_ratio=0.01,
        backend="auto",
        spherical=False,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.verbose = verbose
        self.compute_labels = compute_labels
        self.random_state = random_state
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.init_size = init_size
        self.n_init = n_init
        self.reassignment_ratio = reassignment_ratio
        self.backend = backend
        self.spherical = spherical

    _constraints = {
        **_BaseKMeans._constraints,
        "batch_size": Int(1),
        "init_size": Int(1, optional=True),
        "max_no_improvement": Int(0, optional=True),
        "reassignment_ratio": Real(0.0),
        "compute_labels": Bool(),
    }

    def _warn_small_init_size(self) -> None:
        """scikit-learn's warning (the engine then samples `3·n_clusters` rows, as it does)."""
        if self.init_size is not None and self.init_size < self.n_clusters:
            warnings.warn(
                f"init_size={self.init_size} should be larger than n_clusters={self.n_clusters}. "
                "Setting it to min(3*n_clusters, n_samples)",
                RuntimeWarning,
                stacklevel=3,
            )

    def fit(self, X, y=None, sample_weight=None):
        """Compute the centroids on X by chunking it into mini-batches."""
        self._check_params()
        X, weights, backend = self._validate_fit_data(X, sample_weight)
        self._warn_small_init_size()
        seed = seed_from(self.random_state)
        init = self._resolve_init(X, seed)
        batch_size = min(int(self.batch_size), X.shape[0])
        max_steps = int(self.max_iter) * -(-X.shape[0] // batch_size)
        n_steps = max(int(self.max_iter) * X.shape[0] // batch_size, 1)
        shown_init = self.init if isinstance(self.init, str) or callable(self.init) else init
        n_init = self._n_init_for(init)
        lines = functools.partial(MiniBatchLines, shown_init, n_init, n_steps, batch_size, X.shape[0])
        with self._progress(max_steps, unit="step", lines=lines) as progress:
            if is_sparse(X):
                fit, data = native().minibatch_fit_sparse, (*csr_arrays(X), weights)
                where = {}
            else:
                fit, data = engine_module(backend).minibatch_fit, (X, weights)
                where = dict(backend=native_backend(backend))
            result = fit(
                *data,
                n_clusters=int(self.n_clusters),
                init=init,
                n_init=n_init,
                max_iter=int(self.max_iter),
                batch_size=int(self.batch_size),
                init_size=None if self.init_size is None else int(self.init_size),
                tol=float(self.tol),
                max_no_improvement=None if self.max_no_improvement is None else int(self.max_no_improvement),
                reassignment_ratio=float(self.reassignment_ratio),
                seed=seed,
                compute_labels=bool(self.compute_labels),
                spherical=bool(self.spherical),
                progress=progress,
                **where,
            )
        self._set_fitted(result["centroids"], result["labels"])
        self.inertia_ = float(result["inertia"])
        self.n_iter_ = int(result["n_iter"])
        self.n_steps_ = int(result["n_steps"])
        self.inertia_history_ = np.asarray(result["inertia_history"])
        self._counts = result["counts"]
        self._n_since_last_reassign = int(result["n_since_last_reassign"])
        self._batch_size = int(result["batch_size"])
        self._init_size = int(result["init_size"])
        self._n_features_out = self._centers().shape[0]
        self.backend_ = backend
        return self

    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the centroids with one mini-batch step on all rows of X."""
        has_centers = hasattr(self, "cluster_centers_")
        if has_centers:
            # MLX in, MLX out: each batch decides the type of the attributes it updates.
            self._mlx_output = is_mlx_array(X)
            X = self._validate_test_data(X)
            backend = self.backend_
        else:
            self._check_params()
            X, _, backend = self._validate_fit_data(X, None)
            self._warn_small_init_size()
        weights = check_sample_weight(sample_weight, X)
        if not hasattr(self, "_random_state"):
            self._random_state = _as_random_state(self.random_state)
        # Sparse rows: the cpu backend's CSR functions, which take the matrix's arrays.
        if is_sparse(X):
            data, where = (*csr_arrays(X), weights), {}
            init_centroids, step = native().init_centroids_sparse, native().minibatch_partial_fit_sparse
        else:
            data, where = (X, weights), dict(backend=native_backend(backend))
            init_centroids, step = engine_module(backend).init_centroids, engine_module(backend).minibatch_partial_fit
        if not has_centers:
            seed = seed_from(self._random_state)
            init = self._resolve_init(X, seed)
            self._batch_size = min(int(self.batch_size), X.shape[0])
            centers = init_centroids(
                *data,
                n_clusters=int(self.n_clusters),
                init=init,
                batch_size=self._batch_size,
                init_size=None if self.init_size is None else int(self.init_size),
                seed=seed,
                spherical=bool(self.spherical),
                **where,
            )
            counts = np.zeros(self.n_clusters, dtype=np.float64)
            n_since = 0
        else:
            centers, counts, n_since = self._centers_for(X), self._counts, self._n_since_last_reassign
        centers, counts, n_since, reassigned = step(
            *data,
            centroids=centers,
            counts=np.asarray(counts, dtype=np.float64).tolist(),
            n_since_last_reassign=int(n_since),
            batch_size=self._batch_size,
            reassignment_ratio=float(self.reassignment_ratio),
            seed=seed_from(self._random_state),
            spherical=bool(self.spherical),
            **where,
        )
        if reassigned and self.verbose:
            reassigning(reassigned)
        self._set_fitted(centers, None)
        self.backend_ = backend
        if self.compute_labels:
            labels, _, inertia = self._assign(X, weights)
            self._set_fitted(centers, labels)
            self.inertia_ = float(inertia)
        self._counts = counts
        self._n_since_last_reassign = int(n_since)
        self.n_steps_ = getattr(self, "n_steps_", 0) + 1
        self._n_features_out = self._centers().shape[0]
        return self


def _as_random_state(random_state) -> np.random.RandomState:
    """scikit-learn's check_random_state: the generator that later draws are taken from."""
    if random_state is None:
        return np.random.mtrand._rand
    if isinstance(random_state, (np.random.RandomState, np.random.Generator)):
        return random_state
    return np.random.RandomState(seed_from(random_state))
