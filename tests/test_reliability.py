"""Reliability: interrupts inside long passes, fits from many threads, bounded memory, and
degenerate data (duplicates, zero variance, extreme magnitudes)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest
from conftest import make_mixture, seconds_to_interrupt

import mlx_kmeans
from mlx_kmeans import KMeans, MiniBatchKMeans, kmeans

BACKENDS = [b.name for b in mlx_kmeans.backends() if b.available]


def test_ctrl_c_inside_one_long_pass():
    """One pass over these rows takes over a second here; Ctrl-C must not wait for its end."""
    X = np.random.default_rng(0).standard_normal((1_000_000, 64), dtype=np.float32)
    est = KMeans(1000, init=X[:1000].copy(), n_init=1, max_iter=300, backend="cpu")
    delay = seconds_to_interrupt(lambda: est.fit(X), after=1.5)
    assert delay < 1.0, delay
    assert not hasattr(est, "cluster_centers_") and not hasattr(est, "labels_")


@pytest.mark.parametrize("backend", BACKENDS)
def test_fits_from_threads_equal_fits_one_after_another(backend):
    datasets = [make_mixture(3000, 8, 6, seed=s, dtype=np.float32)[0] for s in range(6)]

    def fit(i):
        cls = KMeans if i % 2 == 0 else MiniBatchKMeans
        return cls(6, n_init=2, random_state=i, backend=backend).fit(datasets[i])

    sequential = [fit(i) for i in range(len(datasets))]
    results = [None] * len(datasets)
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, fit(i))) for i in range(len(datasets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for one, other in zip(sequential, results):
        np.testing.assert_array_equal(one.cluster_centers_, other.cluster_centers_)
        np.testing.assert_array_equal(one.labels_, other.labels_)


def test_many_threads_share_one_thread_pool():
    """Concurrent fits reuse the engine's one rayon pool: the process gains no threads per fit."""
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("needs /proc")
    X = make_mixture(20000, 16, 8, seed=1, dtype=np.float32)[0]
    KMeans(8, n_init=1, random_state=0, backend="cpu").fit(X)  # starts the pool
    callers = 8
    peak, running = [0], [True]

    def watch():
        while running[0]:
            peak[0] = max(peak[0], len(os.listdir("/proc/self/task")))
            time.sleep(0.005)

    baseline = len(os.listdir("/proc/self/task"))
    watcher = threading.Thread(target=watch)
    watcher.start()
    workers = [threading.Thread(target=lambda: KMeans(8, n_init=3, random_state=0, backend="cpu").fit(X)) for _ in range(callers)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    running[0] = False
    watcher.join()
    # Only the caller threads and the watcher are new; no extra pool threads appear.
    assert peak[0] <= baseline + callers + 1, (baseline, peak[0])


def test_no_n_by_k_matrix_for_200k_rows_and_2048_clusters():
    """An n × k float32 distance matrix here would be 1.6 GB; peak memory grows far less."""
    script = textwrap.dedent(
        """
        import resource
        import numpy as np
        from mlx_kmeans import KMeans
        X = np.random.default_rng(0).standard_normal((200_000, 64), dtype=np.float32)
        init = X[:2048].copy()
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        before = peak()
        km = KMeans(2048, init=init, n_init=1, max_iter=2, backend="cpu").fit(X)
        print(before, peak(), km.n_iter_)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=600).stdout
    before, after, n_iter = map(int, out.split())
    assert n_iter == 2
    growth = after - before
    assert growth < 200 * 2**20, f"peak RSS grew by {growth / 2**20:.0f} MiB"


@pytest.mark.parametrize("cls", [KMeans, MiniBatchKMeans])
def test_fewer_distinct_points_than_clusters_warns_and_proceeds(cls):
    """As scikit-learn: KMeans warns (ConvergenceWarning), MiniBatchKMeans proceeds quietly."""
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]), 10, axis=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = cls(5, n_init=1, random_state=0).fit(X)
    messages = [str(w.message) for w in caught]
    if cls is KMeans:
        assert any("distinct clusters (3) found smaller than n_clusters (5)" in m for m in messages), messages
    assert est.labels_.min() >= 0 and est.labels_.max() < 5
    assert est.inertia_ == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_array_equal(np.unique(est.predict(X)).size, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_variance_data(backend):
    X = np.full((50, 4), 3.5, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        km = KMeans(3, n_init=1, random_state=0, backend=backend).fit(X)
        result = kmeans(X, 1, backend=backend)
    assert km.inertia_ == 0.0 and np.all(km.cluster_centers_ == 3.5)
    assert result.inertia == 0.0 and result.n_iter >= 1


@pytest.mark.parametrize("scale", [1e30, 1e-30, 1e20, 1e-20])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_and_tiny_magnitudes(scale, dtype):
    """Results on scaled data are the scaled results, with no overflow to inf or NaN."""
    base = make_mixture(600, 5, 4, seed=2)[0] / 10.0
    X = (base * scale).astype(dtype)
    before = X.tobytes()
    km = KMeans(4, n_init=1, random_state=0, backend="cpu").fit(X)
    ref = KMeans(4, n_init=1, random_state=0, backend="cpu").fit(X.astype(np.float64) / scale)
    assert X.tobytes() == before
    np.testing.assert_array_equal(km.labels_, ref.labels_)
    np.testing.assert_allclose(km.cluster_centers_ / scale, ref.cluster_centers_, rtol=1e-6)
    assert np.isfinite(km.inertia_) and km.inertia_ == pytest.approx(ref.inertia_ * scale**2, rel=1e-6)
    assert np.all(np.isfinite(km.transform(X))) and np.array_equal(km.predict(X), km.labels_)
    assert np.isfinite(kmeans(X, 4).inertia)


def test_magnitudes_beyond_float64_are_refused():
    with pytest.raises(ValueError, match="overflow even in float64"):
        KMeans(2).fit(np.array([[1e200, 0.0], [0.0, 1.0], [1.0, 1.0]]))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", ["os.fork", "multiprocessing"])
def test_fit_in_a_process_forked_after_a_fit(backend, how):
    """The child of a process that already fitted (rayon's workers do not survive a fork)
    fits too, with the parent's result, instead of hanging."""
    script = textwrap.dedent(
        f"""
        import multiprocessing, os, sys
        import numpy as np
        from mlx_kmeans import KMeans, MiniBatchKMeans

        X = np.random.default_rng(0).normal(size=(20000, 16)).astype(np.float32)
        parent = KMeans(10, random_state=0, backend={backend!r}).fit(X)

        def child(queue=None):
            est = KMeans(10, random_state=0, backend={backend!r}).fit(X)
            MiniBatchKMeans(10, random_state=0, backend={backend!r}).fit(X)
            same = bool(np.array_equal(est.labels_, parent.labels_))
            if queue is None:
                os._exit(0 if same else 3)
            queue.put(same)

        if {how!r} == "os.fork":
            pid = os.fork()
            if pid == 0:
                child()
            _, status = os.waitpid(pid, 0)
            sys.exit(os.waitstatus_to_exitcode(status))
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        process = context.Process(target=child, args=(queue,))
        process.start()
        same = queue.get(timeout=100)
        process.join()
        sys.exit(0 if same else 3)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
