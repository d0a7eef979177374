"""scikit-learn compatible `KMeans` on the Rust engine, and the one road by which every
Lloyd entry point reaches it."""

from __future__ import annotations

import functools
import logging
import warnings

import numpy as np

from ._backend import engine_module, native, native_backend, resolve
from ._base import _BaseKMeans, checked_centers
from ._minibatch import MiniBatchKMeans
from ._params import Bool, Options
from ._validation import check_feature_names, csr_arrays, is_sparse, seed_from
from ._verbose import KMeansLines, tolerance

logger = logging.getLogger("mlx_kmeans")

__all__ = ["KMeans", "MiniBatchKMeans"]


class KMeans(_BaseKMeans):
    """K-means clustering (Lloyd's algorithm), a drop-in for `sklearn.cluster.KMeans`.

    Parameters follow scikit-learn: `n_clusters`, `init` ('k-means++', 'random', an array
    or a callable), `n_init` ('auto': 1 for k-means++ or given centres, 10 otherwise), `max_iter`, `tol`
    (relative to the mean feature variance), `verbose` (scikit-learn's lines; "progress" for
    a progress bar), `random_state`, `copy_x` (the
    input is never modified either way) and `algorithm`. All algorithms run exact Lloyd
    iterations with the same labels: 'lloyd' searches every centroid for every row in every
    iteration (dense passes); 'elkan' lets rows whose triangle-inequality bounds (Hamerly's
    variant) prove they keep their centroid skip that search, in every iteration after the
    first, where the backend gains from it (the `cpu` backend; `mlx` and `faiss` search
    densely either way); 'auto' (the default) makes the bounds only where they save time,
    chosen as the fit runs (a sample of rows estimates how many rows they would leave to
    search, and bounded passes stop when one takes longer than a dense one; the `cpu`
    backend logs each choice at DEBUG level). As in scikit-learn, 'elkan'
    with one cluster warns and runs 'lloyd'. Extra: `backend` ('auto', 'cpu', 'mlx',
    'faiss') and `spherical` (unit-norm centroids, for cosine similarity on normalised rows).
    scipy.sparse input (CSR borrowed as it is; other formats converted once) is clustered by
    the `cpu` backend's sparse kernel, never densified.

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
        algorithm="auto",
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

    _constraints = {**_BaseKMeans._constraints, "algorithm": Options(("auto", "lloyd", "elkan")), "copy_x": Bool()}

    def fit(self, X, y=None, sample_weight=None):
        """Compute k-means clustering of X (n_samples × n_features)."""
        # The estimator keeps no per-row distances: the engine may spare their pass.
        result, backend = self._fit(X, sample_weight, distances=False)
        self._set_fitted(result["centroids"], result["labels"])
        self.inertia_ = float(result["inertia"])
        self.n_iter_ = int(result["n_iter"])
        self.inertia_history_ = np.asarray(result["inertia_history"])
        self._n_features_out = self._centers().shape[0]
        self.backend_ = backend
        self._warn_if_fewer_distinct()
        return self

    def _fit(self, X, sample_weight=None, progress=None, desc=None, distances=True):
        """The one road from every Lloyd entry point (`fit`, `kmeans`, faiss-style
        `Kmeans.train`) to the engine: checks, backend, init, the native fit. Returns the
        engine's result and the backend that ran. `progress` replaces the verbose bar, and
        `desc` names it. Without `distances` the result's may be empty."""
        self._check_params()
        if larger_than_memory(X):
            return self._fit_streamed(X, sample_weight, progress, desc)
        X, weights, backend = self._validate_fit_data(X, sample_weight)
        seed = seed_from(self.random_state)
        init = self._resolve_init(X, seed)
        algorithm = self._algorithm()

        def lines():
            return KMeansLines(algorithm, tolerance(X, float(self.tol)))

        options = self._run_options(init, seed)
        with self._progress(int(self.max_iter), desc=desc, lines=lines) as bar:
            progress = progress if progress is not None else bar
            if is_sparse(X):
                # Sparse rows: the cpu backend's CSR kernel, dense passes.
                result = native().kmeans_fit_sparse(*csr_arrays(X), weights, progress=progress, **options)
            else:
                engine = engine_module(backend)
                result = engine.kmeans_fit(
                    X,
                    weights,
                    algorithm=algorithm,
                    progress=progress,
                    backend=native_backend(backend),
                    distances=distances,
                    **options,
                )
        return result, backend

    def _algorithm(self) -> str:
        """The algorithm to run: scikit-learn's warning and 'lloyd' for 'elkan' with one
        cluster (no bounds to keep there)."""
        if self.algorithm == "elkan" and self.n_clusters == 1:
            warnings.warn(
                "algorithm='elkan' doesn't make sense for a single cluster. Using 'lloyd' instead.",
                RuntimeWarning,
                stacklevel=4,
            )
            return "lloyd"
        return str(self.algorithm)

    def _run_options(self, init, seed: int) -> dict:
        """What every Lloyd fit is given, in the engine's types."""
        return dict(
            n_clusters=int(self.n_clusters),
            init=init,
            n_init=self._n_init_for(init),
            max_iter=int(self.max_iter),
            tol=float(self.tol),
            seed=seed,
            spherical=bool(self.spherical),
        )

    def _fit_streamed(self, X, sample_weight, progress, desc):
        """A memory map larger than memory: Lloyd over chunks read in turn (`_stream`), with
        greedy k-means++ on a sample of rows for 'k-means++'."""
        from ._chunked import CheckedFirstPass, fit_chunked, fit_dtype
        from ._stream import ArrayChunks

        logger.info("X is a memory map of %.1f GB, more than half the memory available: fitting it in chunks", X.nbytes / 1e9)
        source = CheckedFirstPass(ArrayChunks(X, sample_weight), type(self).__name__)
        self._mlx_output = False
        check_feature_names(self, X, reset=True)
        self.n_features_in_ = source.n_features
        backend = resolve(self.backend, fit_dtype(source.dtype))
        seed = seed_from(self.random_state)
        init = self.init
        if callable(init):
            raise ValueError("a callable init needs the data in memory; pass 'k-means++', 'random' or an array")
        if not isinstance(init, str):
            init = checked_centers(init, self.n_clusters, source.n_features, type(self).__name__)
        algorithm = self._algorithm()
        # The tolerance is known once the first pass has read the chunks.
        lines = functools.partial(KMeansLines, algorithm, lambda: source.tol(float(self.tol)))
        with self._progress(int(self.max_iter), desc=desc, lines=lines) as bar:
            fit = fit_chunked(
                source,
                **self._run_options(init, seed),
                algorithm=algorithm,
                backend=backend,
                keep_labels=True,
                owner=type(self).__name__,
                progress=progress if progress is not None else bar,
            )
        result = dict(
            centroids=fit.centroids,
            labels=fit.labels,
            distances=fit.distances,
            inertia=fit.inertia,
            n_iter=fit.n_iter,
            inertia_history=fit.inertia_history,
        )
        return result, backend


def larger_than_memory(X) -> bool:
    """A memory map more than half as large as the memory available (read in chunks rather
    than in place, so that the fit's resident size stays bounded)."""
    from ._stream import available_memory

    if not isinstance(X, np.memmap):
        return False
    available = available_memory()
    return available is not None and X.nbytes > available // 2
