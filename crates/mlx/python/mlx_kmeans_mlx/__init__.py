"""The MLX kernel of mlx-kmeans, as a plugin: `mlx_kmeans` loads `mlx_kmeans_mlx._kernel` when
the `mlx` backend is probed or asked for, after checking that this plugin is of its own
version and that the installed MLX is the release the kernel was built against. Nothing here
is meant to be imported directly: use `mlx_kmeans` with `backend="mlx"` (or `"auto"`)."""
