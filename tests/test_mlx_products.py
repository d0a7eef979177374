"""How MLX multiplies float32 matrices on its device, measured once a process
(`crates/mlx/src/device/products.rs`): float32's own precision on MLX's CPU and on Apple GPUs
before the M5 class, rounded inputs (TF32-class) on NVIDIA tensor cores and an M5's neural
accelerators unless `MLX_ENABLE_TF32=0`. Where products are rounded the MLX kernel splits its
GEMMs into bfloat16 halves; `MLX_KMEANS_MLX_SPLIT=1` takes that path anywhere, so it is
tested here on MLX's CPU build too, against float64 Lloyd."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import logged_near_ties, make_mixture, split_clusters
from float64_lloyd import float64_lloyd, float64_nearest
from mlx_kmeans import MiniBatchKMeans, backends, kmeans

MLX = {b.name: b for b in backends()}["mlx"]
pytestmark = pytest.mark.skipif(not MLX.available, reason="mlx unavailable here")

FLOAT32 = "float32 matrix products measured at float32 precision"
REDUCED = "float32 matrix products measured at reduced (TF32-class) precision"


def mlx_reason(environment: dict) -> str:
    """The mlx backend's reason in a fresh process (the measurement is made once a process)."""
    code = "from mlx_kmeans import backends; print({b.name: b for b in backends()}['mlx'].reason)"
    env = {**os.environ, **environment}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(MLX.gpu, reason="MLX's CPU device here")
def test_products_on_mlx_cpu_are_float32():
    assert FLOAT32 in MLX.reason, MLX.reason


@pytest.mark.gpu
@pytest.mark.skipif(not (MLX.gpu and sys.platform == "linux"), reason="needs MLX on an NVIDIA GPU")
def test_tensor_core_rounding_is_measured_and_mlx_enable_tf32_off_is_seen():
    """MLX's CUDA backend runs float32 GEMMs on TF32 tensor cores by default, and in float32
    with MLX_ENABLE_TF32=0: the measurement must tell the two apart."""
    assert REDUCED in mlx_reason({"MLX_ENABLE_TF32": "1"})
    assert FLOAT32 in mlx_reason({"MLX_ENABLE_TF32": "0"})


@pytest.fixture(scope="module")
def mixture():
    X, _ = make_mixture(3000, 24, 12, seed=31, spread=1.5, dtype=np.float32)
    init = X[np.random.default_rng(32).choice(len(X), 20, replace=False)]
    return X, init


@pytest.mark.parametrize("weighted", [False, True])
def test_split_gemms_give_float64_lloyd(monkeypatch, mixture, weighted):
    """Lloyd steps with every GEMM split (the path of a device that rounds): float64 Lloyd's
    centroids and iterations, labels the exact nearest returned centroids."""
    monkeypatch.setenv("MLX_KMEANS_MLX_SPLIT", "1")
    X, init = mixture
    w = np.random.default_rng(33).uniform(0.5, 2.0, len(X)).astype(np.float32) if weighted else None
    fit = kmeans(X, len(init), init=init, max_iter=100, tol=0.0, sample_weight=w, backend="mlx")
    centroids, _, n_iter = float64_lloyd(X, init, w, max_iter=100)
    assert fit.n_iter == n_iter
    assert float(np.abs(fit.centroids - centroids).max()) <= 1e-4 * float(np.abs(centroids).max())
    np.testing.assert_array_equal(fit.labels, float64_nearest(X, fit.centroids))


def test_split_gemms_decide_near_ties_exactly(caplog, monkeypatch):
    """Clusters split between two centroids in 256 dimensions: the split's wider bound flags
    more rows (so the switch took effect), and every label is still float64's nearest. On
    MLX's ops, the Mac's path (the custom CUDA kernels decide near ties their own way)."""
    monkeypatch.setenv("MLX_KMEANS_MLX_CUDA_KERNELS", "0")
    X, init = split_clusters(34, 16, 256, 5000, 1e-2)
    flagged = {}
    for split in ("0", "1"):
        monkeypatch.setenv("MLX_KMEANS_MLX_SPLIT", split)
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="mlx_kmeans"):
            fit = kmeans(X, 32, init=init, max_iter=1, backend="mlx")
        ties = logged_near_ties(caplog)
        assert ties, "no near-tie count logged"
        flagged[split] = ties[0][0]
        step_labels = float64_nearest(X, init)
        for j in np.unique(step_labels):
            np.testing.assert_allclose(fit.centroids[j], X[step_labels == j].mean(0), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(fit.labels, float64_nearest(X, fit.centroids))
    if FLOAT32 in MLX.reason:
        assert flagged["1"] > flagged["0"] > 0, flagged
    else:  # a rounding device splits either way
        assert flagged["1"] == flagged["0"] > 0, flagged


def test_split_minibatch_labels_are_exact(monkeypatch, mixture):
    monkeypatch.setenv("MLX_KMEANS_MLX_SPLIT", "1")
    X, _ = mixture
    est = MiniBatchKMeans(12, batch_size=256, max_iter=5, n_init=2, random_state=0, backend="mlx").fit(X)
    np.testing.assert_array_equal(est.labels_, float64_nearest(X, est.cluster_centers_))
    np.testing.assert_array_equal(est.predict(X), float64_nearest(X, est.cluster_centers_))
