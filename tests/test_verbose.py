"""`verbose` prints scikit-learn's lines: compared line by line with what scikit-learn prints
for the same fit (same data and initial centres), numbers within float tolerance."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mlx_kmeans import KMeans, MiniBatchKMeans

sklearn_cluster = pytest.importorskip("sklearn.cluster")

NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def printed(capsys, fit) -> list[str]:
    capsys.readouterr()
    fit()
    return capsys.readouterr().out.splitlines()


def same_lines(ours: list[str], theirs: list[str], rtol: float = 1e-7) -> None:
    """The same lines, with the numbers in them equal to `rtol`."""
    assert len(ours) == len(theirs), (ours, theirs)
    for mine, other in zip(ours, theirs):
        assert NUMBER.sub("#", mine) == NUMBER.sub("#", other), (mine, other)
        for a, b in zip(NUMBER.findall(mine), NUMBER.findall(other)):
            np.testing.assert_allclose(float(a), float(b), rtol=rtol, atol=1e-12, err_msg=f"{mine!r} vs {other!r}")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(6, 5))
    X = centres[rng.integers(0, 6, 3000)] + rng.normal(size=(3000, 5))
    return X, X[rng.choice(len(X), 6, replace=False)].copy()


@pytest.mark.parametrize("algorithm", ["lloyd", "elkan"])
@pytest.mark.parametrize("tol", [0.0, 1e-4, 0.5])
def test_kmeans_lines_equal_scikit_learns(capsys, data, algorithm, tol):
    """Strict convergence (tol=0), a shift within the tolerance (1e-4, 0.5): the same lines."""
    X, init = data
    params = dict(n_clusters=6, init=init, n_init=1, tol=tol, algorithm=algorithm, verbose=1)
    ours = printed(capsys, lambda: KMeans(**params).fit(X))
    theirs = printed(capsys, lambda: sklearn_cluster.KMeans(**params).fit(X))
    same_lines(ours, theirs)
    assert ours[0] == "Initialization complete"
    assert ours[-1].startswith("Converged at iteration")
    assert ours[1].endswith(".") == (algorithm == "lloyd")


def test_default_algorithm_prints_scikit_learns_default_lines(capsys, data):
    """Neither side names an algorithm: the lines of scikit-learn's default ('lloyd')."""
    X, init = data
    params = dict(n_clusters=6, init=init, n_init=1, verbose=1)
    ours = printed(capsys, lambda: KMeans(**params).fit(X))
    theirs = printed(capsys, lambda: sklearn_cluster.KMeans(**params).fit(X))
    same_lines(ours, theirs)


def test_kmeans_lines_on_sparse_rows_equal_scikit_learns(capsys, data):
    """Sparse rows print the same lines, the tolerance computed as scikit-learn does there."""
    sp = pytest.importorskip("scipy.sparse")
    X, init = data
    X = sp.csr_matrix(np.where(np.abs(X) > 1.0, X, 0.0))
    params = dict(n_clusters=6, init=init, n_init=1, tol=0.5, algorithm="lloyd", verbose=1)
    ours = printed(capsys, lambda: KMeans(**params).fit(X))
    theirs = printed(capsys, lambda: sklearn_cluster.KMeans(**params).fit(X))
    same_lines(ours, theirs)
    assert "within tolerance" in ours[-1]


def test_kmeans_lines_for_each_run(capsys, data):
    X, _ = data
    lines = printed(capsys, lambda: KMeans(6, n_init=3, random_state=0, verbose=True).fit(X))
    assert lines.count("Initialization complete") == 3
    assert all(re.fullmatch(r"Iteration \d+, inertia \S+|Initialization complete|Converged at .*", line) for line in lines)


def test_minibatch_lines_follow_scikit_learns(capsys, data):
    """Mini-batches are drawn by each library's own generator, so only the shape of the lines
    is the same, and how many steps there are; a tolerance larger than any centre move stops
    both at step 2."""
    X, _ = data
    params = dict(n_clusters=6, n_init=3, batch_size=256, tol=10.0, random_state=0, verbose=1)
    ours = printed(capsys, lambda: MiniBatchKMeans(**params).fit(X))
    theirs = printed(capsys, lambda: sklearn_cluster.MiniBatchKMeans(**params).fit(X))
    assert [NUMBER.sub("#", line) for line in ours] == [NUMBER.sub("#", line) for line in theirs]
    assert ours[:2] == ["Init 1/3 with method k-means++", ours[1]] and ours[1].startswith("Inertia for init 1/3: ")
    assert ours[-1] == theirs[-1] == f"Converged (small centers change) at step 2/{100 * 3000 // 256}"


def test_minibatch_ewa_and_lack_of_improvement(capsys, data):
    X, _ = data
    lines = printed(capsys, lambda: MiniBatchKMeans(6, batch_size=100, max_no_improvement=2, random_state=1, verbose=1).fit(X))
    steps = [re.fullmatch(r"Minibatch step (\d+)/(\d+): mean batch inertia: (\S+?)(?:, ewa inertia: (\S+))?", line) for line in lines]
    steps = [m for m in steps if m]
    assert steps[0].group(4) is None and all(m.group(4) for m in steps[1:])
    alpha = min(100 * 2.0 / (3000 + 1), 1)
    ewa = float(steps[1].group(3))
    for m in steps[2:]:
        ewa = ewa * (1 - alpha) + float(m.group(3)) * alpha
        np.testing.assert_allclose(float(m.group(4)), ewa, rtol=1e-12)
    assert lines[-1] == f"Converged (lack of improvement in inertia) at step {len(steps)}/{100 * 3000 // 100}"


def test_progress_bar_instead_of_lines(capsys, data):
    X, _ = data
    KMeans(6, n_init=1, random_state=0, verbose="progress").fit(X)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "KMeans run 1" in captured.err


def test_quiet_by_default(capsys, data):
    X, _ = data
    KMeans(6, n_init=1, random_state=0).fit(X)
    MiniBatchKMeans(6, random_state=0).fit(X)
    assert capsys.readouterr().out == ""
