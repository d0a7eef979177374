"""MiniBatchKMeans on sparse rows (scipy.sparse): `partial_fit` steps equal scikit-learn's
from the same centres; a whole fit takes the steps the dense fit takes on the same rows
densified (the same draws), labels are the float64 nearest centroids, and the quality is
scikit-learn's; the reassignment line scikit-learn prints."""

from __future__ import annotations

import numpy as np
import pytest

from mlx_kmeans import MiniBatchKMeans
from test_sparse import nearest64, start, tfidf_like
from test_verbose import printed

sp = pytest.importorskip("scipy.sparse")
sklearn_cluster = pytest.importorskip("sklearn.cluster")


@pytest.mark.parametrize("weighted", [False, True])
def test_partial_fit_steps_equal_scikit_learns(weighted):
    """Batches fed one by one from the same centres (no random reassignment, so nothing is
    drawn): the same centres, labels and inertia after every batch."""
    X = tfidf_like(1200, 300, 6, seed=2)
    w = np.random.default_rng(3).uniform(0.5, 2.0, X.shape[0]) if weighted else None
    init = start(X, slice(0, 6))
    params = dict(n_clusters=6, init=init, n_init=1, reassignment_ratio=0.0, random_state=0)
    ours, theirs = MiniBatchKMeans(**params), sklearn_cluster.MiniBatchKMeans(**params)
    for begin in range(0, X.shape[0], 200):
        batch = slice(begin, begin + 200)
        batch_weights = None if w is None else w[batch]
        ours.partial_fit(X[batch], sample_weight=batch_weights)
        theirs.partial_fit(X[batch], sample_weight=batch_weights)
        np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(ours.labels_, theirs.labels_)
        assert ours.inertia_ == pytest.approx(theirs.inertia_, rel=1e-10)
    assert ours.n_steps_ == 6


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_fit_takes_the_dense_fits_steps(init):
    """Sparse rows and the same rows densified draw the same batches and reassignments: the
    same centroids (float64 sums in another order: 1e-9) and labels."""
    X = tfidf_like(3000, 200, 8, seed=4)
    params = dict(n_clusters=8, init=init, batch_size=256, max_iter=5, n_init=2, random_state=7)
    on_sparse = MiniBatchKMeans(**params).fit(X)
    if init == "k-means++":
        # Greedy k-means++ on sparse rows draws as on dense ones; compare from its centres.
        params["init"] = MiniBatchKMeans(**{**params, "max_iter": 1}).fit(X).cluster_centers_
        params["n_init"] = 1
        on_sparse = MiniBatchKMeans(**params).fit(X)
    on_dense = MiniBatchKMeans(**params, backend="cpu").fit(X.toarray())
    assert on_sparse.backend_ == "cpu" and on_sparse.n_steps_ == on_dense.n_steps_
    np.testing.assert_allclose(on_sparse.cluster_centers_, on_dense.cluster_centers_, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(on_sparse.labels_, on_dense.labels_)
    assert on_sparse.inertia_ == pytest.approx(on_dense.inertia_, rel=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fit_quality_and_exact_labels(dtype):
    """Defaults on a TF-IDF-like matrix: inertia within 5 % of scikit-learn's (best of the
    same seeds on both sides), labels and inertia those of the float64 nearest centroids,
    predict and transform on sparse rows against NumPy."""
    X = tfidf_like(4000, 600, 12, seed=5, dtype=dtype)
    ours = [MiniBatchKMeans(12, random_state=s).fit(X) for s in range(3)]
    theirs = [sklearn_cluster.MiniBatchKMeans(12, random_state=s).fit(X) for s in range(3)]
    assert min(o.inertia_ for o in ours) <= 1.05 * min(t.inertia_ for t in theirs)
    est = ours[0]
    assert est.cluster_centers_.dtype == dtype
    labels, distances = nearest64(X, est.cluster_centers_)
    agree = 1.0 if dtype == np.float64 else 0.999
    assert (est.labels_ == labels).mean() >= agree
    assert (est.predict(X) == labels).mean() >= agree
    exact = distances[np.arange(len(labels)), labels].sum()
    assert est.inertia_ == pytest.approx(exact, rel=1e-9 if dtype == np.float64 else 1e-4)
    np.testing.assert_allclose(est.transform(X[:50]), np.sqrt(distances[:50]), rtol=1e-5, atol=1e-6)


def test_formats_weights_and_the_callers_matrix():
    """CSC and COO are converted once; weights as repetitions; the input is not changed."""
    X = tfidf_like(800, 120, 4, seed=6)
    before = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    init = start(X, slice(0, 4))
    params = dict(n_clusters=4, init=init, n_init=1, batch_size=64, random_state=2)
    csr = MiniBatchKMeans(**params).fit(X)
    for other in (X.tocsc(), X.tocoo()):
        np.testing.assert_allclose(MiniBatchKMeans(**params).fit(other).cluster_centers_, csr.cluster_centers_, rtol=1e-12)
    np.testing.assert_array_equal(X.data, before[0])
    np.testing.assert_array_equal(X.indices, before[1])
    np.testing.assert_array_equal(X.indptr, before[2])
    # Integer weights count as repeated rows: the whole-batch step sees the same sums.
    w = np.random.default_rng(1).integers(1, 4, X.shape[0])
    weighted = MiniBatchKMeans(4, init=init, n_init=1, reassignment_ratio=0.0).partial_fit(X, sample_weight=w)
    repeated = MiniBatchKMeans(4, init=init, n_init=1, reassignment_ratio=0.0).partial_fit(
        sp.csr_matrix(np.repeat(X.toarray(), w, axis=0))
    )
    np.testing.assert_allclose(weighted.cluster_centers_, repeated.cluster_centers_, rtol=1e-10)


@pytest.mark.parametrize("sparse", [False, True])
def test_reassignment_line_as_scikit_learn_prints_it(capsys, sparse):
    """Three starting centres far from every row are never hit: the first step moves them,
    and both print scikit-learn's line (in `partial_fit` and before `fit`'s first step line)."""
    X = tfidf_like(900, 60, 3, seed=8)
    X = X if sparse else X.toarray()
    init = np.vstack([start(X if sparse else sp.csr_matrix(X), slice(0, 3)), np.full((3, X.shape[1]), 50.0)])
    params = dict(n_clusters=6, init=init, n_init=1, verbose=1, random_state=0, batch_size=300, max_iter=2)
    line = "[MiniBatchKMeans] Reassigning 3 cluster centers."
    ours = printed(capsys, lambda: MiniBatchKMeans(**params).partial_fit(X))
    theirs = printed(capsys, lambda: sklearn_cluster.MiniBatchKMeans(**params).partial_fit(X))
    assert ours == theirs == [line]
    ours = printed(capsys, lambda: MiniBatchKMeans(**params).fit(X))
    theirs = printed(capsys, lambda: sklearn_cluster.MiniBatchKMeans(**params).fit(X))
    for lines in (ours, theirs):
        first_step = next(i for i, text in enumerate(lines) if text.startswith("Minibatch step 1/"))
        assert lines[first_step - 1] == line
