"""Lloyd iterations at scale on a CUDA GPU: our MLX backend against flash-kmeans and a plain
PyTorch loop. Run through `benchmarks/gpu.sh` on a machine with an NVIDIA GPU (it installs
the wheels and runs the GPU tests, `tests/test_gpu.py`, first).

Data: a Gaussian mixture with k/2 true centres (scale 1, noise 0.25), float32, made on the
GPU; every peer starts from the same k rows. Time per iteration is
`(T(m iterations) − T(1 iteration)) / (iterations − 1)`, so that set-up, the first
compilation and the final assignment do not count; each T is the median of `--repeats`
runs after a warm-up (one run for the two largest workloads). Each peer's centroids after
`m` iterations are scored by their float64 inertia. Our labels are checked against float64
distances to our returned centroids (a mismatch that is a float64 tie is counted apart).
`--profile` times each CUDA kernel of one of our default fits with PyTorch's profiler (CUPTI
sees MLX's kernels too) and prints achieved TFLOP/s and bandwidth. `--peers host streamed` runs
ours on NumPy input, held on the device or streamed from the host in blocks on every pass
(as data larger than the device's memory is).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import logging
import os
import statistics
import subprocess
import time

import numpy as np

# name: (rows, features, k, iterations m)
WORKLOADS = {
    "100k×768, k=500": (100_000, 768, 500, 25),
    "100k×128, k=1024": (100_000, 128, 1024, 25),
    "1M×128, k=1024": (1_000_000, 128, 1024, 25),
    "500k×768, k=1000": (500_000, 768, 1000, 25),
    "10M×128, k=4096": (10_000_000, 128, 4096, 10),
    "1M×768, k=10000": (1_000_000, 768, 10_000, 10),
}
# Largest n × k block of distances the PyTorch loop makes at once (float32 entries).
TORCH_BLOCK = 1 << 28


def versions() -> dict:
    out = {}
    for name in ("mlx", "mlx-cuda-13", "mlx-kmeans", "torch", "triton", "flash-kmeans", "flash-kmeans-mlx", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    )
    out["gpu"] = smi.stdout.strip()
    return out


def median_time(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up: compilation, autotuning, allocator growth
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def mixture(n: int, d: int, k: int, seed: int):
    import torch

    gen = torch.Generator(device="cuda").manual_seed(seed)
    means = torch.randn(max(k // 2, 1), d, device="cuda", generator=gen)
    members = torch.randint(0, len(means), (n,), device="cuda", generator=gen)
    x = means[members]
    x.add_(0.25 * torch.randn(n, d, device="cuda", generator=gen))
    return x


def nearest64(x, c):
    """Each row's nearest centroid and squared distance in float64 (blocks of rows)."""
    import torch

    c64 = c.double()
    c_norms = (c64 * c64).sum(1)
    step = max(1, (1 << 27) // len(c))
    labels, dist = [], []
    for s in range(0, len(x), step):
        xb = x[s : s + step].double()
        d = (xb * xb).sum(1, keepdim=True) - 2.0 * xb @ c64.T + c_norms[None]
        nearest = d.min(1)
        labels.append(nearest.indices)
        dist.append(nearest.values.clamp_min(0))
    return torch.cat(labels), torch.cat(dist)


FUSED = {"MLX_KMEANS_MLX_FUSED": "1"}
# The MLX-ops path (what an Apple GPU runs without custom kernels), and the same with the
# shared-source kernels in their CUDA dialect (the twin of the Metal ones).
OPS = {"MLX_KMEANS_MLX_CUDA_KERNELS": "0", "MLX_KMEANS_MLX_SHARED": "0"}
TWIN = {"MLX_KMEANS_MLX_CUDA_KERNELS": "0", "MLX_KMEANS_MLX_SHARED": "cuda"}
PEERS = ("default", "waiting", "ahead", "fused", "one", "three", "matrix", "ops", "ops-pairs", "twin", "twin-general", "host", "streamed", "torch", "flash", "flash-mlx")


def bench(name: str, repeats: int, profile: bool, chosen=PEERS) -> dict:
    import mlx.core as mx
    import torch

    from mlx_kmeans import kmeans

    n, d, k, m = WORKLOADS[name]
    x_t = mixture(n, d, k, seed=1)
    pick = torch.randperm(n, generator=torch.Generator().manual_seed(2))[:k].cuda()
    c0_t = x_t[pick].clone()
    x_np, c0_np = x_t.cpu().numpy(), c0_t.cpu().numpy()
    x_m, c0_m = mx.array(x_np), mx.array(c0_np)
    mx.eval(x_m, c0_m)
    if not {"host", "streamed"} & set(chosen):
        del x_np
    runs = 1 if n * k > 2e9 else repeats

    def ours(iterations: int, switches: dict | None = None, host: bool = False):
        """Our fit with MLX switches set for its duration; on NumPy input with `host` (copied
        to the device once, or, with `MLX_KMEANS_MLX_DEVICE_BYTES=1` as for data larger than
        the device's memory, streamed from the host in blocks on every pass)."""
        switches = switches or {}

        def run():
            os.environ.update(switches)
            try:
                x, c0 = (x_np, c0_np) if host else (x_m, c0_m)
                r = kmeans(x, k, init=c0, max_iter=iterations, tol=0.0, backend="mlx")
            finally:
                for name in switches:
                    os.environ.pop(name, None)
            return r.centroids, r.n_iter, r

        return run

    def torch_loop(iterations: int):
        def run():
            c = c0_t.clone()
            step = max(1, TORCH_BLOCK // k)
            for _ in range(iterations):
                c_norms = (c * c).sum(1)
                labels = torch.cat([(c_norms[None] - 2.0 * (x_t[s : s + step] @ c.T)).argmin(1) for s in range(0, n, step)])
                sums = torch.zeros_like(c).index_add_(0, labels, x_t)
                counts = torch.bincount(labels, minlength=k).to(c.dtype)
                c = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1.0)[:, None], c)
            torch.cuda.synchronize()
            return c.cpu().numpy(), iterations, None

        return run

    peers = {
        "default": ("mlx_kmeans (default)", ours),
        "waiting": ("mlx_kmeans (no step queued ahead: MLX_KMEANS_MLX_AHEAD=0)", lambda it: ours(it, {"MLX_KMEANS_MLX_AHEAD": "0"})),
        "ahead": ("mlx_kmeans (every step queued ahead: MLX_KMEANS_MLX_AHEAD=1)", lambda it: ours(it, {"MLX_KMEANS_MLX_AHEAD": "1"})),
        "fused": ("mlx_kmeans (fused kernel: MLX_KMEANS_MLX_FUSED=1)", lambda it: ours(it, FUSED)),
        "one": ("mlx_kmeans (fused, one float16 product: MLX_KMEANS_MLX_PRODUCTS=1)", lambda it: ours(it, {**FUSED, "MLX_KMEANS_MLX_PRODUCTS": "1"})),
        "three": ("mlx_kmeans (fused, three float16 products: MLX_KMEANS_MLX_PRODUCTS=3)", lambda it: ours(it, {**FUSED, "MLX_KMEANS_MLX_PRODUCTS": "3"})),
        "matrix": ("mlx_kmeans (distance matrix: MLX_KMEANS_MLX_FUSED=0)", lambda it: ours(it, {"MLX_KMEANS_MLX_FUSED": "0"})),
        "ops": ("mlx_kmeans (MLX ops only: the Mac's path)", lambda it: ours(it, OPS)),
        "twin": ("mlx_kmeans (MLX ops + shared kernels, CUDA dialect)", lambda it: ours(it, TWIN)),
        "ops-pairs": ("mlx_kmeans (MLX ops, pair buffer: MLX_KMEANS_MLX_PAIRS=1)", lambda it: ours(it, {**OPS, "MLX_KMEANS_MLX_PAIRS": "1"})),
        "twin-general": ("mlx_kmeans (shared kernels, no pair buffer: MLX_KMEANS_MLX_PAIRS=0)", lambda it: ours(it, {**TWIN, "MLX_KMEANS_MLX_PAIRS": "0"})),
        "host": ("mlx_kmeans (NumPy in, held on the device)", lambda it: ours(it, host=True)),
        "streamed": ("mlx_kmeans (NumPy in, streamed from the host)", lambda it: ours(it, {"MLX_KMEANS_MLX_DEVICE_BYTES": "1"}, host=True)),
        "torch": ("PyTorch loop", torch_loop),
    }
    try:
        from flash_kmeans import batch_kmeans_Euclid

        def flash(iterations: int):
            def run():
                _, c, iters = batch_kmeans_Euclid(x_t[None], k, max_iters=iterations, tol=0.0, init_centroids=c0_t[None].clone())
                torch.cuda.synchronize()
                return c[0].cpu().numpy(), int(iters), None

            return run

        peers["flash"] = ("flash-kmeans", flash)
    except Exception as exc:  # reported, not fatal
        print(f"flash-kmeans unavailable: {exc}")

    try:
        import flash_kmeans_mlx
        import flash_kmeans_mlx.ops

        # Its argmax is a Metal-only kernel; MLX's own argmax takes its place on CUDA.
        flash_kmeans_mlx.ops._fast_argmax_f16 = lambda scores, B, N, K: mx.argmax(scores, axis=-1).astype(mx.uint32)

        def flash_mlx(iterations: int):
            def run():
                _, c, iters = flash_kmeans_mlx.batch_kmeans_Euclid(x_m[None], k, max_iters=iterations, tol=0.0, init_centroids=c0_m[None])
                mx.eval(c)
                return np.array(c[0]), int(iters), None

            return run

        peers["flash-mlx"] = ("flash-kmeans-mlx (MLX ops, float16 distances)", flash_mlx)
    except Exception as exc:  # reported, not fatal
        print(f"flash-kmeans-mlx unavailable: {exc}")

    peers = dict(peers[c] for c in PEERS if c in chosen and c in peers)
    rows: dict[str, dict] = {}
    for peer, make in peers.items():
        try:
            t_m, (centroids, iters, result) = median_time(make(m), runs)
            t_1, _ = median_time(make(1), runs)
            per_iter = (t_m - t_1) / max(int(iters) - 1, 1)
            c64 = torch.as_tensor(np.asarray(centroids)).cuda()
            labels, dist = nearest64(x_t, c64)
            row = {"seconds": t_m, "one_iteration_seconds": t_1, "iterations": int(iters), "per_iteration_ms": 1e3 * per_iter, "inertia": float(dist.sum())}
            if result is not None:
                ours_labels = torch.as_tensor(np.asarray(result.labels)).cuda().long()
                wrong = ours_labels != labels
                row["labels_differing"] = int(wrong.sum())
                if bool(wrong.any()):
                    own = dist[wrong]
                    theirs = ((x_t[wrong].double() - c64[ours_labels[wrong]].double()) ** 2).sum(1)
                    row["differing_within_1e-12"] = int(((theirs - own).abs() <= 1e-12 * own.abs().clamp_min(1)).sum())
            rows[peer] = row
        except Exception as exc:
            rows[peer] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        print(name, peer, rows[peer], flush=True)
    out = {"workload": name, "n": n, "d": d, "k": k, "iterations": m, "repeats": runs, "rows": rows}
    if profile:
        out["kernels"] = kernel_profile(ours(m), n, d, k)
    return out


def kernel_profile(run, n: int, d: int, k: int) -> dict:
    """CUDA time per kernel of one fit (CUPTI through PyTorch's profiler), with achieved
    TFLOP/s for the assignment (1 or 3 float16 products per multiply-add in the fused kernel, GEMMs
    three times the width on the distance-matrix path) and GB/s for the sums."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    run()
    # The engine's DEBUG records of this fit: empty-cluster repairs (each drops a step queued
    # ahead) and whether steps were queued ahead.
    records: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("mlx_kmeans")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            _, iters, _ = run()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    repairs = sum("empty cluster" in r for r in records)
    ahead = [r for r in records if "a Lloyd step took" in r]
    print(f"  empty-cluster repairs in the fit: {repairs}; {ahead[0] if ahead else 'steps queued ahead: not decided by time'}")
    kernels = {}
    for event in prof.key_averages():
        total_us = getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0)
        if total_us <= 0:
            continue
        kernels[event.key[:90]] = {"calls": event.count, "ms_per_call": total_us / 1e3 / max(event.count, 1), "total_ms": total_us / 1e3}
    # Every step's pass and the final assignment's (or a step queued past the last); a queued
    # step that a repair drops adds one more, uncounted here (the repairs are printed above).
    passes = iters + 1
    for key, row in kernels.items():
        seconds = row["ms_per_call"] / 1e3
        if "fused_assign" in key:
            # `fused_assign_one` makes one product per multiply-add, `fused_assign` three.
            products = 1 if "fused_assign_one" in key else 3
            row["tensor_TFLOPs"] = products * 2 * n * d * k / seconds / 1e12
            row["useful_TFLOPs"] = 2 * n * d * k / seconds / 1e12
        elif "chunk_sums" in key:
            row["GB_per_s"] = (n * d * 4 + n * 12) / seconds / 1e9
    ordered = dict(sorted(kernels.items(), key=lambda kv: -kv[1]["total_ms"]))
    busy = sum(row["total_ms"] for row in ordered.values())
    print(f"  kernels of one fit ({iters} iterations): {busy:.2f} ms of GPU time in all, {busy / max(iters, 1):.3f} ms an iteration")
    gemm_ms = sum(row["total_ms"] for key, row in ordered.items() if "gemm" in key.lower())
    if gemm_ms > 0.01 * busy:
        # The distance-matrix path: per pass, one GEMM of the rows lifted to three times the width.
        tensor = 3 * 2 * n * d * k * passes / (gemm_ms / 1e3) / 1e12
        ordered["GEMMs, all"] = {"calls": 0, "ms_per_call": 0.0, "total_ms": gemm_ms, "tensor_TFLOPs": tensor, "useful_TFLOPs": tensor / 3}
        print(f"  GEMMs: {gemm_ms:.2f} ms over {passes} passes, {tensor:.1f} tensor TFLOP/s ({tensor / 3:.1f} useful)")
    for key, row in list(ordered.items())[:25]:
        extra = {kk: round(v, 1) for kk, v in row.items() if kk in ("tensor_TFLOPs", "useful_TFLOPs", "GB_per_s")}
        print(f"    {row['total_ms']:9.2f} ms  {row['calls']:4d} calls  {row['ms_per_call']:8.3f} ms/call  {key} {extra}")
    ordered["fit"] = {"empty_cluster_repairs": repairs, "queue_ahead": ahead[0] if ahead else None}
    return ordered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    # `host` and `streamed` (NumPy input) only when asked for.
    parser.add_argument("--peers", nargs="+", default=["default", "fused", "matrix", "torch", "flash"], choices=PEERS)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = {"versions": versions()}
    print(json.dumps(results["versions"]), flush=True)
    results["benchmarks"] = []
    for w in args.workloads:
        results["benchmarks"].append(bench(w, args.repeats, args.profile, args.peers))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    for b in results["benchmarks"]:
        flash = b["rows"].get("flash-kmeans", {}).get("per_iteration_ms")
        flash_mlx = b["rows"].get("flash-kmeans-mlx (MLX ops, float16 distances)", {}).get("per_iteration_ms")
        print(f"\n{b['workload']}: {b['iterations']} iterations, median of {b['repeats']}")
        for peer, row in b["rows"].items():
            if "error" in row:
                print(f"  {peer:54s} {row['error']}")
                continue
            ratio = row["per_iteration_ms"] / flash if flash else float("nan")
            ratio_mlx = row["per_iteration_ms"] / flash_mlx if flash_mlx else float("nan")
            labels = f"  labels differing {row['labels_differing']}" if "labels_differing" in row else ""
            print(
                f"  {peer:54s} {row['per_iteration_ms']:8.2f} ms/iter  /flash={ratio:5.2f}  /flash-mlx={ratio_mlx:5.2f}  total {row['seconds']:7.3f} s"
                f"  iters={row['iterations']:3d}  inertia={row['inertia']:.6e}{labels}"
            )


if __name__ == "__main__":
    main()
