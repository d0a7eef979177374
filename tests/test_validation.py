"""Bad input gets a clear exception; good input of any layout is accepted; nothing is modified."""

from __future__ import annotations

import numpy as np
import pytest

import mlx_kmeans
from mlx_kmeans import KMeans, MiniBatchKMeans, kmeans
from mlx_kmeans._validation import check_array

ESTIMATORS = [KMeans, MiniBatchKMeans]


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(50, 3))


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize(
    "bad, error, match",
    [
        (np.array([[1.0, np.nan], [2.0, 3.0], [1.0, 1.0]]), ValueError, "contains NaN"),
        (np.array([[1.0, np.inf], [2.0, 3.0], [1.0, 1.0]]), ValueError, "infinity"),
        (np.zeros((0, 3)), ValueError, "0 sample"),
        (np.zeros((5, 0)), ValueError, "0 feature"),
        (np.arange(5.0), ValueError, "Expected 2D array, got 1D"),
        (np.zeros((4, 2, 2)), ValueError, "dim 3"),
        (np.array([["a", "b"], ["c", "d"]]), ValueError, "numbers only"),
        (np.array([[1 + 2j, 1], [1, 1]]), ValueError, "Complex data"),
        ("not an array", TypeError, "array-like"),
    ],
)
def test_bad_data(cls, bad, error, match):
    with pytest.raises(error, match=match):
        cls(n_clusters=1).fit(bad)


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize(
    "params, error, match",
    [
        (dict(n_clusters=0), ValueError, "n_clusters"),
        (dict(n_clusters=2.5), TypeError, "n_clusters"),
        (dict(n_clusters=51), ValueError, "n_samples=50 should be >= n_clusters=51"),
        (dict(max_iter=0), ValueError, "max_iter"),
        (dict(tol=-1.0), ValueError, "tol"),
        (dict(n_init=0), ValueError, "n_init"),
        (dict(init="kmeans++"), ValueError, "init"),
        (dict(init=np.zeros((3, 3))), ValueError, "initial centers"),
        (dict(n_clusters=2, init=np.zeros((2, 4))), ValueError, "initial centers"),
        (dict(random_state=-1), ValueError, "random_state"),
        (dict(backend="gpu"), ValueError, "unknown backend"),
    ],
)
def test_bad_parameters(cls, X, params, error, match):
    with pytest.raises(error, match=match):
        cls(**params).fit(X)


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize(
    "weights, match",
    [
        (-np.ones(50), "Negative"),
        (np.ones(49), "sample_weight.shape"),
        (np.ones((50, 1)), "1D"),
        (np.r_[np.nan, np.ones(49)], "NaN"),
        (np.zeros(50), "sum to zero"),
    ],
)
def test_bad_sample_weight(cls, X, weights, match):
    with pytest.raises(ValueError, match=match):
        cls(n_clusters=2).fit(X, sample_weight=weights)


def test_kmeans_function_rejects_bad_input(X):
    with pytest.raises(ValueError, match="n_clusters"):
        kmeans(X, 0)
    with pytest.raises(ValueError, match="should be >= n_clusters"):
        kmeans(X, 51)
    with pytest.raises(ValueError, match="contains NaN"):
        kmeans(np.full((3, 2), np.nan), 1)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_input_is_never_modified(cls, X):
    for data in (X.astype(np.float32), X, np.asfortranarray(X), X[::2], X.astype(np.int64)):
        w = np.linspace(0.5, 1.5, len(data))
        before, w_before = data.copy(), w.copy()
        est = cls(n_clusters=3, random_state=0).fit(data, sample_weight=w)
        est.predict(data)
        est.transform(data)
        np.testing.assert_array_equal(data, before)
        np.testing.assert_array_equal(w, w_before)


def test_dtype_is_kept_or_converted_once(X):
    assert KMeans(2).fit(X.astype(np.float32)).cluster_centers_.dtype == np.float32
    assert KMeans(2).fit(X).cluster_centers_.dtype == np.float64
    assert KMeans(2).fit(X.astype(np.float16)).cluster_centers_.dtype == np.float32
    assert KMeans(2).fit((X * 10).astype(np.int32)).cluster_centers_.dtype == np.float64
    assert KMeans(2).fit(X > 0).cluster_centers_.dtype == np.float64
    assert KMeans(2).fit(X.tolist()).cluster_centers_.dtype == np.float64


def test_every_layout_gives_the_same_result(X):
    ref = KMeans(4, random_state=0).fit(X)
    big_endian = X.astype(">f8")
    strided = np.repeat(X, 2, axis=1)[:, ::2]
    readonly = X.copy()
    readonly.flags.writeable = False
    for data in (np.asfortranarray(X), big_endian, strided, readonly, X.tolist()):
        est = KMeans(4, random_state=0).fit(data)
        np.testing.assert_array_equal(est.labels_, ref.labels_)
        np.testing.assert_array_equal(est.cluster_centers_, ref.cluster_centers_)


def test_c_contiguous_float_arrays_are_borrowed(monkeypatch):
    X = np.random.default_rng(0).normal(size=(1000, 8)).astype(np.float32)
    assert check_array(X) is X
    assert check_array(X.astype(np.float64)) is not X
    seen = []
    # The module that runs the cpu backend: `_native`, or the MLX plugin once it is loaded.
    engine = mlx_kmeans._backend.engine_module("cpu")
    real = engine.kmeans_fit

    def spy(data, *args, **kwargs):
        seen.append(data)
        return real(data, *args, **kwargs)

    monkeypatch.setattr(engine, "kmeans_fit", spy)
    KMeans(4, random_state=0).fit(X)
    kmeans(X, 4)
    assert len(seen) == 2 and all(s is X for s in seen)


def test_fit_allocates_far_less_than_a_copy_of_the_data():
    # NumPy reports its allocations to tracemalloc: a copy of X would show up in the peak.
    import tracemalloc

    X = np.random.default_rng(0).normal(size=(200_000, 32)).astype(np.float32)  # 25.6 MB
    tracemalloc.start()
    KMeans(8, random_state=0, max_iter=5).fit(X)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < X.nbytes / 10, peak


@pytest.mark.parametrize(
    "value, match",
    [(np.nan, "contains NaN"), (np.inf, "infinity"), (-np.inf, "infinity"), (None, None)],
)
def test_mlx_array_values_are_checked_like_numpy(value, match):
    # MLX arrays are checked by MLX (sum and extremes first, each kind of value only when
    # the sum is not finite); the verdict must equal NumPy's. Values near float32's limit
    # make the float32 sum overflow without any NaN or infinity present.
    mx = pytest.importorskip("mlx.core")
    X = np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32)
    X[:20] = np.abs(X[:20]) * 3e37
    if value is not None:
        X[7, 1] = value
    if match is not None:
        for data in (X, mx.array(X)):
            with pytest.raises(ValueError, match=match):
                KMeans(n_clusters=2, n_init=1, random_state=0).fit(data)
        return
    assert not np.isfinite(mx.sum(mx.array(X)).item())
    ref = KMeans(n_clusters=2, n_init=1, random_state=0, backend="cpu").fit(X)
    got = KMeans(n_clusters=2, n_init=1, random_state=0, backend="cpu").fit(mx.array(X))
    np.testing.assert_array_equal(np.asarray(got.labels_), ref.labels_)
    np.testing.assert_allclose(np.asarray(got.cluster_centers_), ref.cluster_centers_, rtol=1e-6)


def test_unaligned_buffers_are_copied_not_refused():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(500, 3)).astype(np.float32)
    raw = b"x" + values.tobytes()
    unaligned = np.frombuffer(raw, np.float32, offset=1).reshape(500, 3)
    assert not unaligned.flags.aligned
    ours = KMeans(4, random_state=0).fit(unaligned)
    aligned = KMeans(4, random_state=0).fit(values)
    np.testing.assert_array_equal(ours.cluster_centers_, aligned.cluster_centers_)
    np.testing.assert_array_equal(ours.predict(unaligned), aligned.labels_)


def test_unaligned_memmap_is_copied(tmp_path):
    values = np.random.default_rng(1).normal(size=(400, 5))
    path = tmp_path / "odd.bin"
    path.write_bytes(b"abc" + values.tobytes())
    mapped = np.memmap(path, dtype=np.float64, mode="r", offset=3, shape=(400, 5))
    np.testing.assert_array_equal(KMeans(3, random_state=0).fit(mapped).labels_, KMeans(3, random_state=0).fit(values).labels_)


@pytest.mark.parametrize("cls", [KMeans, MiniBatchKMeans])
@pytest.mark.parametrize("weight", [1e300, 1e306, 1e307, 1e308])
def test_weights_so_large_that_sums_overflow_are_refused(cls, weight):
    X = np.random.default_rng(0).normal(size=(200, 3))
    with pytest.raises(ValueError, match="sample_weight"):
        cls(3, random_state=0).fit(X, sample_weight=np.full(200, weight))


def test_large_weights_that_fit_give_finite_results():
    X = np.random.default_rng(0).normal(size=(200, 3))
    for cls in (KMeans, MiniBatchKMeans):
        est = cls(3, random_state=0).fit(X, sample_weight=np.full(200, 1e250))
        assert np.isfinite(est.cluster_centers_).all() and np.isfinite(est.inertia_)
    with pytest.raises(ValueError, match="float32"):
        KMeans(3).fit(X.astype(np.float32), sample_weight=np.full(200, 1e39))


@pytest.mark.parametrize("name", ["max_iter", "n_init", "n_clusters"])
def test_integers_beyond_64_bits_are_a_value_error(name):
    with pytest.raises(ValueError, match=name):
        KMeans(**{name: 2**64}).fit(np.zeros((10, 2)))


def test_faiss_style_seed_and_sampling_parameters():
    from mlx_kmeans import Kmeans

    X = np.random.default_rng(0).normal(size=(1000, 4)).astype(np.float32)
    negative = Kmeans(4, 5, seed=-1)
    negative.train(X)
    same = Kmeans(4, 5, seed=2**32 - 1)
    same.train(X)
    np.testing.assert_array_equal(negative.centroids, same.centroids)
    for bad in (dict(max_points_per_centroid=0), dict(min_points_per_centroid=-1)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Kmeans(4, 5, **bad)


def test_partial_fit_output_type_follows_each_batch():
    mx = pytest.importorskip("mlx.core")
    X = np.random.default_rng(0).normal(size=(600, 4)).astype(np.float32)
    est = MiniBatchKMeans(3, random_state=0)
    est.partial_fit(mx.array(X))
    assert isinstance(est.labels_, mx.array) and isinstance(est.cluster_centers_, mx.array)
    est.partial_fit(X)
    assert isinstance(est.labels_, np.ndarray) and isinstance(est.cluster_centers_, np.ndarray)
