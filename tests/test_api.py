"""`kmeans()`, `backends()` and backend selection."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.cluster import KMeans as SkKMeans

import mlx_kmeans
from conftest import make_mixture
from mlx_kmeans import KMeans, KMeansResult, backends, kmeans
from mlx_kmeans._backend import resolve


def test_kmeans_function_results(dtype):
    X, _ = make_mixture(1000, 6, 8, seed=0, dtype=dtype)
    init = X[:8].copy()
    result = kmeans(X, 8, init=init, max_iter=100)
    assert isinstance(result, KMeansResult)
    centroids, labels, distances, inertia, n_iter, backend = result
    ref = SkKMeans(8, init=init, n_init=1, max_iter=100).fit(X)
    assert centroids.shape == (8, 6) and centroids.dtype == dtype
    assert labels.shape == (1000,) and labels.dtype == np.int32
    np.testing.assert_array_equal(labels, ref.labels_)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(centroids, ref.cluster_centers_, rtol=rtol, atol=rtol)
    X64, C64 = X.astype(np.float64), centroids.astype(np.float64)
    exact = ((X64 - C64[labels]) ** 2).sum(1)
    np.testing.assert_allclose(distances, exact, rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert inertia == pytest.approx(exact.sum(), rel=1e-9)
    assert n_iter == ref.n_iter_
    assert backend == resolve("auto", dtype)


def test_kmeans_function_is_reproducible_and_weighted():
    X, _ = make_mixture(500, 3, 4, seed=1)
    a, b = kmeans(X, 4, seed=5), kmeans(X, 4, seed=5)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    w = np.arange(1, 501, dtype=np.float64)
    weighted = kmeans(X, 4, seed=5, sample_weight=w)
    assert weighted.inertia == pytest.approx((weighted.distances * w).sum(), rel=1e-12)


def test_backends_lists_auto_order_with_reasons():
    listed = backends()
    assert [b.name for b in listed] == ["faiss", "mlx", "cpu"]
    assert all(b.reason for b in listed)
    assert next(b for b in listed if b.name == "cpu").available


def test_backend_choice_and_override(monkeypatch, caplog):
    X, _ = make_mixture(200, 3, 2, seed=2)
    with caplog.at_level(logging.INFO, logger="mlx_kmeans"):
        est = KMeans(2, random_state=0).fit(X)
    assert est.backend_ == "cpu"
    assert any("chosen automatically" in r.message for r in caplog.records)
    assert KMeans(2, backend="cpu", random_state=0).fit(X).backend_ == "cpu"
    monkeypatch.setenv("MLX_KMEANS_BACKEND", "cpu")
    assert kmeans(X, 2).backend == "cpu"
    monkeypatch.setenv("MLX_KMEANS_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="unknown backend"):
        kmeans(X, 2)


@pytest.mark.parametrize("name", ["mlx", "faiss"])
def test_unavailable_backend_is_a_clear_error(name):
    unavailable = {b.name: b for b in backends()}[name]
    if unavailable.available:
        pytest.skip(f"{name} is available here")
    with pytest.raises(ValueError, match=f"backend '{name}' is not available"):
        KMeans(2, backend=name).fit(np.ones((4, 2)))


def test_version_is_exposed():
    assert mlx_kmeans.__version__ == mlx_kmeans._native.__version__
