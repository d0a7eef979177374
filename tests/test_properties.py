"""Property-based tests (hypothesis): random shapes, dtypes, layouts and bad values through
every public entry point and every backend available here.

Properties: good input never raises and gives labels in range, an inertia equal to the one
recomputed in float64, centroids that are the means of their members after Lloyd converges,
the same result for every layout of the same values, and the input left byte-for-byte
unchanged; bad input raises only ValueError or TypeError, with a message naming the problem.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import mlx_kmeans  # noqa: E402
from mlx_kmeans import Kmeans, KMeans, MiniBatchKMeans, kmeans  # noqa: E402
from mlx_kmeans._backend import FLOAT32_ONLY, compute_dtype  # noqa: E402
from mlx_kmeans._validation import outside_float32_range  # noqa: E402
from mlx_kmeans.metalfaiss.clustering import AnyClustering, ClusteringParameters  # noqa: E402

BACKENDS = [b.name for b in mlx_kmeans.backends() if b.available]
# Derandomized (the same examples on every run, so CI cannot fail by chance) unless
# MLX_KMEANS_HYPOTHESIS_EXAMPLES asks for a longer random search.
EXAMPLES = int(os.environ.get("MLX_KMEANS_HYPOTHESIS_EXAMPLES", "200"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="MLX_KMEANS_HYPOTHESIS_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

DTYPES = ["float16", "float32", "float64", ">f4", ">f8", "int8", "int32", "int64", "uint8", "bool"]
LAYOUTS = ["C", "F", "strided", "readonly", "list"]


@st.composite
def values(draw):
    """(float64 values, k): n = k, d = 1, duplicated rows, all rows equal and k = 1 included."""
    n = draw(st.integers(1, 40))
    d = draw(st.integers(1, 5))
    shape = draw(st.sampled_from(["normal", "duplicated", "constant", "grid"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if shape == "normal":
        X = rng.normal(scale=draw(st.sampled_from([1.0, 10.0, 1e3])), size=(n, d))
    elif shape == "duplicated":
        X = rng.normal(size=(max(1, n // 3), d))[rng.integers(0, max(1, n // 3), n)]
    elif shape == "constant":
        X = np.full((n, d), draw(st.floats(-5, 5, allow_nan=False)))
    else:
        X = rng.integers(-3, 4, size=(n, d)).astype(np.float64)
    k = draw(st.sampled_from([1, n, draw(st.integers(1, n))]))
    return X, k


def as_dtype(X: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bool":
        return X > 0
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.round(X), info.min, info.max).astype(dtype)
    return X.astype(dtype)


def with_layout(X: np.ndarray, layout: str):
    if layout == "F":
        return np.asfortranarray(X)
    if layout == "strided":
        wide = np.zeros((X.shape[0], 2 * X.shape[1]), dtype=X.dtype)
        wide[:, ::2] = X
        return wide[:, ::2]
    if layout == "readonly":
        Y = X.copy()
        Y.flags.writeable = False
        return Y
    if layout == "list":
        return X.tolist()
    return np.ascontiguousarray(X)


def computed_on(data: np.ndarray, backend: str) -> np.ndarray:
    """The values a backend computes on, in float64: float32-only backends see float32."""
    as_float = data.astype(np.float64) if data.dtype.kind not in "f" or data.dtype == np.float16 else data
    return as_float.astype(compute_dtype(backend, as_float.dtype)).astype(np.float64)


def refused_for_float32(data, backend) -> bool:
    """A float32-only backend refuses data that float32 cannot square safely (a ValueError)."""
    values = np.ascontiguousarray(data, dtype=np.float64)
    return backend in FLOAT32_ONLY and outside_float32_range(values)


def recomputed_inertia(X, centroids, labels) -> float:
    X64, C64 = np.asarray(X, dtype=np.float64), np.asarray(centroids, dtype=np.float64)
    return float(((X64 - C64[np.asarray(labels)]) ** 2).sum())


def snapshot(data):
    return data.tobytes() if isinstance(data, np.ndarray) else repr(data)


@SETTINGS
@given(values(), st.sampled_from(DTYPES), st.sampled_from(LAYOUTS), st.sampled_from(BACKENDS))
def test_kmeans_properties(case, dtype, layout, backend):
    X, k = case
    typed = as_dtype(X, dtype)
    data = with_layout(typed, layout)
    before = snapshot(data)
    if refused_for_float32(typed, backend):
        with pytest.raises(ValueError, match="float32-safe range"):
            KMeans(k, backend=backend).fit(data)
        return
    km = KMeans(k, n_init=1, tol=0.0, max_iter=300, random_state=0, backend=backend).fit(data)
    assert snapshot(data) == before
    labels, centroids = km.labels_, km.cluster_centers_
    assert labels.shape == (X.shape[0],) and labels.min() >= 0 and labels.max() < k
    values64 = computed_on(np.asarray(typed), backend)
    # The reported inertia is the float64 sum of squared distances to the returned centroids.
    assert km.inertia_ == pytest.approx(recomputed_inertia(values64, centroids, labels), rel=1e-6, abs=1e-9)
    if km.n_iter_ < 300:  # converged: labels stopped changing, so centroids are member means
        for j in np.unique(labels):
            np.testing.assert_allclose(centroids[j], values64[labels == j].mean(0), rtol=1e-4, atol=1e-4 * (1 + np.abs(values64).max()))
    # The same values in C order give the same result (a list carries no dtype: its values
    # come back as Python numbers, read as float64).
    same_values = np.asarray(data) if layout == "list" else np.ascontiguousarray(typed)
    reference = KMeans(k, n_init=1, tol=0.0, max_iter=300, random_state=0, backend=backend).fit(same_values)
    np.testing.assert_array_equal(labels, reference.labels_)
    np.testing.assert_array_equal(centroids, reference.cluster_centers_)


@SETTINGS
@given(values(), st.sampled_from(["float32", "float64", "int64"]), st.sampled_from(BACKENDS), st.booleans())
def test_other_entry_points_properties(case, dtype, backend, weighted):
    X, k = case
    data = as_dtype(X, dtype)
    before = data.tobytes()
    weights = np.random.default_rng(0).uniform(0.5, 2.0, X.shape[0]) if weighted else None
    w_before = None if weights is None else weights.tobytes()
    if refused_for_float32(data, backend):
        with pytest.raises(ValueError, match="float32-safe range"):
            kmeans(data, k, backend=backend)
        return
    mb = MiniBatchKMeans(k, batch_size=16, max_iter=5, n_init=1, random_state=0, backend=backend).fit(data, sample_weight=weights)
    result = kmeans(data, k, sample_weight=weights, backend=backend)
    faiss_style = Kmeans(X.shape[1], k, niter=10, backend=backend)
    faiss_style.train(data, weights=weights)
    clustering = AnyClustering.new(d=X.shape[1], k=k, parameters=ClusteringParameters(seed=0, backend=backend))
    clustering.train(data)
    assert data.tobytes() == before and (weights is None or weights.tobytes() == w_before)
    values64 = computed_on(data, backend)
    w = np.ones(X.shape[0]) if weights is None else weights
    for labels, centroids, inertia in [
        (mb.labels_, mb.cluster_centers_, mb.inertia_),
        (result.labels, result.centroids, result.inertia),
    ]:
        assert labels.min() >= 0 and labels.max() < k
        recomputed = float((w * ((values64 - np.asarray(centroids, np.float64)[labels]) ** 2).sum(1)).sum())
        assert inertia == pytest.approx(recomputed, rel=1e-6, abs=1e-9)
    distances, labels = faiss_style.assign(data)
    assert labels.min() >= 0 and labels.max() < k and np.all(distances >= 0)
    _, labels = clustering.assign(data)
    labels = np.asarray(labels)
    assert labels.min() >= 0 and labels.max() < k


BAD_VALUES = [np.nan, np.inf, -np.inf]


@SETTINGS
@given(values(), st.sampled_from(BAD_VALUES), st.sampled_from(["float32", "float64"]), st.data())
def test_nan_and_inf_are_named(case, bad, dtype, data):
    X, k = case
    X = X.astype(dtype)
    i = data.draw(st.integers(0, X.shape[0] - 1))
    j = data.draw(st.integers(0, X.shape[1] - 1))
    X[i, j] = bad
    before = X.tobytes()
    entry = data.draw(st.sampled_from(["KMeans", "MiniBatchKMeans", "kmeans", "Kmeans", "AnyClustering"]))
    with pytest.raises(ValueError, match="NaN" if np.isnan(bad) else "infinity"):
        if entry == "KMeans":
            KMeans(k).fit(X)
        elif entry == "MiniBatchKMeans":
            MiniBatchKMeans(k).fit(X)
        elif entry == "kmeans":
            kmeans(X, k)
        elif entry == "Kmeans":
            Kmeans(X.shape[1], k).train(X)
        else:
            AnyClustering.new(d=X.shape[1], k=k).train(X)
    assert X.tobytes() == before


BAD_PARAMETERS = [
    ("n_clusters", 0, "n_clusters"),
    ("n_clusters", -3, "n_clusters"),
    ("n_clusters", 2.5, "n_clusters"),
    ("n_clusters", 10**6, "n_clusters"),
    ("max_iter", 0, "max_iter"),
    ("max_iter", "many", "max_iter"),
    ("tol", -1.0, "tol"),
    ("n_init", 0, "n_init"),
    ("init", "kmeans++", "init"),
    ("init", np.zeros((2, 99)), "init"),
    ("backend", "gpu", "backend"),
    ("random_state", "seed", "random_state"),
]


@SETTINGS
@given(values(), st.sampled_from(BAD_PARAMETERS), st.sampled_from([KMeans, MiniBatchKMeans]))
def test_bad_parameters_are_named(case, bad, cls):
    X, _ = case
    name, value, message = bad
    params = {"n_clusters": 1, name: value}
    with pytest.raises((ValueError, TypeError), match=message):
        cls(**params).fit(X)


ODD_INPUTS = [
    (lambda X: X.astype(object), None),  # numbers as objects are converted
    (lambda X: X.astype(str), (ValueError, TypeError)),
    (lambda X: X.astype(np.complex128), ValueError),
    (lambda X: X[:, 0], ValueError),  # 1-D
    (lambda X: X[None], ValueError),  # 3-D
    (lambda X: X[:0], ValueError),  # no rows
    (lambda X: {"a": 1}, TypeError),
]


@SETTINGS
@given(values(), st.sampled_from(range(len(ODD_INPUTS))), st.sampled_from(BACKENDS))
def test_odd_inputs_raise_only_value_or_type_errors(case, which, backend):
    X, k = case
    make, expected = ODD_INPUTS[which]
    odd = make(X)
    if expected is None:
        if refused_for_float32(X, backend):
            expected = ValueError
        else:
            KMeans(k, n_init=1, random_state=0, backend=backend).fit(odd)
            return
    with pytest.raises(expected):
        KMeans(k, n_init=1, random_state=0, backend=backend).fit(odd)


# -- hostile inputs: every public entry point answers with ValueError or TypeError ---------

ODD_VALUES = [np.nan, np.inf, -np.inf, 1e308, -1e308, 1e-320, -0.0, 3.5e38, 1e19, 1e-30]
ODD_INTS = [0, -1, 1, 2, 3, 7, 2**31, 2**63, 2**64, -(2**63)]


@st.composite
def hostile_data(draw):
    """Arrays and array-likes a careless or hostile caller might pass as X."""
    kind = draw(
        st.sampled_from(
            ["numbers", "odd values", "scalar", "1d", "3d", "no rows", "no columns", "objects", "strings",
             "complex", "ragged", "none", "dict", "bytes", "datetime", "nested lists"]
        )
    )
    n, d = draw(st.integers(1, 12)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    dtype = draw(st.sampled_from(["float16", "float32", "float64", "int64", "uint8", "bool", ">f8"]))
    X = rng.normal(size=(n, d))
    if kind == "numbers":
        return X.astype(dtype)
    if kind == "odd values":
        X.flat[draw(st.integers(0, n * d - 1))] = draw(st.sampled_from(ODD_VALUES))
        return X.astype(draw(st.sampled_from(["float32", "float64"])))
    return {
        "scalar": lambda: np.float64(3.0),
        "1d": lambda: X[:, 0],
        "3d": lambda: X.reshape(n, d, 1),
        "no rows": lambda: np.empty((0, d)),
        "no columns": lambda: np.empty((n, 0)),
        "objects": lambda: np.array([[object()] * d] * n, dtype=object),
        "strings": lambda: X.astype(str),
        "complex": lambda: X.astype(complex),
        "ragged": lambda: [[1.0, 2.0], [3.0]],
        "none": lambda: None,
        "dict": lambda: {"a": [1.0, 2.0]},
        "bytes": lambda: b"\x00" * 16,
        "datetime": lambda: np.array([["2020-01-01"] * d] * n, dtype="datetime64[D]"),
        "nested lists": lambda: X.tolist(),
    }[kind]()


HOSTILE_PARAMS = {
    "n_clusters": ODD_INTS + [1.5, "3", None, True, np.nan, 40],
    "max_iter": ODD_INTS + [1.5, "20", None, False],
    # (Large valid counts of restarts would only run long.)
    "n_init": [v for v in ODD_INTS if not 3 < v < 2**63] + ["auto", "all", 1.0, None],
    "tol": [-1.0, np.nan, np.inf, 1e300, "x", None, 0.0],
    "init": ["bogus", np.zeros((2, 2)), np.zeros((1, 7)), [[np.nan] * 3] * 3, np.full((3, 3), np.inf), lambda *a, **k: None],
    "random_state": [-1, 2**40, 2**64, 1.5, "seed", object()],
}
HOSTILE_WEIGHTS = [np.nan, -1.0, 0.0, 1e308, "w", [1.0], np.full(30, np.inf), np.full(30, 1e307), np.zeros(30),
                   np.full(30, -0.0), np.ones((30, 1)), np.array(["a"] * 30)]
ENTRIES = ["KMeans", "MiniBatchKMeans", "partial_fit", "kmeans", "Kmeans", "predict", "transform", "score"]


def hostile_call(entry, X=None, weight=None, **changed):
    """Calls `entry` with valid arguments except those given; returns quietly when it raises
    ValueError or TypeError, so that anything else (a crash, a panic, which is a
    BaseException, another exception type) fails the test."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3)) if X is None else X
    params = {**dict(n_clusters=3, max_iter=20, n_init=1, tol=1e-4, init="k-means++", random_state=0), **changed}
    fitted = KMeans(2, n_init=1, random_state=0).fit(rng.normal(size=(20, 3)))
    calls = {
        "KMeans": lambda: KMeans(**params).fit(X, sample_weight=weight),
        "MiniBatchKMeans": lambda: MiniBatchKMeans(**params).fit(X, sample_weight=weight),
        "partial_fit": lambda: MiniBatchKMeans(**params).partial_fit(X, sample_weight=weight),
        "kmeans": lambda: kmeans(X, params["n_clusters"], max_iter=params["max_iter"], tol=params["tol"],
                                 n_init=params["n_init"], init=params["init"], seed=params["random_state"],
                                 sample_weight=weight),
        "Kmeans": lambda: Kmeans(3, params["n_clusters"], niter=params["max_iter"], nredo=params["n_init"],
                                 seed=params["random_state"]).train(X, weights=weight),
        "predict": lambda: fitted.predict(X),
        "transform": lambda: fitted.transform(X),
        "score": lambda: fitted.score(X, sample_weight=weight),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            calls[entry]()
        except (ValueError, TypeError):
            pass


@SETTINGS
@given(X=hostile_data(), entry=st.sampled_from(ENTRIES))
def test_hostile_data_raises_only_value_or_type_errors(X, entry):
    hostile_call(entry, X=X)


@pytest.mark.parametrize("entry", ENTRIES)
def test_hostile_parameters_and_weights_raise_only_value_or_type_errors(entry):
    """Every parameter, one at a time, over every odd value; then every odd weight vector."""
    for name, options in HOSTILE_PARAMS.items():
        for value in options:
            hostile_call(entry, **{name: value})
    for weight in HOSTILE_WEIGHTS:
        hostile_call(entry, weight=weight)
