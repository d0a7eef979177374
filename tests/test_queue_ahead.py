"""Short resident Lloyd steps on the mlx backend are queued one ahead: the device runs a step
while the host builds the next from its centroids, and the loop keeps the queued step only
when it keeps those centroids (not after an empty-cluster repair); a step queued past the last
one gives the final labels. Each fit here queues every step ahead (`MLX_KMEANS_MLX_AHEAD=1`)
and is compared with float64 Lloyd from the same start and with the same fit waiting for every
step (`MLX_KMEANS_MLX_AHEAD=0`), which must agree bit for bit: the queued steps are the same
computations, made earlier. By default the second step's time decides (one case here)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_mixture
from float64_lloyd import float64_lloyd, float64_nearest
from mlx_kmeans import KMeans, backends, kmeans

pytestmark = pytest.mark.skipif(not any(b.name == "mlx" and b.available for b in backends()), reason="mlx unavailable here")

AHEAD = "MLX_KMEANS_MLX_AHEAD"


def both(monkeypatch, fit, ahead="1"):
    """`fit()` with steps queued ahead (`ahead`: the switch's value, `None` for the default),
    then waiting for each step."""
    if ahead is None:
        monkeypatch.delenv(AHEAD, raising=False)
    else:
        monkeypatch.setenv(AHEAD, ahead)
    queued = fit()
    monkeypatch.setenv(AHEAD, "0")
    waiting = fit()
    monkeypatch.delenv(AHEAD)
    return queued, waiting


def assert_same(a, b):
    np.testing.assert_array_equal(a.centroids, b.centroids)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.n_iter == b.n_iter
    assert a.inertia == b.inertia


# Thinnest gap between a row's two nearest squared distances that the float64 trajectories
# compared here may have: rounding the centroids to float32 moves a distance by ~1e-6 on this
# data (the start of seed 22 has a gap of 4.7e-7 in its second step, which a 1-ulp change of
# the centroids flips in about a quarter of draws), so a thinner tie may fall either way in a
# correct fit.
TIE_MARGIN = 2e-4


def weights_for(X):
    return np.random.default_rng(23).uniform(0.5, 2.0, len(X)).astype(np.float32)


def repair_start(init):
    """Four centroids far from every row: they empty out in the first step."""
    return np.vstack([init[:20], init[:4] + 1e3]).astype(np.float32)


def thinnest_tie(X, init):
    """The thinnest gap along the float64 trajectories this module compares with."""
    margins = []
    for start, w in [(init, None), (init, weights_for(X)), (repair_start(init), None)]:
        float64_lloyd(X, start, w, max_iter=100, margins=margins)
    return min(margins)


@pytest.fixture(scope="module")
def mixture():
    """Rows and a start whose float64 trajectories have no near tie that float32 rounding
    could decide either way (the first such start of a fixed sequence)."""
    X, _ = make_mixture(3000, 8, 12, seed=21, spread=1.5, dtype=np.float32)
    for seed in range(22, 72):
        init = X[np.random.default_rng(seed).choice(len(X), 24, replace=False)]
        if thinnest_tie(X, init) >= TIE_MARGIN:
            return X, init
    raise AssertionError("no well-conditioned start found")


@pytest.mark.parametrize("max_iter", [1, 2, 3, 100])
@pytest.mark.parametrize("weighted", [False, True])
def test_queued_steps_equal_float64_lloyd(monkeypatch, mixture, max_iter, weighted):
    """Stopped by `max_iter` (1: nothing is queued ahead; 2, 3: a step is queued past the
    last) or by strict convergence: float64 Lloyd's centroids and iterations, exact labels of
    the returned centroids, and the waiting fit's results."""
    X, init = mixture
    w = weights_for(X) if weighted else None
    fit = lambda: kmeans(X, len(init), init=init, max_iter=max_iter, tol=0.0, sample_weight=w, backend="mlx")
    ahead, waiting = both(monkeypatch, fit)
    assert_same(ahead, waiting)
    centroids, _, n_iter = float64_lloyd(X, init, w, max_iter=max_iter)
    assert ahead.n_iter == n_iter
    assert float(np.abs(ahead.centroids - centroids).max()) <= 1e-4 * float(np.abs(centroids).max())
    np.testing.assert_array_equal(ahead.labels, float64_nearest(X, ahead.centroids))


def test_queued_step_dropped_after_empty_cluster_repair(monkeypatch, mixture):
    """Centroids far from every row empty out in the first step; the repair moves them, so
    the step queued from the unrepaired centroids must not be used: float64 Lloyd with the
    same repair rule gives the same fit."""
    X, init = mixture
    start = repair_start(init)
    fit = lambda: kmeans(X, len(start), init=start, max_iter=50, tol=0.0, backend="mlx")
    ahead, waiting = both(monkeypatch, fit)
    assert_same(ahead, waiting)
    centroids, _, n_iter = float64_lloyd(X, start, max_iter=50)
    assert ahead.n_iter == n_iter
    assert float(np.abs(ahead.centroids - centroids).max()) <= 1e-4 * float(np.abs(centroids).max())
    np.testing.assert_array_equal(ahead.labels, float64_nearest(X, ahead.centroids))


@pytest.mark.parametrize("case", ["tol", "spherical", "n_init"])
def test_queued_steps_equal_waiting_steps(monkeypatch, mixture, case):
    """Stopped by the centre shift, spherical, and several k-means++ runs: the same fit as
    waiting for each step; labels are the exact nearest returned centroids."""
    X, init = mixture
    params = {"tol": {"tol": 1e-2, "init": init}, "spherical": {"init": init}, "n_init": {"n_init": 3}}[case]
    estimator = KMeans if case != "spherical" else None

    def fit():
        if case == "spherical":
            return kmeans(X, len(init), spherical=True, max_iter=50, backend="mlx", **params)
        est = estimator(len(init), random_state=0, backend="mlx", **params).fit(X)
        return est

    ahead, waiting = both(monkeypatch, fit)
    if case == "spherical":
        assert_same(ahead, waiting)
        X_unit = X / np.linalg.norm(X, axis=1, keepdims=True)
        cosine = X_unit.astype(np.float64) @ np.asarray(ahead.centroids, dtype=np.float64).T
        np.testing.assert_array_equal(ahead.labels, cosine.argmax(1))
        return
    np.testing.assert_array_equal(ahead.cluster_centers_, waiting.cluster_centers_)
    np.testing.assert_array_equal(ahead.labels_, waiting.labels_)
    assert ahead.n_iter_ == waiting.n_iter_ and ahead.inertia_ == waiting.inertia_
    np.testing.assert_array_equal(ahead.labels_, float64_nearest(X, ahead.cluster_centers_))


def test_default_decides_by_step_time(monkeypatch, mixture, caplog):
    """Without the switch, the second step's time decides (logged at DEBUG); the fit is the
    waiting fit's either way."""
    import logging

    X, init = mixture
    fit = lambda: kmeans(X, len(init), init=init, max_iter=100, tol=0.0, backend="mlx")
    with caplog.at_level(logging.DEBUG, logger="mlx_kmeans"):
        default, waiting = both(monkeypatch, fit, ahead=None)
    assert_same(default, waiting)
    decided = [r.getMessage() for r in caplog.records if "a Lloyd step took" in r.getMessage()]
    assert len(decided) == 1, decided


@pytest.mark.parametrize("weighted", [False, True])
def test_each_step_from_float64_centroids_is_float64_lloyds_next(mixture, weighted):
    """One step at a time: from float64 Lloyd's centroids after q steps, a one-step fit gives
    float64 Lloyd's centroids after q + 1 (empty clusters repaired by the same rule). With
    `test_queued_steps_equal_float64_lloyd` it tells a wrong step from state carried across
    steps."""
    X, init = mixture
    w = weights_for(X) if weighted else None
    start = init
    for step in range(4):
        want, _, _ = float64_lloyd(X, start, w, max_iter=1)
        got = kmeans(X, len(start), init=start, max_iter=1, tol=0.0, sample_weight=w, backend="mlx")
        error = float(np.abs(got.centroids - want).max())
        assert error <= 1e-4 * float(np.abs(want).max()), f"step {step + 1}: centroids off by {error}"
        start = want.astype(np.float32)
