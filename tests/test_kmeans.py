"""KMeans against scikit-learn and a float64 NumPy reference."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.cluster import KMeans as SkKMeans
from sklearn.datasets import load_digits

from conftest import make_mixture, reference_lloyd, reference_lloyd_relocating
from mlx_kmeans import KMeans, kmeans


@pytest.mark.parametrize("weighted", [False, True])
def test_given_init_matches_sklearn(dtype, weighted):
    X, _ = make_mixture(2000, 16, 12, seed=3, spread=3.0, dtype=dtype)
    init = X[::167][:12].copy()
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(X)).astype(dtype) if weighted else None
    ours = KMeans(12, init=init, n_init=1, max_iter=50, tol=1e-6).fit(X, sample_weight=w)
    ref = SkKMeans(12, init=init, n_init=1, max_iter=50, tol=1e-6).fit(X, sample_weight=w)
    rtol = 1e-4 if dtype == np.float32 else 1e-9
    assert ours.cluster_centers_.dtype == dtype
    assert (ours.labels_ == ref.labels_).mean() >= 0.999
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=rtol, atol=rtol * 10)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=rtol)
    assert ours.n_iter_ == ref.n_iter_


def test_given_init_matches_numpy_reference():
    X, _ = make_mixture(500, 4, 5, seed=7, spread=4.0)
    init = X[:5].copy()
    centers, labels, inertia = reference_lloyd(X, init, max_iter=100)
    ours = KMeans(5, init=init, n_init=1, max_iter=100, tol=0).fit(X)
    np.testing.assert_array_equal(ours.labels_, labels)
    np.testing.assert_allclose(ours.cluster_centers_, centers, rtol=1e-10)
    assert ours.inertia_ == pytest.approx(inertia, rel=1e-10)


def test_many_iterations_on_overlapping_clusters_match_numpy_reference():
    # Overlapping clusters keep labels moving for many iterations, which exercises the bounds
    # that let rows skip the full search; every label must still be the nearest centroid's.
    X, _ = make_mixture(3000, 6, 40, seed=5, spread=1.0)
    init = X[::75][:40].copy()
    centers, labels, inertia = reference_lloyd(X, init, max_iter=60)
    ours = KMeans(40, init=init, n_init=1, max_iter=60, tol=0).fit(X)
    assert ours.n_iter_ >= 8
    np.testing.assert_array_equal(ours.labels_, labels)
    np.testing.assert_allclose(ours.cluster_centers_, centers, rtol=1e-9, atol=1e-12)
    assert ours.inertia_ == pytest.approx(inertia, rel=1e-10)


def _float32_mixture(n, d, centers, seed):
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 4.0, size=(centers, d))
    return (means[rng.integers(0, centers, size=n)] + rng.normal(size=(n, d))).astype(np.float32)


@pytest.mark.parametrize("case", ["overlapping", "weights and empty starts"])
def test_float32_fit_equals_float64_lloyd(case):
    # float32 data where the expanded distance ‖x‖² + ‖c‖² − 2x·c misleads: a near-tied row
    # (overlapping clusters), and rows whose order by distance decides which ones the empty
    # clusters take (cancellation against large centroid norms). Labels must be the exact
    # nearest centroids at every iteration, so the whole fit equals float64 Lloyd.
    k = 64
    if case == "overlapping":
        X = _float32_mixture(20_000, 64, 80, seed=1)
        init, weights = X[np.random.default_rng(2).choice(len(X), k, replace=False)], None
    else:
        rng = np.random.default_rng(4)
        means = rng.normal(0.0, 20.0, (k, 64))
        X = (means[rng.integers(0, k, 20_000)] + rng.normal(size=(20_000, 64))).astype(np.float32)
        init = (means + rng.normal(scale=0.5, size=means.shape)).astype(np.float32)
        weights = rng.uniform(0.5, 2.0, len(X)).astype(np.float32)
        init[3], init[9] = 1e3, -1e3
    centers, labels, n_iter = reference_lloyd_relocating(X, init, weights)
    ours = kmeans(X, k, init=init, max_iter=50, tol=0.0, sample_weight=weights, backend="cpu")
    assert ours.n_iter == n_iter
    np.testing.assert_array_equal(ours.labels, labels)
    np.testing.assert_allclose(ours.centroids, centers, rtol=0, atol=1e-6 * np.abs(centers).max())


def _mean_inertia(estimator_cls, X, k, seeds, **kw):
    return float(np.mean([estimator_cls(k, random_state=s, **kw).fit(X).inertia_ for s in seeds]))


@pytest.mark.parametrize("k", [10, 30])
def test_kmeanspp_inertia_close_to_sklearn_on_digits(k):
    X = load_digits().data
    seeds = range(8)
    ours = _mean_inertia(KMeans, X, k, seeds, n_init=1)
    ref = _mean_inertia(SkKMeans, X, k, seeds, n_init=1)
    assert ours <= ref * 1.01, (ours, ref)


@pytest.mark.parametrize("dtype_", [np.float32, np.float64])
def test_kmeanspp_inertia_close_to_sklearn_on_mixture(dtype_):
    X, _ = make_mixture(3000, 20, 40, seed=11, spread=2.0, dtype=dtype_)
    seeds = range(5)
    ours = _mean_inertia(KMeans, X, 40, seeds, n_init=1)
    ref = _mean_inertia(SkKMeans, X, 40, seeds, n_init=1)
    assert ours <= ref * 1.01, (ours, ref)


def test_random_init_and_n_init_keep_best():
    X, _ = make_mixture(1500, 8, 15, seed=5, spread=2.0)
    single = [KMeans(15, init="random", n_init=1, random_state=s).fit(X).inertia_ for s in range(30)]
    multi = KMeans(15, init="random", n_init=6, random_state=0).fit(X).inertia_
    # Random init is noisy (single runs spread over 2x here): compare means over 30 seeds.
    ref = _mean_inertia(SkKMeans, X, 15, range(30), init="random", n_init=1)
    assert multi <= np.mean(single)
    assert np.mean(single) <= ref * 1.2


def test_predict_transform_score_against_numpy(blobs, dtype):
    X = blobs.astype(dtype)
    est = KMeans(6, random_state=0).fit(X)
    X64 = X.astype(np.float64)
    C64 = est.cluster_centers_.astype(np.float64)
    d2 = ((X64[:, None, :] - C64[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(est.predict(X), d2.argmin(1))
    np.testing.assert_array_equal(est.labels_, d2.argmin(1))
    tol = 1e-3 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(est.transform(X), np.sqrt(d2), rtol=tol, atol=tol)
    assert est.transform(X).dtype == dtype
    assert est.score(X) == pytest.approx(-d2.min(1).sum(), rel=1e-6)
    assert est.inertia_ == pytest.approx(d2.min(1).sum(), rel=1e-6)
    np.testing.assert_array_equal(est.fit_predict(X), est.labels_)


def test_centroids_are_means_of_members_after_convergence(blobs):
    est = KMeans(6, random_state=1, tol=0, max_iter=500).fit(blobs)
    for j in range(6):
        np.testing.assert_allclose(est.cluster_centers_[j], blobs[est.labels_ == j].mean(0), rtol=1e-9)


def test_empty_cluster_is_repaired():
    # Two far-away centres start with no members: both must end up owning rows.
    X, _ = make_mixture(300, 2, 3, seed=2)
    init = np.vstack([X[:3], [[1e4, 1e4], [-1e4, -1e4]]])
    est = KMeans(5, init=init, n_init=1, max_iter=100).fit(X)
    assert len(np.unique(est.labels_)) == 5
    assert np.abs(est.cluster_centers_).max() < 1e3


@pytest.mark.parametrize("algorithm", ["lloyd", "elkan"])
def test_empty_clusters_competing_for_duplicated_far_points_match_sklearn(algorithm):
    """Five centres start far from every row: in the first step they compete for the rows
    farthest from their centres, a point repeated three times, another repeated twice and a
    third further in. scikit-learn's relocation (farthest first) decides which empty cluster
    takes which row, and every later step; the same labels, centres and iterations here.
    (Rows tied exactly at the cut are taken in an order NumPy's partition leaves undefined;
    distinct weights on such rows are not compared.)"""
    for seed in range(12):
        rng = np.random.default_rng(seed)
        core = rng.normal(size=(60, 3))
        far = rng.normal(size=(3, 3)) * [[20.0], [12.0], [8.0]]
        X = np.vstack([core, far[[0, 0, 0, 1, 1, 2]]])[rng.permutation(66)]
        init = np.vstack([core[:3], 1e4 + rng.normal(size=(5, 3))])
        ours = KMeans(8, init=init, n_init=1, max_iter=100, algorithm=algorithm).fit(X)
        theirs = SkKMeans(8, init=init, n_init=1, max_iter=100).fit(X)
        np.testing.assert_array_equal(ours.labels_, theirs.labels_)
        np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-12, atol=1e-12)
        assert ours.n_iter_ == theirs.n_iter_


def test_sample_weight_integer_equals_repetition():
    X, _ = make_mixture(200, 3, 4, seed=9)
    init = X[:4].copy()
    w = np.random.default_rng(1).integers(1, 4, len(X))
    weighted = KMeans(4, init=init, n_init=1).fit(X, sample_weight=w)
    repeated = KMeans(4, init=init, n_init=1).fit(np.repeat(X, w, axis=0))
    np.testing.assert_allclose(weighted.cluster_centers_, repeated.cluster_centers_, rtol=1e-10)
    assert weighted.inertia_ == pytest.approx(repeated.inertia_, rel=1e-10)


def test_spherical_centroids_have_unit_norm():
    X, _ = make_mixture(800, 10, 5, seed=4)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    est = KMeans(5, spherical=True, random_state=0).fit(X)
    np.testing.assert_allclose(np.linalg.norm(est.cluster_centers_, axis=1), 1.0, rtol=1e-12)
    # Nearest by Euclidean distance to unit centroids is highest cosine similarity.
    np.testing.assert_array_equal(est.labels_, (X @ est.cluster_centers_.T).argmax(1))


def test_same_seed_same_result_and_tolerance_stops_early(blobs):
    a = KMeans(6, random_state=3).fit(blobs)
    b = KMeans(6, random_state=3).fit(blobs)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    loose = KMeans(6, init=blobs[:6].copy(), n_init=1, tol=10.0).fit(blobs)
    strict = KMeans(6, init=blobs[:6].copy(), n_init=1, tol=0).fit(blobs)
    assert loose.n_iter_ < strict.n_iter_


def test_max_iter_is_respected(blobs):
    est = KMeans(6, init=blobs[:6].copy(), n_init=1, max_iter=1, tol=0).fit(blobs)
    assert est.n_iter_ == 1
    # Labels match the returned centroids even when the loop stopped early.
    np.testing.assert_array_equal(est.labels_, est.predict(blobs))


def test_fewer_distinct_points_than_clusters_warns():
    X = np.repeat(np.arange(3.0)[:, None], 10, axis=0)
    from mlx_kmeans._sklearn_compat import ConvergenceWarning

    with pytest.warns(ConvergenceWarning, match="distinct clusters"):
        est = KMeans(5, random_state=0).fit(X)
    assert est.inertia_ == pytest.approx(0.0)


def test_callable_init(blobs):
    calls = []

    def init(X, k, random_state):
        calls.append((X.shape, k))
        return X[:k] + 0.0

    est = KMeans(6, init=init, n_init=1).fit(blobs)
    assert calls == [(blobs.shape, 6)]
    ref = KMeans(6, init=blobs[:6].copy(), n_init=1).fit(blobs)
    np.testing.assert_array_equal(est.cluster_centers_, ref.cluster_centers_)


def test_explicit_init_with_n_init_warns_and_runs_once(blobs):
    with pytest.warns(RuntimeWarning, match="only one init"):
        KMeans(6, init=blobs[:6].copy(), n_init=5).fit(blobs)


BACKEND_NAMES = [b.name for b in __import__("mlx_kmeans").backends() if b.available]


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("offset", [0.0, 40.71, 1e4])
def test_distances_are_accurate_far_from_the_origin(backend, offset):
    """transform, fit_transform, score and kmeans()'s distances on float32 data whose spread
    is tiny next to its offset (GPS-like): within float32 rounding of the true distances (the
    expanded form `‖x‖² + ‖c‖² − 2x·c` loses every digit here)."""
    rng = np.random.default_rng(0)
    X = (np.array([offset, -1.8 * offset]) + rng.normal(0, 0.01, (3000, 2))).astype(np.float32)
    est = KMeans(8, random_state=0, backend=backend).fit(X)
    centres = est.cluster_centers_.astype(np.float64)
    truth = np.sqrt(((X.astype(np.float64)[:, None, :] - centres[None]) ** 2).sum(-1))
    got = est.transform(X)
    assert got.dtype == np.float32
    # Rounding the squared distance to float32, then a float32 square root: under 2^-22.
    np.testing.assert_allclose(got, truth, rtol=2.0**-22, atol=0)
    refit = KMeans(8, random_state=0, backend=backend)
    np.testing.assert_allclose(refit.fit_transform(X), truth, rtol=2.0**-22, atol=0)
    nearest = truth.min(1) ** 2
    assert est.score(X) == pytest.approx(-nearest.sum(), rel=1e-5)
    result = kmeans(X, 8, seed=0, backend=backend)
    own = ((X.astype(np.float64) - result.centroids.astype(np.float64)[result.labels]) ** 2).sum(1)
    np.testing.assert_allclose(result.distances, own, rtol=2.0**-22, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_inertia_without_a_pass_for_distances_matches_float64(dtype, weighted, caplog):
    """`KMeans.fit` keeps no per-row distances: a converged fit's inertia comes from the kept
    cluster sums, with no pass over the rows. It stays within 1e-9 of the float64 sum over
    the returned labels and centres, as `kmeans()`'s (which returns the distances) does."""
    X, _ = make_mixture(4000, 48, 12, seed=5, dtype=dtype)
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(X)).astype(dtype) if weighted else None
    with caplog.at_level(logging.DEBUG, logger="mlx_kmeans"):
        est = KMeans(12, random_state=0, n_init=1, backend="cpu").fit(X, sample_weight=w)
    assert "final inertia from the cluster sums" in caplog.text
    assert est.n_iter_ < est.max_iter
    centres = est.cluster_centers_.astype(np.float64)
    own = ((X.astype(np.float64) - centres[est.labels_]) ** 2).sum(1)
    expected = float(own @ (np.ones(len(X)) if w is None else w.astype(np.float64)))
    assert est.inertia_ == pytest.approx(expected, rel=1e-9, abs=0)
    result = kmeans(X, 12, seed=0, n_init=1, sample_weight=w, backend="cpu")
    np.testing.assert_array_equal(result.labels, est.labels_)
    np.testing.assert_allclose(result.distances, own, rtol=1e-5)
    assert result.inertia == pytest.approx(expected, rel=1e-9, abs=0)


def test_rows_on_their_centroids_give_an_inertia_of_exactly_zero(caplog):
    """Where the inertia is tiny next to the rows' spread the sums' rounding would show, so
    the fit measures every row instead: rows lying on their centroids give exactly zero,
    while the same rows with some noise take the inertia from the sums."""
    rng = np.random.default_rng(2)
    points = rng.normal(0.0, 10.0, (12, 48)).astype(np.float32)
    X = np.repeat(points, 340, axis=0)
    noisy = X + rng.normal(0.0, 0.5, X.shape).astype(np.float32)
    for data, on_centroids in ((noisy, False), (X, True)):
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="mlx_kmeans"):
            est = KMeans(12, init=points + 0.25, n_init=1, tol=0.0, backend="cpu").fit(data)
        by_sums = "final inertia from the cluster sums" in caplog.text
        assert by_sums != on_centroids
        if on_centroids:
            assert est.inertia_ == 0.0
