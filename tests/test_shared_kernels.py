"""The MLX kernel's shared-source kernels (one source for Metal and CUDA: `band_argmin`,
`chunk_sums`, `cluster_means`, `seeding_distances`) check themselves at their first use in a process. Where the
kernel API refuses them (here: MLX's CPU build has neither Metal nor CUDA), the fit must run
on MLX's own operations, give the exact labels, and say why in a warning on the
`mlx_kmeans` logger; `backends()` must say they are off. On the lent GPU,
tests/test_gpu.py runs the CUDA dialect itself."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mlx_kmeans import backends

from conftest import make_mixture
from float64_lloyd import float64_lloyd

MLX = next((b for b in backends() if b.name == "mlx"), None)
pytestmark = pytest.mark.skipif(
    MLX is None or not MLX.available or MLX.gpu, reason="needs MLX without a GPU (the kernel API refuses both dialects)"
)

# A fit in a fresh process (the check runs at a process's first use), printing what the
# `mlx_kmeans` logger warned and the labels.
FIT = """
import json, logging, sys
import numpy as np
from mlx_kmeans import kmeans
warnings = []
handler = logging.Handler(logging.WARNING)
handler.emit = lambda record: warnings.append(record.name + ": " + record.getMessage())
logging.getLogger("mlx_kmeans").addHandler(handler)
data = np.load(sys.argv[1])
r = kmeans(data["X"], len(data["init"]), init=data["init"], max_iter=50, tol=0.0, backend="mlx")
print(json.dumps({"warnings": warnings, "labels": np.asarray(r.labels).tolist(), "centroids": np.asarray(r.centroids).tolist()}))
"""


@pytest.mark.parametrize("dialect", ["metal", "cuda"])
def test_refused_kernels_leave_the_fit_exact_on_mlx_ops(tmp_path, monkeypatch, dialect):
    X, _ = make_mixture(3000, 24, 12, seed=5, dtype=np.float32)
    init = X[np.random.default_rng(6).choice(len(X), 16, replace=False)]
    np.savez(tmp_path / "data.npz", X=X, init=init)
    monkeypatch.setenv("MLX_KMEANS_MLX_SHARED", dialect)
    out = subprocess.run([sys.executable, "-c", FIT, str(tmp_path / "data.npz")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    refusals = [w for w in result["warnings"] if f"the {dialect} kernels" in w and "MLX's ops" in w]
    assert len(refusals) == 1, result["warnings"]
    assert refusals[0].startswith("mlx_kmeans"), refusals
    centroids, labels, _ = float64_lloyd(X, init)
    np.testing.assert_array_equal(result["labels"], labels)
    np.testing.assert_allclose(result["centroids"], centroids, rtol=0, atol=1e-5 * np.abs(centroids).max())


def test_backends_says_the_kernels_are_off_and_why(monkeypatch):
    monkeypatch.setenv("MLX_KMEANS_MLX_SHARED", "metal")
    mlx = next(b for b in backends() if b.name == "mlx")
    assert mlx.kernels == ()
    assert "metal kernels off" in mlx.reason, mlx.reason


def test_no_kernels_apply_by_default_off_apple_gpus(monkeypatch):
    monkeypatch.delenv("MLX_KMEANS_MLX_SHARED", raising=False)
    mlx = next(b for b in backends() if b.name == "mlx")
    assert mlx.kernels == ()
    assert "kernels" not in mlx.reason, mlx.reason
