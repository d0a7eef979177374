"""Deterministic data for the tests."""

from __future__ import annotations

import numpy as np
import pytest


def make_mixture(n_samples: int, n_features: int, n_centers: int, seed: int, spread: float = 1.0, dtype=np.float64):
    """Gaussian mixture: centres drawn with scale 10, unit-variance clusters."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=10.0, size=(n_centers, n_features))
    members = rng.integers(0, n_centers, size=n_samples)
    X = centers[members] + spread * rng.standard_normal((n_samples, n_features))
    return np.ascontiguousarray(X, dtype=dtype), members


@pytest.fixture
def blobs():
    X, _ = make_mixture(600, 5, 6, seed=1)
    return X


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


def reference_lloyd(X, centers, max_iter, sample_weight=None):
    """Plain NumPy Lloyd in float64 (no tolerance; stops when labels repeat)."""
    X = np.asarray(X, dtype=np.float64)
    centers = np.array(centers, dtype=np.float64)
    w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    labels = None
    for _ in range(max_iter):
        d = ((X[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
        new_labels = d.argmin(1)
        if labels is not None and np.array_equal(labels, new_labels):
            break
        labels = new_labels
        for j in range(len(centers)):
            m = labels == j
            if w[m].sum() > 0:
                centers[j] = (X[m] * w[m, None]).sum(0) / w[m].sum()
    d = ((X[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
    labels = d.argmin(1)
    inertia = float((d[np.arange(len(X)), labels] * w).sum())
    return centers, labels, inertia


def seconds_to_interrupt(fit, after: float) -> float:
    """Runs `fit()`, sending SIGINT to this process `after` seconds in; asserts that it raises
    KeyboardInterrupt and returns the seconds from the signal to the exception."""
    import os
    import signal
    import threading
    import time

    if not hasattr(signal, "SIGINT") or threading.current_thread() is not threading.main_thread():
        pytest.skip("needs SIGINT in the main thread")
    sent = []

    def interrupt():
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(after, interrupt)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            fit()
        raised = time.perf_counter()
    finally:
        timer.cancel()
    assert sent, "the fit ended before the signal was sent"
    return raised - sent[0]


def reference_lloyd_relocating(X, init, sample_weight=None, max_iter=50):
    """NumPy Lloyd in float64 with the engine's empty-cluster rule (an empty cluster takes the
    row farthest from its centroid, ties to the lowest index; that row's weight moves with
    it), from `init` until labels stop changing. Returns centroids, labels, iterations."""
    X64, c = np.asarray(X, dtype=np.float64), np.array(init, dtype=np.float64)
    w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    x_norms, labels = (X64**2).sum(1), None
    for iteration in range(1, max_iter + 1):
        new = (x_norms[:, None] - 2 * X64 @ c.T + (c**2).sum(1)[None, :]).argmin(1)
        dist = ((X64 - c[new]) ** 2).sum(1)
        sums = np.zeros_like(c)
        np.add.at(sums, new, X64 * w[:, None])
        totals = np.bincount(new, weights=w, minlength=len(c))
        empty = np.flatnonzero(~(totals > 0))
        for j, i in zip(empty, np.lexsort((np.arange(len(X)), -dist))[: len(empty)]):
            sums[new[i]] -= X64[i] * w[i]
            totals[new[i]] -= w[i]
            sums[j], totals[j] = X64[i] * w[i], w[i]
        c = np.where(totals[:, None] > 0, sums / np.where(totals > 0, totals, 1.0)[:, None], c)
        if labels is not None and (labels == new).all():
            return c, new, iteration
        labels = new
    return c, labels, max_iter
