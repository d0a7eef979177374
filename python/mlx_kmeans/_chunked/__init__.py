"""Lloyd's k-means over data held in chunks (`loop`), its per-chunk tasks (`tasks`) and its
initialisation (`init`)."""

from .init import INIT_METHODS, gather_rows
from .loop import CheckedFirstPass, ChunkedFit, ChunkSource, fit_chunked, fit_dtype

__all__ = ["CheckedFirstPass", "ChunkSource", "ChunkedFit", "fit_chunked", "gather_rows", "fit_dtype", "INIT_METHODS"]
