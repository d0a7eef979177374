"""scikit-learn's function API (`k_means`, `kmeans_plusplus`, `random_state` in `kmeans`) and
the warnings scikit-learn gives, checked against scikit-learn itself."""

import inspect
import warnings

import numpy as np
import pytest
from conftest import make_mixture

import mlx_kmeans
from mlx_kmeans import KMeans, MiniBatchKMeans, k_means, kmeans, kmeans_plusplus

sklearn_cluster = pytest.importorskip("sklearn.cluster")


@pytest.fixture(scope="module")
def X():
    return make_mixture(1500, 5, 7, seed=12)[0]


@pytest.mark.parametrize("name", ["k_means", "kmeans_plusplus"])
def test_signatures_match_scikit_learn(name):
    ours = inspect.signature(getattr(mlx_kmeans, name))
    theirs = inspect.signature(getattr(sklearn_cluster, name))
    assert list(ours.parameters) == list(theirs.parameters)
    for param in theirs.parameters.values():
        assert ours.parameters[param.name].kind == param.kind
        assert ours.parameters[param.name].default == param.default


def test_k_means_returns_what_scikit_learn_returns_from_the_same_init(X):
    init = X[:7].copy()
    centers, labels, inertia = k_means(X, 7, init=init, n_init=1)
    ref_centers, ref_labels, ref_inertia = sklearn_cluster.k_means(X, 7, init=init, n_init=1)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(centers, ref_centers, rtol=1e-9, atol=1e-9)
    assert inertia == pytest.approx(ref_inertia, rel=1e-9)
    *_, n_iter = k_means(X, 7, init=init, n_init=1, return_n_iter=True)
    assert n_iter == sklearn_cluster.k_means(X, 7, init=init, n_init=1, return_n_iter=True)[3]


def test_kmeans_takes_random_state_as_scikit_learn_spells_it(X):
    by_seed = kmeans(X, 7, seed=3)
    by_random_state = kmeans(X, 7, seed=0, random_state=3)
    np.testing.assert_array_equal(by_seed.labels, by_random_state.labels)
    assert kmeans(X, 7, random_state=np.random.RandomState(5)).inertia > 0


def test_kmeans_plusplus_picks_rows_of_x(X):
    weights = np.random.default_rng(0).random(len(X))
    centers, indices = kmeans_plusplus(X, 7, random_state=0, sample_weight=weights)
    assert centers.shape == (7, 5) and indices.shape == (7,)
    np.testing.assert_array_equal(X[indices], centers)
    assert len(set(indices.tolist())) == 7
    # Greedy k-means++ quality: the potential of its centres, against scikit-learn's own
    # (the best of 10 seeds each, so one unlucky draw decides neither).
    def potential(c):
        return ((X[:, None, :] - c[None]) ** 2).sum(-1).min(1).sum()

    ours = min(potential(kmeans_plusplus(X, 7, random_state=s)[0]) for s in range(10))
    theirs = min(potential(sklearn_cluster.kmeans_plusplus(X, 7, random_state=s)[0]) for s in range(10))
    assert ours <= 1.5 * theirs


def test_kmeans_plusplus_refuses_what_it_cannot_do(X):
    with pytest.raises(ValueError, match="n_local_trials"):
        kmeans_plusplus(X, 7, n_local_trials=20)
    with pytest.raises(ValueError, match="n_clusters"):
        kmeans_plusplus(X, len(X) + 1)
    with pytest.raises(ValueError, match="x_squared_norms"):
        kmeans_plusplus(X, 7, x_squared_norms=np.ones(3))


def messages(fit):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit()
    return [(w.category, str(w.message)) for w in caught if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("entry", ["fit", "partial_fit"])
def test_minibatch_warns_as_scikit_learn_when_init_size_is_below_n_clusters(X, entry):
    ours = messages(lambda: getattr(MiniBatchKMeans(10, init_size=5, random_state=0, n_init=1), entry)(X))
    theirs = messages(lambda: getattr(sklearn_cluster.MiniBatchKMeans(10, init_size=5, random_state=0, n_init=1), entry)(X))
    assert theirs and ours == theirs


def test_explicit_init_with_several_inits_warns_as_scikit_learn(X):
    init = X[:7].copy()
    ours = messages(lambda: KMeans(7, init=init, n_init=3).fit(X))
    theirs = messages(lambda: sklearn_cluster.KMeans(7, init=init, n_init=3).fit(X))
    assert theirs and ours == theirs


@pytest.mark.parametrize("entry", ["estimator", "k_means"])
def test_elkan_with_one_cluster_warns_as_scikit_learn(X, entry):
    """An explicit 'elkan' with one cluster: scikit-learn's warning, and 'lloyd''s result."""

    def fit(module):
        if entry == "k_means":
            return lambda: module.k_means(X, 1, algorithm="elkan", random_state=0)
        return lambda: module.KMeans(1, algorithm="elkan", random_state=0).fit(X)

    ours, theirs = messages(fit(mlx_kmeans)), messages(fit(sklearn_cluster))
    assert theirs and ours == theirs
    with pytest.warns(RuntimeWarning, match="single cluster"):
        centre = KMeans(1, algorithm="elkan", random_state=0).fit(X).cluster_centers_
    np.testing.assert_allclose(centre[0], X.mean(axis=0), rtol=1e-12, atol=1e-12)


def test_default_algorithm_with_one_cluster_is_quiet(X):
    """The default algorithm never warns, as scikit-learn's default does not."""
    assert messages(lambda: KMeans(1, random_state=0).fit(X)) == []
    assert messages(lambda: sklearn_cluster.KMeans(1, random_state=0).fit(X)) == []
