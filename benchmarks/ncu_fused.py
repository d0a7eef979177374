"""One Lloyd fit on the MLX backend with the fused assignment kernel, for Nsight Compute:
`ncu --clock-control none -k regex:fused_assign --launch-skip 2 --launch-count 1 --section
... python3 benchmarks/ncu_fused.py 1000000 128 1024` profiles one launch of
`fused_assign` (after the warm-up fit's) on Gaussian mixture data as `gpu.py` makes it."""

from __future__ import annotations

import os
import sys

import numpy as np

os.environ["MLX_KMEANS_MLX_FUSED"] = "1"

import mlx.core as mx  # noqa: E402

from mlx_kmeans import KMeans  # noqa: E402

n, d, k = (int(v) for v in sys.argv[1:4])
rng = np.random.default_rng(0)
centres = rng.normal(size=(k // 2, d)).astype(np.float32)
X = centres[rng.integers(0, k // 2, n)] + rng.normal(scale=0.25, size=(n, d)).astype(np.float32)
X = mx.array(X)
init = np.asarray(X[:k])
for _ in range(2):
    est = KMeans(k, init=init, n_init=1, max_iter=3, tol=0.0, backend="mlx").fit(X)
print(f"{n}x{d}, k={k}: backend={est.backend_}, {est.n_iter_} iterations, inertia {est.inertia_:.6e}")
