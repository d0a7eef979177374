"""`metalfaiss.clustering` names on top of mlx-kmeans: code written for that API runs with
only its import line changed.

    params = ClusteringParameters(max_iterations=20, tolerance=1e-4, spherical=False, seed=42)
    clustering = AnyClustering.new(d=128, k=100, parameters=params)
    clustering.train(data)              # a list of lists, NumPy, MLX or Arrow
    centroids = clustering.centroids()  # an MLX array when MLX is installed, else NumPy
    distances, labels = clustering.assign(data)

    centroids = kmeans_clustering(data, d=128, k=100, params=params)

Training is Lloyd's algorithm with k-means++ initialisation (`mlx_kmeans.KMeans`), on the
automatically chosen backend unless `parameters.backend` names one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .._kmeans import KMeans
from .._validation import check_array


@dataclass
class ClusteringParameters:
    """Clustering settings, with metalfaiss's names and faiss's (`niter`, `nredo`,
    `verbose`, `min_points_per_centroid`, `max_points_per_centroid`) as aliases.

    `tolerance` is relative to the mean feature variance, as scikit-learn's `tol`; `seed=None`
    draws fresh randomness each time.
    """

    max_iterations: int = 20
    tolerance: float = 1e-4
    spherical: bool = False
    seed: Optional[int] = None
    nredo: int = 1
    verbose: bool = False
    min_points_per_centroid: int = 39
    max_points_per_centroid: int = 256
    backend: str = "auto"
    niter: Optional[int] = field(default=None, repr=False)

    def __post_init__(self):
        if self.niter is not None:  # faiss's name wins when both are given
            self.max_iterations = self.niter
        self.niter = self.max_iterations
        for name in ("max_iterations", "nredo"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"ClusteringParameters.{name} must be an integer >= 1; got {value!r}")
        if not (isinstance(self.tolerance, (int, float, np.floating)) and self.tolerance >= 0):
            raise ValueError(f"ClusteringParameters.tolerance must be a number >= 0; got {self.tolerance!r}")


def _output(array: np.ndarray):
    """An MLX array when MLX is importable, else the NumPy array."""
    try:
        import mlx.core as mx
    except ImportError:
        return array
    return mx.array(array)


class AnyClustering:
    """k-means with the metalfaiss interface: `AnyClustering.new(d, k, parameters)`,
    `train(xs)`, `centroids()`, and `assign(xs) -> (distances, labels)`."""

    def __init__(self, index_pointer=None, parameters: Optional[ClusteringParameters] = None):
        # `index_pointer` exists for signature compatibility; it is not used.
        self.parameters = parameters if parameters is not None else ClusteringParameters()
        if not isinstance(self.parameters, ClusteringParameters):
            raise TypeError(f"parameters must be a ClusteringParameters; got {type(self.parameters).__name__}")
        self.d: Optional[int] = None
        self.k: Optional[int] = None
        self._model: Optional[KMeans] = None

    @classmethod
    def new(cls, d: int, k: int, parameters: Optional[ClusteringParameters] = None) -> "AnyClustering":
        for name, value in (("d", d), ("k", k)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        instance = cls(parameters=parameters)
        instance.d, instance.k = int(d), int(k)
        return instance

    def train(self, xs, index=None) -> None:
        """Cluster the rows of `xs` (n × d). `index` is accepted for compatibility."""
        if self.k is None or self.d is None:
            raise ValueError("use AnyClustering.new(d, k, parameters) to set d and k before training")
        x = check_array(xs, owner="AnyClustering")
        if x.shape[1] != self.d:
            raise ValueError(f"Data dimension {x.shape[1]} does not match d={self.d}")
        p = self.parameters
        self._model = KMeans(
            n_clusters=self.k,
            n_init=p.nredo,
            max_iter=p.max_iterations,
            tol=float(p.tolerance),
            random_state=p.seed,
            spherical=p.spherical,
            verbose=p.verbose,
            backend=p.backend,
        ).fit(x)

    def _fitted(self) -> KMeans:
        if self._model is None:
            raise RuntimeError("Clustering not trained: call train() first")
        return self._model

    def centroids(self):
        """The k × d centroids (an MLX array when MLX is installed, else NumPy)."""
        return _output(self._fitted().cluster_centers_)

    def labels(self):
        """The cluster of each training row."""
        return _output(self._fitted().labels_)

    def assign(self, xs):
        """`(distances, labels)` of each row of `xs` to its nearest centroid (squared L2)."""
        model = self._fitted()
        x = check_array(xs, owner="AnyClustering", dtype=model.cluster_centers_.dtype)
        if x.shape[1] != self.d:
            raise ValueError(f"Data dimension {x.shape[1]} does not match d={self.d}")
        labels, distances, _ = model._assign(x)
        return _output(distances), _output(labels)

    @property
    def obj(self) -> list:
        """The objective (inertia) after each iteration of the kept run."""
        return list(self._fitted().inertia_history_)


def kmeans_clustering(xs, d: int, k: int, params: Optional[ClusteringParameters] = None, *, parameters=None):
    """Cluster `xs` into `k` groups and return the centroids (see `AnyClustering`)."""
    clustering = AnyClustering.new(d=d, k=k, parameters=params if params is not None else parameters)
    clustering.train(xs)
    return clustering.centroids()
