"""One road to the engine: every Lloyd entry point (`KMeans.fit`, `kmeans()`, faiss-style
`Kmeans.train`) takes the same checks and the same engine call, `algorithm` chooses how the
engine searches, and a failing backend callback ends the fit with its own exception."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from conftest import make_mixture
from mlx_kmeans import KMeans, Kmeans, kmeans
from mlx_kmeans import _native


@pytest.fixture
def X():
    return make_mixture(4000, 6, 40, seed=3, spread=2.0)[0]


def _searched_messages(caplog):
    return [r.getMessage() for r in caplog.records if "searched all centroids" in r.getMessage()]


def test_algorithm_chooses_dense_or_bounded_passes_with_the_same_result(X, caplog):
    """'elkan' runs bounded passes (the engine logs how many rows it searched), 'lloyd' dense
    passes only; labels, centroids and iterations are the same."""
    fits = {}
    for algorithm in ("lloyd", "elkan"):
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="mlx_kmeans"):
            fits[algorithm] = KMeans(60, init="random", n_init=1, tol=0.0, algorithm=algorithm, random_state=1, backend="cpu").fit(X)
        fits[algorithm].searched = _searched_messages(caplog)
    assert fits["lloyd"].searched == []
    assert fits["elkan"].searched, "bounded passes should have run"
    assert fits["lloyd"].n_iter_ > 5
    np.testing.assert_array_equal(fits["lloyd"].labels_, fits["elkan"].labels_)
    np.testing.assert_allclose(fits["lloyd"].cluster_centers_, fits["elkan"].cluster_centers_, rtol=1e-12, atol=1e-12)
    assert fits["lloyd"].n_iter_ == fits["elkan"].n_iter_


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_either_kind_of_bounds_gives_the_dense_result(monkeypatch, caplog, dtype):
    """`MLX_KMEANS_CPU_BOUNDS` picks Hamerly's bounds, grouped ones or lists of nearest
    centroids (the default on 40 features: Hamerly's); each gives 'lloyd''s labels, centroids, inertia and iterations, against the float64 NumPy
    nearest centroids at the end. Many centroids per true cluster (the case grouped bounds
    are for), with duplicated rows (exact ties between them) and 40 features."""
    X, _ = make_mixture(5000, 40, 25, seed=4, spread=1.5)
    X = np.repeat(X[:2500], 2, axis=0).astype(dtype)
    init = X[np.random.default_rng(2).choice(len(X), 150, replace=False)]
    fit = lambda algorithm: KMeans(150, init=init, n_init=1, tol=0.0, max_iter=30, algorithm=algorithm, backend="cpu").fit(X)
    dense = fit("lloyd")
    logged = {}
    for kind in ("hamerly", "grouped", "candidates", None):
        if kind is None:
            monkeypatch.delenv("MLX_KMEANS_CPU_BOUNDS", raising=False)
        else:
            monkeypatch.setenv("MLX_KMEANS_CPU_BOUNDS", kind)
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="mlx_kmeans"):
            bounded = fit("elkan")
        logged[kind] = [r.getMessage() for r in caplog.records if "bounded Lloyd passes" in r.getMessage()]
        np.testing.assert_array_equal(bounded.labels_, dense.labels_)
        np.testing.assert_allclose(bounded.cluster_centers_, dense.cluster_centers_, rtol=1e-12, atol=1e-12)
        assert bounded.inertia_ == pytest.approx(dense.inertia_, rel=1e-12)
        assert bounded.n_iter_ == dense.n_iter_
    assert logged["grouped"] == ["bounded Lloyd passes: Grouped bounds"]
    assert logged["candidates"] == ["bounded Lloyd passes: Candidates bounds"]
    assert logged["hamerly"] == logged[None] == ["bounded Lloyd passes: Hamerly bounds"]
    assert dense.n_iter_ > 5
    x64, c64 = X.astype(np.float64), dense.cluster_centers_.astype(np.float64)
    nearest = np.concatenate([((x64[s : s + 500, None] - c64[None]) ** 2).sum(-1).argmin(1) for s in range(0, len(X), 500)])
    np.testing.assert_array_equal(dense.labels_, nearest)


def test_default_algorithm_runs_bounded_passes(X, caplog):
    """The default ('auto') takes the bounded passes on the cpu backend where its sample says
    they settle most rows (the fixture's separated blobs), with 'lloyd''s labels."""
    with caplog.at_level(logging.DEBUG, logger="mlx_kmeans"):
        default = KMeans(60, init="random", n_init=1, tol=0.0, random_state=1, backend="cpu").fit(X)
    assert default.algorithm == "auto" and _searched_messages(caplog)
    assert any("making them" in r.getMessage() for r in caplog.records)
    dense = KMeans(60, init="random", n_init=1, tol=0.0, random_state=1, backend="cpu", algorithm="lloyd").fit(X)
    np.testing.assert_array_equal(default.labels_, dense.labels_)


def test_default_algorithm_stays_dense_where_bounds_settle_few_rows(caplog):
    """Uniform noise in 64 dimensions, from random rows, for a few iterations: the centroids
    move so far that bounds would settle almost no row. 'auto' estimates that (logged) and
    runs dense passes only; 'elkan' runs bounded passes all the same. Labels equal."""
    X = np.random.default_rng(3).random((6000, 64))
    fit = lambda algorithm: KMeans(100, init="random", n_init=1, max_iter=6, tol=0.0, random_state=2, algorithm=algorithm, backend="cpu").fit(X)
    with caplog.at_level(logging.DEBUG, logger="mlx_kmeans"):
        auto = fit("auto")
    estimates = [r.getMessage() for r in caplog.records if "bounds would leave" in r.getMessage()]
    assert estimates and all(m.endswith("dense pass") for m in estimates), estimates
    assert _searched_messages(caplog) == []
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="mlx_kmeans"):
        elkan = fit("elkan")
    assert len(_searched_messages(caplog)) == elkan.n_iter_ - 1
    np.testing.assert_array_equal(auto.labels_, elkan.labels_)
    assert auto.n_iter_ == elkan.n_iter_ == 6


def test_kmeans_function_is_the_estimator(X):
    """`kmeans()` gives exactly `KMeans.fit`'s result for the same parameters."""
    est = KMeans(7, n_init=2, max_iter=40, random_state=9, algorithm="lloyd", backend="cpu").fit(X)
    res = kmeans(X, 7, n_init=2, max_iter=40, seed=9, algorithm="lloyd", backend="cpu")
    np.testing.assert_array_equal(res.centroids, est.cluster_centers_)
    np.testing.assert_array_equal(res.labels, est.labels_)
    assert res.inertia == est.inertia_ and res.n_iter == est.n_iter_


@pytest.mark.parametrize(
    "params, error, match",
    [
        (dict(max_iter=0), ValueError, "'max_iter' parameter must be an int >= 1"),
        (dict(tol=-1.0), ValueError, "'tol' parameter must be a finite number"),
        (dict(n_init=1.5), TypeError, "'n_init' parameter must be an int"),
        (dict(algorithm="full"), ValueError, "'algorithm' parameter must be one of"),
        (dict(spherical="yes"), TypeError, "'spherical' parameter must be a bool"),
    ],
)
def test_every_entry_point_checks_parameters_alike(X, params, error, match):
    with pytest.raises(error, match=match):
        KMeans(5, **params).fit(X)
    with pytest.raises(error, match=match):
        kmeans(X, 5, **params)


def test_faiss_style_train_equals_the_estimator_on_random_init(X):
    """`Kmeans.train` is `KMeans(init='random', tol=0)` with faiss's names."""
    index = Kmeans(6, 9, niter=12, nredo=2, seed=4, max_points_per_centroid=10**6, backend="cpu")
    index.train(X)
    est = KMeans(9, init="random", n_init=2, max_iter=12, tol=0.0, random_state=4, backend="cpu").fit(X)
    np.testing.assert_array_equal(index.centroids, est.cluster_centers_)
    with pytest.raises(TypeError, match="'niter' parameter must be an int"):
        Kmeans(6, 9, niter=2.5)


def test_backend_callback_errors_end_the_fit_with_their_own_exception(X):
    class Broken(Exception):
        pass

    calls = []

    def assign(x, centroids):
        calls.append(len(x))
        if len(calls) == 3:
            raise Broken("the search failed")
        d = ((x[:, None, :] - centroids[None]) ** 2).sum(-1)
        return d.min(1), d.argmin(1).astype(np.int64)

    with pytest.raises(Broken, match="the search failed"):
        _native.kmeans_fit(X, None, n_clusters=4, init="random", n_init=1, max_iter=20, tol=0.0, seed=0, backend=assign)
    assert len(calls) == 3
    # A callback that returns nonsense is a ValueError, not a crash.
    with pytest.raises(ValueError, match="outside 0..4"):
        _native.kmeans_fit(
            X, None, n_clusters=4, init="random", n_init=1, max_iter=5, tol=0.0, seed=0,
            backend=lambda x, c: (np.zeros(len(x)), np.full(len(x), 9, dtype=np.int64)),
        )


class HandlerFailure(Exception):
    pass


class FailingHandler(logging.Handler):
    """Raises from the third record on: Python code run by the log bridge during a fit."""

    def __init__(self):
        super().__init__()
        self.records = 0

    def emit(self, record):
        self.records += 1
        if self.records >= 3:
            raise HandlerFailure("raised while a record was forwarded")


@pytest.mark.parametrize("backend", [b.name for b in __import__("mlx_kmeans").backends() if b.available])
@pytest.mark.parametrize("entry", ["KMeans", "KMeans-verbose", "MiniBatchKMeans", "kmeans"])
def test_an_exception_in_the_log_bridge_ends_the_fit_as_it_is(backend, entry):
    """An exception raised by Python code the engine runs (here a log handler) ends the call
    with that exception, not a SystemError or a failure inside unrelated code."""
    from mlx_kmeans import MiniBatchKMeans

    X = make_mixture(4000, 8, 10, seed=2, dtype=np.float32)[0]
    logger = logging.getLogger("mlx_kmeans")
    handler, level = FailingHandler(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    fits = {
        "KMeans": lambda: KMeans(10, random_state=0, tol=0, max_iter=30, backend=backend).fit(X),
        "KMeans-verbose": lambda: KMeans(10, random_state=0, tol=0, max_iter=30, verbose=True, backend=backend).fit(X),
        "MiniBatchKMeans": lambda: MiniBatchKMeans(10, random_state=0, backend=backend).fit(X),
        "kmeans": lambda: kmeans(X, 10, tol=0, max_iter=30, backend=backend),
    }
    try:
        with pytest.raises(HandlerFailure):
            fits[entry]()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert KMeans(10, random_state=0, backend=backend).fit(X).cluster_centers_.shape == (10, 8)


def test_lists_of_nearest_centroids_give_the_dense_labels_on_wide_rows(caplog):
    """The default on wide rows with many rows per centroid (lists of each row's nearest
    centroids, rows taken in runs by label, Hamerly's test first) gives 'lloyd''s labels,
    centroids and iterations at two stopping points: `benchmarks/bench.py`'s Dirichlet
    mixture of C's shape (as many true centres as centroids, uneven sizes and spreads: many
    near ties)."""
    rng = np.random.default_rng(0)
    n, d, k = 100_000, 768, 500
    means = rng.normal(scale=1.0, size=(k, d)).astype(np.float32)
    sizes, spreads = rng.dirichlet(np.ones(k)), rng.uniform(0.5, 1.5, size=k).astype(np.float32)
    X = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 65536):
        end = min(n, start + 65536)
        which = rng.choice(k, end - start, p=sizes)
        X[start:end] = rng.standard_normal((end - start, d), dtype=np.float32)
        X[start:end] *= spreads[which, None]
        X[start:end] += means[which]
    init = X[np.sort(np.random.default_rng(1).choice(n, k, replace=False))]
    for max_iter in (9, 25):
        fit = lambda algorithm: KMeans(
            k, init=init, n_init=1, tol=0.0, max_iter=max_iter, algorithm=algorithm, backend="cpu"
        ).fit(X)
        dense = fit("lloyd")
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="mlx_kmeans"):
            listed = fit("auto")
        messages = [r.getMessage() for r in caplog.records]
        assert "bounded Lloyd passes: Candidates bounds" in messages
        np.testing.assert_array_equal(listed.labels_, dense.labels_, err_msg=f"{max_iter} iterations")
        np.testing.assert_array_equal(listed.cluster_centers_, dense.cluster_centers_)
        assert listed.n_iter_ == dense.n_iter_
