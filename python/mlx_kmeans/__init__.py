"""mlx-kmeans: fast k-means with scikit-learn's API.

    from mlx_kmeans import KMeans, MiniBatchKMeans, kmeans, backends
"""

from ._loader import load_native

_native = load_native()

from ._api import KMeansResult, kmeans  # noqa: E402
from ._backend import Backend, backends  # noqa: E402
from ._faiss_api import Kmeans  # noqa: E402
from ._kmeans import KMeans, MiniBatchKMeans  # noqa: E402

__version__ = _native.__version__

__all__ = ["KMeans", "MiniBatchKMeans", "Kmeans", "kmeans", "KMeansResult", "backends", "Backend", "__version__"]
