"""Compatibility with the `metalfaiss.clustering` API: `from mlx_kmeans.metalfaiss.clustering
import AnyClustering, ClusteringParameters, kmeans_clustering`."""

from .clustering import AnyClustering, ClusteringParameters, kmeans_clustering

__all__ = ["AnyClustering", "ClusteringParameters", "kmeans_clustering"]
