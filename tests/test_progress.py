"""verbose="progress": a tqdm progress bar per run with the current inertia, and the kept
history (verbose=1 prints scikit-learn's lines instead: test_verbose.py)."""

import numpy as np
import pytest
from conftest import make_mixture

from mlx_kmeans import KMeans, MiniBatchKMeans, kmeans


@pytest.fixture
def X():
    return make_mixture(2000, 5, 6, seed=3, dtype=np.float32)[0]


def final_inertia_shown(err: str) -> float:
    return float(err.rsplit("inertia=", 1)[1].split("]")[0])


def test_kmeans_bar_per_run_with_inertia(X, capsys):
    km = KMeans(6, n_init=2, max_iter=50, random_state=0, verbose="progress").fit(X)
    err = capsys.readouterr().err
    assert "KMeans run 1" in err and "KMeans run 2" in err
    # The kept run's history is the per-iteration inertia; one of the bars ends on its last value.
    assert len(km.inertia_history_) == km.n_iter_
    assert f"{km.n_iter_}/50" in err
    shown = [float(part.split("]")[0]) for part in err.split("inertia=")[1:]]
    assert any(np.isclose(v, km.inertia_history_[-1], rtol=1e-5) for v in shown)


def test_minibatch_and_function_bars(X, capsys):
    mb = MiniBatchKMeans(6, batch_size=256, max_iter=3, random_state=0, verbose="progress").fit(X)
    err = capsys.readouterr().err
    assert "MiniBatchKMeans run 1" in err and "step" in err
    assert np.isclose(final_inertia_shown(err), mb.inertia_history_[-1], rtol=1e-5)
    result = kmeans(X, 6, verbose="progress")
    err = capsys.readouterr().err
    assert "kmeans run 1" in err and f"{result.n_iter}/300" in err


def test_quiet_by_default(X, capsys):
    KMeans(6, n_init=1, random_state=0).fit(X)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_estimators_show_an_html_repr_in_notebooks():
    pytest.importorskip("sklearn")
    html = KMeans(12, random_state=0)._repr_html_()
    assert "KMeans" in html and "n_clusters" in html and "<div" in html
    assert "MiniBatchKMeans" in MiniBatchKMeans(3)._repr_html_()
