"""mlx_kmeans.dask.KMeans against dask-ml's KMeans on one LocalCluster (this machine's cores).

The data is a float32 Gaussian mixture generated on the workers, chunk by chunk, and
persisted in their memory before any fit (both libraries then iterate over the same
persisted chunks). Every fit runs on a fresh cluster of `--workers` processes with
`--threads` threads each (the engine's threads and BLAS's limited to the same number), so
each worker's peak memory is that fit's own.

Rows:
  equal     the same initial centroids (random rows), `--iters` Lloyd iterations, tol=0
  default   each library's own k-means|| initialisation, `--iters` iterations at most, tol=0

Memory: each worker's peak resident size during the fit minus its resident size with the
data already persisted (what the fit itself adds), against the size of one chunk.

    python benchmarks/dask_bench.py [--n 1000000] [--d 128] [--k 256] [--iters 10]
        [--chunk-rows 65536] [--workers 2] [--threads 1] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np


def make_chunk(seed, start, rows, d, centers):
    """Rows start..start+rows of the mixture (the same for any chunking)."""
    means = np.random.default_rng(seed).normal(size=(centers, d)).astype(np.float32)
    rng = np.random.default_rng([seed, start])
    X = means[rng.integers(0, centers, rows)]
    X += rng.standard_normal((rows, d), dtype=np.float32)
    return X


def rss_now():
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def warm_up():
    import dask_ml.cluster  # noqa: F401
    import mlx_kmeans._chunked  # noqa: F401


def reset_peak():
    """Resets the kernel's peak-RSS counter of this process (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def build_data(args):
    import dask
    import dask.array as da

    parts = []
    for start in range(0, args.n, args.chunk_rows):
        rows = min(args.chunk_rows, args.n - start)
        block = dask.delayed(make_chunk)(args.seed, start, rows, args.d, args.centers)
        parts.append(da.from_delayed(block, shape=(rows, args.d), dtype=np.float32))
    return da.concatenate(parts, axis=0)


def run_one(library, row, args, init):
    from distributed import Client, LocalCluster, wait

    limits = {name: str(args.threads) for name in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    with LocalCluster(
        n_workers=args.workers,
        threads_per_worker=args.threads,
        processes=True,
        dashboard_address=None,
        memory_limit=0,
        env=limits,
    ) as cluster, Client(cluster) as client:
        X = build_data(args).persist()
        wait(X)
        # Both libraries imported on every worker first: the baseline holds the data and code.
        client.run(warm_up)
        client.run(reset_peak)
        before = client.run(rss_now)
        params = dict(n_clusters=args.k, max_iter=args.iters, tol=0.0, random_state=args.seed)
        if row == "equal":
            params["init"] = init
        if library == "mlx_kmeans":
            from mlx_kmeans.dask import KMeans

            model = KMeans(algorithm=args.algorithm, **params)
        else:
            from dask_ml.cluster import KMeans

            model = KMeans(**params)
        start = time.perf_counter()
        model.fit(X)
        seconds = time.perf_counter() - start
        after = client.run(rss_now)
        centroids = np.asarray(model.cluster_centers_, dtype=np.float32)
        # Inertia recomputed the same way for both, on the full data.
        from mlx_kmeans.dask import KMeans as Scorer

        scorer = Scorer(args.k)
        scorer.cluster_centers_, scorer.n_features_in_, scorer.backend_ = centroids, args.d, "cpu"
        inertia = -scorer.score(X)
        added = max(after[w][1] - before[w][0] for w in after)
        held = max(before[w][0] for w in before)
        return dict(library=library, row=row, seconds=seconds, inertia=inertia, n_iter=int(model.n_iter_), added_rss=added, worker_rss_with_data=held)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--centers", type=int, default=512)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--chunk-rows", type=int, default=65536)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", nargs="+", default=["equal", "default"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--algorithm", default="elkan", help="ours: 'elkan' (the default) or 'lloyd' (dense passes, as dask-ml)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    try:
        import dask_ml  # noqa: F401
    except ImportError:
        sys.exit("dask-ml is not installed: pip install dask-ml")
    rng = np.random.default_rng(args.seed + 1)
    picks = np.sort(rng.choice(args.n, args.k, replace=False))
    init = np.concatenate([make_chunk(args.seed, s, min(args.chunk_rows, args.n - s), args.d, args.centers)[picks[(picks >= s) & (picks < s + args.chunk_rows)] - s] for s in range(0, args.n, args.chunk_rows)])
    chunk_bytes = args.chunk_rows * args.d * 4
    print(
        f"{args.n}x{args.d} float32, k={args.k}, {args.iters} iterations, chunks of {args.chunk_rows} rows "
        f"({chunk_bytes / 2**20:.0f} MiB), LocalCluster {args.workers} workers x {args.threads} threads, "
        f"{os.cpu_count()} CPUs, {args.repeats} repeats (medians)"
    )
    results = []
    for row in args.rows:
        runs = {"mlx_kmeans": [], "dask-ml": []}
        for _ in range(args.repeats):
            for library in runs:
                runs[library].append(run_one(library, row, args, init))
        ours = statistics.median(r["seconds"] for r in runs["mlx_kmeans"])
        for library, items in runs.items():
            seconds = statistics.median(r["seconds"] for r in items)
            inertia = statistics.median(r["inertia"] for r in items)
            added = max(r["added_rss"] for r in items)
            held = max(r["worker_rss_with_data"] for r in items)
            summary = dict(row=row, library=library, seconds=seconds, inertia=inertia, n_iter=items[0]["n_iter"], added_rss_mib=added / 2**20, worker_rss_with_data_mib=held / 2**20, chunk_mib=chunk_bytes / 2**20, speedup_of_ours=seconds / ours)
            results.append(summary)
            print(
                f"{row:8} {library:11} {seconds:8.2f} s  iters {summary['n_iter']:3}  inertia {inertia:.6e}  "
                f"worker RSS with data {held / 2**20:7.0f} MiB, added by the fit {added / 2**20:7.0f} MiB "
                f"({added / chunk_bytes:.2f} chunks)  ours {seconds / ours:5.2f}x faster"
            )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(dict(args=vars(args), results=results), out, indent=1)


if __name__ == "__main__":
    main()
