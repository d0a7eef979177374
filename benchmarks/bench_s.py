"""Workload S (10k×128 float32, k=500, 20 Lloyd iterations): mlx_kmeans against
scikit-learn (and faiss-cpu when installed), alternating, medians of several repetitions.

    python benchmarks/bench_s.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from mlx_kmeans import KMeans
from mlx_kmeans.__main__ import make_data


def run_ours(X, k, iters, seed):
    est = KMeans(k, max_iter=iters, tol=0.0, n_init=1, random_state=seed).fit(X)
    return est.n_iter_, est.inertia_


def run_sklearn(X, k, iters, seed):
    from sklearn.cluster import KMeans as SkKMeans

    est = SkKMeans(k, max_iter=iters, tol=0.0, n_init=1, random_state=seed).fit(X)
    return est.n_iter_, est.inertia_


def run_faiss(X, k, iters, seed):
    import faiss

    km = faiss.Kmeans(X.shape[1], k, niter=iters, seed=seed + 1)
    km.train(X)
    _, labels = km.index.search(X, 1)
    inertia = float(((X.astype(np.float64) - km.centroids[labels[:, 0]]) ** 2).sum())
    return iters, inertia


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    X = make_data(10_000, 128, 500, seed=0)
    k, iters = 500, 20
    runners = {"mlx_kmeans": run_ours, "sklearn": run_sklearn}
    try:
        import faiss  # noqa: F401

        runners["faiss"] = run_faiss
    except ImportError:
        print("faiss not installed: skipped")
    times = {name: [] for name in runners}
    results = {}
    for rep in range(args.repeats):
        for name, run in runners.items():  # alternate peers within each repetition
            start = time.perf_counter()
            results[name] = run(X, k, iters, seed=rep)
            times[name].append(time.perf_counter() - start)
    ours = statistics.median(times["mlx_kmeans"])
    print(f"S: 10000x128 float32, k={k}, max {iters} iterations, {args.repeats} repetitions (medians)")
    print(f"{'peer':<12}{'time s':>10}{'iters':>7}{'inertia':>14}{'peer/ours':>11}")
    for name in runners:
        t = statistics.median(times[name])
        n_iter, inertia = results[name]
        print(f"{name:<12}{t:>10.3f}{n_iter:>7}{inertia:>14.5e}{t / ours:>11.2f}")


if __name__ == "__main__":
    main()
