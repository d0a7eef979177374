"""Input checks with scikit-learn's messages, and the one conversion of data to what the
engine borrows: a C-contiguous float32 or float64 array in native byte order."""

from __future__ import annotations

import logging
import math
import numbers
import warnings

import numpy as np

_FLOATS = (np.float32, np.float64)

logger = logging.getLogger("mlx_kmeans")

# Squared distances of float32 rows overflow once values near 1e19 / sqrt(n_features), and
# lose everything to underflow near 1e-19; inside this range float32 is as good as anywhere.
FLOAT32_SAFE_RANGE = (1e-15, 1e15)


def value_summary(array: np.ndarray) -> tuple[bool, bool, float]:
    """`(has_nan, has_inf, max_magnitude)` of a C-contiguous 2-D float array, in one parallel
    pass without a temporary array."""
    from ._backend import native

    if array.size == 0:
        return False, False, 0.0
    return native().value_summary(array)


def outside_float32_range(array: np.ndarray | None, top: float | None = None) -> bool:
    """Whether the largest magnitude in `array` (a checked C-contiguous float matrix, or `top`
    when already known) is too large or too small (but not zero) for squared distances in
    float32."""
    top = value_summary(array)[2] if top is None else top
    low, high = FLOAT32_SAFE_RANGE
    return top > high or 0.0 < top < low


def _type_name(obj) -> str:
    return type(obj).__name__


def is_mlx_array(X) -> bool:
    """Whether X is an `mlx.core.array` (without importing MLX)."""
    cls = type(X)
    return cls.__name__ == "array" and cls.__module__.split(".")[0] == "mlx"


def mlx_value_summary(X) -> tuple[bool, bool, float] | None:
    """`value_summary` of a floating-point MLX array, computed by MLX where the array lives
    (on a GPU, the host then never reads the data); None for other dtypes or no elements."""
    import mlx.core as mx

    if X.size == 0 or not mx.issubdtype(X.dtype, mx.floating):
        return None
    # Three plain reductions read the data once each and write nothing: a finite sum rules
    # out NaN and infinity, and the extremes give the magnitude.
    total, high, low = mx.sum(X), mx.max(X), mx.min(X)
    mx.eval(total, high, low)
    if math.isfinite(total.item()):
        return False, False, max(abs(float(high.item())), abs(float(low.item())))
    # Rare (or a sum that overflowed): look at each kind of value.
    has_nan = mx.any(mx.isnan(X))
    has_inf = mx.any(mx.isinf(X))
    top = mx.max(mx.where(mx.isfinite(X), mx.abs(X), 0))
    mx.eval(has_nan, has_inf, top)
    return bool(has_nan.item()), bool(has_inf.item()), float(top.item())


def mlx_to_numpy(X) -> np.ndarray:
    """A NumPy view of an MLX array's host memory (no copy); bfloat16, which NumPy lacks,
    is converted to float32 by MLX first."""
    import mlx.core as mx

    if X.dtype == mx.bfloat16:
        X = X.astype(mx.float32)
    return np.asarray(X)


def to_mlx(value):
    import mlx.core as mx

    return mx.array(value)


def is_arrow(X) -> bool:
    """Whether X speaks the Arrow PyCapsule protocol and is read as Arrow (pyarrow, polars,
    ...). NumPy arrays and pandas objects keep their own path."""
    if isinstance(X, np.ndarray) or type(X).__module__.split(".")[0] == "pandas":
        return False
    return hasattr(X, "__arrow_c_array__") or hasattr(X, "__arrow_c_stream__")


def check_array(X, *, name: str = "X", owner: str = "KMeans", dtype=None) -> np.ndarray:
    """Returns X as a C-contiguous float32/float64 2-D array.

    A C-contiguous float32/float64 array in native byte order is returned as it is (no copy).
    float16 becomes float32; other numeric types become float64 (one copy), as do other
    layouts. `dtype` forces one of the two float types. float32 values so large or small that
    squared distances would overflow or underflow in float32 (beyond `FLOAT32_SAFE_RANGE`)
    are computed in float64 (one copy). Arrow data (one list or fixed-size
    list of numbers per row) is read through the Arrow C data interface: one chunk of
    float32/float64 without nulls is borrowed, several chunks are gathered once.
    """
    summary = None
    if is_mlx_array(X):
        summary = mlx_value_summary(X)
        X = mlx_to_numpy(X)
    elif is_arrow(X):
        from ._backend import native

        X = native().arrow_matrix(X)
    if is_sparse(X):
        raise TypeError(
            f"{owner} does not support sparse input; got {_type_name(X)}. "
            "Convert it with X.toarray() first."
        )
    if hasattr(X, "__array__") or isinstance(X, (list, tuple, np.ndarray)):
        try:
            array = np.asarray(X)
        except Exception as exc:  # ragged lists and the like
            raise ValueError(f"{name} could not be converted to a numeric array: {exc}") from exc
    elif isinstance(X, numbers.Number):
        array = np.asarray(X)
    else:
        raise TypeError(
            f"{name} must be an array-like of numbers (NumPy array, list of lists, ...); "
            f"got {_type_name(X)}"
        )
    kind = array.dtype.kind
    if kind == "c":
        raise ValueError(f"Complex data not supported\n{name} has dtype {array.dtype}")
    if kind in "USV":
        # As scikit-learn: text is refused even when it spells numbers.
        raise ValueError(
            f"{name} must contain numbers only; got dtype {array.dtype} (strings or bytes). "
            "Convert it with X.astype(float) if it holds numbers."
        )
    if kind in "O" or kind == "M" or kind == "m":
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError) as exc:
            # Same exception type as NumPy's: TypeError for non-numbers, ValueError for text.
            raise type(exc)(
                f"{name} must contain numbers only; could not convert dtype {array.dtype} "
                f"to float: {exc}"
            ) from exc
        if array.dtype.kind == "c":
            raise ValueError(f"Complex data not supported\n{name} has dtype {array.dtype}")
    if array.ndim == 0:
        raise ValueError(
            f"Expected 2D array, got scalar array instead:\narray={array}.\n"
            "Reshape your data either using array.reshape(-1, 1) if your data has a single "
            "feature or array.reshape(1, -1) if it contains a single sample."
        )
    if array.ndim == 1:
        raise ValueError(
            f"Expected 2D array, got 1D array instead:\narray={array}.\n"
            "Reshape your data either using array.reshape(-1, 1) if your data has a single "
            "feature or array.reshape(1, -1) if it contains a single sample."
        )
    if array.ndim > 2:
        raise ValueError(f"Found array with dim {array.ndim}. {owner} expected <= 2.")
    n_samples, n_features = array.shape
    if n_samples < 1:
        raise ValueError(
            f"Found array with 0 sample(s) (shape={array.shape}) while a minimum of 1 is "
            f"required by {owner}."
        )
    if n_features < 1:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={array.shape}) while a minimum of 1 is "
            f"required by {owner}."
        )
    if dtype is not None:
        target = np.dtype(dtype)
    elif array.dtype in (np.float32, np.float64):
        target = array.dtype.newbyteorder("=")
    elif array.dtype == np.float16:
        target = np.dtype(np.float32)
    else:
        target = np.dtype(np.float64)
    target = target.newbyteorder("=")
    if array.dtype != target or not array.flags.c_contiguous or not array.dtype.isnative:
        array = np.ascontiguousarray(array, dtype=target)
    if not array.flags.aligned:
        # An odd offset into a buffer or a memmap: copied once, like other layouts.
        array = array.copy()
    # Conversions above keep every value, so a summary taken by MLX still holds.
    has_nan, has_inf, top = value_summary(array) if summary is None else summary
    if has_nan:
        raise ValueError(f"Input {name} contains NaN.")
    if has_inf:
        raise ValueError(f"Input {name} contains infinity or a value too large for {array.dtype!r}.")
    check_magnitude(top, name)
    if array.dtype == np.float32 and outside_float32_range(array, top):
        logger.info("%s has magnitudes outside %s: computing in float64 so that squared distances neither overflow nor underflow", name, FLOAT32_SAFE_RANGE)
        array = array.astype(np.float64)
    return array


def is_sparse(X) -> bool:
    """Whether X is a scipy.sparse matrix or array."""
    try:
        import scipy.sparse as sp
    except ImportError:
        return False
    return sp.issparse(X)


def csr_arrays(X):
    """Checked CSR rows (`check_sparse`) as the native functions take them: indptr, indices,
    data and the number of features."""
    return X.indptr, X.indices, X.data, X.shape[1]


def check_sparse(X, *, owner: str = "KMeans", dtype=None):
    """X as canonical CSR rows the engine borrows: float32/float64 values (`dtype` forces
    one), int32/int64 indices of one type, duplicates summed, all values finite. A CSR input
    that already is all of this is returned as it is; otherwise one converted copy is made
    (never a change to the caller's matrix)."""
    import scipy.sparse as sp

    if X.ndim != 2:
        raise ValueError(f"{owner} expects 2-D sparse input; got {X.ndim} dimensions.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"Found array with shape {X.shape}: at least one sample and one feature are required.")
    csr = X if sp.isspmatrix_csr(X) or getattr(X, "format", None) == "csr" else X.tocsr()
    target = np.dtype(dtype) if dtype is not None else csr.dtype
    if target.kind != "f" or target.itemsize not in (4, 8):
        target = np.dtype(np.float32 if target == np.float16 else np.float64)
    if csr.data.dtype != target:
        csr = csr.astype(target)
    if csr.indptr.dtype != csr.indices.dtype or csr.indices.dtype not in (np.int32, np.int64):
        csr = csr.copy() if csr is X else csr
        csr.indptr, csr.indices = csr.indptr.astype(np.int64), csr.indices.astype(np.int64)
    if not csr.has_canonical_format:
        csr = csr.copy() if csr is X else csr
        csr.sum_duplicates()
    if not np.isfinite(csr.data).all():
        raise ValueError("Input X contains NaN or infinity.")
    top = float(np.abs(csr.data).max(initial=0.0))
    check_magnitude(top, "X")
    if csr.dtype == np.float32 and outside_float32_range(None, top):
        logger.info("X has magnitudes outside %s: computing in float64 so that squared distances neither overflow nor underflow", FLOAT32_SAFE_RANGE)
        csr = csr.astype(np.float64)
    return csr


def check_magnitude(top: float, name: str) -> None:
    """Refuses data whose squared distances would overflow even in float64."""
    if top > 1e150:
        raise ValueError(
            f"{name} has magnitudes up to {top:.3g}: squared distances would overflow even in "
            "float64; rescale the data (k-means is unchanged by a common scale factor)"
        )


def check_sample_weight(sample_weight, X: np.ndarray) -> np.ndarray | None:
    """None stays None (unweighted); a number becomes a constant vector; otherwise a
    finite, non-negative 1-D vector with one weight per row of the checked matrix X, in X's
    dtype. Weights so large that weighted sums over X would overflow are refused."""
    if sample_weight is None:
        return None
    n_samples = X.shape[0]
    if isinstance(sample_weight, numbers.Number) and not isinstance(sample_weight, bool):
        weights = np.full(n_samples, sample_weight, dtype=np.float64)
    else:
        try:
            weights = np.asarray(sample_weight)
        except Exception as exc:
            raise ValueError(f"sample_weight could not be converted to an array: {exc}") from exc
        check_weight_shape(weights, n_samples)
        weights = weights.astype(np.float64)
    if not np.isfinite(weights).all():
        bad = "NaN" if np.isnan(weights).any() else "infinity"
        raise ValueError(f"Input sample_weight contains {bad}.")
    if (weights < 0).any():
        raise ValueError("Negative values in data passed to `sample_weight`")
    with np.errstate(over="ignore"):
        total = float(weights.sum())
    if not total > 0:
        raise ValueError("sample_weight must not sum to zero")
    largest = float(np.abs(X.data).max(initial=0.0)) if is_sparse(X) else value_summary(X)[2]
    check_weight_scale(total, float(weights.max()), X.shape[1], largest, X.dtype)
    return np.ascontiguousarray(weights, dtype=X.dtype)


def check_weight_shape(weights, n_samples: int) -> None:
    """A weight vector's type and shape (NumPy or Dask), scikit-learn's messages; its values
    are checked where they are read."""
    if np.dtype(weights.dtype).kind not in "biuf":
        raise ValueError(f"sample_weight must be numeric; got dtype {weights.dtype}")
    if weights.ndim != 1:
        raise ValueError("Sample weights must be 1D array or scalar")
    if tuple(weights.shape) != (n_samples,):
        raise ValueError(f"sample_weight.shape == {tuple(weights.shape)}, expected {(n_samples,)}!")


def check_weight_scale(total: float, heaviest: float, n_features: int, largest: float, dtype) -> None:
    """Refuses weights (summing to `total`, up to `heaviest`) so large that the weighted sums
    over data of magnitude up to `largest` would overflow: the engine sums weight × value and
    weight × squared distance (at most 4·n_features·max|x|² per row) in float64, and float32
    data takes its weights in float32. Scaling every weight by one factor changes neither
    the centroids nor the labels, so the message says to."""
    top = max(largest, 1.0)
    if not total * 4.0 * n_features * top * top < 1e300:
        raise ValueError(
            f"sample_weight is too large for this data (up to {heaviest:.3g} per row): weighted sums "
            "would overflow float64. Divide the weights by a common factor; k-means gives "
            "the same clusters."
        )
    check_weights_fit_float32(heaviest, dtype)


def check_weights_fit_float32(heaviest: float, dtype) -> None:
    if np.dtype(dtype) == np.float32 and heaviest > float(np.finfo(np.float32).max):
        raise ValueError(
            f"sample_weight has values up to {heaviest:.3g}, beyond float32's range, "
            "for float32 data: divide the weights by a common factor."
        )


def feature_names(X) -> np.ndarray | None:
    """String column names of a DataFrame-like X (pandas, polars, a pyarrow Table or
    RecordBatch), as scikit-learn records them. Only the names are read: columns are never
    converted."""
    if isinstance(X, np.ndarray) or is_mlx_array(X) or has_vector_columns(X):
        return None
    columns = getattr(X, "column_names", None)  # pyarrow: `columns` holds the data
    if columns is None:
        columns = getattr(X, "columns", None)
    if columns is None:
        return None
    try:
        columns = list(columns)
    except TypeError:
        return None
    if len(columns) == 0:
        return None
    are_str = [isinstance(v, str) for v in columns]
    if any(are_str) and not all(are_str):
        types = sorted({type(v).__qualname__ for v in columns})
        raise TypeError(
            "Feature names are only supported if all input features have string names, "
            f"but your input has {types} as feature name / column name types. "
            "If you want feature names to be stored and validated, you must convert them "
            "all to strings, by using X.columns = X.columns.astype(str) for example. "
            "Otherwise you can remove feature / column names from your input data, or "
            "convert them all to a non-string data type."
        )
    if not all(are_str):
        return None
    names = np.empty(len(columns), dtype=object)
    names[:] = columns
    return names


def has_vector_columns(X) -> bool:
    """Whether a pyarrow or polars table holds a column of lists or arrays (one vector per
    row): its features are then the vector's entries, which have no names."""
    module = type(X).__module__.split(".")[0]
    try:
        if module == "pyarrow":
            import pyarrow as pa

            return any(pa.types.is_nested(field.type) for field in X.schema)
        if module == "polars":
            return any(dtype.is_nested() for dtype in X.dtypes)
    except (AttributeError, TypeError):
        return False
    return False


def check_feature_names(estimator, X, *, reset: bool) -> None:
    check_names(estimator, feature_names(X), reset=reset)


def check_names(estimator, names, *, reset: bool) -> None:
    """Records (`reset`) or checks the feature names of the data, as scikit-learn does:
    other names, or the same in another order, are an error; names on one side only a
    warning."""
    owner = type(estimator).__name__
    if reset:
        if names is not None:
            estimator.feature_names_in_ = names
        elif hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
        return
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is None and names is None:
        return
    if names is not None and fitted is None:
        warnings.warn(
            f"X has feature names, but {owner} was fitted without feature names", UserWarning
        )
        return
    if names is None and fitted is not None:
        warnings.warn(
            f"X does not have valid feature names, but {owner} was fitted with feature names",
            UserWarning,
        )
        return
    if len(fitted) != len(names) or np.any(fitted != names):
        message = "The feature names should match those that were passed during fit.\n"
        unseen = sorted(set(names) - set(fitted))
        missing = sorted(set(fitted) - set(names))
        if unseen:
            message += "Feature names unseen at fit time:\n" + "".join(f"- {n}\n" for n in unseen)
        if missing:
            message += "Feature names seen at fit time, yet now missing:\n" + "".join(
                f"- {n}\n" for n in missing
            )
        if not unseen and not missing:
            message += "Feature names must be in the same order as they were in fit.\n"
        raise ValueError(message)


def check_n_features(estimator, X: np.ndarray, *, reset: bool) -> None:
    n_features = X.shape[1]
    if reset:
        estimator.n_features_in_ = n_features
        return
    expected = getattr(estimator, "n_features_in_", None)
    if expected is not None and n_features != expected:
        raise ValueError(
            f"X has {n_features} features, but {type(estimator).__name__} is expecting "
            f"{expected} features as input."
        )


def seed_from(random_state, name: str = "random_state") -> int:
    """A 64-bit engine seed from scikit-learn's `random_state` forms (`name`: the parameter,
    for messages). An int is used as it is, so results for a given int do not depend on
    NumPy's generators."""
    if random_state is None:
        return int(np.random.mtrand._rand.randint(0, 2**31 - 1))
    if isinstance(random_state, (numbers.Integral, np.integer)) and not isinstance(random_state, bool):
        value = int(random_state)
        if not 0 <= value < 2**32:
            raise ValueError(f"{name} must be between 0 and 2**32 - 1; got {value}")
        return value
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63 - 1))
    raise ValueError(
        f"{random_state!r} cannot be used as {name}: use None, an int, or a "
        "numpy.random.RandomState / Generator"
    )
