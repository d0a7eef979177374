"""mlx-kmeans: fast k-means with scikit-learn's API.

    from mlx_kmeans import KMeans, MiniBatchKMeans, kmeans, backends
"""

from ._api import KMeansResult, kmeans
from ._backend import Backend, backends
from ._kmeans import KMeans, MiniBatchKMeans
from ._native import __version__

__all__ = ["KMeans", "MiniBatchKMeans", "kmeans", "KMeansResult", "backends", "Backend", "__version__"]
