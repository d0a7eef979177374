"""Benchmark suite: mlx_kmeans (backend="cpu") against the CPU peers: faiss-cpu,
SuperKMeans, scikit-learn-intelex and scikit-learn (each optional; missing ones are skipped).

Workloads (float32 Gaussian mixtures, generated deterministically):
  S  10k×128,  k=500,  20 iterations
  C  100k×768, k=500,  25 iterations; also ClassKit's MiniBatchKMeans call
  L  1M×128,   k=1024, 10 iterations

Three groups of rows, each compared with our row of the same group:
  equal     the same work: the same random rows as init (SuperKMeans picks its own random
            rows), the stated iterations at most, no subsampling, no early stop (tol=0; a
            fit whose labels stop changing has converged and stops)
  default   each library's defaults for `k` clusters (k-means++ or its own init, its own
            tolerance and sampling)
  minibatch ClassKit's MiniBatchKMeans parameters (C only)
  seeding   greedy k-means++ alone (`k` centres, inertia of the centres themselves): ours
            with exact pruning and without (`MLX_KMEANS_SEEDING_PRUNE=0`: the same picks),
            scikit-learn's `kmeans_plusplus` on a fifth of the rows (multiply its time by
            five for the whole); sklearnex's defaults are in the default group

Every fit runs in a fresh process (so its peak RSS is its own), peers alternate within each
repetition, and the table reports medians. Inertia is recomputed on the full data for every
peer from its centroids. GFLOP/s counts 2·n·k·d per iteration; the sgemm rate is NumPy's
matmul on the same shape, measured in the same run.

    python benchmarks/bench.py [--workloads S C L] [--groups equal default minibatch seeding]
                               [--repeats 3] [--slow] [--json out.json]
                               [--mixture bench|dirichlet] [--data-seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def make_data(n, d, centers, seed):
    """A float32 Gaussian mixture, made in chunks (no float64 temporaries)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=1.0, size=(centers, d)).astype(np.float32)
    X = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 65536):
        end = min(n, start + 65536)
        X[start:end] = means[rng.integers(0, centers, end - start)]
        X[start:end] += rng.standard_normal((end - start, d), dtype=np.float32)
    return X


def make_dirichlet_data(n, d, centers, seed):
    """Another float32 Gaussian mixture of the same shape: `centers` true centres (k of them
    in the equal-work rows), cluster sizes drawn from a flat Dirichlet and a spread per
    cluster between 0.5 and 1.5, made in chunks."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=1.0, size=(centers, d)).astype(np.float32)
    sizes = rng.dirichlet(np.ones(centers))
    spreads = rng.uniform(0.5, 1.5, size=centers).astype(np.float32)
    X = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 65536):
        end = min(n, start + 65536)
        which = rng.choice(centers, end - start, p=sizes)
        X[start:end] = rng.standard_normal((end - start, d), dtype=np.float32)
        X[start:end] *= spreads[which, None]
        X[start:end] += means[which]
    return X


MIXTURES = {"bench": make_data, "dirichlet": make_dirichlet_data}

WORKLOADS = {
    "S": dict(n=10_000, d=128, k=500, centers=500, iters=20),
    "C": dict(n=100_000, d=768, k=500, centers=1000, iters=25),
    "L": dict(n=1_000_000, d=128, k=1024, centers=2000, iters=10),
}

# Peers per workload and group; "slow" ones run only with --slow. The first of each group
# is ours, the reference of its "vs ours" column.
GROUPS = {
    "equal": ["mlx_kmeans", "mlx_kmeans_dense", "faiss", "superkmeans", "sklearnex", "sklearn_kmeans"],
    "default": ["mlx_kmeans_default", "faiss_default", "sklearnex_default", "superkmeans_default", "sklearn_kmeans_default"],
    "minibatch": ["mlx_kmeans_minibatch", "sklearn_minibatch"],
    "seeding": ["mlx_kmeans_seeding", "mlx_kmeans_seeding_unpruned", "sklearn_kmeanspp_fifth"],
}
SLOW = {"sklearn_kmeans", "sklearn_kmeans_default", "mlx_kmeans_dense"}
# The minibatch group is ClassKit's call, on C.
WORKLOAD_GROUPS = {
    "S": ["equal", "default", "seeding"],
    "C": ["equal", "default", "minibatch", "seeding"],
    "L": ["equal", "default", "seeding"],
}
MODULES = {"faiss": "faiss", "superkmeans": "superkmeans", "sklearnex": "sklearnex", "sklearn": "sklearn"}


def classkit_minibatch(k, n, seed):
    return dict(n_clusters=k, batch_size=min(max(3 * k, 1024), n), max_iter=50, n_init=5, random_state=seed)


def run_one(peer, workload, data_path, seed):
    """Runs in a child process: one fit, timed, with its peak RSS."""
    import resource

    spec = WORKLOADS[workload]
    X = np.load(data_path)
    k, iters = spec["k"], spec["iters"]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    init_rows = np.random.default_rng(seed).choice(len(X), k, replace=False)
    given = X[np.sort(init_rows)]
    # Imports (and library loading) stay outside the timed region.
    import mlx_kmeans  # noqa: F401

    module = _module(peer)
    if module:
        __import__(module)
    if module == "sklearnex":
        import sklearnex.cluster  # noqa: F401
    start = time.perf_counter()
    centroids, n_iter = fit(peer, X, k, iters, given, seed)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    from mlx_kmeans import _native

    _, _, inertia = _native.assign(X, np.ascontiguousarray(centroids, dtype=np.float32))
    return dict(time=elapsed, n_iter=int(n_iter), inertia=float(inertia), rss_before=rss_before, peak_rss=peak)


def _module(peer):
    return next((m for prefix, m in MODULES.items() if peer.startswith(prefix)), None)


def fit(peer, X, k, iters, given, seed):
    """One fit: `(centroids, iterations)`."""
    d = X.shape[1]
    if peer == "mlx_kmeans":
        from mlx_kmeans import KMeans

        est = KMeans(k, init=given, n_init=1, max_iter=iters, tol=0.0, backend="cpu").fit(X)
        return np.asarray(est.cluster_centers_), est.n_iter_
    if peer == "mlx_kmeans_dense":
        # Every row searches every centroid each iteration (no bounds).
        from mlx_kmeans import _native

        result = _native.kmeans_fit(
            X, None, n_clusters=k, init=given, n_init=1, max_iter=iters, tol=0.0, seed=seed, backend="cpu", algorithm="lloyd"
        )
        return result["centroids"], result["n_iter"]
    if peer == "mlx_kmeans_default":
        from mlx_kmeans import KMeans

        est = KMeans(k, random_state=seed).fit(X)
        return np.asarray(est.cluster_centers_), est.n_iter_
    if peer == "mlx_kmeans_minibatch":
        from mlx_kmeans import MiniBatchKMeans

        est = MiniBatchKMeans(backend="cpu", **classkit_minibatch(k, len(X), seed)).fit(X)
        return np.asarray(est.cluster_centers_), est.n_steps_
    if peer.startswith("mlx_kmeans_seeding"):
        from mlx_kmeans import kmeans_plusplus

        os.environ["MLX_KMEANS_SEEDING_PRUNE"] = "0" if peer.endswith("_unpruned") else "1"
        return kmeans_plusplus(X, k, random_state=seed)[0], 0
    if peer == "sklearn_kmeanspp_fifth":
        from sklearn.cluster import kmeans_plusplus

        return kmeans_plusplus(X[: len(X) // 5], k, random_state=seed)[0], 0
    if peer == "faiss_default":
        # faiss's own defaults: 25 iterations from k random rows, up to 256 rows per centroid.
        import faiss

        km = faiss.Kmeans(d, k, seed=seed + 1)
        km.train(X)
        return km.centroids, km.cp.niter
    if peer == "faiss":
        import faiss

        km = faiss.Kmeans(d, k, niter=iters, seed=seed + 1, max_points_per_centroid=10**9)
        km.train(X, init_centroids=given)
        return km.centroids, iters
    if peer.startswith("superkmeans"):
        from superkmeans import SuperKMeans

        if peer == "superkmeans":
            km = SuperKMeans(
                k, d, hierarchical=False, iters=iters, sampling_fraction=1.0,
                max_points_per_cluster=10**9, early_termination=False, seed=seed,
            )
        else:
            km = SuperKMeans(k, d, seed=seed)
        centroids = km.train(X)
        stats = km.iteration_stats
        return centroids, len(stats) if isinstance(stats, list) else -1
    if peer.startswith("sklearnex") or peer.startswith("sklearn_kmeans"):
        if peer.startswith("sklearnex"):
            from sklearnex.cluster import KMeans
        else:
            from sklearn.cluster import KMeans
        if peer.endswith("_default"):
            est = KMeans(k, random_state=seed)
        else:
            est = KMeans(k, init=given, n_init=1, max_iter=iters, tol=0.0)
        est.fit(X)
        return est.cluster_centers_, est.n_iter_
    if peer == "sklearn_minibatch":
        from sklearn.cluster import MiniBatchKMeans

        est = MiniBatchKMeans(**classkit_minibatch(k, len(X), seed)).fit(X)
        return est.cluster_centers_, est.n_steps_
    raise ValueError(peer)


def sgemm_rate(n, d, k, repeats=5):
    """NumPy float32 matmul GFLOP/s on the assignment shape (n×d by d×k), best of `repeats`."""
    rng = np.random.default_rng(0)
    rows = min(n, 100_000)
    A = rng.standard_normal((rows, d), dtype=np.float32)
    B = rng.standard_normal((d, k), dtype=np.float32)
    best = min(_timed(lambda: A @ B) for _ in range(repeats))
    return 2.0 * rows * d * k / best / 1e9


def _timed(f):
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=["S", "C", "L"], choices=list(WORKLOADS))
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slow", action="store_true", help="also run scikit-learn's KMeans and our dense passes")
    parser.add_argument("--child", nargs=4, metavar=("PEER", "WORKLOAD", "DATA", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument(
        "--mixture", default="bench", choices=list(MIXTURES),
        help="bench: twice as many centres as k, equal sizes and spreads; dirichlet: k centres, sizes from a flat Dirichlet, spreads 0.5-1.5",
    )
    parser.add_argument("--data-seed", type=int, default=0, help="the mixture's seed (other data of the same shape)")
    args = parser.parse_args()
    if args.child:
        peer, workload, data, seed = args.child
        print(json.dumps(run_one(peer, workload, data, int(seed))))
        return
    from mlx_kmeans import _native

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; our cpu kernel: {_native.cpu_kernel()}; "
        f"data: the {args.mixture} mixture, seed {args.data_seed}"
    )
    raw = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workload in args.workloads:
            spec = WORKLOADS[workload]
            centers = spec["k"] if args.mixture == "dirichlet" else spec["centers"]
            X = MIXTURES[args.mixture](spec["n"], spec["d"], centers, seed=args.data_seed)
            path = os.path.join(tmp, f"{workload}.npy")
            np.save(path, X)
            input_bytes = X.nbytes
            del X
            groups = [g for g in WORKLOAD_GROUPS[workload] if g in args.groups]
            peers = [p for g in groups for p in GROUPS[g] if args.slow or p not in SLOW]
            peers = [p for p in peers if _importable(p)]
            results = {p: [] for p in peers}
            for rep in range(args.repeats):
                for peer in peers:  # alternate peers within a repetition
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", peer, workload, path, str(rep)],
                        capture_output=True, text=True,
                    )
                    if out.returncode != 0:
                        print(f"{workload} {peer} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
                        continue
                    results[peer].append(json.loads(out.stdout.strip().splitlines()[-1]))
            rate = sgemm_rate(spec["n"], spec["d"], spec["k"])
            raw[workload] = dict(results=results, sgemm_gflops=rate, input_bytes=input_bytes)
            report(workload, spec, groups, results, rate, input_bytes)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)


def _importable(peer):
    module = _module(peer) or "mlx_kmeans"
    try:
        __import__(module)
        return True
    except ImportError:
        print(f"{peer}: {module} is not installed, skipped")
        return False


def report(workload, spec, groups, results, rate, input_bytes):
    n, d, k = spec["n"], spec["d"], spec["k"]
    medians = {p: statistics.median(r["time"] for r in runs) for p, runs in results.items() if runs}
    print(f"\n{workload}: {n}x{d} float32, k={k}, {spec['iters']} iterations for equal work; "
          f"sgemm (NumPy, same shape) {rate:.0f} GFLOP/s; input {input_bytes / 2**20:.0f} MiB")
    header = f"{'peer':<24}{'time s':>9}{'iters':>7}{'inertia':>13}{'vs ours':>9}{'ms/it':>8}{'GFLOP/s':>9}{'% sgemm':>9}{'peak RSS':>10}{'RSS/input':>10}"
    for group in groups:
        ours = GROUPS[group][0]
        print(f"-- {group}")
        print(header)
        for peer in GROUPS[group]:
            runs = results.get(peer)
            if not runs:
                continue
            t = medians[peer]
            n_iter = statistics.median(r["n_iter"] for r in runs)
            inertia = statistics.median(r["inertia"] for r in runs)
            # Each run's own time per iteration (runs from other random rows take other counts).
            per_iter = statistics.median(1e3 * r["time"] / max(r["n_iter"], 1) for r in runs)
            gflops = 2.0 * n * k * d * n_iter / t / 1e9 if group == "equal" and n_iter > 0 else float("nan")
            peak = statistics.median(r["peak_rss"] for r in runs)
            grown = statistics.median(r["peak_rss"] - r["rss_before"] for r in runs)
            ratio = t / medians[ours] if ours in medians else float("nan")
            print(
                f"{peer:<24}{t:>9.3f}{n_iter:>7.0f}{inertia:>13.5e}{ratio:>9.2f}{per_iter:>8.1f}{gflops:>9.1f}"
                f"{100 * gflops / rate:>8.0f}%{peak / 2**20:>8.0f}Mi{(input_bytes + grown) / input_bytes:>10.2f}"
            )
    print("(vs ours: peer time / our time in the same group; ms/it: the median of each run's time / its iterations; RSS/input: (input + peak growth during the fit) / input)")


if __name__ == "__main__":
    main()
