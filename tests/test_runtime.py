"""Bindings behaviour: GIL released, logging, panics, pickling, scikit-learn optional."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from conftest import seconds_to_interrupt

from mlx_kmeans import KMeans, MiniBatchKMeans, _native


def test_gil_is_released_during_a_fit():
    X = np.random.default_rng(0).normal(size=(60_000, 64)).astype(np.float32)
    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    fit_times = []

    def fit():
        start = time.perf_counter()
        KMeans(256, random_state=0, max_iter=15, tol=0).fit(X)
        fit_times.append((start, time.perf_counter()))

    counter = threading.Thread(target=count)
    counter.start()
    fitter = threading.Thread(target=fit)
    fitter.start()
    fitter.join()
    done.set()
    counter.join()
    start, end = fit_times[0]
    during = [t for t in ticks if start < t < end]
    # With the GIL held the counter would be frozen for the whole fit.
    assert end - start > 0.05
    possible = (end - start) / 0.001
    assert len(during) >= 0.1 * possible, (len(during), possible)


def test_rust_log_records_reach_python_logging(caplog):
    X = np.vstack([np.zeros((5, 2)), np.ones((5, 2))])
    with caplog.at_level(logging.DEBUG):
        KMeans(2, random_state=0, n_init=1).fit(X)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("mlx_kmeans")]
    assert any("converged" in m for m in messages), messages


def test_rust_panic_becomes_python_exception():
    if not hasattr(_native, "_panic_for_test"):
        pytest.skip("a build without the test-only entry points (scripts/test.sh builds with the cargo feature test-hooks)")
    with pytest.raises(RuntimeError, match="internal error in the k-means engine: deliberate test panic"):
        _native._panic_for_test()


def test_progress_callback_errors_stop_the_fit():
    X = np.random.default_rng(0).normal(size=(2000, 4))

    class Stop(Exception):
        pass

    def progress(run, iteration, inertia, shift, event):
        if iteration == 2:
            raise Stop

    with pytest.raises(Stop):
        _native.kmeans_fit(X, None, n_clusters=5, init="random", n_init=1, max_iter=50, tol=0.0, seed=0, progress=progress)


@pytest.mark.parametrize("cls", [KMeans, MiniBatchKMeans])
def test_pickle_round_trip(cls):
    X = np.random.default_rng(1).normal(size=(500, 4)).astype(np.float32)
    est = cls(5, random_state=0).fit(X)
    clone = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(clone.predict(X), est.predict(X))
    np.testing.assert_array_equal(clone.cluster_centers_, est.cluster_centers_)


def test_works_without_scikit_learn():
    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "sklearn" or name.startswith("sklearn."):
                    raise ImportError("blocked")
        sys.meta_path.insert(0, Block())
        import numpy as np
        from mlx_kmeans import KMeans, MiniBatchKMeans, kmeans
        from mlx_kmeans._sklearn_compat import HAVE_SKLEARN, NotFittedError
        assert not HAVE_SKLEARN
        X = np.random.default_rng(0).normal(size=(300, 3))
        est = KMeans(4, random_state=0).fit(X)
        assert est.get_params()["n_clusters"] == 4
        est.set_params(n_clusters=3)
        assert repr(est) == "KMeans(n_clusters=3, random_state=0)", repr(est)
        assert est.fit_predict(X).max() == 2
        assert est.fit_transform(X).shape == (300, 3)
        assert list(est.get_feature_names_out()) == ["kmeans0", "kmeans1", "kmeans2"]
        try:
            KMeans().predict(X)
        except NotFittedError:
            pass
        else:
            raise AssertionError("expected NotFittedError")
        MiniBatchKMeans(4, random_state=0).partial_fit(X)
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_bit_identical_at_one_and_two_threads(tmp_path):
    code = textwrap.dedent(
        """
        import numpy as np, sys
        from mlx_kmeans import KMeans, MiniBatchKMeans
        rng = np.random.default_rng(0)
        X = rng.normal(size=(20000, 16)).astype(np.float32)
        a = KMeans(64, random_state=1, n_init=2).fit(X)
        b = MiniBatchKMeans(64, random_state=1, batch_size=512).fit(X)
        # Five runs' seedings on their own samples, at once where there are two threads; each
        # run's validation inertia is printed (verbose), so every run is compared.
        c = MiniBatchKMeans(64, random_state=2, batch_size=512, n_init=5, backend="cpu", verbose=1).fit(X)
        np.savez(
            sys.argv[1], ac=a.cluster_centers_, al=a.labels_, bc=b.cluster_centers_, bl=b.labels_,
            cc=c.cluster_centers_, cl=c.labels_,
        )
        """
    )
    import os

    outputs, inits = [], []
    for threads in ("1", "2"):
        target = tmp_path / f"t{threads}.npz"
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        run = subprocess.run([sys.executable, "-c", code, str(target)], env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        outputs.append(np.load(target))
        inits.append([line for line in run.stdout.splitlines() if line.startswith("Inertia for init")])
    assert len(inits[0]) == 5 and inits[0] == inits[1], inits
    for key in ("ac", "al", "bc", "bl", "cc", "cl"):
        np.testing.assert_array_equal(outputs[0][key], outputs[1][key])


@pytest.mark.parametrize("cls, n_init", [(KMeans, 1), (MiniBatchKMeans, 1), (MiniBatchKMeans, 3)])
def test_ctrl_c_interrupts_a_long_fit_quickly(cls, n_init):
    # Long in k-means++ alone (thousands of passes over the data); a mini-batch fit's three
    # seedings run at once on the engine's threads, this thread watching for Ctrl-C.
    X = np.random.default_rng(0).normal(size=(200_000, 32)).astype(np.float32)
    if cls is MiniBatchKMeans:
        est = cls(2000, random_state=0, n_init=n_init, max_iter=300, init_size=200_000)
    else:
        est = cls(2000, random_state=0, n_init=n_init)
    delay = seconds_to_interrupt(lambda: est.fit(X), after=0.5)
    assert delay < 1.0, delay
    assert not hasattr(est, "cluster_centers_")  # left unfitted, not half-written
