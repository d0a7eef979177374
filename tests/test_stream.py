"""Out-of-core Lloyd fits (`kmeans_streaming`: a matrix read one chunk at a time) against the
in-memory fit and the float64 reference, bounded memory on a memory-mapped file, the
command line's `--stream`, and `MiniBatchKMeans.partial_fit` over a Parquet file's batches."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import make_mixture, reference_lloyd_relocating

from mlx_kmeans import KMeans, MiniBatchKMeans, kmeans, kmeans_streaming


@pytest.fixture(scope="module")
def data():
    X, _ = make_mixture(3000, 6, 8, seed=5, dtype=np.float32)
    return X


def first_rows(X, k, seed=0):
    return X[np.random.default_rng(seed).choice(len(X), k, replace=False)].copy()


@pytest.mark.parametrize("chunk_rows", [1, 7, 499, 3000, 5000])
def test_same_fit_as_in_memory_from_the_same_init(data, chunk_rows):
    init = first_rows(data, 8)
    ours = kmeans_streaming(data, 8, init=init, chunk_bytes=chunk_rows * data.shape[1] * 4)
    whole = kmeans(data, 8, init=init, algorithm="lloyd")
    assert ours.n_iter == whole.n_iter
    np.testing.assert_allclose(ours.centroids, whole.centroids, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ours.labels, whole.labels)
    np.testing.assert_allclose(ours.distances, whole.distances, rtol=1e-5, atol=1e-4)
    assert ours.inertia == pytest.approx(whole.inertia, rel=1e-6)


def test_matches_the_float64_reference_with_empty_clusters():
    # Two identical initial centroids: one of them empties at once and must take the row
    # farthest from its centroid, as the reference does.
    X, _ = make_mixture(400, 3, 5, seed=9, dtype=np.float64)
    init = np.concatenate([X[:4], X[:1]])
    ours = kmeans_streaming(X, 5, init=init, tol=0.0, max_iter=100, chunk_bytes=37 * 3 * 8)
    centroids, labels, _ = reference_lloyd_relocating(X, init, max_iter=100)
    np.testing.assert_array_equal(ours.labels, labels)
    np.testing.assert_allclose(ours.centroids, centroids, rtol=1e-10, atol=1e-10)


def test_sample_weight_as_in_memory(data):
    weights = np.random.default_rng(3).random(len(data)).astype(np.float32)
    init = first_rows(data, 8, seed=2)
    ours = kmeans_streaming(data, 8, init=init, sample_weight=weights, chunk_bytes=10_000)
    whole = kmeans(data, 8, init=init, sample_weight=weights, algorithm="lloyd")
    np.testing.assert_allclose(ours.centroids, whole.centroids, rtol=1e-5, atol=1e-5)
    assert ours.inertia == pytest.approx(whole.inertia, rel=1e-6)


@pytest.mark.parametrize("init", ["k-means++", "k-means||"])
def test_seedings_find_separated_clusters(data, init):
    from sklearn.cluster import KMeans as SkKMeans

    ours = kmeans_streaming(data, 8, init=init, seed=4, chunk_bytes=20_000)
    reference = SkKMeans(8, n_init=5, random_state=0).fit(data)
    assert ours.inertia <= 1.01 * reference.inertia_
    assert len(np.unique(ours.labels)) == 8


def test_random_init_on_unclustered_data():
    from sklearn.cluster import KMeans as SkKMeans

    # Random rows land in local optima on separated blobs; on uniform data every start
    # reaches about the same inertia.
    X = np.random.default_rng(6).random((3000, 2))
    ours = kmeans_streaming(X, 12, init="random", seed=1, n_init=3, chunk_bytes=5000)
    reference = SkKMeans(12, n_init=5, random_state=0).fit(X)
    assert ours.inertia <= 1.05 * reference.inertia_


def test_float64_and_integer_data_compute_in_float64():
    X = make_mixture(500, 4, 3, seed=1)[0]
    ours = kmeans_streaming(np.round(X * 10).astype(np.int64), 3, init="k-means++", chunk_bytes=1000)
    assert ours.centroids.dtype == np.float64


def test_float32_beyond_its_safe_range_computes_in_float64(data):
    X = data * np.float32(1e17)  # squared distances would overflow float32
    init = first_rows(X, 8)
    ours = kmeans_streaming(X, 8, init=init, chunk_bytes=5000)
    whole = kmeans(X, 8, init=init, algorithm="lloyd")
    assert ours.centroids.dtype == whole.centroids.dtype == np.float64
    np.testing.assert_array_equal(ours.labels, whole.labels)
    assert ours.inertia == pytest.approx(whole.inertia, rel=1e-6)


def test_automatic_float32_only_backend_gives_way_to_float64(data, monkeypatch):
    # Where the automatic choice is a float32-only backend (MLX on a GPU, simulated here), data
    # found beyond float32's safe range by the first pass are fitted in float64 by a backend
    # that computes in it, as in memory, instead of failing.
    import mlx_kmeans._backend as backend_mod
    from mlx_kmeans import backends

    if "mlx" not in {b.name for b in backends() if b.available}:
        pytest.skip("mlx unavailable here")
    probes = dict(backend_mod.PROBES)
    probes["mlx"] = lambda platform: backend_mod.Backend("mlx", True, "simulated mlx on a GPU", True, True)
    monkeypatch.setattr(backend_mod, "PROBES", probes)
    monkeypatch.delenv("MLX_KMEANS_BACKEND", raising=False)
    assert backend_mod.resolve("auto", np.float32) == "mlx"
    X = data * np.float32(1e17)
    init = first_rows(X, 8)
    ours = kmeans_streaming(X, 8, init=init, chunk_bytes=5000)
    whole = kmeans(X, 8, init=init, algorithm="lloyd", backend="cpu")
    assert ours.centroids.dtype == np.float64
    np.testing.assert_array_equal(ours.labels, whole.labels)


@pytest.mark.parametrize("algorithm", ["lloyd", "elkan"])
def test_both_algorithms_give_the_same_labels(data, algorithm):
    init = first_rows(data, 20, seed=7)
    ours = kmeans_streaming(data, 20, init=init, algorithm=algorithm, tol=0.0, chunk_bytes=9000)
    whole = kmeans(data, 20, init=init, algorithm="lloyd", tol=0.0)
    assert ours.n_iter == whole.n_iter
    np.testing.assert_array_equal(ours.labels, whole.labels)


def test_npy_file_is_read_in_place(tmp_path, data):
    path = tmp_path / "x.npy"
    np.save(path, data)
    init = first_rows(data, 8)
    from_path = kmeans_streaming(str(path), 8, init=init, chunk_bytes=4096)
    mapped = np.load(path, mmap_mode="r")
    from_map = kmeans_streaming(mapped[100:], 8, init=init, chunk_bytes=4096)
    np.testing.assert_array_equal(from_path.labels, kmeans(data, 8, init=init, algorithm="lloyd").labels)
    np.testing.assert_array_equal(from_map.labels, kmeans(data[100:], 8, init=init, algorithm="lloyd").labels)


def test_bad_input_raises_the_in_memory_errors(data):
    bad = data.copy()
    bad[2500, 1] = np.nan  # in a late chunk
    with pytest.raises(ValueError, match="Input X contains NaN"):
        kmeans_streaming(bad, 4, chunk_bytes=1000)
    bad[2500, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        kmeans_streaming(bad, 4, chunk_bytes=1000)
    with pytest.raises(ValueError, match="n_samples=3000 should be >= n_clusters=3001"):
        kmeans_streaming(data, 3001)
    with pytest.raises(ValueError, match="sample_weight"):
        kmeans_streaming(data, 4, sample_weight=np.ones(5))
    with pytest.raises(ValueError, match="Negative values"):
        kmeans_streaming(data, 4, sample_weight=-np.ones(len(data)))
    with pytest.raises(ValueError, match="The .init. parameter must be"):
        kmeans_streaming(data, 4, init="kmeans")
    with pytest.raises(ValueError, match="2-D"):
        kmeans_streaming(data[:, 0], 4)
    assert np.isfinite(data).all()  # the input is untouched


def test_memory_stays_bounded_on_a_mapped_file(tmp_path):
    """A 256 MiB file fitted in 16 MiB chunks: the peak resident size grows by far less
    than the file (its pages are released after each chunk)."""
    path = tmp_path / "big.npy"
    rows, d = 256 * 2**20 // (4 * 64), 64
    mapped = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, d))
    rng = np.random.default_rng(0)
    for start in range(0, rows, 65536):
        mapped[start : start + 65536] = rng.standard_normal((min(65536, rows - start), d), dtype=np.float32)
    mapped.flush()
    del mapped
    script = textwrap.dedent(
        f"""
        import numpy as np
        from mlx_kmeans import kmeans_streaming

        def peak():
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024

        X = np.load({str(path)!r}, mmap_mode="r")
        before = peak()
        # The cpu backend: a GPU runtime's own libraries would dwarf what is measured here.
        result = kmeans_streaming(X, 16, max_iter=3, chunk_bytes=16 << 20, backend="cpu")
        print(peak() - before, result.n_iter)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    grown, n_iter = map(int, out.stdout.split())
    assert n_iter >= 1
    assert grown < 128 * 2**20, f"peak RSS grew by {grown / 2**20:.0f} MiB for a 256 MiB file"


def test_cli_stream_npy_matches_the_function(tmp_path, data):
    path = tmp_path / "x.npy"
    np.save(path, data)
    out = tmp_path / "result.npz"
    run = subprocess.run(
        [sys.executable, "-m", "mlx_kmeans", str(path), "-k", "8", "--stream", "--chunk-mb", "0.01", "--quiet", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "streamed" in run.stdout
    saved = np.load(out)
    direct = kmeans_streaming(data, 8, chunk_bytes=int(0.01 * 2**20))
    np.testing.assert_array_equal(saved["labels"], direct.labels)
    assert float(saved["inertia"]) == pytest.approx(direct.inertia, rel=1e-9)


def test_minibatch_partial_fit_over_parquet_batches(tmp_path, data):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    column = pa.FixedSizeListArray.from_arrays(pa.array(data.ravel()), data.shape[1])
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"id": pa.array(range(len(data))), "embedding": column}), path, row_group_size=500)

    model = MiniBatchKMeans(8, random_state=0)
    for _ in range(3):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256, columns=["embedding"]):
            model.partial_fit(batch.column("embedding"))
    same = MiniBatchKMeans(8, random_state=0)
    for _ in range(3):
        for start in range(0, len(data), 256):
            same.partial_fit(data[start : start + 256])
    np.testing.assert_array_equal(model.cluster_centers_, same.cluster_centers_)
    full = KMeans(8, random_state=0, n_init=3).fit(data)
    assert -model.score(data) <= 1.1 * full.inertia_

    run = subprocess.run(
        [sys.executable, "-m", "mlx_kmeans", str(path), "-k", "8", "--stream", "--column", "embedding", "--max-iter", "3", "--batch-size", "256", "--chunk-mb", "0.01", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    inertia = float(run.stdout.split("inertia=")[1].split()[0])
    assert inertia <= 1.1 * full.inertia_


def test_kmeans_streams_a_memory_map_larger_than_memory(tmp_path, data, monkeypatch):
    import mlx_kmeans._stream as stream

    path = tmp_path / "x.npy"
    np.save(path, data)
    init = first_rows(data, 8)
    in_memory = KMeans(8, init=init, n_init=1, algorithm="lloyd").fit(data)
    monkeypatch.setattr(stream, "available_memory", lambda: 4096)  # "larger than memory"
    streamed = KMeans(8, init=init, n_init=1).fit(np.load(path, mmap_mode="r"))
    np.testing.assert_array_equal(streamed.labels_, in_memory.labels_)
    np.testing.assert_allclose(streamed.cluster_centers_, in_memory.cluster_centers_, rtol=1e-5, atol=1e-5)
    assert streamed.inertia_ == pytest.approx(in_memory.inertia_, rel=1e-6)
    assert streamed.n_iter_ == in_memory.n_iter_ and streamed.n_features_in_ == data.shape[1]
    np.testing.assert_array_equal(streamed.predict(data), in_memory.predict(data))


def test_mlx_backend_runs_the_chunks(data):
    from mlx_kmeans import backends

    if not next(b for b in backends() if b.name == "mlx").available:
        pytest.skip("MLX is not installed")
    init = first_rows(data, 8)
    on_mlx = kmeans_streaming(data, 8, init=init, backend="mlx", chunk_bytes=20_000)
    on_cpu = kmeans_streaming(data, 8, init=init, backend="cpu", chunk_bytes=20_000)
    assert on_mlx.backend == "mlx"
    np.testing.assert_array_equal(on_mlx.labels, on_cpu.labels)
    assert on_mlx.inertia == pytest.approx(on_cpu.inertia, rel=1e-5)


@pytest.mark.parametrize("tol", [0.0, 1e-2])
def test_stopping_rules_are_the_engines(tmp_path, data, monkeypatch, capsys, tol):
    # A memory map fitted in chunks prints scikit-learn's lines from the engine's loop: the
    # same iterations and the same reason to stop (strict convergence: no label changed;
    # tolerance: the centre shift within tol times the mean feature variance) as in memory.
    import mlx_kmeans._stream as stream

    path = tmp_path / "x.npy"
    np.save(path, data)
    init = first_rows(data, 8, seed=3)
    KMeans(8, init=init, n_init=1, tol=tol, verbose=1).fit(data)
    in_memory = capsys.readouterr().out.splitlines()
    monkeypatch.setattr(stream, "available_memory", lambda: 4096)
    KMeans(8, init=init, n_init=1, tol=tol, verbose=1).fit(np.load(path, mmap_mode="r"))
    streamed = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("Iteration", "Converged", "Initialization"))]
    reason = "strict convergence" if tol == 0 else "within tolerance"
    assert any(reason in line for line in in_memory), in_memory
    assert [line.split(",")[0].split(":")[0] for line in streamed] == [line.split(",")[0].split(":")[0] for line in in_memory]
    assert reason in streamed[-1]
