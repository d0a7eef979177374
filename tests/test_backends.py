"""Every backend runs the same loop: from the same init they agree with the cpu backend.
The automatic order is checked on each platform with the probes simulated."""

from __future__ import annotations

import logging
import sys
import types

import numpy as np
import pytest

import mlx_kmeans._backend as backend_mod
from conftest import logged_near_ties, make_mixture, split_clusters
from mlx_kmeans import KMeans, MiniBatchKMeans, backends, kmeans
from mlx_kmeans._backend import Backend, resolve

AVAILABLE = {b.name for b in backends() if b.available}
OTHERS = [pytest.param(name, marks=pytest.mark.skipif(name not in AVAILABLE, reason=f"{name} unavailable here")) for name in ("mlx", "faiss")]


@pytest.fixture
def data():
    X, _ = make_mixture(3000, 24, 16, seed=21, spread=3.0, dtype=np.float32)
    return X, X[::150][:16].copy()


def _agree(a_labels, b_labels, a_centroids, b_centroids, X):
    a_labels, b_labels = np.asarray(a_labels), np.asarray(b_labels)
    a_centroids, b_centroids = np.asarray(a_centroids), np.asarray(b_centroids)
    differ = np.flatnonzero(a_labels != b_labels)
    # A differing label must be a tie: both centroids equally near, to float32 precision.
    for i in differ:
        da = ((X[i] - a_centroids[a_labels[i]]) ** 2).sum()
        db = ((X[i] - a_centroids[b_labels[i]]) ** 2).sum()
        assert abs(da - db) <= 1e-4 * max(da, 1.0), (i, da, db)
    assert len(differ) <= 0.001 * len(X)
    np.testing.assert_allclose(a_centroids, b_centroids, rtol=1e-4, atol=1e-4 * np.abs(b_centroids).max())


@pytest.mark.parametrize("name", OTHERS)
def test_kmeans_estimator_agrees_with_cpu(name, data):
    X, init = data
    ref = KMeans(16, init=init, n_init=1, max_iter=100, backend="cpu").fit(X)
    other = KMeans(16, init=init, n_init=1, max_iter=100, backend=name).fit(X)
    assert other.backend_ == name
    _agree(other.labels_, ref.labels_, other.cluster_centers_, ref.cluster_centers_, X)
    assert other.inertia_ == pytest.approx(ref.inertia_, rel=1e-5)
    np.testing.assert_array_equal(other.predict(X), np.asarray(other.labels_))


@pytest.mark.parametrize("spherical", [False, True])
@pytest.mark.parametrize("name", OTHERS)
def test_empty_clusters_and_spherical_agree_with_cpu(name, spherical, data):
    # Two starting centroids far from every row come out empty in the first iteration and
    # are moved to the farthest rows; the MLX backend updates centroids on its device and
    # repairs empty clusters on the host. Weighted, and with unit-norm centroids.
    X, init = data
    init = init.copy()
    init[3] = 1e3
    init[9] = -1e3
    w = np.random.default_rng(4).uniform(0.5, 2.0, len(X)).astype(np.float32)
    params = dict(init=init, n_init=1, max_iter=100, spherical=spherical)
    ref = KMeans(16, backend="cpu", **params).fit(X, sample_weight=w)
    other = KMeans(16, backend=name, **params).fit(X, sample_weight=w)
    _agree(other.labels_, ref.labels_, other.cluster_centers_, ref.cluster_centers_, X)
    assert other.inertia_ == pytest.approx(ref.inertia_, rel=1e-5)
    assert other.n_iter_ == ref.n_iter_


@pytest.mark.parametrize("name", OTHERS)
def test_minibatch_agrees_with_cpu(name, data):
    X, init = data
    params = dict(n_clusters=16, init=init, n_init=1, batch_size=256, random_state=0, max_iter=5)
    ref = MiniBatchKMeans(backend="cpu", **params).fit(X)
    other = MiniBatchKMeans(backend=name, **params).fit(X)
    _agree(other.labels_, ref.labels_, other.cluster_centers_, ref.cluster_centers_, X)
    # partial_fit follows the same steps too.
    ref_p = MiniBatchKMeans(backend="cpu", reassignment_ratio=0.0, **params)
    other_p = MiniBatchKMeans(backend=name, reassignment_ratio=0.0, **params)
    for start in range(0, 3000, 500):
        ref_p.partial_fit(X[start : start + 500])
        other_p.partial_fit(X[start : start + 500])
    _agree(other_p.labels_, ref_p.labels_, other_p.cluster_centers_, ref_p.cluster_centers_, X[2500:])


@pytest.mark.parametrize("case", ["plain", "weighted", "spherical", "tol", "mlx-input"])
@pytest.mark.parametrize("name", OTHERS)
def test_minibatch_steps_on_clustered_data_agree_with_cpu(name, case):
    # ClassKit's call in small: twice as many centres as the data has clusters, so centres
    # starve and are reassigned; k-means++ on the init sample, n_init judged on validation
    # rows. On the MLX backend every step runs on its device (the data resident there), with
    # the host's random numbers and exact batch labels: the same steps, the same
    # reassignments, the same centroids.
    if case == "mlx-input" and name != "mlx":
        pytest.skip("MLX input is for the mlx backend")
    X, _ = make_mixture(6000, 32, 20, seed=12, spread=2.0, dtype=np.float32)
    w = np.random.default_rng(2).uniform(0.5, 2.0, len(X)).astype(np.float32) if case == "weighted" else None
    params = dict(n_clusters=40, batch_size=256, max_iter=4, n_init=3, random_state=42)
    params.update(spherical=case == "spherical", tol=1e-3 if case == "tol" else 0.0)
    ref = MiniBatchKMeans(backend="cpu", **params).fit(X, sample_weight=w)
    data = X
    if case == "mlx-input":
        import mlx.core as mx

        data = mx.array(X)
    other = MiniBatchKMeans(backend=name, **params).fit(data, sample_weight=w)
    assert other.n_steps_ == ref.n_steps_
    _agree(other.labels_, ref.labels_, other.cluster_centers_, ref.cluster_centers_, X)
    np.testing.assert_allclose(other._counts, ref._counts, rtol=1e-5)
    assert other.inertia_ == pytest.approx(ref.inertia_, rel=1e-5)


@pytest.mark.parametrize("name", OTHERS)
def test_kmeans_function_agrees_with_cpu(name, data):
    X, init = data
    ref = kmeans(X, 16, init=init, backend="cpu")
    other = kmeans(X, 16, init=init, backend=name)
    assert other.backend == name
    _agree(other.labels, ref.labels, other.centroids, ref.centroids, X)
    np.testing.assert_allclose(other.distances, ref.distances, rtol=1e-3, atol=1e-3)
    # Same seed, same k-means++ init on every backend.
    a, b = kmeans(X, 16, seed=3, backend="cpu"), kmeans(X, 16, seed=3, backend=name)
    _agree(b.labels, a.labels, b.centroids, a.centroids, X)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name", OTHERS)
def test_kmeanspp_picks_the_cpu_backends_rows(name, weighted, data):
    # The MLX backend runs greedy k-means++ on its device, drawing the host's random numbers:
    # for a seed it picks the same rows (one Lloyd step from them gives the same centroids),
    # on all the data and on MiniBatchKMeans's init sample alike. Its running sums are float32,
    # the host's float64: rarely a draw lands on a neighbouring row, so most seeds, not all,
    # must agree exactly, and the initial inertia must be as good on average.
    X, _ = data
    w = np.random.default_rng(5).uniform(0.0, 2.0, len(X)).astype(np.float32) if weighted else None
    same, inertia = 0, {"cpu": [], name: []}
    for seed in range(8):
        fits = {b: KMeans(16, n_init=1, max_iter=1, random_state=seed, backend=b).fit(X, sample_weight=w) for b in inertia}
        same += np.allclose(fits[name].cluster_centers_, fits["cpu"].cluster_centers_, rtol=1e-5, atol=1e-4)
        for b, fit in fits.items():
            inertia[b].append(fit.inertia_)
    assert same >= 6
    assert np.mean(inertia[name]) == pytest.approx(np.mean(inertia["cpu"]), rel=0.15)
    # `n_init` runs over the same rows: seeded in lockstep on the cpu backend (each chunk of
    # rows read once for all runs) and on the device (stacked copies); each run picks what it
    # would alone, so the best runs agree.
    same = 0
    for seed in range(4):
        fits = {b: KMeans(16, n_init=3, max_iter=1, random_state=seed, backend=b).fit(X, sample_weight=w) for b in inertia}
        same += np.allclose(fits[name].cluster_centers_, fits["cpu"].cluster_centers_, rtol=1e-5, atol=1e-4)
    assert same >= 3
    params = dict(n_clusters=16, batch_size=100, max_iter=1, n_init=3, random_state=7, max_no_improvement=None)
    a = MiniBatchKMeans(backend="cpu", **params).fit(X, sample_weight=w)
    b = MiniBatchKMeans(backend=name, **params).fit(X, sample_weight=w)
    np.testing.assert_allclose(b.cluster_centers_, a.cluster_centers_, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", OTHERS)
def test_many_empty_clusters_at_once_agree_with_cpu(name):
    # Half the starting centroids are far from every row: eight clusters empty out in one
    # step and take the eight farthest rows, several from the same cluster; the farthest
    # rows of all have zero weight and must be passed over. On the MLX backend the repair
    # runs on its device.
    X, _ = make_mixture(4000, 12, 8, seed=8, spread=2.0, dtype=np.float32)
    init = X[:16].copy()
    init[8:] = 500.0 + np.arange(8, dtype=np.float32)[:, None]
    w = np.ones(len(X), dtype=np.float32)
    far = np.argsort(-((X - X.mean(0)) ** 2).sum(1))[:5]
    w[far] = 0.0
    params = dict(init=init, n_init=1, max_iter=50)
    ref = KMeans(16, backend="cpu", **params).fit(X, sample_weight=w)
    other = KMeans(16, backend=name, **params).fit(X, sample_weight=w)
    _agree(other.labels_, ref.labels_, other.cluster_centers_, ref.cluster_centers_, X)
    assert other.inertia_ == pytest.approx(ref.inertia_, rel=1e-5)
    assert other.n_iter_ == ref.n_iter_
    assert not np.isin(np.asarray(other.cluster_centers_), X[far]).all(axis=1).any()


@pytest.mark.parametrize("name", OTHERS)
def test_float64_input_is_computed_in_float32_when_asked(name, data):
    X, init = data
    est = KMeans(16, init=init, n_init=1, backend=name).fit(X.astype(np.float64))
    assert np.asarray(est.cluster_centers_).dtype == np.float32


@pytest.mark.skipif("mlx" not in AVAILABLE, reason="mlx unavailable here")
def test_mlx_arrays_in_mlx_arrays_out(data):
    import mlx.core as mx

    X, init = data
    X_mx = mx.array(X)
    result = kmeans(X_mx, 16, init=init, backend="mlx")
    assert all(isinstance(v, mx.array) for v in (result.centroids, result.labels, result.distances))
    ref = kmeans(X, 16, init=init, backend="cpu")
    _agree(np.array(result.labels), ref.labels, np.array(result.centroids), ref.centroids, X)
    est = KMeans(16, init=init, n_init=1).fit(X_mx)
    assert isinstance(est.cluster_centers_, mx.array) and isinstance(est.labels_, mx.array)
    assert isinstance(est.predict(X_mx), mx.array)
    assert isinstance(est.predict(X), np.ndarray)
    assert isinstance(est.transform(X_mx), mx.array)
    # float16 and bfloat16 MLX input are accepted (computed in float32).
    for dtype in (mx.float16, mx.bfloat16):
        half = kmeans(X_mx.astype(dtype), 16, init=init, backend="mlx")
        assert half.centroids.dtype == mx.float32
    # NumPy in, NumPy out.
    assert isinstance(kmeans(X, 16, init=init, backend="mlx").centroids, np.ndarray)


@pytest.mark.skipif("mlx" not in AVAILABLE, reason="mlx unavailable here")
def test_mlx_array_is_shared_not_copied(data, caplog, monkeypatch):
    # The MLX kernel computes on the caller's MLX array in place; a transposed (non-contiguous)
    # array, or sharing turned off, takes the copying path. All give the same fit as NumPy
    # input, and the input is unchanged.
    import mlx.core as mx

    X, init = data
    ref = KMeans(16, init=init, n_init=1, backend="cpu").fit(X)
    X_mx = mx.array(X)
    transposed = mx.array(np.ascontiguousarray(X.T)).T
    cases = [("shared", X_mx, True), ("transposed", transposed, False), ("off", X_mx, False)]
    for case, array, shares in cases:
        if case == "off":
            monkeypatch.setenv("MLX_KMEANS_MLX_SHARE", "0")
        with caplog.at_level(logging.DEBUG, logger="mlx_kmeans"):
            caplog.clear()
            est = KMeans(16, init=init, n_init=1, backend="mlx").fit(array)
        shared = any("sharing the caller's MLX array" in r.getMessage() for r in caplog.records)
        assert shared == shares, case
        _agree(np.array(est.labels_), ref.labels_, np.array(est.cluster_centers_), ref.cluster_centers_, X)
        assert est.inertia_ == pytest.approx(ref.inertia_, rel=1e-4)
        np.testing.assert_array_equal(np.array(array), X)


@pytest.mark.skipif("mlx" not in AVAILABLE, reason="mlx unavailable here")
def test_minibatch_shares_mlx_arrays(data, caplog):
    # MiniBatchKMeans's fit and each partial_fit compute on the caller's MLX array too, with
    # the same steps as NumPy input, and leave it unchanged.
    import mlx.core as mx

    X, init = data
    X_mx = mx.array(X)
    params = dict(n_clusters=16, init=init, n_init=1, batch_size=256, random_state=0, max_iter=3)
    ref = MiniBatchKMeans(backend="cpu", **params).fit(X)
    with caplog.at_level(logging.DEBUG, logger="mlx_kmeans"):
        est = MiniBatchKMeans(backend="mlx", **params).fit(X_mx)
        assert any("sharing the caller's MLX array" in r.getMessage() for r in caplog.records)
        caplog.clear()
        ref_p, est_p = (MiniBatchKMeans(backend=b, **params) for b in ("cpu", "mlx"))
        for start in range(0, 3000, 1000):
            ref_p.partial_fit(X[start : start + 1000])
            est_p.partial_fit(X_mx[start : start + 1000])
        assert sum("sharing the caller's MLX array" in r.getMessage() for r in caplog.records) >= 3
    assert isinstance(est.cluster_centers_, mx.array) and isinstance(est_p.cluster_centers_, mx.array)
    _agree(np.array(est.labels_), ref.labels_, np.array(est.cluster_centers_), ref.cluster_centers_, X)
    _agree(np.array(est_p.labels_), ref_p.labels_, np.array(est_p.cluster_centers_), ref_p.cluster_centers_, X[2000:])
    np.testing.assert_array_equal(np.array(X_mx), X)


@pytest.fixture
def simulate(monkeypatch):
    """simulate(mlx=(available, auto), faiss=(available, auto, gpu)) replaces the probes; an
    automatic mlx runs on a GPU, faiss on one only when told."""

    def apply(**states):
        probes = dict(backend_mod.PROBES)
        for name, state in states.items():
            available, auto = state[:2]
            gpu = state[2] if len(state) > 2 else (name == "mlx" and auto)
            probes[name] = lambda platform, n=name, a=available, u=auto, g=gpu: Backend(n, a, f"simulated {n}", u, g)
        monkeypatch.setattr(backend_mod, "PROBES", probes)
        monkeypatch.delenv("MLX_KMEANS_BACKEND", raising=False)

    return apply


@pytest.mark.parametrize(
    "platform, mlx, faiss, dtype, expected",
    [
        ("darwin", (True, True), (True, True), np.float32, "mlx"),
        ("darwin", (False, False), (True, True), np.float32, "cpu"),
        ("darwin", (True, True), (True, True), np.float64, "cpu"),
        ("linux", (True, True), (True, True), np.float32, "mlx"),  # MLX's GPU before faiss on CPU
        ("linux", (True, True), (True, True, True), np.float32, "faiss"),  # faiss's GPU build first
        ("linux", (True, False), (True, True), np.float32, "faiss"),
        ("linux", (True, False), (True, False), np.float32, "cpu"),  # faiss-cpu only when asked
        ("linux", (True, True), (False, False), np.float32, "mlx"),
        ("linux", (True, False), (False, False), np.float32, "cpu"),
        ("linux", (True, True), (True, True), np.float64, "cpu"),
        ("win32", (False, False), (True, True), np.float32, "faiss"),
        ("win32", (False, False), (False, False), np.float32, "cpu"),
    ],
)
def test_auto_order(simulate, platform, mlx, faiss, dtype, expected, caplog):
    simulate(mlx=mlx, faiss=faiss)
    with caplog.at_level(logging.INFO, logger="mlx_kmeans"):
        assert resolve("auto", dtype, platform) == expected
    assert any("chosen automatically" in r.getMessage() for r in caplog.records)


def test_order_lists_and_faiss_never_on_macos(monkeypatch):
    monkeypatch.setattr(backend_mod, "_mlx_info", lambda: (True, True, True, "Device(gpu, 0)"))
    assert [b.name for b in backends("darwin")] == ["mlx", "cpu", "faiss"]
    assert [b.name for b in backends("linux")] == ["faiss", "mlx", "cpu"]
    mac_faiss = {b.name: b for b in backends("darwin")}["faiss"]
    assert not mac_faiss.available and "macOS" in mac_faiss.reason
    with pytest.raises(ValueError, match="faiss.*macOS"):
        resolve("faiss", np.float32, "darwin")


@pytest.mark.parametrize("gpus", [0, 2])
def test_faiss_is_automatic_only_on_a_gpu(monkeypatch, gpus):
    """A CPU build of faiss is slower than the cpu backend as our assignment kernel: it runs
    when asked for, never automatically; a GPU build that sees GPUs goes first."""
    fake = types.ModuleType("faiss")
    fake.__version__ = "0.0-fake"
    fake.get_num_gpus = lambda: gpus
    monkeypatch.setitem(sys.modules, "faiss", fake)
    monkeypatch.setattr(backend_mod, "_mlx_info", lambda: (True, True, False, "Device(cpu, 0)"))
    monkeypatch.delenv("MLX_KMEANS_BACKEND", raising=False)
    probe = backend_mod._probe_faiss("linux")
    assert probe.available and probe.auto == (gpus > 0) and probe.gpu == (gpus > 0)
    assert resolve("auto", np.float32, "linux") == ("faiss" if gpus else "cpu")
    assert resolve("faiss", np.float32, "linux") == "faiss"


def test_environment_variable_overrides(simulate, monkeypatch):
    simulate(mlx=(True, True), faiss=(True, True))
    monkeypatch.setenv("MLX_KMEANS_BACKEND", "cpu")
    assert resolve("auto", np.float32, "linux") == "cpu"
    assert resolve("mlx", np.float32, "linux") == "mlx"  # an explicit argument wins


def test_runs_on_cpu_when_mlx_fails_to_load(monkeypatch, data):
    monkeypatch.setattr(backend_mod, "_mlx_info", lambda: (True, False, False, "libmlx failed to load (simulated)"))
    mlx = {b.name: b for b in backends()}["mlx"]
    assert not mlx.available and "simulated" in mlx.reason
    X, _ = data
    monkeypatch.delenv("MLX_KMEANS_BACKEND", raising=False)
    assert KMeans(4, random_state=0, backend="cpu").fit(X).backend_ == "cpu"
    assert resolve("auto", np.float32, "darwin") == "cpu"
    with pytest.raises(ValueError, match="simulated"):
        KMeans(4, backend="mlx").fit(X)


@pytest.mark.skipif("mlx" not in AVAILABLE or not sys.platform.startswith("linux"), reason="needs mlx and /proc")
@pytest.mark.parametrize("first", ["mlx.core", "mlx_kmeans"])
def test_one_libmlx_per_process(first):
    import subprocess

    second = "mlx_kmeans" if first == "mlx.core" else "mlx.core"
    code = (
        f"import {first}; import {second}; import numpy as np, mlx_kmeans, mlx.core as mx\n"
        "mlx_kmeans.kmeans(np.arange(20, dtype=np.float32).reshape(10, 2), 2, backend='mlx')\n"
        "print(mx.sum(mx.array([1.0, 2.0])).item())\n"
        "print(sorted({l.split()[-1] for l in open('/proc/self/maps') if 'libmlx' in l}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "3.0"
    libraries = eval(lines[1])
    assert len(libraries) == 1, libraries


@pytest.mark.skipif("mlx" not in AVAILABLE, reason="mlx unavailable here")
def test_mlx_ops_are_exact_far_from_the_origin():
    """MLX's own ops (what Apple GPUs run): a centroid of data offset by 1e5 is its mean to
    float32 resolution, and on GPS-like data every label is the exact nearest centroid of the
    returned centroids, with the cpu backend's inertia."""
    rng = np.random.default_rng(0)
    X = (1e5 + rng.normal(size=(20000, 4))).astype(np.float32)
    centre = KMeans(1, backend="mlx").fit(X).cluster_centers_[0]
    np.testing.assert_allclose(centre, X.astype(np.float64).mean(0), atol=0.01)
    gps = (np.array([40.71, -74.0]) + rng.normal(0, 0.01, (5000, 2))).astype(np.float32)
    ours = KMeans(8, random_state=0, backend="mlx").fit(gps)
    exact = ((gps.astype(np.float64)[:, None] - ours.cluster_centers_.astype(np.float64)[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(ours.labels_, exact.argmin(1))
    np.testing.assert_array_equal(ours.predict(gps), exact.argmin(1))
    init = gps[::625][:8].copy()
    same_start = KMeans(8, init=init, n_init=1, backend="mlx").fit(gps)
    cpu = KMeans(8, init=init, n_init=1, backend="cpu").fit(gps)
    np.testing.assert_array_equal(same_start.labels_, cpu.labels_)
    assert same_start.inertia_ == pytest.approx(cpu.inertia_, rel=1e-5)
    batch = MiniBatchKMeans(8, random_state=0, backend="mlx").fit(gps)
    assert batch.inertia_ < 1.5 * cpu.inertia_


@pytest.mark.parametrize("backend", ["cpu", *OTHERS])
@pytest.mark.parametrize("offset", [1e2, 1e3])
def test_labels_are_exact_far_from_the_origin(backend, offset):
    """Tight clusters far from the origin in 16 dimensions: fit labels and predict are the exact
    nearest centroids (float64 differences) of the returned centroids on every backend."""
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(8, 16)) * 0.05
    X = (offset + centres[rng.integers(0, 8, 20000)] + rng.normal(0, 0.02, (20000, 16))).astype(np.float32)
    est = KMeans(8, random_state=0, backend=backend).fit(X)
    exact = ((X.astype(np.float64)[:, None] - est.cluster_centers_.astype(np.float64)[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(est.labels_, exact.argmin(1))
    np.testing.assert_array_equal(est.predict(X), exact.argmin(1))
    assert est.inertia_ == pytest.approx(exact.min(1).sum(), rel=1e-6)


@pytest.mark.skipif("mlx" not in AVAILABLE, reason="mlx unavailable here")
@pytest.mark.parametrize("pairs", [None, "1", "0"])
def test_near_ties_of_split_clusters_are_decided_exactly_on_the_device(caplog, monkeypatch, pairs):
    # Twice as many centroids as clusters, in 256 dimensions with large norms: pairs of
    # centroids split one cluster, so many rows lie within the GEMM's error band of two
    # centroids. The MLX ops path decides most of them on the device by differences (in the
    # pair buffer against the best and runner-up where it runs, else in the general one), the
    # rest on the host; every label must be the exact float64 nearest centroid of the
    # centroids that gave it. (One Lloyd step from given centroids, whose labels are those of
    # `init`.)
    # The custom CUDA kernels (an NVIDIA GPU's default) decide near ties their own way.
    monkeypatch.setenv("MLX_KMEANS_MLX_CUDA_KERNELS", "0")
    if pairs is not None:
        monkeypatch.setenv("MLX_KMEANS_MLX_PAIRS", pairs)
    X, init = split_clusters(3, 16, 256, 6000, 1e-3)
    with caplog.at_level(logging.DEBUG, logger="mlx_kmeans"):
        est = KMeans(32, init=init, n_init=1, max_iter=1, backend="mlx").fit(X)
    flagged, for_pairs, on_host = logged_near_ties(caplog)[0]
    assert flagged > 100 and on_host < flagged / 2, logged_near_ties(caplog)
    # The pair buffer takes the rows with two centroids in their band where the runner-up is
    # found: asked for on MLX's ops (`1`), by default only with the shared kernels.
    if pairs == "1":
        assert for_pairs > flagged / 2, logged_near_ties(caplog)
    elif pairs == "0":
        assert for_pairs == 0, logged_near_ties(caplog)
    exact = ((X.astype(np.float64)[:, None] - init.astype(np.float64)[None]) ** 2).sum(-1)
    labels = np.asarray(est.predict(X))  # the returned centroids
    returned = ((X.astype(np.float64)[:, None] - np.asarray(est.cluster_centers_, np.float64)[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(labels, returned.argmin(1))
    # The fit's one step assigned by `init`: its centroids are the means of those labels.
    step_labels = exact.argmin(1)
    for j in np.unique(step_labels):
        np.testing.assert_allclose(est.cluster_centers_[j], X[step_labels == j].mean(0), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif("mlx" not in AVAILABLE, reason="mlx unavailable here")
def test_the_pair_buffer_changes_no_lloyd_step(monkeypatch):
    # Lloyd steps on clusters each split between two centroids (near ties in every step):
    # with the pair buffer (the runner-up found by MLX's ops here) and without it, steps
    # queued ahead or each waited for, the fits agree bit for bit, and their labels are
    # float64's nearest returned centroids.
    X, init = split_clusters(4, 12, 96, 5000, 1e-2)
    fits = {}
    for pairs in ("1", "0"):
        for ahead in ("1", "0"):
            monkeypatch.setenv("MLX_KMEANS_MLX_PAIRS", pairs)
            monkeypatch.setenv("MLX_KMEANS_MLX_AHEAD", ahead)
            fits[pairs, ahead] = kmeans(X, 24, init=init, max_iter=6, tol=0.0, backend="mlx")
    first = fits["1", "1"]
    for other in fits.values():
        np.testing.assert_array_equal(other.centroids, first.centroids)
        np.testing.assert_array_equal(other.labels, first.labels)
        assert other.n_iter == first.n_iter and other.inertia == first.inertia
    exact = ((X.astype(np.float64)[:, None] - first.centroids.astype(np.float64)[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(first.labels, exact.argmin(1))


@pytest.mark.skipif("mlx" not in AVAILABLE, reason="mlx unavailable here")
@pytest.mark.parametrize("pairs", [None, "1"])
def test_more_near_ties_than_one_device_buffer_holds(caplog, monkeypatch, pairs):
    # Every row sits between two centroids a hair apart, so all 70,000 rows are near ties:
    # more than one device buffer takes (65,535 rows at most), so the MLX ops path decides
    # them in several buffers and the host takes what the device cannot prove. Labels of the
    # one step must be float64's nearest centroids of `init`.
    monkeypatch.setenv("MLX_KMEANS_MLX_CUDA_KERNELS", "0")
    if pairs is not None:
        monkeypatch.setenv("MLX_KMEANS_MLX_PAIRS", pairs)
    rng = np.random.default_rng(8)
    X = rng.normal(0.0, 1.0, size=(70_000, 4)).astype(np.float32)
    base = rng.normal(0.0, 1.0, size=(4, 4))
    init = np.vstack([base, base + 1e-6]).astype(np.float32)
    with caplog.at_level(logging.DEBUG, logger="mlx_kmeans"):
        r = kmeans(X, 8, init=init, max_iter=1, tol=0.0, backend="mlx")
    ties = logged_near_ties(caplog)
    assert ties and ties[0][0] > 65_535, ties
    exact = ((X.astype(np.float64)[:, None] - init.astype(np.float64)[None]) ** 2).sum(-1)
    step = exact.argmin(1)
    means = np.array([X[step == j].mean(0) if (step == j).any() else init[j] for j in range(8)], np.float64)
    np.testing.assert_allclose(r.centroids, means, rtol=0, atol=1e-5)
