"""`mlx_kmeans.dask.KMeans` on a LocalCluster of two worker processes: the same fit as the
in-memory engine from the same initial centroids, uneven chunks, sample weights, DataFrames,
lazy labels, bad input, and a worker killed in the middle of a fit."""

import os
import signal
import threading
import time

import numpy as np
import pytest
from conftest import make_mixture, reference_lloyd_relocating

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import dask  # noqa: E402

from mlx_kmeans import KMeans as InMemoryKMeans  # noqa: E402
from mlx_kmeans import kmeans  # noqa: E402
from mlx_kmeans.dask import KMeans, from_npy  # noqa: E402


@pytest.fixture(scope="module")
def data():
    X, _ = make_mixture(4000, 8, 10, seed=3, dtype=np.float32)
    return X


def random_rows(X, k, seed=0):
    return X[np.sort(np.random.default_rng(seed).choice(len(X), k, replace=False))].copy()


def test_local_scheduler_without_a_cluster(data):
    # Runs before the cluster fixture exists: Dask's threaded scheduler, no client.
    init = random_rows(data, 10)
    with dask.config.set(scheduler="threads"):
        model = KMeans(10, init=init).fit(da.from_array(data, chunks=(700, 8)))
    whole = kmeans(data, 10, init=init, algorithm="lloyd")
    assert model.n_iter_ == whole.n_iter
    assert model.inertia_ == pytest.approx(whole.inertia, rel=1e-6)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit=0)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.parametrize(
    "chunks",
    [(1000, 8), (999, 8), ((1, 1499, 2000, 500), (8,)), (1333, 3)],
    ids=["even", "uneven", "irregular", "column-chunks"],
)
def test_same_fit_as_in_memory_from_the_same_init(client, data, chunks):
    init = random_rows(data, 10)
    model = KMeans(10, init=init).fit(da.from_array(data, chunks=chunks))
    whole = kmeans(data, 10, init=init, algorithm="lloyd")
    assert model.n_iter_ == whole.n_iter
    np.testing.assert_allclose(model.cluster_centers_, whole.centroids, rtol=1e-5, atol=1e-5)
    assert model.inertia_ == pytest.approx(whole.inertia, rel=1e-6)
    labels = model.labels_
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), whole.labels)


def test_one_task_per_worker_per_pass(client, data):
    # Eight chunks on two workers: each pass runs one task where each worker's chunks are.
    init = random_rows(data, 10)
    with distributed.get_task_stream(client) as stream:
        model = KMeans(10, init=init, max_iter=4, tol=0.0, algorithm="lloyd").fit(da.from_array(data, chunks=(500, 8)))
    runs = [t for t in stream.data if str(t["key"]).startswith("('_run") or str(t["key"]).startswith("_run")]
    passes = model.n_iter_ + 1  # and the final assignment
    assert passes <= len(runs) <= 2 * passes, (len(runs), passes)


def test_lloyd_passes_keep_chunk_states_on_the_workers_and_survive_losing_them(client, data):
    """Chunk states stay on the workers between Lloyd passes (no task or transfer for them)
    and are dropped when the fit ends; where a worker lost them, a pass searches every row
    (the same result as with them, every row counted as changed) and the farthest rows are
    the same."""
    from mlx_kmeans._chunked.tasks import bounded_task, combine_farthest, combine_lloyd, farthest_task
    from mlx_kmeans.dask import DaskChunks

    def kept_on_workers():
        return sum(client.run(lambda: len(__import__("mlx_kmeans.dask").dask._KEPT)).values())

    X = da.from_array(data, chunks=(500, 8))
    centroids = random_rows(data, 10).astype(np.float32)
    between = np.sqrt(((centroids[:, None, :].astype(np.float64) - centroids[None]) ** 2).sum(-1))
    gaps = np.where(np.eye(10, dtype=bool), np.inf, between).min(1) / 2
    source = DaskChunks(X)
    first, states = source.map_reduce(bounded_task, combine_lloyd, (centroids, gaps, None, "cpu"), keep_states=True)
    assert first.changed == len(data) and kept_on_workers() == len(source.groups())
    shared = (centroids, gaps, np.full(10, 0.01), "cpu")
    kept, kept_states = source.map_reduce(bounded_task, combine_lloyd, shared, states, keep_states=True)
    assert kept.changed == 0 and kept.searched < len(data) / 2  # the bounds settle most rows
    far_kept, _ = source.map_reduce(farthest_task, combine_farthest, (centroids, 7, "cpu"), kept_states)
    client.run(lambda: __import__("mlx_kmeans.dask").dask._KEPT.clear())
    lost, _ = source.map_reduce(bounded_task, combine_lloyd, shared, states, keep_states=True)
    fresh, _ = DaskChunks(X).map_reduce(bounded_task, combine_lloyd, (centroids, gaps, None, "cpu"), keep_states=True)
    assert lost.changed == len(data) and lost.searched == len(data)
    np.testing.assert_array_equal(lost.sums, fresh.sums)
    np.testing.assert_array_equal(lost.weights, kept.weights)
    np.testing.assert_array_equal(lost.sums, kept.sums)
    client.run(lambda: __import__("mlx_kmeans.dask").dask._KEPT.clear())
    far_lost, _ = source.map_reduce(farthest_task, combine_farthest, (centroids, 7, "cpu"), kept_states)
    np.testing.assert_array_equal(far_lost.indices, far_kept.indices)
    np.testing.assert_array_equal(far_lost.labels, far_kept.labels)
    np.testing.assert_array_equal(far_lost.distances, far_kept.distances)
    KMeans(10, init=centroids, max_iter=5).fit(X)
    assert kept_on_workers() == 0


def test_states_left_by_a_client_that_went_away_are_dropped(data, monkeypatch):
    """In a worker's memory (here this process): storing a pass's states drops those no pass
    used for `KEPT_SECONDS` (a fit whose client never dropped them), not those of other fits
    in progress; the next pass reads what the last one stored."""
    from mlx_kmeans import dask as mdask
    from mlx_kmeans._chunked.tasks import combine_lloyd, lloyd_task

    monkeypatch.setattr(mdask, "_KEPT", {})
    now = time.monotonic()
    mdask._KEPT[("gone", 0)] = (now - mdask.KEPT_SECONDS - 1.0, {3: ["stale"]})
    mdask._KEPT[("running", 0)] = (now - 5.0, {7: ["in use"]})
    chunk = data[:500]
    shared = (random_rows(data, 10), "cpu")
    group = ([chunk], [None], [0])
    first = mdask._run_keeping(lloyd_task, combine_lloyd, *group, shared, ("new", 0), None, 1)
    assert set(mdask._KEPT) == {("running", 0), ("new", 0)}
    second = mdask._run_keeping(lloyd_task, combine_lloyd, *group, shared, ("new", 0), 1, 2)
    assert first.changed == 500 and second.changed == 0  # the same centroids: read the labels kept
    assert sorted(mdask._KEPT[("new", 0)][1]) == [1, 2]


def test_empty_clusters_follow_the_float64_reference(client):
    X, _ = make_mixture(500, 3, 4, seed=11, dtype=np.float64)
    init = np.concatenate([X[:3], X[:2]])  # duplicates: clusters empty out at once
    model = KMeans(5, init=init, tol=0.0, max_iter=100).fit(da.from_array(X, chunks=(77, 3)))
    centroids, labels, _ = reference_lloyd_relocating(X, init, max_iter=100)
    np.testing.assert_array_equal(model.labels_.compute(), labels)
    np.testing.assert_allclose(model.cluster_centers_, centroids, rtol=1e-10, atol=1e-10)


def test_sample_weight_as_a_dask_array(client, data):
    weights = np.random.default_rng(1).random(len(data))
    init = random_rows(data, 10, seed=4)
    model = KMeans(10, init=init).fit(da.from_array(data, chunks=(900, 8)), sample_weight=da.from_array(weights, chunks=1300))
    whole = kmeans(data, 10, init=init, sample_weight=weights.astype(np.float32), algorithm="lloyd")
    np.testing.assert_allclose(model.cluster_centers_, whole.centroids, rtol=1e-5, atol=1e-5)
    assert model.inertia_ == pytest.approx(whole.inertia, rel=1e-6)


@pytest.mark.parametrize("init", ["k-means||", "k-means++"])
def test_seedings_find_separated_clusters(client, data, init):
    model = KMeans(10, init=init, random_state=0).fit(da.from_array(data, chunks=(1000, 8)))
    reference = InMemoryKMeans(10, n_init=5, random_state=0).fit(data)
    assert model.inertia_ <= 1.01 * reference.inertia_
    assert model.n_iter_ >= 1 and len(model.inertia_history_) == model.n_iter_


def test_random_init_on_unclustered_data(client):
    # Random rows land in local optima on separated blobs; on uniform data every start
    # reaches about the same inertia.
    X = np.random.default_rng(6).random((3000, 2))
    model = KMeans(12, init="random", random_state=0, n_init=3).fit(da.from_array(X, chunks=(700, 2)))
    reference = InMemoryKMeans(12, n_init=5, random_state=0).fit(X)
    assert model.inertia_ <= 1.05 * reference.inertia_


def test_predict_transform_score(client, data):
    X = da.from_array(data, chunks=(1000, 8))
    model = KMeans(10, random_state=0).fit(X)
    reference = InMemoryKMeans(10, init=model.cluster_centers_, n_init=1, max_iter=1)
    reference.fit(data)
    reference.cluster_centers_ = model.cluster_centers_
    np.testing.assert_array_equal(model.predict(X).compute(), reference.predict(data))
    np.testing.assert_array_equal(model.predict(data), reference.predict(data))
    np.testing.assert_allclose(model.transform(X).compute(), reference.transform(data), rtol=1e-5, atol=1e-4)
    assert model.score(X) == pytest.approx(reference.score(data), rel=1e-6)
    assert model.score(X) == pytest.approx(-model.inertia_, rel=1e-6)
    np.testing.assert_array_equal(model.fit_predict(X).compute(), model.labels_.compute())


def test_dataframes(client, data):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    init = random_rows(data, 10)
    whole = kmeans(data.astype(np.float64), 10, init=init.astype(np.float64), algorithm="lloyd")
    frame = dd.from_pandas(pd.DataFrame(data.astype(np.float64), columns=[f"f{i}" for i in range(8)]), npartitions=3)
    model = KMeans(10, init=init).fit(frame)
    assert list(model.feature_names_in_) == [f"f{i}" for i in range(8)]
    assert model.inertia_ == pytest.approx(whole.inertia, rel=1e-6)
    with dask.config.set({"dataframe.convert-string": False}):  # keep the arrays as objects
        lists = dd.from_pandas(pd.DataFrame({"embedding": list(data.astype(np.float64))}), npartitions=4)
        model = KMeans(10, init=init).fit(lists)
    assert model.inertia_ == pytest.approx(whole.inertia, rel=1e-6)


def test_from_npy_without_persisting(client, data, tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, data)
    init = random_rows(data, 10)
    model = KMeans(10, init=init, persist=False).fit(from_npy(path, rows_per_chunk=777))
    whole = kmeans(data, 10, init=init, algorithm="lloyd")
    assert model.inertia_ == pytest.approx(whole.inertia, rel=1e-6)


def test_bad_input_raises_the_in_memory_errors(client, data):
    bad = data.copy()
    bad[3500, 2] = np.nan  # only the last chunk holds it
    with pytest.raises(ValueError, match="Input X contains NaN") as ours:
        KMeans(4).fit(da.from_array(bad, chunks=(1000, 8)))
    with pytest.raises(ValueError) as in_memory:
        InMemoryKMeans(4).fit(bad)
    assert str(ours.value) == str(in_memory.value)
    with pytest.raises(ValueError, match="Negative values"):
        KMeans(4).fit(da.from_array(data, chunks=(1000, 8)), sample_weight=-da.ones(len(data), chunks=1000))
    with pytest.raises(ValueError, match="should be >= n_clusters"):
        KMeans(5000).fit(da.from_array(data, chunks=(1000, 8)))
    with pytest.raises(ValueError, match="The .init. parameter must be"):
        KMeans(4, init="kmeans").fit(da.from_array(data, chunks=(1000, 8)))
    with pytest.raises(ValueError, match="does not match"):
        KMeans(4, init=data[:3]).fit(da.from_array(data, chunks=(1000, 8)))
    with pytest.raises(ValueError, match="features"):
        KMeans(4, random_state=0).fit(da.from_array(data, chunks=(1000, 8))).predict(data[:, :3])
    assert np.isnan(bad).sum() == 1 and np.isfinite(data).all()  # inputs untouched


def test_a_worker_killed_mid_fit(client):
    """The fit finishes with the result of an undisturbed fit (Dask recomputes the lost
    chunks elsewhere), or raises; it never hangs."""
    X, _ = make_mixture(300_000, 16, 32, seed=2, dtype=np.float32)
    init = random_rows(X, 64, seed=3)
    data = da.from_array(X, chunks=(10_000, 16))
    expected = kmeans(X, 64, init=init, algorithm="lloyd", max_iter=60, tol=0.0)
    pids = list(client.run(os.getpid).values())
    outcome = {}

    def fit():
        try:
            # Dense passes: enough work that the fit is still running when the worker dies.
            outcome["model"] = KMeans(64, init=init, max_iter=60, tol=0.0, algorithm="lloyd").fit(data)
        except Exception as exc:  # a clear error is an acceptable outcome
            outcome["error"] = exc

    thread = threading.Thread(target=fit)
    thread.start()
    time.sleep(1.0)
    assert thread.is_alive(), "the fit ended before the worker could be killed: give it more work"
    os.kill(pids[0], signal.SIGKILL)
    thread.join(timeout=240)
    assert not thread.is_alive(), "the fit hung after a worker was killed"
    if "error" in outcome:
        assert str(outcome["error"])
    else:
        model = outcome["model"]
        assert model.n_iter_ == expected.n_iter
        assert model.inertia_ == pytest.approx(expected.inertia, rel=1e-6)
    client.wait_for_workers(2, timeout=60)
