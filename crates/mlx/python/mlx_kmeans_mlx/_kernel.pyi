"""Type stubs for the MLX kernel's extension module: the native functions of
`mlx_kmeans._native` (here `backend="mlx"` runs the MLX kernel), plus what describes the MLX
it runs on."""

from mlx_kmeans._native import *  # noqa: F403
from mlx_kmeans._native import __all__ as __all__
from mlx_kmeans._native import __version__ as __version__

__all__ += ["mlx_info", "shared_kernels", "MLX_BUILT_AGAINST"]

MLX_BUILT_AGAINST: str
"""The MLX release whose headers and libmlx this module was built against."""

def mlx_info() -> tuple[bool, bool, str]:
    """(MLX makes a device, that device is a GPU, a description or the reason it fails)."""

def shared_kernels(gpu: bool) -> tuple[str | None, list[str], bool, str]:
    """The shared-source kernels a fit would run here, where MLX's device is a GPU or not
    (`gpu`): `(dialect, names, active, reason)`; their first-use check runs now if it has not
    run in this process."""
