"""Where scikit-learn's behaviour is the contract: how many initialisations run, its warnings,
empty clusters when there are more clusters than distinct rows, `kmeans_plusplus` on sparse
input, sparse data's magnitude guards, feature names of vector columns, and the backend named
by the environment."""

import warnings

import numpy as np
import pytest
from conftest import make_mixture

from mlx_kmeans import KMeans, MiniBatchKMeans, backends, kmeans, kmeans_plusplus, kmeans_streaming

sklearn_cluster = pytest.importorskip("sklearn.cluster")
sp = pytest.importorskip("scipy.sparse")


@pytest.fixture(scope="module")
def X():
    return make_mixture(300, 4, 5, seed=8)[0]


def counted_inits(monkeypatch, estimator, X):
    """How many initialisations a fit asked the engine for."""
    from mlx_kmeans import _backend

    asked = []
    real = _backend.engine_module

    class Spy:
        def __init__(self, module):
            self.module = module

        def __getattr__(self, name):
            function = getattr(self.module, name)
            if name not in ("kmeans_fit", "minibatch_fit"):
                return function

            def wrapper(*args, **kwargs):
                asked.append(kwargs["n_init"])
                return function(*args, **kwargs)

            return wrapper

    for module in ("mlx_kmeans._kmeans", "mlx_kmeans._minibatch"):
        monkeypatch.setattr(f"{module}.engine_module", lambda backend: Spy(real(backend)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimator.fit(X)
    return asked[0], [str(w.message) for w in caught if "Explicit initial center" in str(w.message)]


@pytest.mark.parametrize("Estimator, default", [(KMeans, 10), (MiniBatchKMeans, 3)])
@pytest.mark.parametrize("init", ["k-means++", "random", "array", "callable"])
def test_n_init_auto_runs_what_scikit_learn_runs(monkeypatch, X, Estimator, default, init):
    given = X[:5].copy()
    spec = {"array": given, "callable": lambda X, k, random_state: given}.get(init, init)
    n_init, explicit_warnings = counted_inits(monkeypatch, Estimator(5, init=spec, n_init="auto", random_state=0, backend="cpu"), X)
    # scikit-learn: 1 for k-means++ and for given centres, the default otherwise (a
    # callable's centres are computed once here, so they are used once).
    assert n_init == (default if init == "random" else 1)
    assert explicit_warnings == []


@pytest.mark.parametrize("Estimator", [KMeans, MiniBatchKMeans])
def test_explicit_centres_warn_once(monkeypatch, X, Estimator):
    n_init, explicit_warnings = counted_inits(monkeypatch, Estimator(5, init=X[:5].copy(), n_init=4, random_state=0, backend="cpu"), X)
    assert n_init == 1
    assert len(explicit_warnings) == 1 and f"instead of n_init=4" in explicit_warnings[0]


DUPLICATES = np.array([[0, 0], [1, 1], [1, 1], [1, 0], [0, 1]], dtype=np.float64)


@pytest.mark.parametrize("algorithm", ["lloyd", "elkan"])
@pytest.mark.parametrize("container", ["dense", "csr"])
def test_more_clusters_than_distinct_rows_stops_at_once(algorithm, container):
    data = DUPLICATES if container == "dense" else sp.csr_matrix(DUPLICATES)
    with pytest.warns(Warning, match=r"Number of distinct clusters \(4\) found smaller than n_clusters \(5\)"):
        model = KMeans(5, init=DUPLICATES, algorithm=algorithm, backend="cpu").fit(data)
    reference = sklearn_cluster.KMeans(5, init=DUPLICATES, algorithm=algorithm).fit(data)
    assert model.n_iter_ == reference.n_iter_ == 1
    np.testing.assert_array_equal(model.labels_, reference.labels_)
    np.testing.assert_allclose(model.cluster_centers_, reference.cluster_centers_)


def test_more_clusters_than_distinct_rows_streamed():
    result = kmeans_streaming(DUPLICATES, 5, init=DUPLICATES, chunk_bytes=2 * 16)
    assert result.n_iter == 1 and result.inertia == 0.0


def test_more_clusters_than_distinct_rows_on_mlx():
    if not any(b.name == "mlx" and b.available for b in backends()):
        pytest.skip("MLX is not installed")
    result = kmeans(DUPLICATES.astype(np.float32), 5, init=DUPLICATES.astype(np.float32), backend="mlx")
    assert result.n_iter == 1 and result.inertia == 0.0


# -- kmeans_plusplus ---------------------------------------------------------------------------


def test_kmeans_plusplus_takes_sparse_rows(X):
    sparse = sp.csr_matrix(np.where(np.abs(X) > 8, X, 0.0))
    centers, indices = kmeans_plusplus(sparse, 5, random_state=0)
    assert isinstance(centers, np.ndarray) and centers.shape == (5, 4)
    np.testing.assert_array_equal(centers, sparse[indices].toarray())
    assert len(set(indices.tolist())) == 5
    # The same picks as on the dense matrix of the same rows.
    dense_centers, dense_indices = kmeans_plusplus(sparse.toarray(), 5, random_state=0)
    np.testing.assert_array_equal(indices, dense_indices)


@pytest.mark.parametrize("n_clusters", [3.0, True, "3", None])
def test_kmeans_plusplus_refuses_what_scikit_learn_refuses(X, n_clusters):
    with pytest.raises((TypeError, ValueError)) as ours:
        kmeans_plusplus(X, n_clusters)
    with pytest.raises((TypeError, ValueError)):
        sklearn_cluster.kmeans_plusplus(X, n_clusters)
    assert "n_clusters" in str(ours.value)


def test_kmeans_plusplus_norms_message_as_scikit_learn(X):
    with pytest.raises(ValueError) as ours:
        kmeans_plusplus(X, 3, x_squared_norms=np.ones(7))
    with pytest.raises(ValueError) as theirs:
        sklearn_cluster.kmeans_plusplus(X, 3, x_squared_norms=np.ones(7))
    assert str(ours.value) == str(theirs.value)


# -- sparse magnitudes -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [1e200, 1e155])
def test_sparse_magnitudes_beyond_float64_are_refused_as_dense(X, value):
    dense = X.copy()
    dense[3, 1] = value
    with pytest.raises(ValueError, match="rescale") as dense_error:
        KMeans(3, random_state=0).fit(dense)
    with pytest.raises(ValueError, match="rescale") as sparse_error:
        KMeans(3, random_state=0).fit(sp.csr_matrix(dense))
    assert str(sparse_error.value) == str(dense_error.value)
    fitted = KMeans(3, random_state=0).fit(sp.csr_matrix(X))
    with pytest.raises(ValueError, match="rescale"):
        fitted.transform(sp.csr_matrix(dense))


@pytest.mark.parametrize("scale", [1e20, 1e-25])
def test_float32_sparse_out_of_range_computes_in_float64(scale):
    rng = np.random.default_rng(2)
    dense = (rng.random((200, 6)) * (rng.random((200, 6)) < 0.5)).astype(np.float32) * np.float32(scale)
    sparse = sp.csr_matrix(dense)
    model = KMeans(4, random_state=0, n_init=1).fit(sparse)
    reference = KMeans(4, random_state=0, n_init=1).fit(dense)
    assert model.inertia_ > 0 and np.isfinite(model.inertia_)
    assert model.inertia_ == pytest.approx(reference.inertia_, rel=1e-6)
    distances = model.transform(sparse)
    assert np.isfinite(distances).all() and (distances > 0).any()
    exact = np.sqrt(((dense.astype(np.float64)[:, None, :] - model.cluster_centers_.astype(np.float64)[None]) ** 2).sum(-1))
    np.testing.assert_allclose(distances, exact, rtol=1e-5)
    assert sparse.dtype == np.float32  # the caller's matrix is untouched


# -- feature names of vector columns -------------------------------------------------------


def test_a_vector_column_has_no_feature_names():
    pa = pytest.importorskip("pyarrow")
    pl = pytest.importorskip("polars")
    rows = make_mixture(200, 8, 3, seed=1, dtype=np.float32)[0]
    column = pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), 8)
    for data in (pa.table({"e": column}), pa.record_batch([column], names=["e"]), pl.DataFrame({"e": rows})):
        model = KMeans(3, random_state=0).fit(data)
        assert model.n_features_in_ == 8
        assert not hasattr(model, "feature_names_in_")
    # Numeric columns keep their names, one per feature.
    table = pa.table({f"f{i}": rows[:, i] for i in range(8)})
    assert list(KMeans(3, random_state=0).fit(table).feature_names_in_) == [f"f{i}" for i in range(8)]


def test_backend_from_the_environment_names_the_variable(monkeypatch, X):
    monkeypatch.setenv("MLX_KMEANS_BACKEND", "gpu")
    with pytest.raises(ValueError, match="MLX_KMEANS_BACKEND") as error:
        KMeans(3).fit(X)
    assert "'gpu'" in str(error.value)
