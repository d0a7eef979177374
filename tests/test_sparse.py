"""Sparse rows (scipy.sparse) against scikit-learn and float64 NumPy: the same initial centres
give the same labels, centroids, inertia and iterations; predict, transform and score on
sparse rows; sample weights; int32/int64 indices, float32/float64 values, other formats;
the caller's matrix is never changed; bad input is refused clearly."""

from __future__ import annotations

import numpy as np
import pytest

from mlx_kmeans import KMeans, MiniBatchKMeans

sp = pytest.importorskip("scipy.sparse")
sklearn_cluster = pytest.importorskip("sklearn.cluster")


def tfidf_like(n: int, d: int, k: int, seed: int, dtype=np.float64):
    """Rows drawn around k sparse topics (each a set of words), unit-normalised like TF-IDF."""
    rng = np.random.default_rng(seed)
    topics = [rng.choice(d, size=max(d // (2 * k), 3), replace=False) for _ in range(k)]
    rows, cols, vals = [], [], []
    for i in range(n):
        words = np.unique(np.concatenate([rng.choice(topics[rng.integers(k)], 6), rng.integers(0, d, 2)]))
        rows += [i] * len(words)
        cols += list(words)
        vals += list(rng.exponential(size=len(words)))
    X = sp.csr_matrix((vals, (rows, cols)), shape=(n, d))
    norms = np.sqrt(np.asarray(X.multiply(X).sum(1))).ravel()
    X = sp.diags(1.0 / norms) @ X
    return sp.csr_matrix(X, dtype=dtype)


def start(X, rows: slice):
    """Initial centres: rows of X, moved off them slightly in every feature. Unit-norm rows as
    centres would leave many rows exactly tied between them (every row that shares no word
    with several of them), which scikit-learn breaks by rounding and we by lowest index."""
    rng = np.random.default_rng(rows.start)
    centres = X[rows].toarray().astype(np.float64)
    return (centres + rng.uniform(0.0, 1e-2, centres.shape)).astype(X.dtype)


def nearest64(X, centres):
    dense = X.toarray().astype(np.float64)
    distances = ((dense[:, None, :] - np.asarray(centres, np.float64)[None]) ** 2).sum(-1)
    return distances.argmin(1), distances


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("index", [np.int32, np.int64])
def test_fit_equals_scikit_learn_from_the_same_init(dtype, index):
    X32 = tfidf_like(1500, 400, 8, seed=1, dtype=dtype)
    X = X32.copy()
    X.indices, X.indptr = X.indices.astype(index), X.indptr.astype(index)
    init = start(X, slice(0, 8))
    ours = KMeans(8, init=init, n_init=1, max_iter=100, tol=0.0).fit(X)
    # scikit-learn takes int32 indices only.
    theirs = sklearn_cluster.KMeans(8, init=init, n_init=1, max_iter=100, tol=0.0).fit(X32)
    assert ours.backend_ == "cpu" and ours.cluster_centers_.dtype == dtype
    if dtype == np.float64:
        np.testing.assert_array_equal(ours.labels_, theirs.labels_)
        assert ours.n_iter_ == theirs.n_iter_
        np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ours.inertia_, theirs.inertia_, rtol=1e-10)
    else:  # scikit-learn computes in float32; near ties may go either way there
        assert np.mean(ours.labels_ == theirs.labels_) >= 0.995
        np.testing.assert_allclose(ours.inertia_, theirs.inertia_, rtol=1e-3)
    labels, distances = nearest64(X, ours.cluster_centers_)
    np.testing.assert_array_equal(ours.labels_, labels)


def test_weights_predict_transform_score():
    X = tfidf_like(1200, 300, 6, seed=2)
    weights = np.random.default_rng(3).uniform(0.5, 2.0, X.shape[0])
    init = start(X, slice(10, 16))
    ours = KMeans(6, init=init, n_init=1, tol=0.0).fit(X, sample_weight=weights)
    theirs = sklearn_cluster.KMeans(6, init=init, n_init=1, tol=0.0).fit(X, sample_weight=weights)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    np.testing.assert_allclose(ours.inertia_, theirs.inertia_, rtol=1e-10)
    Y = tfidf_like(300, 300, 6, seed=4)
    labels, distances = nearest64(Y, ours.cluster_centers_)
    np.testing.assert_array_equal(ours.predict(Y), labels)
    np.testing.assert_allclose(ours.transform(Y), np.sqrt(distances), rtol=1e-9, atol=1e-9)
    w = np.arange(1.0, 301.0)
    np.testing.assert_allclose(ours.score(Y, sample_weight=w), -(distances.min(1) * w).sum(), rtol=1e-10)
    np.testing.assert_array_equal(ours.predict(Y.toarray()), labels)


@pytest.mark.parametrize("fmt", ["csc", "coo", "lil"])
def test_other_formats_are_converted_once(fmt):
    X = tfidf_like(800, 200, 5, seed=5)
    init = start(X, slice(0, 5))
    expected = KMeans(5, init=init, n_init=1).fit(X)
    other = X.asformat(fmt)
    got = KMeans(5, init=init, n_init=1).fit(other)
    np.testing.assert_array_equal(got.labels_, expected.labels_)
    np.testing.assert_array_equal(got.cluster_centers_, expected.cluster_centers_)


def test_input_is_never_changed_and_duplicates_add_up():
    """A CSR matrix with duplicate entries (not canonical) is clustered as scipy reads it
    (duplicates summed), and the caller's arrays stay as they were."""
    X = tfidf_like(600, 100, 4, seed=6)
    data, indices, indptr = [], [], [0]
    for i in range(X.shape[0]):
        row = slice(X.indptr[i], X.indptr[i + 1])
        data += [X.data[row] / 2, X.data[row] / 2]
        indices += [X.indices[row], X.indices[row]]
        indptr.append(indptr[-1] + 2 * (X.indptr[i + 1] - X.indptr[i]))
    doubled = sp.csr_matrix((np.concatenate(data), np.concatenate(indices), np.array(indptr)), shape=X.shape)
    assert not doubled.has_canonical_format
    before = (doubled.data.copy(), doubled.indices.copy(), doubled.indptr.copy())
    init = start(X, slice(0, 4))
    got = KMeans(4, init=init, n_init=1).fit(doubled)
    expected = KMeans(4, init=init, n_init=1).fit(X)
    np.testing.assert_allclose(got.cluster_centers_, expected.cluster_centers_, rtol=1e-12, atol=1e-15)
    for a, b in zip(before, (doubled.data, doubled.indices, doubled.indptr)):
        np.testing.assert_array_equal(a, b)


def test_kmeans_plusplus_on_sparse_rows_is_as_good_as_scikit_learns():
    X = tfidf_like(2000, 500, 10, seed=7)
    ours = KMeans(10, n_init=3, random_state=0).fit(X)
    theirs = sklearn_cluster.KMeans(10, n_init=3, random_state=0).fit(X)
    assert ours.inertia_ <= 1.02 * theirs.inertia_
    labels, _ = nearest64(X, ours.cluster_centers_)
    np.testing.assert_array_equal(ours.labels_, labels)


def test_empty_rows_and_random_init():
    X = tfidf_like(500, 80, 4, seed=8).tolil()
    X[:20] = 0  # empty rows
    X = X.tocsr()
    est = KMeans(4, init="random", n_init=2, random_state=1).fit(X)
    labels, _ = nearest64(X, est.cluster_centers_)
    np.testing.assert_array_equal(est.labels_, labels)


def test_bad_sparse_input_is_refused_clearly():
    X = tfidf_like(200, 50, 3, seed=9)
    bad = X.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        KMeans(3).fit(bad)
    with pytest.raises(ValueError, match="sparse input runs on the 'cpu' backend"):
        MiniBatchKMeans(3, backend="mlx").fit(X)
    with pytest.raises(ValueError, match="sparse input runs on the 'cpu' backend"):
        KMeans(3, backend="mlx").fit(X)
    with pytest.raises(ValueError, match="features"):
        KMeans(3, n_init=1, random_state=0).fit(X).predict(sp.csr_matrix((5, 49)))
