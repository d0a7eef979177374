"""`python -m mlx_kmeans FILE -k K ...` on .npy, Parquet and Arrow IPC files, checked against
the same fit made in-process."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import make_mixture

from mlx_kmeans import KMeans, MiniBatchKMeans


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mlx_kmeans", *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def X():
    return make_mixture(1200, 8, 6, seed=21, dtype=np.float32)[0]


@pytest.fixture(scope="module")
def files(X, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    paths = {"npy": folder / "x.npy"}
    np.save(paths["npy"], X)
    try:
        import pyarrow as pa
        import pyarrow.feather as feather
        import pyarrow.parquet as pq
    except ImportError:
        return paths
    column = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), X.shape[1])
    table = pa.table({"id": pa.array(range(len(X))), "embedding": column})
    paths["parquet"] = folder / "x.parquet"
    pq.write_table(table, paths["parquet"])
    paths["arrow"] = folder / "x.arrow"
    feather.write_feather(pa.table({"embedding": column}), paths["arrow"])
    return paths


@pytest.mark.parametrize("kind, extra", [("npy", []), ("parquet", ["--column", "embedding"]), ("arrow", [])])
def test_file_kinds_match_in_process_fit(files, X, kind, extra, tmp_path):
    if kind not in files:
        pytest.skip("pyarrow is not installed")
    out = tmp_path / "result.npz"
    done = run_cli(files[kind], "-k", 6, "--seed", 3, "--backend", "cpu", "--out", out, *extra)
    assert done.returncode == 0, done.stderr
    ref = KMeans(6, n_init=1, random_state=3, backend="cpu").fit(X)
    result = np.load(out)
    np.testing.assert_array_equal(result["labels"], ref.labels_)
    np.testing.assert_array_equal(result["centroids"], ref.cluster_centers_)
    assert float(result["inertia"]) == pytest.approx(ref.inertia_, rel=1e-12)
    assert str(result["backend"]) == "cpu" and int(result["n_iter"]) == ref.n_iter_
    assert "1200x8, k=6, KMeans, backend=cpu" in done.stdout and f"inertia={ref.inertia_:.6e}" in done.stdout
    assert "inertia=" in done.stderr  # the progress bar


def test_mini_batch(files, X, tmp_path):
    out = tmp_path / "mb.npz"
    done = run_cli(files["npy"], "-k", 6, "--mini-batch", "--batch-size", 256, "--seed", 1, "--backend", "cpu", "--quiet", "--out", out)
    assert done.returncode == 0, done.stderr
    ref = MiniBatchKMeans(6, batch_size=256, n_init=1, random_state=1, backend="cpu").fit(X)
    np.testing.assert_array_equal(np.load(out)["centroids"], ref.cluster_centers_)
    assert "MiniBatchKMeans" in done.stdout and done.stderr == ""


def test_help_explains():
    done = run_cli("--help")
    assert done.returncode == 0
    for word in ("FILE", "--mini-batch", "--out", "--column", "Parquet", "--backend"):
        assert word in done.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["{npy}"], "-k/--n-clusters is required"),
        (["{folder}/missing.npy", "-k", "2"], "no such file"),
        (["{folder}/data.csv", "-k", "2"], "expected .npy, Parquet"),
        (["{parquet}", "-k", "2"], "several columns"),
        (["{parquet}", "-k", "2", "--column", "nope"], "no column 'nope'"),
        (["{npy}", "-k", "5000"], "n_samples=1200 should be >= n_clusters=5000"),
    ],
)
def test_errors_are_messages_not_tracebacks(files, args, message):
    if "{parquet}" in args and "parquet" not in files:
        pytest.skip("pyarrow is not installed")
    folder = files["npy"].parent
    (folder / "data.csv").write_text("1,2\n")
    done = run_cli(*[a.format(npy=files["npy"], parquet=files.get("parquet"), folder=folder) for a in args])
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr


def one_line_error(done) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_max_iter_zero_is_refused_not_replaced(files):
    assert "max_iter" in one_line_error(run_cli(files["npy"], "-k", 3, "--max-iter", 0, "--quiet"))
    assert "max_iter" in one_line_error(run_cli("-k", 3, "--max-iter", 0, "--n-samples", 100, "--no-sklearn"))


def test_out_without_suffix_reports_the_file_written(files, tmp_path):
    done = run_cli(files["npy"], "-k", 3, "--quiet", "--out", tmp_path / "result")
    assert done.returncode == 0, done.stderr
    written = tmp_path / "result.npz"
    assert written.exists() and str(written) in done.stdout


def test_bad_out_path_fails_before_the_fit(files, tmp_path):
    message = one_line_error(run_cli(files["npy"], "-k", 3, "--quiet", "--out", tmp_path / "missing" / "r.npz"))
    assert "missing" in message
    done = run_cli(files["npy"], "-k", 3, "--quiet", "--out", tmp_path)
    one_line_error(done)
    assert "time=" not in done.stdout


@pytest.mark.parametrize("args", [["-k", 0], ["-k", -3], ["--backend", "bogus"], ["--n-features", 0]])
def test_demo_mode_user_errors_are_one_line(args):
    one_line_error(run_cli(*args, "--n-samples", 200, "--no-sklearn"))


# -- user errors on damaged files and streamed fits: one line on stderr, exit code 2 ---------------


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3, ", b"not a numpy file at all"])
@pytest.mark.parametrize("stream", [[], ["--stream"]])
def test_damaged_npy_is_one_line(tmp_path, content, stream):
    path = tmp_path / "bad.npy"
    path.write_bytes(content)
    assert "bad.npy" in one_line_error(run_cli(path, "-k", 3, "--quiet", *stream))


@pytest.mark.parametrize(
    "extra, word",
    [
        (["--chunk-mb", "inf"], "--chunk-mb"),
        (["--chunk-mb", "0"], "--chunk-mb"),
        (["--max-iter", "0"], "max_iter"),
        (["--n-init", "0"], "n_init"),
        (["--mini-batch", "--batch-size", "0"], "batch_size"),
    ],
)
def test_streamed_parameter_errors_are_one_line(files, extra, word):
    assert word in one_line_error(run_cli(files["npy"], "-k", 3, "--quiet", "--stream", *extra))


@pytest.mark.parametrize("kind", ["parquet", "arrow"])
@pytest.mark.parametrize("extra, word", [(["--batch-size", "0"], "batch_size"), (["--max-iter", "0"], "max_iter"), (["--n-init", "3"], "--n-init")])
def test_streamed_arrow_parameter_errors_are_one_line(files, kind, extra, word):
    if kind not in files:
        pytest.skip("pyarrow is not installed")
    column = ["--column", "embedding"] if kind == "parquet" else []
    assert word in one_line_error(run_cli(files[kind], "-k", 3, "--quiet", "--stream", *column, *extra))


def test_out_names_are_taken_as_given(files, tmp_path):
    assert "--out" in one_line_error(run_cli(files["npy"], "-k", 3, "--quiet", "--out", ""))
    done = run_cli(files["npy"], "-k", 3, "--quiet", "--out", "/dev/null")
    assert done.returncode == 0, done.stderr
    assert "to /dev/null" in done.stdout
    import os

    assert not os.path.exists("/dev/null.npz")


def test_stream_mini_batch_on_npy_runs_mini_batch_steps(files, X):
    done = run_cli(files["npy"], "-k", 4, "--quiet", "--stream", "--mini-batch", "--batch-size", 100, "--chunk-mb", 0.01)
    assert done.returncode == 0, done.stderr
    assert "MiniBatchKMeans" in done.stdout and "Lloyd" not in done.stdout


def test_stream_arrow_initialises_on_enough_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = make_mixture(5000, 4, 50, seed=3, dtype=np.float32)[0]
    path = tmp_path / "big.parquet"
    column = pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), 4)
    pq.write_table(pa.table({"e": column}), path, row_group_size=1024)
    # Batches of ~100 rows: the first step still samples its 3·k rows from enough of them.
    done = run_cli(path, "-k", 1000, "--quiet", "--stream", "--chunk-mb", 0.002, "--batch-size", 256)
    assert done.returncode == 0, done.stderr
    assert "5000x4, k=1000" in done.stdout
    # Fewer rows than clusters: the count is the file's, not a batch's.
    assert "n_samples=5000 should be >= n_clusters=6000" in one_line_error(run_cli(path, "-k", 6000, "--quiet", "--stream"))


def test_stream_arrow_errors_name_file_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [[float(i), 1.0] for i in range(6000)]
    rows[4321] = None
    path = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"e": pa.array(rows, type=pa.list_(pa.float32(), 2))}), path, row_group_size=1000)
    message = one_line_error(run_cli(path, "-k", 3, "--quiet", "--stream", "--chunk-mb", 0.01))
    assert "row 4321" in message and "null" in message
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"e": pa.array([], type=pa.list_(pa.float32(), 2))}), empty)
    assert "no rows" in one_line_error(run_cli(empty, "-k", 3, "--quiet", "--stream"))
