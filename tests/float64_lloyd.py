"""Lloyd in float64 with the engine's empty-cluster rule, and float64 nearest centroids: the
exact answers that the backends approximate in float32. Shared by the tests and the GPU
benchmark (`benchmarks/gpu.py`)."""

from __future__ import annotations

import numpy as np


def float64_lloyd(X, init, sample_weight=None, max_iter=50, margins=None):
    """NumPy Lloyd in float64 with the engine's empty-cluster rule (an empty cluster takes the
    row farthest from its centroid, ties to the lowest index; that row's weight moves with
    it), from `init` until labels stop changing. Returns centroids, labels, iterations.
    `margins`, a list: each step appends its thinnest gap between a row's nearest and second
    nearest squared distances (a float32 fit can follow this trajectory only where that gap
    is well above the rounding of float32 centroids)."""
    X64, c = np.asarray(X, dtype=np.float64), np.array(init, dtype=np.float64)
    w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    x_norms, labels = (X64**2).sum(1), None
    for iteration in range(1, max_iter + 1):
        all_distances = x_norms[:, None] - 2 * X64 @ c.T + (c**2).sum(1)[None, :]
        new = all_distances.argmin(1)
        if margins is not None and len(c) > 1:
            two = np.partition(all_distances, 1, axis=1)[:, :2]
            margins.append(float((two[:, 1] - two[:, 0]).min()))
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


def float64_nearest(X, centroids, block=4096):
    """Each row's nearest centroid by float64 distances by differences, in blocks of rows."""
    C = np.asarray(centroids, dtype=np.float64)
    out = np.empty(len(X), dtype=np.int64)
    for start in range(0, len(X), block):
        rows = np.asarray(X[start : start + block], dtype=np.float64)
        out[start : start + block] = ((rows[:, None] - C[None]) ** 2).sum(-1).argmin(1)
    return out
