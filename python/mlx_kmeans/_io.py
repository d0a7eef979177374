"""Reading a data matrix from a file for the command line: `.npy` (memory-mapped), Parquet
and Arrow IPC (`.arrow`, `.feather`, `.ipc`; memory-mapped) through pyarrow."""

from __future__ import annotations

import os
import re

import numpy as np

ARROW_IPC_SUFFIXES = (".arrow", ".feather", ".ipc", ".arrows")
PARQUET_SUFFIXES = (".parquet", ".pq")


def _pyarrow(path: str):
    try:
        import pyarrow
    except ImportError:
        raise ImportError(f"reading {path} needs pyarrow: pip install pyarrow") from None
    return pyarrow


def read_table(path: str):
    """A pyarrow Table from a Parquet or Arrow IPC file (file or stream format)."""
    pa = _pyarrow(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        return pq.read_table(path, memory_map=True)
    source = pa.memory_map(path, "r")
    try:
        return pa.ipc.open_file(source).read_all()
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_stream(source).read_all()


def table_matrix(table, column: str | None, path: str):
    """The data of a table: the named column (a list or fixed-size list of floats per row);
    else its only column; else all of its columns when they are all numeric (one copy)."""
    import pyarrow as pa

    names = table.column_names
    if column is not None:
        if column not in names:
            raise ValueError(f"{path} has no column {column!r}; its columns are {names}")
        return table.column(column)
    if len(names) == 1:
        return table.column(0)
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type) for f in table.schema]
    if all(numeric):
        return np.column_stack([table.column(name).to_numpy() for name in names])
    raise ValueError(f"{path} has several columns {names}; name the one that holds the vectors with --column")


def load_npy(path) -> np.ndarray:
    """A `.npy` file memory-mapped read-only, checked to hold a 2-D numeric matrix: a
    damaged, empty or pickled file, or one of another shape, is a ValueError naming it."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except OSError:
        raise
    except Exception as exc:  # a damaged header raises whatever its parser meets
        raise ValueError(f"{path} is not a readable .npy file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path} is not a .npy file (an .npz archive?)")
    if array.ndim != 2:
        raise ValueError(f"{path} holds an array of shape {array.shape}; expected a 2-D matrix, one row per sample")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{path} holds dtype {array.dtype}; expected numbers")
    return array


def load_matrix(path: str, column: str | None = None):
    """The rows to cluster from `path`: a NumPy array (.npy, memory-mapped, read-only) or an
    Arrow column that `KMeans` reads without a copy when it is one chunk without nulls."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npy":
        if column is not None:
            raise ValueError("--column applies to Parquet and Arrow files, not .npy")
        return load_npy(path)
    if suffix in PARQUET_SUFFIXES or suffix in ARROW_IPC_SUFFIXES:
        return table_matrix(read_table(path), column, path)
    raise ValueError(
        f"cannot read {path}: expected .npy, Parquet ({', '.join(PARQUET_SUFFIXES)}) "
        f"or Arrow IPC ({', '.join(ARROW_IPC_SUFFIXES)})"
    )


def record_batches(path: str, column: str | None, chunk_bytes: int):
    """The rows of a Parquet or Arrow IPC file as matrices of about `chunk_bytes`, one
    record batch at a time (the file is never read whole)."""
    pa = _pyarrow(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path, memory_map=True)
        meta = parquet.metadata
        # Uncompressed bytes per row, from the row groups' sizes.
        total = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        rows = max(1, chunk_bytes // max(1, total // max(1, meta.num_rows)))
        batches = parquet.iter_batches(batch_size=rows)
    elif suffix in ARROW_IPC_SUFFIXES:
        source = pa.memory_map(path, "r")
        try:
            reader = pa.ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            source.seek(0)
            batches = iter(pa.ipc.open_stream(source))
    else:
        raise ValueError(f"--stream reads .npy, Parquet or Arrow IPC files; got {path}")
    from ._validation import check_array

    first = 0
    for batch in batches:
        if batch.num_rows:
            try:
                yield check_array(table_matrix(pa.Table.from_batches([batch]), column, path), owner="MiniBatchKMeans")
            except ValueError as exc:
                # Row numbers of the file, not of the record batch.
                message = re.sub(r"\brow (\d+)", lambda m: f"row {int(m.group(1)) + first}", str(exc))
                raise ValueError(f"{path}: {message}") from None
        first += batch.num_rows
    if first == 0:
        raise ValueError(f"{path} has no rows")


def matrix_chunks(path: str, column: str | None, chunk_bytes: int):
    """The rows of a .npy, Parquet or Arrow IPC file as checked matrices of about
    `chunk_bytes`, in order (the file is never read whole)."""
    if not os.path.splitext(path)[1].lower() == ".npy":
        yield from record_batches(path, column, chunk_bytes)
        return
    from ._validation import check_array

    X = load_npy(path)
    if X.shape[0] == 0:
        raise ValueError(f"{path} has no rows")
    rows = max(1, chunk_bytes // max(1, X.shape[1] * X.dtype.itemsize))
    for first in range(0, X.shape[0], rows):
        yield check_array(X[first : first + rows], owner="MiniBatchKMeans")
