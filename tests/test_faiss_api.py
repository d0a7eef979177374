"""The faiss-style `Kmeans` against faiss itself."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from conftest import make_mixture
from mlx_kmeans import Kmeans

faiss = pytest.importorskip("faiss")


@pytest.fixture
def X():
    return make_mixture(4000, 16, 10, seed=31, spread=2.0, dtype=np.float32)[0]


def test_same_init_same_result_as_faiss(X):
    init = X[::400][:10].copy()
    # No subsampling on either side: the two would draw different subsets.
    ours = Kmeans(16, 10, niter=20, backend="cpu", max_points_per_centroid=1000)
    ref = faiss.Kmeans(16, 10, niter=20, max_points_per_centroid=1000)
    ours.train(X, init_centroids=init)
    ref.train(X, init_centroids=init)
    np.testing.assert_allclose(ours.centroids, ref.centroids, rtol=1e-4, atol=1e-4)
    D, I = ours.assign(X)
    D_ref, I_ref = ref.assign(X)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_allclose(D, D_ref, rtol=1e-3, atol=1e-3)
    assert I.dtype == np.int64 and D.shape == (len(X),)
    assert ours.obj[-1] == pytest.approx(ref.obj[-1], rel=1e-4)


def test_train_returns_objective_and_history(X):
    km = Kmeans(16, 10, niter=15, nredo=3, seed=5)
    final = km.train(X)
    assert km.centroids.shape == (10, 16) and km.centroids.dtype == np.float32
    assert 1 <= len(km.obj) <= 15 and final == km.obj[-1]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(km.obj, km.obj[1:]))
    assert [s["obj"] for s in km.iteration_stats] == km.obj
    # Same seed, same result.
    again = Kmeans(16, 10, niter=15, nredo=3, seed=5)
    again.train(X)
    np.testing.assert_array_equal(again.centroids, km.centroids)


def test_subsampling_and_bad_input(X, caplog):
    km = Kmeans(16, 5, niter=5, max_points_per_centroid=100)
    with caplog.at_level(logging.WARNING, logger="mlx_kmeans"):
        km.train(X)
    assert any("Sampling a subset of 500 / 4000" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="d=16"):
        Kmeans(16, 5).train(X[:, :8])
    with pytest.raises(ValueError, match="at least as large"):
        Kmeans(16, 50).train(X[:10])
    with pytest.raises(RuntimeError, match="before train"):
        Kmeans(16, 5).assign(X)
    with pytest.raises(ValueError, match="'k' parameter must be"):
        Kmeans(16, 0)
