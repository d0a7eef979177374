"""mlx-kmeans: fast k-means with scikit-learn's API.

    from mlx_kmeans import KMeans, MiniBatchKMeans, kmeans, backends
"""

# `_native` needs no MLX; the MLX kernel (the plugin `mlx_kmeans_mlx`) loads only when the
# mlx backend is probed.
from . import _native
from ._api import KMeansResult, k_means, kmeans, kmeans_plusplus
from ._backend import Backend, backends
from ._faiss_api import Kmeans
from ._kmeans import KMeans, MiniBatchKMeans
from ._stream import kmeans_streaming

__version__ = _native.__version__

__all__ = ["KMeans", "MiniBatchKMeans", "Kmeans", "kmeans", "kmeans_streaming", "k_means", "kmeans_plusplus", "KMeansResult", "backends", "Backend", "__version__"]
