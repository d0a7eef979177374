"""How close the cpu kernels come to this machine's limits: one assignment pass (`predict`:
every row's exact nearest centroid) on the shapes of `bench.py`, for each float32 distance
kind this CPU has (`MLX_KMEANS_CPU_DOTS`: `amx`, `bf16`, `f32`, `gemm`), each in its own
process (the kind is fixed by a process's first call).

Printed per kind and shape: the median time of `--repeats` passes, the achieved GFLOP/s
(2·n·k·d per pass) and GB/s (the float32 rows read once, n·d·4 bytes), each against this
machine's limits: the memory bandwidth measured here (a NumPy copy of 1 GiB, bytes read and
written), and the nominal peak of the kind's instructions (cores × the clock /proc/cpuinfo
gives × FLOP per cycle and core: AMX-BF16 1024, AVX-512 BF16 128, AVX-512 FMA 64, from
Intel's instruction tables; `gemm` is the f32 FMA peak). The data are the Gaussian mixture of
`bench.py`; the centroids are k of its rows.

    python benchmarks/kernels.py [--workloads S C L] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from bench import WORKLOADS, make_data

FLOP_PER_CYCLE = {"amx": 1024, "bf16": 128, "f32": 64, "gemm": 64}


def cpu_flags() -> set:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def kinds() -> list:
    """The distance kinds this CPU runs (the kernel falls back to another where one is missing)."""
    flags = cpu_flags()
    found = []
    if {"amx_bf16", "amx_tile"} <= flags:
        found.append("amx")
    if "avx512_bf16" in flags:
        found.append("bf16")
    if "avx512f" in flags:
        found.append("f32")
    return found + ["gemm"]


def clock_ghz() -> float:
    with open("/proc/cpuinfo") as f:
        mhz = [float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")]
    return max(mhz) / 1e3 if mhz else float("nan")


def copy_bandwidth() -> float:
    """GB/s of a NumPy copy of 1 GiB (bytes read and written), best of 5."""
    src = np.ones(1 << 28, dtype=np.float32)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best / 1e9


def child(kind: str, workload: str, repeats: int) -> None:
    """One kind on one shape, in this process: prints a JSON line."""
    os.environ["MLX_KMEANS_CPU_DOTS"] = kind
    from mlx_kmeans import KMeans

    spec = WORKLOADS[workload]
    n, d, k = spec["n"], spec["d"], spec["k"]
    X = make_data(n, d, spec["centers"], seed=0)
    init = X[np.sort(np.random.default_rng(1).choice(n, k, replace=False))]
    est = KMeans(k, init=init, n_init=1, max_iter=1, backend="cpu").fit(X)
    est.predict(X)  # warm-up: threads, tiles, scratch
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        labels = est.predict(X)
        times.append(time.perf_counter() - start)
    print(json.dumps({"seconds": statistics.median(times), "labels_sum": int(np.asarray(labels, np.int64).sum())}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["S", "C", "L"], choices=list(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "WORKLOAD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.repeats)
        return
    cores, ghz, bandwidth = os.cpu_count(), clock_ghz(), copy_bandwidth()
    print(f"{cores} cores at {ghz:.2f} GHz (nominal); NumPy copy {bandwidth:.1f} GB/s (read + write)")
    print(f"{'shape':28s} {'kind':5s} {'ms/pass':>8s} {'GFLOP/s':>8s} {'% peak':>7s} {'GB/s':>6s} {'% copy':>7s}  labels")
    for workload in args.workloads:
        spec = WORKLOADS[workload]
        n, d, k = spec["n"], spec["d"], spec["k"]
        shape = f"{workload} {n}x{d}, k={k}"
        for kind in kinds():
            out = subprocess.run(
                [sys.executable, __file__, "--child", kind, workload, "--repeats", str(args.repeats)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip().splitlines()[-1]
            result = json.loads(out)
            seconds = result["seconds"]
            gflops = 2 * n * k * d / seconds / 1e9
            peak = cores * ghz * FLOP_PER_CYCLE[kind]
            gbs = n * d * 4 / seconds / 1e9
            print(
                f"{shape:28s} {kind:5s} {1e3 * seconds:8.2f} {gflops:8.1f} {100 * gflops / peak:6.1f}% "
                f"{gbs:6.1f} {100 * gbs / bandwidth:6.1f}%  {result['labels_sum']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
