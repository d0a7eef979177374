"""Data the device may not hold (more than `MLX_KMEANS_MLX_DEVICE_BYTES`, by default MLX's
memory limit, with its working copies) stays on the host and is streamed to the device in
blocks on every pass. Here the limit is forced down to one byte, so that every fit streams, and
each fit is compared with float64 Lloyd from the same start and with the same fit held on the
device. On MLX's CPU build this runs the blocks through MLX's ops; `test_gpu.py` runs them
through the custom CUDA kernels."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from conftest import make_mixture
from float64_lloyd import float64_lloyd, float64_nearest
from mlx_kmeans import KMeans, MiniBatchKMeans, backends, kmeans

pytestmark = pytest.mark.skipif(not any(b.name == "mlx" and b.available for b in backends()), reason="mlx unavailable here")

STREAMED = "MLX_KMEANS_MLX_DEVICE_BYTES"


@pytest.fixture(scope="module")
def mixture():
    """Two centroids per true cluster, so that many rows sit near a tie; enough rows and
    features that a pass takes several blocks (16,384 rows each at k=256, d=64 here)."""
    X, _ = make_mixture(40_000, 64, 128, seed=5, spread=2.0, dtype=np.float32)
    init = X[np.random.default_rng(6).choice(len(X), 256, replace=False)]
    return X, init


@pytest.mark.parametrize("weighted", [False, True])
def test_streamed_lloyd_equals_float64_lloyd(monkeypatch, mixture, weighted):
    """One Lloyd step over streamed blocks gives float64 Lloyd's centroids to 1e-5 of their
    scale (its labels are the exact nearest of the start, so no rounding can lead the two
    apart); after five, labels are the exact nearest returned centroids, with the iterations
    and inertia of the same fit held on the device. The caller's data is unchanged."""
    X, init = mixture
    w = np.random.default_rng(7).uniform(0.5, 2.0, len(X)).astype(np.float32) if weighted else None
    X_before = X.copy()
    centroids, _, _ = float64_lloyd(X, init, w, max_iter=1)
    held = kmeans(X, 256, init=init, max_iter=5, tol=0.0, sample_weight=w, backend="mlx")
    monkeypatch.setenv(STREAMED, "1")
    one = kmeans(X, 256, init=init, max_iter=1, tol=0.0, sample_weight=w, backend="mlx")
    scale = float(np.abs(centroids).max())
    assert float(np.abs(one.centroids - centroids).max()) <= 1e-5 * scale
    np.testing.assert_array_equal(one.labels, float64_nearest(X, one.centroids))
    streamed = kmeans(X, 256, init=init, max_iter=5, tol=0.0, sample_weight=w, backend="mlx")
    np.testing.assert_array_equal(streamed.labels, float64_nearest(X, streamed.centroids))
    assert streamed.n_iter == held.n_iter
    assert streamed.inertia == pytest.approx(held.inertia, rel=1e-4)
    np.testing.assert_array_equal(X, X_before)


def test_streamed_data_far_from_the_origin(monkeypatch):
    """Tight clusters offset by 1e3 (the host computes the shift that keeps float32 products
    accurate): labels are the exact nearest returned centroids, the inertia that of the fit
    held on the device; one centroid of data offset by 1e5 is their float64 mean."""
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(8, 16)) * 0.05
    X = (1e3 + centres[rng.integers(0, 8, 20_000)] + rng.normal(0, 0.02, (20_000, 16))).astype(np.float32)
    init = X[:8].copy()
    held = kmeans(X, 8, init=init, max_iter=50, backend="mlx")
    monkeypatch.setenv(STREAMED, "1")
    r = kmeans(X, 8, init=init, max_iter=50, backend="mlx")
    np.testing.assert_array_equal(r.labels, float64_nearest(X, r.centroids))
    assert r.inertia == pytest.approx(held.inertia, rel=1e-4)
    far = (1e5 + rng.normal(size=(20_000, 4))).astype(np.float32)
    centre = kmeans(far, 1, backend="mlx").centroids[0]
    np.testing.assert_allclose(centre, far.astype(np.float64).mean(0), atol=0.01)


def test_estimators_stream_and_say_so(monkeypatch, mixture, caplog):
    """KMeans and MiniBatchKMeans with their defaults (k-means++ then in the host loop over
    streamed blocks, as on the cpu backend): the log says the data stays on the host, labels
    are the exact nearest returned centroids, and the inertia is the cpu backend's within 1 %
    (seeding draws the same random numbers there)."""
    X, _ = mixture
    X = X[:12_000]
    monkeypatch.setenv(STREAMED, "1")
    for make in (lambda b: KMeans(64, n_init=1, random_state=0, backend=b), lambda b: MiniBatchKMeans(64, random_state=0, backend=b)):
        with caplog.at_level(logging.INFO, logger="mlx_kmeans"):
            caplog.clear()
            streamed = make("mlx").fit(X)
        assert any("stay on the host and are streamed" in r.getMessage() for r in caplog.records)
        np.testing.assert_array_equal(streamed.labels_, float64_nearest(X, streamed.cluster_centers_))
        np.testing.assert_array_equal(streamed.predict(X), streamed.labels_)
        assert streamed.inertia_ == pytest.approx(make("cpu").fit(X).inertia_, rel=0.01)


def test_data_within_the_limit_is_held(monkeypatch, mixture, caplog):
    """A limit the data fits under keeps it on the device (nothing logged)."""
    X, init = mixture
    monkeypatch.setenv(STREAMED, str(1 << 40))
    with caplog.at_level(logging.INFO, logger="mlx_kmeans"):
        kmeans(X[:2000], 8, init=init[:8], max_iter=2, backend="mlx")
    assert not any("streamed" in r.getMessage() for r in caplog.records)
