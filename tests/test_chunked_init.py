"""k-means‖ over chunks (`_chunked/init.py`): its exact pruning changes no candidate and no
weight, and the candidates' weights (each row's nearest candidate, found by the rounds) are
those of float64 nearest candidates, also where two candidates are equally near in float32."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
from conftest import make_mixture

import mlx_kmeans._chunked.init as chunked_init
from mlx_kmeans import kmeans_streaming


def cases():
    X, _ = make_mixture(6000, 12, 60, seed=3, dtype=np.float32)
    weights = np.random.default_rng(4).uniform(0.0, 3.0, len(X)).astype(np.float32)
    duplicated = X.copy()
    duplicated[1::3] = duplicated[::3][: len(duplicated[1::3])]
    return {
        "plain": (X, None),
        "weighted": (X, weights),
        "offset": (X + np.float32(1e3), None),
        "duplicates": (duplicated, None),
    }


CASES = cases()


def seeding(monkeypatch, X, weights, prune):
    """The candidates and weights k-means‖ hands to greedy k-means++, and the fit's centroids."""
    monkeypatch.setenv("MLX_KMEANS_SEEDING_PRUNE", "1" if prune else "0")
    seen = {}
    original = chunked_init.seed_plusplus

    def spy(rows, row_weights, k, seed, backend):
        seen["candidates"], seen["weights"] = rows.copy(), np.asarray(row_weights).copy()
        return original(rows, row_weights, k, seed, backend)

    monkeypatch.setattr(chunked_init, "seed_plusplus", spy)
    fit = kmeans_streaming(X, 40, init="k-means||", sample_weight=weights, seed=11, max_iter=1, chunk_bytes=700 * 12 * 4)
    return seen, fit.centroids


@pytest.mark.parametrize("case", sorted(CASES))
def test_pruning_changes_no_candidate(case, monkeypatch, caplog):
    X, weights = CASES[case]
    unpruned, unpruned_centroids = seeding(monkeypatch, X, weights, prune=False)
    with caplog.at_level(logging.DEBUG, logger="mlx_kmeans"):
        pruned, pruned_centroids = seeding(monkeypatch, X, weights, prune=True)
    np.testing.assert_array_equal(pruned["candidates"], unpruned["candidates"])
    np.testing.assert_array_equal(pruned["weights"], unpruned["weights"])
    np.testing.assert_array_equal(pruned_centroids, unpruned_centroids)
    skipped = [float(m) for m in re.findall(r"k-means\|\| pruning: ([0-9.]+) %", caplog.text)]
    assert len(skipped) == 1
    if case != "offset":
        # Far from the origin the rounding bound is wide and little can be proven.
        assert skipped[0] > 20.0, skipped


@pytest.mark.parametrize("case", ["plain", "weighted"])
def test_candidate_weights_are_those_of_the_nearest_candidates(case, monkeypatch):
    X, weights = CASES[case]
    seen, _ = seeding(monkeypatch, X, weights, prune=True)
    candidates = seen["candidates"].astype(np.float64)
    X64 = X.astype(np.float64)
    distances = ((X64[:, None, :] - candidates[None, :, :]) ** 2).sum(axis=2)
    nearest = distances.argmin(axis=1)
    w = np.ones(len(X)) if weights is None else weights.astype(np.float64)
    expected = np.bincount(nearest, weights=w, minlength=len(candidates))
    # Rows equally near two candidates in float32 count for the exactly nearer; only rows
    # whose float64 sums cannot tell (differing order of summation) may count for either.
    ordered = np.sort(distances, axis=1)
    tied = ordered[:, 1] - ordered[:, 0] <= 1e-12 * ordered[:, 1]
    assert np.abs(seen["weights"] - expected).sum() <= 2 * w[tied].sum() + 1e-6 * w.sum()
    assert seen["weights"].sum() == pytest.approx(w.sum(), rel=1e-9)


def test_a_row_equally_near_in_float32_goes_to_the_exactly_nearer_candidate():
    # Rows at the origin; candidate 0 (first round) at squared distance 2^24 + 2^-12, candidate
    # 1 (next round) at exactly 2^24: the same float32 distance, candidate 1 nearer.
    X = np.zeros((5, 4), np.float32)
    first = np.array([[4096.0, 2.0**-6, 0.0, 0.0]], np.float32)
    second = np.array([[4096.0, 0.0, 0.0, 0.0]], np.float32)
    (cost, measured), state = chunked_init.parallel_cost_task(X, None, 0, (first, 0, None, 0.0, "cpu"), None)
    assert cost == 5 * 2.0**24 and measured == 5
    _, state = chunked_init.parallel_cost_task(X, None, 0, (second, 1, None, 0.0, "cpu"), state)
    np.testing.assert_array_equal(state[1], np.ones(5))
    weights, _ = chunked_init.owner_weight_task(X, None, 0, 2, state)
    np.testing.assert_array_equal(weights, [0.0, 5.0])
