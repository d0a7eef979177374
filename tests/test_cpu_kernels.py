"""The cpu backend's float32 distance kernels. The fastest this CPU has is picked at run time
(AMX tiles, AVX512-BF16 or AVX-512 float32, else the `gemm` crate); `MLX_KMEANS_CPU_DOTS`
picks one for diagnostics (an unsupported one falls back to the automatic choice), read by
`_options` and fixed by a process's first native call (so each kind runs in a child). Every
kernel must give the exact nearest centroids: labels equal to a float64 NumPy reference
(by differences, ties to the lowest index) on data made of near ties, distances exact to
float32 rounding, and whole fits identical across kernels."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mlx_kmeans._backend import native

KINDS = ["gemm", "f32", "bf16", "amx"]

CHILD = r"""
import json, sys
import numpy as np
from mlx_kmeans import KMeans
from mlx_kmeans._backend import native
data = np.load(sys.argv[1])
x, centroids, init = data["x"], data["centroids"], data["init"]
labels, distances, _ = native().assign(x, centroids)
fit = KMeans(len(init), init=init, n_init=1, max_iter=8, tol=0.0, backend="cpu").fit(x)
fits = {a: KMeans(len(init), init=init, n_init=1, max_iter=20, tol=0.0, backend="cpu", algorithm=a).fit(x)
        for a in ("lloyd", "elkan")}
np.savez(sys.argv[2], labels=labels, distances=distances, fit_labels=fit.labels_,
         fit_centroids=fit.cluster_centers_,
         **{f"{a}_{v}": getattr(f, v + "_") for a, f in fits.items() for v in ("labels", "cluster_centers", "n_iter")})
print(json.dumps({"kernel": native().cpu_kernel(), "n_iter": int(fit.n_iter_)}))
"""


def near_ties(n=3000, k=70, d=96, offset=30.0, seed=3):
    """Rows on segments between pairs of centroids (a third at the midpoints), plus noise
    far below the bfloat16 rounding, on a common offset that makes partial distances cancel."""
    rng = np.random.default_rng(seed)
    centroids = (offset + rng.random((k, d))).astype(np.float32)
    a, b = rng.integers(0, k, n), rng.integers(0, k, n)
    t = np.where(np.arange(n) % 3 == 0, 0.5, rng.random(n))[:, None]
    x = t * centroids[a].astype(np.float64) + (1 - t) * centroids[b].astype(np.float64)
    x = (x + 1e-3 * (rng.random((n, d)) - 0.5)).astype(np.float32)
    centroids[1] = centroids[0]  # a duplicated centroid: the lower index wins its rows
    x[0] = centroids[0]
    init = x[rng.choice(n, 40, replace=False)]
    return x, centroids, init


def reference(x, centroids):
    """Exact nearest centroids in float64, by differences; ties to the lowest index."""
    sq = ((x.astype(np.float64)[:, None, :] - centroids.astype(np.float64)[None, :, :]) ** 2).sum(-1)
    labels = sq.argmin(axis=1)
    return labels, sq[np.arange(len(x)), labels]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kernels")
    x, centroids, init = near_ties()
    data = folder / "data.npz"
    np.savez(data, x=x, centroids=centroids, init=init)
    results = {}
    for kind in KINDS:
        out = folder / f"{kind}.npz"
        env = dict(os.environ, MLX_KMEANS_CPU_DOTS=kind)
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(data), str(out)], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        results[kind] = (report, dict(np.load(out)))
    return x, centroids, results


def test_the_automatic_choice_is_one_of_the_kernels():
    assert native().cpu_kernel() in KINDS


def test_every_kernel_gives_the_exact_nearest_centroids(runs):
    x, centroids, results = runs
    want_labels, want_sq = reference(x, centroids)
    assert (want_labels == 0).sum() > 0 and (want_labels == 1).sum() == 0  # the tie went low
    for kind, (report, got) in results.items():
        mismatched = np.flatnonzero(got["labels"] != want_labels)
        assert mismatched.size == 0, f"{kind} (ran {report['kernel']}): rows {mismatched[:10]} not at their nearest"
        np.testing.assert_allclose(got["distances"], want_sq, rtol=1e-6, err_msg=kind)


def test_fits_are_identical_across_kernels(runs):
    """Exact labels at every iteration from the same init: the same centroids, bit for bit."""
    _, _, results = runs
    first_kind, (first_report, first) = next(iter(results.items()))
    for kind, (report, got) in results.items():
        assert report["n_iter"] == first_report["n_iter"], (kind, first_kind)
        np.testing.assert_array_equal(got["fit_labels"], first["fit_labels"], err_msg=f"{kind} vs {first_kind}")
        np.testing.assert_array_equal(got["fit_centroids"], first["fit_centroids"], err_msg=f"{kind} vs {first_kind}")


def test_bounded_fits_equal_dense_fits_on_every_kernel(runs):
    """Bounds (`elkan`: bounds in every pass after the first, from the rows the kernel kept
    where it keeps them) skip searches, never change a label: the same iterations, labels and
    centroids as dense passes (`lloyd`), bit for bit, on every kernel and across kernels."""
    _, _, results = runs
    _, first = next(iter(results.values()))
    for kind, (_, got) in results.items():
        for algorithm in ("lloyd", "elkan"):
            for value in ("n_iter", "labels", "cluster_centers"):
                np.testing.assert_array_equal(
                    got[f"{algorithm}_{value}"], first[f"lloyd_{value}"], err_msg=f"{kind} {algorithm} {value}"
                )


def test_the_variable_picks_a_supported_kernel(runs):
    _, _, results = runs
    assert results["gemm"][0]["kernel"] == "gemm"
    for kind, (report, _) in results.items():
        assert report["kernel"] in (kind, native().cpu_kernel()), (kind, report)
