"""The metalfaiss-compatible API: the seed's two examples with only the import changed, and
results checked against NumPy in float64."""

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")

from mlx_kmeans.metalfaiss.clustering import AnyClustering, ClusteringParameters, kmeans_clustering  # noqa: E402


@pytest.fixture(scope="module")
def rows():
    """1000 rows of 128 floats as a list of lists (what the seed's example passed)."""
    rng = np.random.default_rng(7)
    centers = rng.normal(scale=3.0, size=(100, 128))
    X = centers[rng.integers(0, 100, 1000)] + rng.normal(size=(1000, 128))
    return X.astype(np.float32).tolist()


def nearest(X, C):
    d = ((X[:, None, :].astype(np.float64) - C[None, :, :].astype(np.float64)) ** 2).sum(-1)
    return d.argmin(1), d.min(1)


def test_seed_example_any_clustering(rows):
    params = ClusteringParameters(max_iterations=20, tolerance=1e-4, spherical=False, seed=42)
    clustering = AnyClustering.new(d=128, k=100, parameters=params)
    clustering.train(rows)
    centroids = clustering.centroids()
    assert isinstance(centroids, mx.array) and centroids.shape == (100, 128)
    C, X = np.array(centroids), np.asarray(rows, dtype=np.float32)
    # Assignments work (the original's did not) and are the nearest centroids.
    distances, labels = clustering.assign(rows)
    ref_labels, ref_dist = nearest(X, C)
    assert np.mean(np.array(labels) == ref_labels) >= 0.999
    np.testing.assert_allclose(np.array(distances), ref_dist, rtol=1e-3, atol=1e-2)
    # At convergence every centroid is the mean of its rows.
    train_labels = np.array(clustering.labels())
    for j in np.unique(train_labels)[:10]:
        np.testing.assert_allclose(C[j], X[train_labels == j].mean(0), rtol=1e-4, atol=1e-4)
    assert len(clustering.obj) >= 1


def test_seed_example_kmeans_clustering(rows):
    params = ClusteringParameters(max_iterations=20, tolerance=1e-4, spherical=False, seed=42)
    centroids = kmeans_clustering(rows, 128, 100, params)
    assert isinstance(centroids, mx.array) and centroids.shape == (100, 128)
    again = kmeans_clustering(rows, d=128, k=100, params=params)
    np.testing.assert_array_equal(np.array(centroids), np.array(again))  # same seed, same result


def test_faiss_field_names_and_spherical(rows):
    params = ClusteringParameters(niter=5, nredo=2, spherical=True, seed=1)
    assert params.max_iterations == 5
    clustering = AnyClustering.new(d=128, k=10, parameters=params)
    clustering.train(np.asarray(rows))
    norms = np.linalg.norm(np.array(clustering.centroids()), axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda: ClusteringParameters(max_iterations=0), "max_iterations"),
        (lambda: ClusteringParameters(tolerance=-1.0), "tolerance"),
        (lambda: AnyClustering.new(d=0, k=3), "d must be"),
        (lambda: AnyClustering().centroids(), "not trained"),
        (lambda: AnyClustering.new(d=3, k=2).train([[1.0, 2.0], [3.0, 4.0]]), "dimension 2"),
        (lambda: AnyClustering.new(d=2, k=5).train([[1.0, 2.0], [3.0, 4.0]]), "n_clusters=5"),
    ],
)
def test_bad_input_raises(make, error):
    with pytest.raises((ValueError, RuntimeError), match=error):
        make()
