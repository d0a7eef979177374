"""`python -m mlx_kmeans`: cluster a generated dataset and report backend, time and inertia
(and scikit-learn's, when it is installed)."""

from __future__ import annotations

import argparse
import time

import numpy as np

from . import KMeans, __version__


def make_data(n_samples: int, n_features: int, n_centers: int, seed: int) -> np.ndarray:
    """A Gaussian mixture in float32, the same for the same arguments."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=1.0, size=(n_centers, n_features)).astype(np.float32)
    members = rng.integers(0, n_centers, size=n_samples)
    noise = rng.standard_normal((n_samples, n_features), dtype=np.float32)
    return np.ascontiguousarray(centers[members] + noise)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlx_kmeans",
        description="Cluster a generated Gaussian mixture and print backend, time, iterations "
        "and inertia; scikit-learn's KMeans runs too when it is installed.",
    )
    parser.add_argument("--n-samples", type=int, default=10_000)
    parser.add_argument("--n-features", type=int, default=128)
    parser.add_argument("-k", "--n-clusters", type=int, default=500)
    parser.add_argument("--max-iter", type=int, default=20, help="Lloyd iterations (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--no-sklearn", action="store_true", help="skip the scikit-learn comparison")
    args = parser.parse_args(argv)

    X = make_data(args.n_samples, args.n_features, max(args.n_clusters, 1), args.seed)
    print(
        f"mlx-kmeans {__version__}: {args.n_samples}x{args.n_features} float32, "
        f"k={args.n_clusters}, k-means++ init, up to {args.max_iter} Lloyd iterations"
    )
    params = dict(n_clusters=args.n_clusters, max_iter=args.max_iter, tol=0.0, n_init=1, random_state=args.seed)
    start = time.perf_counter()
    ours = KMeans(backend=args.backend, **params).fit(X)
    elapsed = time.perf_counter() - start
    print(
        f"mlx_kmeans   backend={ours.backend_:<6} time={elapsed:8.3f} s  "
        f"iterations={ours.n_iter_:<4} inertia={ours.inertia_:.6e}"
    )
    if args.no_sklearn:
        return 0
    try:
        from sklearn.cluster import KMeans as SkKMeans
    except ImportError:
        print("scikit-learn is not installed: no comparison")
        return 0
    start = time.perf_counter()
    ref = SkKMeans(**params).fit(X)
    ref_elapsed = time.perf_counter() - start
    print(
        f"scikit-learn               time={ref_elapsed:8.3f} s  "
        f"iterations={ref.n_iter_:<4} inertia={ref.inertia_:.6e}"
    )
    print(f"speed-up {ref_elapsed / elapsed:.2f}x, inertia ratio (ours / scikit-learn) {ours.inertia_ / ref.inertia_:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
