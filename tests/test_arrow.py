"""Arrow input (PyCapsule interface): every kind of Arrow container gives the same clustering
as the NumPy array of the same values; one chunk is borrowed without a copy."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import make_mixture

from mlx_kmeans import KMeans, MiniBatchKMeans, _native, kmeans

pa = pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def X():
    return make_mixture(1500, 6, 5, seed=11, dtype=np.float32)[0]


def fsl(values: np.ndarray):
    return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])


def arrow_kinds(X):
    """(name, Arrow object, the NumPy array it should read as)."""
    X64 = X.astype(np.float64)
    whole = fsl(X)
    chunked = pa.chunked_array([whole.slice(0, 700), whole.slice(700, 1), whole.slice(701)])
    kinds = [
        ("fixed_size_list<float32>", whole, X),
        ("fixed_size_list<float64>", fsl(X64), X64),
        ("chunked array", chunked, X),
        ("table column", pa.table({"id": pa.array(range(len(X))), "emb": chunked})["emb"], X),
        ("list<float64>", pa.array(X64.tolist(), type=pa.list_(pa.float64())), X64),
        ("large_list<float32>", pa.array(X.tolist(), type=pa.large_list(pa.float32())), X),
        ("table of numeric columns", pa.table({f"f{j}": X64[:, j] for j in range(X.shape[1])}), X64),
        ("sliced array", fsl(np.vstack([X[:3], X]).astype(np.float32)).slice(3), X),
    ]
    try:
        import polars as pl

        kinds.append(("polars Array series", pl.Series("emb", X, dtype=pl.Array(pl.Float32, X.shape[1])), X))
        kinds.append(("polars DataFrame", pl.DataFrame({f"f{j}": X64[:, j] for j in range(X.shape[1])}), X64))
    except ImportError:
        pass
    return kinds


@pytest.mark.parametrize("index", range(10))
def test_each_arrow_kind_clusters_like_numpy(X, index):
    kinds = arrow_kinds(X)
    if index >= len(kinds):
        pytest.skip("polars is not installed")
    name, data, expected = kinds[index]
    read = _native.arrow_matrix(data)
    np.testing.assert_array_equal(read, expected, err_msg=name)
    ours = KMeans(5, n_init=1, random_state=0, backend="cpu").fit(data)
    ref = KMeans(5, n_init=1, random_state=0, backend="cpu").fit(expected)
    np.testing.assert_array_equal(ours.labels_, ref.labels_, err_msg=name)
    np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_, err_msg=name)
    np.testing.assert_array_equal(ours.predict(data), ref.labels_, err_msg=name)


def test_other_entry_points_take_arrow(X):
    data = fsl(X)
    assert np.array_equal(kmeans(data, 5, seed=1).labels, kmeans(X, 5, seed=1).labels)
    a = MiniBatchKMeans(5, batch_size=256, random_state=0, n_init=1).fit(data)
    b = MiniBatchKMeans(5, batch_size=256, random_state=0, n_init=1).fit(X)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)


def test_list_of_lists(X):
    ours = KMeans(5, n_init=1, random_state=0).fit(X.tolist())
    ref = KMeans(5, n_init=1, random_state=0).fit(X.astype(np.float64))
    np.testing.assert_array_equal(ours.labels_, ref.labels_)


def test_one_chunk_is_borrowed_read_only(X):
    data = fsl(X)
    view = _native.arrow_matrix(data)
    assert view.__array_interface__["data"][0] == data.values.buffers()[1].address
    assert not view.flags.writeable
    del data  # the view keeps the Arrow buffer alive
    np.testing.assert_array_equal(view, X)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: pa.array([[1.0, 2.0], [3.0]], type=pa.list_(pa.float32())), ValueError, "row 1 has 1 values"),
        (lambda: pa.array([[1.0, 2.0], None, [3.0, 4.0]], type=pa.list_(pa.float32(), 2)), ValueError, "row 1 is null"),
        (lambda: pa.array([[1.0, 2.0], [3.0, None]], type=pa.list_(pa.float64(), 2)), ValueError, "row 1 holds a null"),
        (
            lambda: pa.chunked_array([pa.array([[1.0, 2.0]], type=pa.list_(pa.float32())), pa.array([[1.0]], type=pa.list_(pa.float32()))]),
            ValueError,
            "row 1 has 1 values",
        ),
        (lambda: pa.array(["a", "b"]), TypeError, "list or fixed-size list"),
        (lambda: pa.array([["a"], ["b"]]), TypeError, "numbers"),
        (lambda: pa.table({"name": ["a"], "x": [1.0]}), TypeError, "column \"name\""),
        (lambda: pa.array([], type=pa.list_(pa.float32(), 2)), ValueError, "no rows"),
    ],
)
def test_bad_arrow_input_names_the_problem(make, error, message):
    with pytest.raises(error, match=message):
        KMeans(1).fit(make())


def test_one_gib_arrow_array_is_not_copied():
    """Peak memory of a fit on a 1 GiB Arrow array grows by far less than the array."""
    script = textwrap.dedent(
        """
        import resource
        import numpy as np, pyarrow as pa
        from mlx_kmeans import KMeans
        rows, cols = 2 ** 21, 128  # 2^28 float32 = 1 GiB
        values = pa.array(np.ones(rows * cols, dtype=np.float32))
        data = pa.FixedSizeListArray.from_arrays(values, cols)
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        before = peak()
        KMeans(2, init=np.ones((2, cols), np.float32) * [[0.0], [2.0]], n_init=1, max_iter=1, backend="cpu").fit(data)
        print(before, peak())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    before, after = map(int, out.split())
    growth = after - before
    # Copying the data once would add 1 GiB; labels, distances and norms need ~25 MiB.
    assert growth < 2**28 // 4, f"peak RSS grew by {growth / 2**20:.0f} MiB"


def test_tables_record_feature_names_and_refuse_reordered_columns(X):
    pl = pytest.importorskip("polars")
    cols = X[:300, :3]
    frame = pl.DataFrame({"a": cols[:, 0], "b": cols[:, 1], "c": cols[:, 2]})
    table = pa.table({"a": cols[:, 0], "b": cols[:, 1], "c": cols[:, 2]})
    on_frame = KMeans(4, random_state=0).fit(frame)
    on_table = KMeans(4, random_state=0).fit(table)
    assert list(on_table.feature_names_in_) == ["a", "b", "c"]
    np.testing.assert_array_equal(on_frame.predict(table), on_table.predict(frame))
    with pytest.raises(ValueError, match="same order"):
        on_frame.predict(table.select(["c", "b", "a"]))
    with pytest.raises(ValueError, match="same order"):
        on_table.predict(frame.select(["c", "b", "a"]))


def test_feature_names_never_read_the_columns():
    """Only the names are read: the old path turned every column into Python objects."""
    import tracemalloc

    from mlx_kmeans._validation import feature_names

    table = pa.table({f"f{i}": np.arange(1_000_000, dtype=np.float64) for i in range(6)})
    tracemalloc.start()
    names = feature_names(table)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert list(names) == [f"f{i}" for i in range(6)]
    assert peak < 1 << 20, f"{peak} bytes for the names of a 48 MB table"


@pytest.mark.parametrize("types", [(pa.float32(), np.float32), (pa.float16(), np.float32), (pa.float64(), np.float64)])
def test_table_of_float_columns_keeps_its_width(X, types):
    arrow_type, expected = types
    table = pa.table({name: pa.array(X[:200, i].astype(np.float64)).cast(arrow_type) for i, name in enumerate("abc")})
    est = KMeans(3, random_state=0).fit(table)
    assert est.cluster_centers_.dtype == expected


def test_arrow_capsules_consumed_once_are_refused(X):
    array = fsl(X[:50])
    capsules = array.__arrow_c_array__()

    class SameCapsules:
        def __arrow_c_array__(self, requested_schema=None):
            return capsules

    KMeans(2, random_state=0).fit(SameCapsules())
    with pytest.raises(ValueError, match="already consumed"):
        KMeans(2, random_state=0).fit(SameCapsules())
    stream = pa.chunked_array([array]).__arrow_c_stream__()

    class SameStream:
        def __arrow_c_stream__(self, requested_schema=None):
            return stream

    KMeans(2, random_state=0).fit(SameStream())
    with pytest.raises(ValueError, match="already consumed"):
        KMeans(2, random_state=0).fit(SameStream())
