"""Sparse rows: KMeans on a TF-IDF-like CSR matrix against scikit-learn, in one process.

Data: `--rows` × `--cols` (default 100k × 50k), `--density` 0.2 % nonzeros (`density × cols`
random columns a row) with exponential values, rows scaled to unit norm (as TF-IDF is), float64, int32 indices. Two calls:
- Lloyd from the same initial centres (rows of X moved slightly, so that no row is tied
  between centres), `--iterations` iterations, tol=0: time per fit, iterations, inertia,
  and how many labels differ from scikit-learn's;
- the estimators' defaults, `KMeans(k, random_state=0)`: k-means++ and Lloyd to convergence;
- `MiniBatchKMeans(k, random_state=0)`, defaults (batches of 1024 rows, early stopping):
  each side's own random batches, so the inertias are compared, not the labels.
Times are medians of `--repeats` runs; ratios are scikit-learn's time over ours.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import scipy.sparse as sp


def tfidf_like(n: int, d: int, density: float, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    per_row = max(int(round(density * d)), 1)
    rows = np.repeat(np.arange(n), per_row)
    cols = rng.integers(0, d, size=n * per_row)
    # Repeated (row, column) pairs are summed into one entry, as for a term counted twice.
    X = sp.coo_matrix((rng.exponential(size=n * per_row), (rows, cols)), shape=(n, d)).tocsr()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(1))).ravel()
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ X)


def timed(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=50_000)
    parser.add_argument("--density", type=float, default=0.002)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from sklearn.cluster import KMeans as SkKMeans
    from sklearn.cluster import MiniBatchKMeans as SkMiniBatchKMeans

    from mlx_kmeans import KMeans, MiniBatchKMeans

    X = tfidf_like(args.rows, args.cols, args.density, seed=0)
    rng = np.random.default_rng(1)
    init = X[rng.choice(args.rows, args.k, replace=False)].toarray() + rng.uniform(0, 1e-3, (args.k, args.cols))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; X {X.shape}, nnz {X.nnz} "
          f"({X.nnz / X.shape[0] / X.shape[1]:.2%}), k={args.k}")
    lloyd = dict(n_clusters=args.k, init=init, n_init=1, max_iter=args.iterations, tol=0.0)
    calls = {
        f"Lloyd, same init, {args.iterations} iterations": (lambda: KMeans(**lloyd).fit(X), lambda: SkKMeans(**lloyd).fit(X)),
        f"defaults: KMeans({args.k}, random_state=0)": (
            lambda: KMeans(args.k, random_state=0).fit(X),
            lambda: SkKMeans(args.k, random_state=0).fit(X),
        ),
        f"defaults: MiniBatchKMeans({args.k}, random_state=0)": (
            lambda: MiniBatchKMeans(args.k, random_state=0).fit(X),
            lambda: SkMiniBatchKMeans(args.k, random_state=0).fit(X),
        ),
    }
    for name, (ours_fn, theirs_fn) in calls.items():
        ours_t, ours = timed(ours_fn, args.repeats)
        theirs_t, theirs = timed(theirs_fn, args.repeats)
        differing = int((ours.labels_ != theirs.labels_).sum()) if "same init" in name else None
        print(f"{name}: ours {ours_t:.2f} s ({ours.n_iter_} iterations, inertia {ours.inertia_:.6f}); "
              f"scikit-learn {theirs_t:.2f} s ({theirs.n_iter_} iterations, inertia {theirs.inertia_:.6f}); "
              f"scikit-learn / ours = {theirs_t / ours_t:.2f}" + (f"; labels differing {differing}" if differing is not None else ""),
              flush=True)


if __name__ == "__main__":
    main()
