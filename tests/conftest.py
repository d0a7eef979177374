"""Deterministic data for the tests."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from float64_lloyd import float64_lloyd as reference_lloyd_relocating  # noqa: E402,F401


def make_mixture(n_samples: int, n_features: int, n_centers: int, seed: int, spread: float = 1.0, dtype=np.float64):
    """Gaussian mixture: centres drawn with scale 10, unit-variance clusters."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=10.0, size=(n_centers, n_features))
    members = rng.integers(0, n_centers, size=n_samples)
    X = centers[members] + spread * rng.standard_normal((n_samples, n_features))
    return np.ascontiguousarray(X, dtype=dtype), members


def split_clusters(seed: int, groups: int, d: int, n: int, jitter: float):
    """Rows in `groups` tight clusters (centres of scale 1, noise 0.05, float32) and an init of
    two centroids per cluster a `jitter` apart: many rows lie near the boundary between a
    cluster's two centroids, within a GEMM's error band (the near ties the MLX kernel
    decides again)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, size=(groups, d))
    X = (centres[rng.integers(0, groups, n)] + 0.05 * rng.standard_normal((n, d))).astype(np.float32)
    init = (np.repeat(centres, 2, axis=0) + jitter * rng.standard_normal((2 * groups, d))).astype(np.float32)
    return X, init


def logged_near_ties(caplog):
    """(flagged, for the pair buffer, decided on the host) of each "near ties" debug line of
    the MLX kernel."""
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("near ties:")]
    return [tuple(int(w) for w in line.replace(",", "").split() if w.isdigit()) for line in lines]


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

