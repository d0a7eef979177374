"""The MLX backend on a GPU against the cpu backend and float64 Lloyd, from the same initial
centroids. Marked `gpu`: skipped where MLX reports no GPU; `benchmarks/gpu.sh` runs them on
the lent GPU machine before the benchmark."""

from __future__ import annotations

import numpy as np
import pytest

import mlx_kmeans
from mlx_kmeans import KMeans, MiniBatchKMeans, kmeans

from conftest import make_mixture
from float64_lloyd import float64_lloyd, float64_nearest


def _mlx_gpu() -> bool:
    return any(b.name == "mlx" and b.available and b.gpu for b in mlx_kmeans.backends())


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _mlx_gpu(), reason="MLX reports no GPU here")]

K = 64


@pytest.fixture(scope="module")
def data():
    """Overlapping clusters; well separated ones with one start near each centre; weights;
    and starts with two centroids far from every row (empty in the first step)."""
    X, _ = make_mixture(20_000, 64, 80, seed=1, dtype=np.float32)
    init = X[np.random.default_rng(2).choice(len(X), K, replace=False)]
    rng = np.random.default_rng(4)
    means = rng.normal(0.0, 20.0, (K, 64))
    separated = (means[rng.integers(0, K, 20_000)] + rng.normal(size=(20_000, 64))).astype(np.float32)
    separated_init = (means + rng.normal(scale=0.5, size=means.shape)).astype(np.float32)
    weights = rng.uniform(0.5, 2.0, len(separated)).astype(np.float32)
    far_init = separated_init.copy()
    far_init[3], far_init[9] = 1e3, -1e3
    return dict(X=X, init=init, separated=separated, separated_init=separated_init, weights=weights, far_init=far_init)


CASES = {
    "separated, given init": ("separated", lambda d, b: KMeans(K, init=d["separated_init"], n_init=1, max_iter=50, backend=b), False),
    "overlapping, given init": ("X", lambda d, b: KMeans(K, init=d["init"], n_init=1, max_iter=50, backend=b), False),
    "k-means++": ("X", lambda d, b: KMeans(K, n_init=1, max_iter=50, random_state=3, backend=b), False),
    "mini-batch": ("X", lambda d, b: MiniBatchKMeans(K, init=d["init"], n_init=1, max_iter=5, random_state=3, backend=b), False),
    "mini-batch, k-means++ on the init sample, n_init=3": (
        "X",
        lambda d, b: MiniBatchKMeans(K, n_init=3, batch_size=512, max_iter=2, random_state=42, backend=b),
        False,
    ),
    "weights, two empty starts": ("separated", lambda d, b: KMeans(K, init=d["far_init"], n_init=1, max_iter=50, backend=b), True),
    "weights, two empty starts, spherical": (
        "separated",
        lambda d, b: KMeans(K, init=d["far_init"], n_init=1, max_iter=50, spherical=True, backend=b),
        True,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_mlx_on_gpu_agrees_with_cpu(data, case):
    """Labels agree on ≥ 99.9 % of rows and centroids to 1e-4 of their scale."""
    key, make, weighted = CASES[case]
    fit_args = {"sample_weight": data["weights"]} if weighted else {}
    gpu, cpu = make(data, "mlx").fit(data[key], **fit_args), make(data, "cpu").fit(data[key], **fit_args)
    assert gpu.backend_ == "mlx"
    scale = float(np.abs(cpu.cluster_centers_).max())
    assert np.mean(np.asarray(gpu.labels_) == cpu.labels_) >= 0.999
    assert float(np.abs(np.asarray(gpu.cluster_centers_) - cpu.cluster_centers_).max()) <= 1e-4 * scale


@pytest.mark.parametrize("case", ["overlapping", "weights, two empty starts"])
@pytest.mark.parametrize(
    "backend", ["mlx", "cpu", "mlx, streamed through the fused kernel", "mlx, fused kernel of one product"]
)
def test_whole_fits_equal_float64_lloyd(monkeypatch, data, case, backend):
    """Both backends against float64 Lloyd from the same init, until labels stop changing;
    the data streamed from the host in blocks through the fused kernel and the sorted sums;
    and the fused kernel held, with one float16 product per distance."""
    if backend.startswith("mlx, streamed"):
        monkeypatch.setenv("MLX_KMEANS_MLX_DEVICE_BYTES", "1")
        monkeypatch.setenv("MLX_KMEANS_MLX_FUSED", "1")
        backend = "mlx"
    elif backend.startswith("mlx, fused"):
        monkeypatch.setenv("MLX_KMEANS_MLX_FUSED", "1")
        monkeypatch.setenv("MLX_KMEANS_MLX_PRODUCTS", "1")
        backend = "mlx"
    X, start, w = (data["X"], data["init"], None) if case == "overlapping" else (data["separated"], data["far_init"], data["weights"])
    centroids, labels, _ = float64_lloyd(X, start, w)
    r = kmeans(X, K, init=start, max_iter=50, tol=0.0, sample_weight=w, backend=backend)
    assert np.array_equal(r.labels, labels)
    assert float(np.abs(r.centroids - centroids).max()) <= 1e-5 * float(np.abs(centroids).max())


def test_one_step_kernels_agree(data):
    one = {b: kmeans(data["X"], K, init=data["init"], max_iter=1, backend=b) for b in ("mlx", "cpu")}
    assert np.array_equal(one["mlx"].labels, one["cpu"].labels)
    scale = float(np.abs(one["cpu"].centroids).max())
    assert float(np.abs(one["mlx"].centroids - one["cpu"].centroids).max()) <= 1e-4 * scale


def test_auto_picks_the_gpu(data):
    assert KMeans(8, n_init=1, random_state=0).fit(data["X"]).backend_ == "mlx"


@pytest.mark.parametrize("cuda_kernels", ["1", "0"])
def test_data_far_from_the_origin(monkeypatch, cuda_kernels):
    """Tight clusters offset by 1e3 (and one centroid of data offset by 1e5): labels are the
    exact nearest centroids of the returned centroids, with and without the custom kernels."""
    monkeypatch.setenv("MLX_KMEANS_MLX_CUDA_KERNELS", cuda_kernels)
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(8, 16)) * 0.05
    X = (1e3 + centres[rng.integers(0, 8, 20000)] + rng.normal(0, 0.02, (20000, 16))).astype(np.float32)
    est = KMeans(8, random_state=0, backend="mlx").fit(X)
    exact = ((X.astype(np.float64)[:, None] - est.cluster_centers_.astype(np.float64)[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(est.labels_, exact.argmin(1))
    np.testing.assert_array_equal(est.predict(X), exact.argmin(1))
    far = (1e5 + rng.normal(size=(20000, 4))).astype(np.float32)
    centre = KMeans(1, backend="mlx").fit(far).cluster_centers_[0]
    np.testing.assert_allclose(centre, far.astype(np.float64).mean(0), atol=0.01)


# Shapes at the edges of the fused kernel's tiles (128 rows, 128 centroids, steps of 64 or 32
# features, rows kept in shared memory up to 192 features): n, d, k.
SHAPES = [
    (1000, 3, 5),
    (4099, 17, 130),
    (20000, 64, 64),
    (3000, 128, 1),
    (3000, 150, 300),
    (5000, 770, 257),
    (20000, 32, 1500),
]


# The assignment paths of the custom kernels: (MLX_KMEANS_MLX_FUSED, MLX_KMEANS_MLX_PRODUCTS).
PATHS = {"fused, three products": ("1", "3"), "fused, one product": ("1", "1"), "distance matrix": ("0", "")}


@pytest.mark.parametrize("memory", ["held", "streamed"])
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_assignment_is_the_exact_nearest_centroid(monkeypatch, shape, path, memory):
    """After a step from given centroids, every label is the nearest returned centroid by
    float64 distances, and the distances are those distances. Mixture data with two centroids
    per cluster, so that many rows lie near a tie between two centroids. Held on the device,
    or streamed from the host in blocks (the device's memory limit forced to one byte)."""
    fused, products = PATHS[path]
    monkeypatch.setenv("MLX_KMEANS_MLX_FUSED", fused)
    monkeypatch.setenv("MLX_KMEANS_MLX_PRODUCTS", products)
    if memory == "streamed":
        monkeypatch.setenv("MLX_KMEANS_MLX_DEVICE_BYTES", "1")
    n, d, k = shape
    rng = np.random.default_rng(n + d + k)
    means = rng.normal(size=(k // 2 + 1, d))
    X = (means[rng.integers(0, len(means), n)] + 0.25 * rng.normal(size=(n, d))).astype(np.float32)
    init = X[rng.choice(n, k, replace=False)]
    r = kmeans(X, k, init=init, max_iter=1, tol=0.0, backend="mlx")
    C = r.centroids.astype(np.float64)
    exact = np.empty((n, k))
    for start in range(0, n, 2000):
        exact[start : start + 2000] = ((X[start : start + 2000, None].astype(np.float64) - C[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(r.labels, exact.argmin(1))
    nearest = exact.min(1)
    np.testing.assert_allclose(r.distances, nearest, rtol=1e-6, atol=1e-6 * float(nearest.max()))


@pytest.mark.parametrize("products", ["3", "1"])
@pytest.mark.parametrize("d", [40, 300])
def test_rows_with_more_candidates_than_the_kernel_lists(monkeypatch, products, d):
    """Twelve centroids within 1e-4 of one point (and two exact twins) leave each row near
    them more candidates than the fused kernel lists (8): those rows are decided among all
    centroids. Labels are float64's nearest (the lower index on exact ties) and distances
    float64's."""
    from mlx_kmeans._backend import engine_module

    monkeypatch.setenv("MLX_KMEANS_MLX_FUSED", "1")
    monkeypatch.setenv("MLX_KMEANS_MLX_PRODUCTS", products)
    rng = np.random.default_rng(d)
    centre = rng.normal(size=d)
    far = rng.normal(size=(40, d)) * 3
    crowd = centre + 1e-4 * rng.normal(size=(12, d))
    C = np.concatenate([far[:20], crowd, crowd[:2], far[20:]]).astype(np.float32)
    X = np.concatenate([centre + 0.01 * rng.normal(size=(3000, d)), far[rng.integers(0, 40, 3000)] + rng.normal(size=(3000, d))])
    X = X.astype(np.float32)
    labels, distances, _ = engine_module("mlx").assign(X, C, backend="mlx")
    exact = ((X.astype(np.float64)[:, None] - C.astype(np.float64)[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(labels, exact.argmin(1))
    np.testing.assert_allclose(distances, exact.min(1), rtol=1e-6, atol=1e-6 * float(exact.min(1).max()))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_chunk_pass_sums_by_sorted_sums(monkeypatch, weighted, offset):
    """One chunk's Lloyd pass (`lloyd_partials`, as fits over chunks run it) with more than
    192 features through the distance-matrix path (forced), summed by the sorted
    sums kernels. Labels are the float64 nearest centroids; sums and weights are float64's to
    1e-5 of each cluster's scale; data offset by 1e3 is centred and shifted back."""
    from mlx_kmeans._backend import engine_module

    monkeypatch.setenv("MLX_KMEANS_MLX_FUSED", "0")
    rng = np.random.default_rng(11)
    X, _ = make_mixture(30_000, 256, 150, seed=12, dtype=np.float64)
    X = (X + offset).astype(np.float32)
    C = X[rng.choice(len(X), 300, replace=False)].copy()
    w = rng.uniform(0.5, 2.0, len(X)).astype(np.float32) if weighted else None
    labels, _, sums, weights, _ = engine_module("mlx").lloyd_partials(X, C, w, backend="mlx")
    X64, C64 = X.astype(np.float64), C.astype(np.float64)
    exact = float64_nearest(X, C)
    np.testing.assert_array_equal(labels, exact)
    w64 = np.ones(len(X)) if w is None else w.astype(np.float64)
    ref_sums = np.zeros_like(C64)
    np.add.at(ref_sums, exact, X64 * w64[:, None])
    ref_weights = np.bincount(exact, weights=w64, minlength=len(C))
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-5)
    scale = np.abs(ref_sums).max(axis=1, keepdims=True) + 1e-30
    assert float((np.abs(sums - ref_sums) / scale).max()) <= 1e-5


def test_shared_kernels_pass_their_check_in_the_cuda_dialect(monkeypatch, data):
    """The shared-source kernels (the Metal ones' arithmetic) compiled for CUDA pass their
    first-use check, and a fit on the MLX-ops path with them equals float64 Lloyd's labels."""
    from mlx_kmeans import _loader
    from mlx_kmeans._options import synced

    monkeypatch.setenv("MLX_KMEANS_MLX_SHARED", "cuda")
    monkeypatch.setenv("MLX_KMEANS_MLX_CUDA_KERNELS", "0")
    # The plugin takes the switches as a native call begins (`_options.synced`).
    dialect, names, active, reason = synced(_loader.loaded_plugin()).shared_kernels(True)
    assert (dialect, active) == ("cuda", True), reason
    assert set(names) == {"band_argmin", "chunk_sums", "cluster_means", "seeding_distances"}
    X, init, w = data["separated"], data["far_init"], data["weights"]
    centroids, labels, _ = float64_lloyd(X, init, w)
    r = kmeans(X, K, init=init, max_iter=50, tol=0.0, sample_weight=w, backend="mlx")
    assert np.array_equal(r.labels, labels)
    assert float(np.abs(r.centroids - centroids).max()) <= 1e-5 * float(np.abs(centroids).max())


@pytest.mark.parametrize("case", ["plain", "weighted", "offset", "duplicates", "lockstep", "n_init"])
def test_device_kmeans_plusplus_prunes_without_changing_a_pick(monkeypatch, caplog, case):
    """Greedy k-means++ on the device skips the candidates the triangle inequality rules out
    (by the shared `seeding_distances` kernel, where it runs): the same picks as measuring
    every row, on clustered rows with weights, far from the origin, with duplicate rows, and
    for several runs seeded in lockstep (MiniBatchKMeans's `n_init`; its init sample is the
    data here: `init_size`; KMeans's `n_init`, on stacked copies of the rows). Seeds differ between
    cases; each fit takes one step from its seeding, so equal fits mean equal picks."""
    import logging

    rng = np.random.default_rng(["plain", "weighted", "offset", "duplicates", "lockstep", "n_init"].index(case))
    # Past the 2^26 values from which the kernel measures the candidates (a GEMM below).
    X, _ = make_mixture(90_000, 768, 40, seed=int(rng.integers(100)), spread=3.0, dtype=np.float32)
    w = rng.uniform(0.2, 3.0, len(X)).astype(np.float32) if case == "weighted" else None
    if case == "offset":
        X = X + np.float32(1e3)
    if case == "duplicates":
        X[1::3] = X[::3][: len(X[1::3])]
    seed = int(rng.integers(1000))
    fits, logged = {}, {}
    for prune in ("1", "0"):
        monkeypatch.setenv("MLX_KMEANS_SEEDING_PRUNE", prune)
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="mlx_kmeans"):
            if case == "lockstep":
                est = MiniBatchKMeans(
                    60, batch_size=512, n_init=3, max_iter=1, init_size=len(X), random_state=9, backend="mlx"
                )
            else:
                est = KMeans(80, n_init=3 if case == "n_init" else 1, max_iter=1, random_state=seed, backend="mlx")
            fits[prune] = est.fit(X, sample_weight=w)
        logged[prune] = [r.getMessage() for r in caplog.records if "pruning on the device" in r.getMessage()]
    np.testing.assert_array_equal(fits["1"].cluster_centers_, fits["0"].cluster_centers_)
    np.testing.assert_array_equal(fits["1"].labels_, fits["0"].labels_)
    assert fits["1"].inertia_ == fits["0"].inertia_
    assert logged["0"] == []
    if logged["1"]:  # the kernel ran (not on MLX's ops alone): it skipped something here
        skipped = float(logged["1"][0].split(":")[1].split("%")[0])
        assert skipped > 10.0, logged["1"]
