"""faiss-style `Kmeans`: the same loop as `KMeans`, with faiss's names and defaults."""

from __future__ import annotations

import logging
import time

import numpy as np

from ._backend import engine_module, native_backend
from ._params import BackendName, Bool, Int, check_params
from ._validation import check_array, check_sample_weight

logger = logging.getLogger("mlx_kmeans")


class Kmeans:
    """`faiss.Kmeans` look-alike: `Kmeans(d, k, niter=25, nredo=1, spherical=False, seed=1234,
    max_points_per_centroid=256, min_points_per_centroid=39, verbose=False, backend="auto")`.

    `train(x, weights=None, init_centroids=None)` runs `nredo` random initialisations (or the
    given centroids) of up to `niter` Lloyd iterations and keeps the lowest objective; it
    returns that objective. Like faiss, it trains on a random subset of
    `max_points_per_centroid · k` rows when given more, and warns when given fewer than
    `min_points_per_centroid · k`. After training: `centroids` (k × d), `obj` (objective per
    iteration), `iteration_stats` (one dict per iteration), and `assign(x) -> (D, I)` with
    squared distances and int64 labels.
    """

    _constraints = {
        "d": Int(1),
        "k": Int(1),
        "niter": Int(1),
        "nredo": Int(1),
        # faiss takes any C integer as a seed (-1 included).
        "seed": Int(-(2**63)),
        "max_points_per_centroid": Int(1),
        "min_points_per_centroid": Int(0),
        "backend": BackendName(),
    }

    def __init__(
        self,
        d,
        k,
        niter=25,
        nredo=1,
        spherical=False,
        seed=1234,
        max_points_per_centroid=256,
        min_points_per_centroid=39,
        verbose=False,
        backend="auto",
    ):
        check_params(
            self._constraints,
            dict(
                d=d,
                k=k,
                niter=niter,
                nredo=nredo,
                seed=seed,
                max_points_per_centroid=max_points_per_centroid,
                min_points_per_centroid=min_points_per_centroid,
                backend=backend,
            ),
        )
        self.d, self.k, self.niter, self.nredo = int(d), int(k), int(niter), int(nredo)
        self.spherical = bool(spherical)
        self.seed = int(seed)
        self.max_points_per_centroid = int(max_points_per_centroid)
        self.min_points_per_centroid = int(min_points_per_centroid)
        self.verbose = bool(verbose)
        self.backend = backend
        self.centroids = None
        self.obj = []
        self.iteration_stats = []
        self.backend_ = None

    def train(self, x, weights=None, init_centroids=None):
        x = check_array(x, owner="Kmeans")
        if x.shape[1] != self.d:
            raise ValueError(f"x has {x.shape[1]} columns; this Kmeans was made for d={self.d}")
        n = x.shape[0]
        if n < self.k:
            raise ValueError(f"Number of training points ({n}) should be at least as large as number of clusters ({self.k})")
        w = check_sample_weight(weights, x)
        # Negative seeds are valid in faiss; the generators take their 32-bit pattern.
        seed = self.seed % 2**32
        rng = np.random.default_rng(seed)
        if n > self.max_points_per_centroid * self.k:
            keep = np.sort(rng.choice(n, self.max_points_per_centroid * self.k, replace=False))
            logger.warning("Sampling a subset of %d / %d for training", len(keep), n)
            x, w = x[keep], None if w is None else w[keep]
        elif n < self.min_points_per_centroid * self.k:
            logger.warning(
                "clustering %d points to %d centroids: please provide at least %d training points",
                n, self.k, self.min_points_per_centroid * self.k,
            )
        if init_centroids is not None:
            init = check_array(init_centroids, name="init_centroids", owner="Kmeans")
            if init.shape != (self.k, self.d):
                raise ValueError(f"init_centroids must have shape ({self.k}, {self.d}); got {init.shape}")
            n_init = 1
        else:
            init, n_init = "random", self.nredo
        stats = []
        start = time.perf_counter()

        def progress(run, iteration, inertia, center_shift, event="iteration"):
            if event != "iteration":
                return
            stats.append(dict(run=run, iteration=iteration, obj=inertia, time=time.perf_counter() - start))
            if self.verbose:
                print(f"  Iteration {iteration - 1} ({stats[-1]['time']:.2f} s): objective={inertia:g}")

        from ._kmeans import KMeans

        model = KMeans(
            n_clusters=self.k, init=init, n_init=n_init, max_iter=self.niter, tol=0.0,
            random_state=seed, spherical=self.spherical, backend=self.backend,
        )
        result, backend = model._fit(x, w, progress=progress)
        self.centroids = result["centroids"]
        self.obj = list(result["inertia_history"])
        runs = {}
        for entry in stats:
            runs.setdefault(entry["run"], []).append(entry)
        # The kept run is the one whose objectives the engine returned.
        self.iteration_stats = next(
            (entries for entries in runs.values() if [e["obj"] for e in entries] == self.obj), []
        )
        self.backend_ = backend
        return self.obj[-1] if self.obj else float(result["inertia"])

    def assign(self, x):
        """Nearest centroid of each row: (squared distances, int64 labels)."""
        if self.centroids is None:
            raise RuntimeError("Kmeans.assign called before train")
        x = check_array(x, owner="Kmeans", dtype=self.centroids.dtype)
        if x.shape[1] != self.d:
            raise ValueError(f"x has {x.shape[1]} columns; this Kmeans was made for d={self.d}")
        centroids = self.centroids.astype(x.dtype, copy=False)
        labels, distances, _ = engine_module(self.backend_).assign(x, centroids, backend=native_backend(self.backend_))
        return distances, labels.astype(np.int64)
