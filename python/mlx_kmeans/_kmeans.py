"""scikit-learn compatible `KMeans` and `MiniBatchKMeans` on the Rust engine."""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from . import _native
from ._backend import check_name, native_backend, prepare
from ._progress import progress_bar
from ._sklearn_compat import ESTIMATOR_BASES, HAVE_SKLEARN, ConvergenceWarning, NotFittedError
from ._validation import (
    check_array,
    check_feature_names,
    check_n_features,
    check_sample_weight,
    is_mlx_array,
    seed_from,
    to_mlx,
)

__all__ = ["KMeans", "MiniBatchKMeans"]


def _check_int(name, value, minimum, *, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"The '{name}' parameter must be an int; got {value!r}.")
    if value < minimum:
        raise ValueError(f"The '{name}' parameter must be an int >= {minimum}; got {value!r}.")


def _check_real(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"The '{name}' parameter must be a real number; got {value!r}.")
    if not np.isfinite(value) or value < minimum:
        raise ValueError(f"The '{name}' parameter must be a finite number >= {minimum}; got {value!r}.")


class _BaseKMeans(*ESTIMATOR_BASES):
    """What KMeans and MiniBatchKMeans share: parameter checks, init handling, predict,
    transform and score."""

    _default_n_init = 10

    # -- parameters ---------------------------------------------------------------------
    def _check_params(self) -> None:
        _check_int("n_clusters", self.n_clusters, 1)
        _check_int("max_iter", self.max_iter, 1)
        _check_real("tol", self.tol, 0.0)
        if not (
            (isinstance(self.init, str) and self.init in ("k-means++", "random"))
            or callable(self.init)
            or hasattr(self.init, "__array__")
            or isinstance(self.init, (list, tuple))
        ):
            raise ValueError(
                "The 'init' parameter must be 'k-means++', 'random', a callable or an "
                f"array of shape (n_clusters, n_features); got {self.init!r}."
            )
        if not (isinstance(self.n_init, str) and self.n_init == "auto"):
            _check_int("n_init", self.n_init, 1)
        if not isinstance(self.verbose, (bool, numbers.Integral, np.integer)):
            raise TypeError(f"The 'verbose' parameter must be an int or bool; got {self.verbose!r}.")
        if not isinstance(self.spherical, (bool, np.bool_)):
            raise TypeError(f"The 'spherical' parameter must be a bool; got {self.spherical!r}.")
        check_name(self.backend)  # fails early for an unknown name; availability at fit

    def _n_init_for(self, init) -> int:
        if isinstance(self.n_init, str):  # "auto"
            return 1 if isinstance(init, str) and init == "k-means++" else self._default_n_init
        if not isinstance(init, str) and self.n_init != 1:
            warnings.warn(
                "Explicit initial center position passed: performing only one init in "
                f"{type(self).__name__} instead of n_init={self.n_init}.",
                RuntimeWarning,
                stacklevel=3,
            )
            return 1
        return int(self.n_init)

    def _resolve_init(self, X: np.ndarray, seed: int):
        """'k-means++' / 'random' pass through; an array or a callable's output is checked
        against X and given the data's dtype."""
        init = self.init
        if isinstance(init, str):
            return init
        if callable(init):
            init = init(X, self.n_clusters, random_state=np.random.RandomState(seed % 2**32))
        centers = check_array(init, name="init", owner=type(self).__name__, dtype=X.dtype).astype(X.dtype, copy=False)
        if centers is init:
            centers = centers.copy()
        if centers.shape[0] != self.n_clusters:
            raise ValueError(
                f"The shape of the initial centers {centers.shape} does not match the number "
                f"of clusters {self.n_clusters}."
            )
        if centers.shape[1] != X.shape[1]:
            raise ValueError(
                f"The shape of the initial centers {centers.shape} does not match the number "
                f"of features of the data {X.shape[1]}."
            )
        return centers

    # -- data ---------------------------------------------------------------------------
    def _validate_fit_data(self, X, sample_weight):
        """Checked data, weights and the backend that will run (data in its compute dtype)."""
        self._mlx_output = is_mlx_array(X)
        check_feature_names(self, X, reset=True)
        X = check_array(X, owner=type(self).__name__)
        check_n_features(self, X, reset=True)
        if X.shape[0] < self.n_clusters:
            raise ValueError(f"n_samples={X.shape[0]} should be >= n_clusters={self.n_clusters}.")
        return prepare(X, sample_weight, self.backend)

    def _centers(self) -> np.ndarray:
        """The fitted centres as NumPy (a view when they are an MLX array)."""
        return np.asarray(self.cluster_centers_)

    def _centers_for(self, X: np.ndarray) -> np.ndarray:
        """The centres in X's float type (X is float64 where float32 would overflow)."""
        return self._centers().astype(X.dtype, copy=False)

    def _native_backend(self):
        return native_backend(getattr(self, "backend_", "cpu"))

    def _output(self, value, X):
        """MLX in, MLX out."""
        return to_mlx(value) if is_mlx_array(X) else value

    def _set_fitted(self, centers, labels):
        if getattr(self, "_mlx_output", False):
            centers = to_mlx(centers)
            labels = None if labels is None else to_mlx(labels)
        self.cluster_centers_ = centers
        if labels is not None:
            self.labels_ = labels

    def _check_fitted(self) -> None:
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def _validate_test_data(self, X) -> np.ndarray:
        self._check_fitted()
        check_feature_names(self, X, reset=False)
        X = check_array(X, owner=type(self).__name__, dtype=self._centers().dtype)
        check_n_features(self, X, reset=False)
        return X

    def _progress(self, total: int | None, unit: str = "it"):
        """A progress bar for `verbose` (a context manager giving the engine's callback)."""
        return progress_bar(self.verbose, total, type(self).__name__, unit)

    # -- inference ----------------------------------------------------------------------
    def predict(self, X):
        """Index of the nearest cluster centre for each row of X."""
        data = self._validate_test_data(X)
        labels, _, _ = _native.assign(data, self._centers_for(data), backend=self._native_backend())
        return self._output(labels, X)

    def transform(self, X):
        """Euclidean distance from each row of X to every cluster centre."""
        data = self._validate_test_data(X)
        distances = np.sqrt(_native.sq_distances(data, self._centers_for(data), backend=self._native_backend()))
        return self._output(distances, X)

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the (weighted) inertia of X on the fitted centres."""
        X = self._validate_test_data(X)
        weights = check_sample_weight(sample_weight, X.shape[0], X.dtype)
        _, _, inertia = _native.assign(X, self._centers_for(X), weights, backend=self._native_backend())
        return -inertia

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return `labels_`."""
        return self.fit(X, sample_weight=sample_weight).labels_

    def _warn_if_fewer_distinct(self) -> None:
        distinct = len(np.unique(np.asarray(self.labels_)))
        if distinct < self.n_clusters:
            warnings.warn(
                f"Number of distinct clusters ({distinct}) found smaller than n_clusters "
                f"({self.n_clusters}). Possibly due to duplicate points in X.",
                ConvergenceWarning,
                stacklevel=3,
            )

    if HAVE_SKLEARN:

        def __sklearn_tags__(self):
            tags = super().__sklearn_tags__()
            tags.transformer_tags.preserves_dtype = ["float64", "float32"]
            tags.input_tags.sparse = False
            return tags


class KMeans(_BaseKMeans):
    """K-means clustering (Lloyd's algorithm), a drop-in for `sklearn.cluster.KMeans`.

    Parameters follow scikit-learn: `n_clusters`, `init` ('k-means++', 'random', an array
    or a callable), `n_init` ('auto': 1 for k-means++, 10 otherwise), `max_iter`, `tol`
    (relative to the mean feature variance), `verbose`, `random_state`, `copy_x` (the
    input is never modified either way) and `algorithm` ('lloyd' or 'elkan': both run exact
    Lloyd iterations; on the CPU backend, rows that triangle-inequality bounds prove keep
    their centroid skip the search over all centroids (Hamerly's bounds), which changes no
    label beyond ties within rounding). Extra: `backend` ('auto', 'cpu')
    and `spherical` (unit-norm centroids, for cosine similarity on normalised rows).

    Attributes: `cluster_centers_`, `labels_`, `inertia_`, `n_iter_`, `n_features_in_`,
    `feature_names_in_` (DataFrame input), `backend_`, `inertia_history_`.
    """

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means++",
        n_init="auto",
        max_iter=300,
        tol=1e-4,
        verbose=0,
        random_state=None,
        copy_x=True,
        algorithm="lloyd",
        backend="auto",
        spherical=False,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state
        self.copy_x = copy_x
        self.algorithm = algorithm
        self.backend = backend
        self.spherical = spherical

    def _check_params(self) -> None:
        super()._check_params()
        if self.algorithm not in ("lloyd", "elkan"):
            raise ValueError(f"The 'algorithm' parameter must be 'lloyd' or 'elkan'; got {self.algorithm!r}.")

    def fit(self, X, y=None, sample_weight=None):
        """Compute k-means clustering of X (n_samples × n_features)."""
        self._check_params()
        X, weights, backend = self._validate_fit_data(X, sample_weight)
        seed = seed_from(self.random_state)
        init = self._resolve_init(X, seed)
        with self._progress(int(self.max_iter)) as progress:
            result = _native.kmeans_fit(
                X,
                weights,
                n_clusters=int(self.n_clusters),
                init=init,
                n_init=self._n_init_for(init),
                max_iter=int(self.max_iter),
                tol=float(self.tol),
                seed=seed,
                spherical=bool(self.spherical),
                progress=progress,
                backend=native_backend(backend),
            )
        self._set_fitted(result["centroids"], result["labels"])
        self.inertia_ = float(result["inertia"])
        self.n_iter_ = int(result["n_iter"])
        self.inertia_history_ = np.asarray(result["inertia_history"])
        self._n_features_out = self._centers().shape[0]
        self.backend_ = backend
        self._warn_if_fewer_distinct()
        return self


class MiniBatchKMeans(_BaseKMeans):
    """Mini-batch k-means, a drop-in for `sklearn.cluster.MiniBatchKMeans`.

    Same algorithm as scikit-learn's: per-centre counts as learning rates, random
    reassignment of starved centres (`reassignment_ratio`), early stopping on the smoothed
    batch inertia (`max_no_improvement`) or on the centre change (`tol`), initialisation on
    `init_size` sampled rows with `n_init` candidates compared on a validation sample,
    `partial_fit` for streaming. Extra parameters: `backend`, `spherical`.

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

    def _check_params(self) -> None:
        super()._check_params()
        _check_int("batch_size", self.batch_size, 1)
        _check_int("init_size", self.init_size, 1, allow_none=True)
        _check_int("max_no_improvement", self.max_no_improvement, 0, allow_none=True)
        _check_real("reassignment_ratio", self.reassignment_ratio, 0.0)

    def fit(self, X, y=None, sample_weight=None):
        """Compute the centroids on X by chunking it into mini-batches."""
        self._check_params()
        X, weights, backend = self._validate_fit_data(X, sample_weight)
        seed = seed_from(self.random_state)
        init = self._resolve_init(X, seed)
        batch_size = min(int(self.batch_size), X.shape[0])
        max_steps = int(self.max_iter) * -(-X.shape[0] // batch_size)
        with self._progress(max_steps, unit="step") as progress:
            result = _native.minibatch_fit(
                X,
                weights,
                n_clusters=int(self.n_clusters),
                init=init,
                n_init=self._n_init_for(init),
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
                backend=native_backend(backend),
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
            X = self._validate_test_data(X)
            backend = self.backend_
        else:
            self._check_params()
            X, _, backend = self._validate_fit_data(X, None)
        weights = check_sample_weight(sample_weight, X.shape[0], X.dtype)
        if not hasattr(self, "_random_state"):
            self._random_state = _as_random_state(self.random_state)
        if not has_centers:
            seed = seed_from(self._random_state)
            init = self._resolve_init(X, seed)
            self._batch_size = min(int(self.batch_size), X.shape[0])
            centers = _native.init_centroids(
                X,
                weights,
                n_clusters=int(self.n_clusters),
                init=init,
                batch_size=self._batch_size,
                init_size=None if self.init_size is None else int(self.init_size),
                seed=seed,
                spherical=bool(self.spherical),
                backend=native_backend(backend),
            )
            counts = np.zeros(self.n_clusters, dtype=np.float64)
            n_since = 0
        else:
            centers, counts, n_since = self._centers_for(X), self._counts, self._n_since_last_reassign
        centers, counts, n_since = _native.minibatch_partial_fit(
            X,
            weights,
            centroids=centers,
            counts=np.asarray(counts, dtype=np.float64).tolist(),
            n_since_last_reassign=int(n_since),
            batch_size=self._batch_size,
            reassignment_ratio=float(self.reassignment_ratio),
            seed=seed_from(self._random_state),
            spherical=bool(self.spherical),
            backend=native_backend(backend),
        )
        labels = None
        if self.compute_labels:
            labels, _, inertia = _native.assign(X, centers, weights, backend=native_backend(backend))
            self.inertia_ = float(inertia)
        self._set_fitted(centers, labels)
        self._counts = counts
        self._n_since_last_reassign = int(n_since)
        self.n_steps_ = getattr(self, "n_steps_", 0) + 1
        self._n_features_out = self._centers().shape[0]
        self.backend_ = backend
        return self


def _as_random_state(random_state) -> np.random.RandomState:
    """scikit-learn's check_random_state: the generator that later draws are taken from."""
    if random_state is None:
        return np.random.mtrand._rand
    if isinstance(random_state, (np.random.RandomState, np.random.Generator)):
        return random_state
    return np.random.RandomState(seed_from(random_state))
