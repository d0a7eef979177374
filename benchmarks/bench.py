"""Benchmark suite: mlx_kmeans (backend="cpu") against faiss-cpu and scikit-learn.

Workloads (float32, generated deterministically):
  S  10k×128,  k=500,  20 Lloyd iterations, k-means++ init (faiss: its random init)
  C  100k×768, k=500,  MiniBatchKMeans with ClassKit's parameters (faiss: 25 Lloyd iterations)
  L  1M×128,   k=1024, 10 Lloyd iterations from the same random rows (per-iteration time)

Every fit runs in a fresh process (so its peak RSS is its own), peers alternate within each
repetition, and the table reports medians. Inertia is recomputed on the full data for every
peer from its centroids. GFLOP/s counts 2·n·k·d per assignment pass; the sgemm rate is NumPy's
matmul on the same shape, measured in the same run.

    python benchmarks/bench.py [--workloads S C L] [--repeats 3] [--slow]
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


WORKLOADS = {
    "S": dict(n=10_000, d=128, k=500, centers=500, iters=20),
    "C": dict(n=100_000, d=768, k=500, centers=1000, iters=25),
    "L": dict(n=1_000_000, d=128, k=1024, centers=2000, iters=10),
}

# Peers per workload; "slow" ones run only with --slow.
PEERS = {
    "S": ["mlx_kmeans", "faiss", "sklearn_kmeans", "sklearn_minibatch"],
    "C": ["mlx_kmeans_minibatch", "sklearn_minibatch", "faiss", "mlx_kmeans"],
    "L": ["mlx_kmeans", "mlx_kmeans_dense", "faiss"],
}
SLOW = {"C": ["sklearn_kmeans"], "L": ["sklearn_minibatch", "sklearn_kmeans"]}


def classkit_minibatch(k, n):
    return dict(n_clusters=k, batch_size=min(max(3 * k, 1024), n), max_iter=50, n_init=5, random_state=42)


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

    if peer == "faiss":
        import faiss  # noqa: F401
    if peer.startswith("sklearn"):
        import sklearn.cluster  # noqa: F401
    start = time.perf_counter()
    if peer == "mlx_kmeans":
        from mlx_kmeans import KMeans

        init = given if workload == "L" else "k-means++"
        est = KMeans(k, init=init, n_init=1, max_iter=iters, tol=0.0, random_state=seed, backend="cpu").fit(X)
        centroids, n_iter = np.asarray(est.cluster_centers_), est.n_iter_
    elif peer == "mlx_kmeans_dense":
        # Every row searches every centroid each iteration (no bounds): the sgemm comparison.
        from mlx_kmeans import _native

        init = given if workload == "L" else "k-means++"
        result = _native.kmeans_fit(
            X, None, n_clusters=k, init=init, n_init=1, max_iter=iters, tol=0.0, seed=seed, backend="cpu", algorithm="lloyd"
        )
        centroids, n_iter = result["centroids"], result["n_iter"]
    elif peer == "mlx_kmeans_minibatch":
        from mlx_kmeans import MiniBatchKMeans

        params = classkit_minibatch(k, len(X))
        params["random_state"] = seed
        est = MiniBatchKMeans(backend="cpu", **params).fit(X)
        centroids, n_iter = np.asarray(est.cluster_centers_), est.n_steps_
    elif peer == "faiss":
        import faiss

        km = faiss.Kmeans(X.shape[1], k, niter=iters, seed=seed + 1, max_points_per_centroid=10**9)
        if workload == "L":
            km.train(X, init_centroids=given)
        else:
            km.train(X)
        centroids, n_iter = km.centroids, iters
    elif peer == "sklearn_kmeans":
        from sklearn.cluster import KMeans

        init = given if workload == "L" else "k-means++"
        est = KMeans(k, init=init, n_init=1, max_iter=iters, tol=0.0, random_state=seed).fit(X)
        centroids, n_iter = est.cluster_centers_, est.n_iter_
    elif peer == "sklearn_minibatch":
        from sklearn.cluster import MiniBatchKMeans

        params = classkit_minibatch(k, len(X))
        params["random_state"] = seed
        est = MiniBatchKMeans(**params).fit(X)
        centroids, n_iter = est.cluster_centers_, est.n_steps_
    else:
        raise ValueError(peer)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    from mlx_kmeans import _native

    _, _, inertia = _native.assign(X, np.ascontiguousarray(centroids, dtype=np.float32))
    return dict(time=elapsed, n_iter=int(n_iter), inertia=float(inertia), rss_before=rss_before, peak_rss=peak)


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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slow", action="store_true", help="also run the slow scikit-learn peers")
    parser.add_argument("--child", nargs=4, metavar=("PEER", "WORKLOAD", "DATA", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    if args.child:
        peer, workload, data, seed = args.child
        print(json.dumps(run_one(peer, workload, data, int(seed))))
        return
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    raw = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workload in args.workloads:
            spec = WORKLOADS[workload]
            X = make_data(spec["n"], spec["d"], spec["centers"], seed=0)
            path = os.path.join(tmp, f"{workload}.npy")
            np.save(path, X)
            input_bytes = X.nbytes
            del X
            peers = PEERS[workload] + (SLOW.get(workload, []) if args.slow else [])
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
            report(workload, spec, results, rate, input_bytes)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)


def _importable(peer):
    module = {"faiss": "faiss", "sklearn_kmeans": "sklearn", "sklearn_minibatch": "sklearn"}.get(peer, "mlx_kmeans")
    try:
        __import__(module)
        return True
    except ImportError:
        print(f"{peer}: {module} is not installed, skipped")
        return False


def report(workload, spec, results, rate, input_bytes):
    n, d, k = spec["n"], spec["d"], spec["k"]
    medians = {p: statistics.median(r["time"] for r in runs) for p, runs in results.items() if runs}
    ours = "mlx_kmeans_minibatch" if workload == "C" else "mlx_kmeans"
    print(f"\n{workload}: {n}x{d} float32, k={k}; sgemm (NumPy, same shape) {rate:.0f} GFLOP/s; input {input_bytes / 2**20:.0f} MiB")
    header = f"{'peer':<22}{'time s':>9}{'iters':>7}{'inertia':>13}{'vs ours':>9}{'GFLOP/s':>9}{'% sgemm':>9}{'peak RSS':>10}{'RSS/input':>10}"
    print(header)
    for peer, runs in results.items():
        if not runs:
            continue
        t = medians[peer]
        n_iter = statistics.median(r["n_iter"] for r in runs)
        inertia = statistics.median(r["inertia"] for r in runs)
        is_lloyd = peer in ("mlx_kmeans", "mlx_kmeans_dense", "faiss", "sklearn_kmeans")
        gflops = 2.0 * n * k * d * n_iter / t / 1e9 if is_lloyd else float("nan")
        peak = statistics.median(r["peak_rss"] for r in runs)
        grown = statistics.median(r["peak_rss"] - r["rss_before"] for r in runs)
        ratio = t / medians[ours] if ours in medians else float("nan")
        print(
            f"{peer:<22}{t:>9.3f}{n_iter:>7.0f}{inertia:>13.5e}{ratio:>9.2f}{gflops:>9.1f}"
            f"{100 * gflops / rate:>8.0f}%{peak / 2**20:>8.0f}Mi{(input_bytes + grown) / input_bytes:>10.2f}"
        )
    print("(vs ours: peer time / our time; RSS/input: (input + peak growth during the fit) / input)")


if __name__ == "__main__":
    main()
