"""What `KMeans` and `MiniBatchKMeans` share: parameter checks (one declarative table),
init handling, the data's way in, predict, transform and score."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np

from ._backend import engine_module, native, native_backend, prepare
from ._params import FIT_CONSTRAINTS, check_params, n_init_for
from ._progress import progress_bar
from ._sklearn_compat import ESTIMATOR_BASES, HAVE_SKLEARN, ConvergenceWarning, NotFittedError
from ._validation import (
    check_array,
    check_feature_names,
    check_n_features,
    check_sample_weight,
    check_sparse,
    csr_arrays,
    is_mlx_array,
    is_sparse,
    to_mlx,
)

__all__ = ["_BaseKMeans", "checked_centers"]


def checked_centers(init, n_clusters: int, n_features: int, owner: str, dtype=None) -> np.ndarray:
    """Initial centres given as an array: checked as data, of shape `(n_clusters,
    n_features)` (scikit-learn's messages), a copy in `dtype` (or the dtype `check_array`
    gives them) that the fit may own."""
    centers = check_array(init, name="init", owner=owner, dtype=dtype)
    if dtype is not None:
        centers = centers.astype(dtype, copy=False)
    if centers is init:
        centers = centers.copy()
    if centers.shape[0] != n_clusters:
        raise ValueError(
            f"The shape of the initial centers {centers.shape} does not match the number "
            f"of clusters {n_clusters}."
        )
    if centers.shape[1] != n_features:
        raise ValueError(
            f"The shape of the initial centers {centers.shape} does not match the number "
            f"of features of the data {n_features}."
        )
    return centers


class _BaseKMeans(*ESTIMATOR_BASES):
    """What KMeans and MiniBatchKMeans share: parameter checks, init handling, predict,
    transform and score."""

    _default_n_init = 10

    # -- parameters ---------------------------------------------------------------------
    _constraints: dict = FIT_CONSTRAINTS

    def _check_params(self) -> None:
        check_params(self._constraints, self.get_params(deep=False))

    def _n_init_for(self, init) -> int:
        return n_init_for(self.n_init, init, self._default_n_init, type(self).__name__)

    def _resolve_init(self, X: np.ndarray, seed: int):
        """'k-means++' / 'random' pass through; an array or a callable's output is checked
        against X and given the data's dtype."""
        init = self.init
        if isinstance(init, str):
            return init
        if callable(init):
            init = init(X, self.n_clusters, random_state=np.random.RandomState(seed % 2**32))
        return checked_centers(init, self.n_clusters, X.shape[1], type(self).__name__, X.dtype)

    # -- data ---------------------------------------------------------------------------
    def _validate_fit_data(self, X, sample_weight):
        """Checked data, weights and the backend that will run (data in its compute dtype).
        Sparse rows become canonical CSR (`check_sparse`), which the `cpu` backend clusters."""
        self._mlx_output = is_mlx_array(X)
        check_feature_names(self, X, reset=True)
        sparse = is_sparse(X)
        if sparse:
            if self.backend not in ("auto", "cpu"):
                raise ValueError(f"sparse input runs on the 'cpu' backend; got backend={self.backend!r}")
            X = check_sparse(X, owner=type(self).__name__)
        else:
            X = check_array(X, owner=type(self).__name__)
        check_n_features(self, X, reset=True)
        if X.shape[0] < self.n_clusters:
            raise ValueError(f"n_samples={X.shape[0]} should be >= n_clusters={self.n_clusters}.")
        if sparse:
            return X, check_sample_weight(sample_weight, X), "cpu"
        return prepare(X, sample_weight, self.backend)

    def _centers(self) -> np.ndarray:
        """The fitted centres as NumPy (a view when they are an MLX array)."""
        return np.asarray(self.cluster_centers_)

    def _centers_for(self, X: np.ndarray) -> np.ndarray:
        """The centres in X's float type (X is float64 where float32 would overflow)."""
        return self._centers().astype(X.dtype, copy=False)

    def _assign(self, X, weights=None):
        """Labels, squared distances and inertia of X on the fitted centres, by the backend
        that fitted them (sparse rows: the `cpu` backend)."""
        if is_sparse(X):
            return native().assign_sparse(*csr_arrays(X), self._centers_for(X), weights)
        backend = getattr(self, "backend_", "cpu")
        return engine_module(backend).assign(X, self._centers_for(X), weights, backend=native_backend(backend))

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
        if is_sparse(X):
            X = check_sparse(X, owner=type(self).__name__, dtype=self._centers().dtype)
            check_n_features(self, X, reset=False)
            return X
        X = check_array(X, owner=type(self).__name__, dtype=self._centers().dtype)
        check_n_features(self, X, reset=False)
        return X

    def _progress(self, total: int | None, unit: str = "it", desc: str | None = None, lines=None):
        """The engine's callback for `verbose`, as a context manager: scikit-learn's lines
        (made by `lines`, when given), or with `verbose="progress"` a progress bar named
        `desc` (default: the estimator's class); None when quiet."""
        if self.verbose and self.verbose != "progress" and lines is not None:
            return contextlib.nullcontext(lines())
        return progress_bar(self.verbose, total, desc or type(self).__name__, unit)

    # -- inference ----------------------------------------------------------------------
    def predict(self, X):
        """Index of the nearest cluster centre for each row of X."""
        data = self._validate_test_data(X)
        labels, _, _ = self._assign(data)
        return self._output(labels, X)

    def transform(self, X):
        """Euclidean distance from each row of X to every cluster centre."""
        data = self._validate_test_data(X)
        if is_sparse(data):
            squared = native().sq_distances_sparse(*csr_arrays(data), self._centers_for(data))
        else:
            squared = native().sq_distances(data, self._centers_for(data))
        distances = np.sqrt(squared)
        return self._output(distances, X)

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the (weighted) inertia of X on the fitted centres."""
        X = self._validate_test_data(X)
        weights = check_sample_weight(sample_weight, X)
        _, _, inertia = self._assign(X, weights)
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
            tags.input_tags.sparse = True
            return tags
