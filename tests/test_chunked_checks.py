"""Fits over chunks (`kmeans_streaming`, `mlx_kmeans.dask.KMeans`, `from_npy`) check their
input and parameters as the in-memory estimators do: the same refusals and messages, and the
same results where the in-memory fit succeeds (chunks of zero weight or zero rows included)."""

import numpy as np
import pytest
from conftest import make_mixture

from mlx_kmeans import KMeans, kmeans, kmeans_streaming

da = pytest.importorskip("dask.array")
import dask  # noqa: E402


@pytest.fixture(scope="module")
def data():
    X, _ = make_mixture(4000, 4, 6, seed=21)
    return X


@pytest.fixture(autouse=True, scope="module")
def threads():
    with dask.config.set(scheduler="threads"):
        yield


def dask_kmeans(*args, **kwargs):
    from mlx_kmeans.dask import KMeans as DaskKMeans

    return DaskKMeans(*args, **kwargs)


# -- initial centres ---------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["too_few", "too_many", "nan", "inf", "features"])
def test_streaming_init_array_is_checked_like_kmeans(data, bad):
    init = {
        "too_few": data[:4],
        "too_many": data[:6],
        "nan": np.where(np.arange(5)[:, None] == 2, np.nan, data[:5]),
        "inf": np.where(np.arange(5)[:, None] == 0, np.inf, data[:5]),
        "features": data[:5, :3],
    }[bad]
    with pytest.raises(ValueError) as in_memory:
        kmeans(data, 5, init=init)
    with pytest.raises(ValueError) as streamed:
        kmeans_streaming(data, 5, init=init)
    # The same check, worded the same (up to who asked).
    assert str(streamed.value).split("\n")[0].replace("kmeans_streaming", "KMeans") == str(in_memory.value).split("\n")[0]


# -- sample weights ----------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1e306, 1e300])
def test_huge_weights_are_refused_not_nan(data, scale):
    X = data[:1000] * 1e3
    w = np.full(len(X), scale)
    with pytest.raises(ValueError, match="sample_weight is too large"):
        kmeans(X, 3, sample_weight=w, init=X[:3])
    with pytest.raises(ValueError, match="sample_weight is too large"):
        kmeans_streaming(X, 3, sample_weight=w, init=X[:3], chunk_bytes=300 * 32)
    for init in (X[:3], "k-means||", "k-means++", "random"):
        with pytest.raises(ValueError, match="sample_weight is too large"):
            dask_kmeans(3, init=init, random_state=0).fit(da.from_array(X, chunks=(300, 4)), sample_weight=w)


def test_float32_weights_beyond_float32_are_refused_by_name(data):
    X = data[:1000].astype(np.float32)
    w = np.full(len(X), 1e39)
    with pytest.raises(ValueError, match="beyond float32's range"):
        kmeans(X, 3, sample_weight=w, init=X[:3])
    with pytest.raises(ValueError, match="beyond float32's range|sample_weight is too large"):
        kmeans_streaming(X, 3, sample_weight=w, init=X[:3], chunk_bytes=300 * 16)


def test_a_chunk_of_zero_weights_fits_as_in_memory(data):
    w = np.ones(len(data))
    w[:1000] = 0.0
    init = data[1000:1003].copy()
    whole = kmeans(data, 3, sample_weight=w, init=init, algorithm="lloyd")
    streamed = kmeans_streaming(data, 3, sample_weight=w, init=init, chunk_bytes=1000 * 32)
    np.testing.assert_array_equal(streamed.labels[1000:], whole.labels[1000:])
    assert streamed.inertia == pytest.approx(whole.inertia, rel=1e-9)
    model = dask_kmeans(3, init=init).fit(da.from_array(data, chunks=(1000, 4)), sample_weight=w)
    assert model.inertia_ == pytest.approx(whole.inertia, rel=1e-9)
    assert -model.score(da.from_array(data, chunks=(1000, 4)), sample_weight=w) == pytest.approx(whole.inertia, rel=1e-9)
    # Every weight zero is still refused.
    with pytest.raises(ValueError, match="sum to zero"):
        kmeans_streaming(data, 3, sample_weight=np.zeros(len(data)), init=init, chunk_bytes=1000 * 32)


# -- Dask chunks without rows, feature names, n_init ------------------------------------------


def test_empty_dask_chunks_predict_and_transform(data):
    X = da.from_array(data[:3000], chunks=((1000, 0, 2000), 4))
    init = data[:5].copy()
    model = dask_kmeans(5, init=init).fit(X)
    ref = KMeans(5, init=init, n_init=1, algorithm="lloyd").fit(data[:3000])
    np.testing.assert_array_equal(model.labels_.compute(), ref.labels_)
    np.testing.assert_array_equal(model.predict(X).compute(), ref.labels_)
    np.testing.assert_array_equal(dask_kmeans(5, init=init).fit_predict(X).compute(), ref.labels_)
    np.testing.assert_allclose(model.transform(X).compute(), ref.transform(data[:3000]), rtol=1e-9, atol=1e-9)


def test_dask_dataframe_feature_names_are_checked():
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    X, _ = make_mixture(600, 3, 4, seed=2)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    ddf = dd.from_pandas(frame, npartitions=3)
    model = dask_kmeans(4, random_state=0).fit(ddf)
    assert list(model.feature_names_in_) == ["a", "b", "c"]
    in_memory = KMeans(4, random_state=0).fit(frame)
    for other in (ddf[["c", "b", "a"]], ddf.rename(columns={"a": "x"}), frame[["c", "b", "a"]], frame.rename(columns={"a": "x"})):
        with pytest.raises(ValueError, match="The feature names should match") as ours:
            model.predict(other)
        with pytest.raises(ValueError, match="The feature names should match") as theirs:
            in_memory.predict(other.compute() if hasattr(other, "compute") else other)
        assert str(ours.value) == str(theirs.value)
        with pytest.raises(ValueError, match="The feature names should match"):
            model.transform(other)
        with pytest.raises(ValueError, match="The feature names should match"):
            model.score(other)
    # The right columns: labels, as NumPy for pandas input, as Dask for Dask input.
    labels = model.predict(frame)
    assert isinstance(labels, np.ndarray)
    np.testing.assert_array_equal(labels, model.predict(ddf).compute())
    assert isinstance(model.transform(frame), np.ndarray)


def test_dask_n_init_auto_follows_the_init():
    X, _ = make_mixture(2000, 3, 5, seed=4)
    x = da.from_array(X, chunks=(500, 3))
    runs = {}
    for init in ("random", "k-means++", "k-means||"):
        fits = []
        model = dask_kmeans(5, init=init, n_init="auto", random_state=1, max_iter=3)
        from mlx_kmeans._chunked import loop

        original = loop.initial_centroids

        def counting(*args, **kwargs):
            fits.append(1)
            return original(*args, **kwargs)

        loop.initial_centroids = counting
        try:
            model.fit(x)
        finally:
            loop.initial_centroids = original
        runs[init] = len(fits)
    assert runs == {"random": 10, "k-means++": 1, "k-means||": 1}


# -- parameters of the chunked entry points ------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(n_init=0), ValueError, "'n_init'"),
        (dict(n_init=2.5), TypeError, "'n_init'"),
        (dict(max_iter=0), ValueError, "'max_iter'"),
        (dict(max_iter=-1), ValueError, "'max_iter'"),
        (dict(tol=-1), ValueError, "'tol'"),
        (dict(tol=float("nan")), ValueError, "'tol'"),
        (dict(k=True), TypeError, "'k'"),
        (dict(k=0), ValueError, "'k'"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(seed="x"), TypeError, "seed"),
        (dict(init_size=0), ValueError, "'init_size'"),
        (dict(init_size=-1), ValueError, "'init_size'"),
        (dict(init_size=2.5), TypeError, "'init_size'"),
        (dict(chunk_bytes=0), ValueError, "'chunk_bytes'"),
        (dict(chunk_bytes=-5), ValueError, "'chunk_bytes'"),
        (dict(chunk_bytes=1.5), TypeError, "'chunk_bytes'"),
        (dict(init="bogus"), ValueError, "'init'"),
        (dict(algorithm="full"), ValueError, "'algorithm'"),
        (dict(oversampling_factor=0), ValueError, "'oversampling_factor'"),
        (dict(backend="gpu"), ValueError, "unknown backend"),
    ],
)
def test_streaming_parameters_are_checked(data, kwargs, error, match):
    args = dict(k=3, **kwargs) if "k" not in kwargs else kwargs
    k = args.pop("k")
    with pytest.raises(error, match=match):
        kmeans_streaming(data, k, **args)


def test_streaming_seed_none_draws_a_seed(data):
    result = kmeans_streaming(data, 3, seed=None, max_iter=5)
    assert result.centroids.shape == (3, 4) and np.isfinite(result.inertia)


def test_streaming_messages_match_kmeans(data):
    for name, value in (("max_iter", 0), ("tol", -1.0), ("n_init", 0)):
        with pytest.raises(ValueError) as ours:
            kmeans_streaming(data, 3, **{name: value})
        with pytest.raises(ValueError) as theirs:
            KMeans(3, **{name: value}).fit(data)
        assert str(ours.value) == str(theirs.value)


def test_dask_parameters_are_checked(data):
    x = da.from_array(data, chunks=(1000, 4))
    for kwargs in (dict(n_init=0), dict(max_iter=0), dict(tol=-1), dict(init_size=0), dict(oversampling_factor=0), dict(random_state=-1), dict(init="bogus")):
        with pytest.raises(ValueError):
            dask_kmeans(3, **kwargs).fit(x)


# -- from_npy ------------------------------------------------------------------------------


def test_from_npy_checks_what_it_is_given(tmp_path, data):
    from mlx_kmeans.dask import from_npy

    path = tmp_path / "x.npy"
    np.save(path, data)
    for rows in (0, -1, 2.5):
        with pytest.raises((ValueError, TypeError), match="rows_per_chunk"):
            from_npy(path, rows_per_chunk=rows)
    flat = tmp_path / "flat.npy"
    np.save(flat, data[:, 0])
    with pytest.raises(ValueError, match="2-D"):
        from_npy(flat)
    # Fortran order: read correctly, not refused at compute time.
    fortran = tmp_path / "fortran.npy"
    np.save(fortran, np.asfortranarray(data))
    np.testing.assert_array_equal(from_npy(fortran, rows_per_chunk=700).compute(), data)


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (3, "])
def test_damaged_npy_files_are_value_errors(tmp_path, content):
    path = tmp_path / "bad.npy"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="bad.npy"):
        kmeans_streaming(str(path), 3)


@pytest.mark.parametrize("weights", [["a"] * 4000, np.ones((4000, 1)), np.ones(3999)], ids=["text", "2-D", "length"])
def test_weight_type_and_shape_messages_match_kmeans(data, weights):
    with pytest.raises(ValueError) as in_memory:
        kmeans(data, 3, sample_weight=weights)
    with pytest.raises(ValueError) as streamed:
        kmeans_streaming(data, 3, sample_weight=weights, chunk_bytes=1000 * 32)
    with pytest.raises(ValueError) as on_dask:
        dask_kmeans(3).fit(da.from_array(data, chunks=(1000, 4)), sample_weight=np.asarray(weights))
    assert str(streamed.value) == str(on_dask.value) == str(in_memory.value)
