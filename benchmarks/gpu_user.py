"""The calls users make, timed on a CUDA GPU: estimator defaults, ClassKit's MiniBatchKMeans
call, and Lloyd iterations, on clustered data (a Gaussian mixture whose true centre count is
k/2, so that clusters empty out as they do on real embeddings) and on standard normal data.
Run through `benchmarks/gpu.sh --user` (it installs the wheels and sets the library path).

Each call runs once as a warm-up, then is timed as the median of `--repeats` runs (one run
when the warm-up took over 3 s; the warm-up itself when it took over 30 s, `repeats` 0). Each row lists MLX array input
and NumPy input, the MLX-ops path (`MLX_KMEANS_MLX_CUDA_KERNELS=0`, what Apple GPUs run), and
the target it is held to. Lloyd rows add a plain PyTorch loop and flash-kmeans as peers, from
the same initial centroids. `--profile` prints the engine's debug log (phase timings) of one
more run of each call with MLX array input, after the timed ones (so compiled kernels are warm).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time

import numpy as np

from gpu import versions

# name: (rows, features, k, call, target in seconds)
CALLS = {
    "C minibatch (ClassKit)": (100_000, 768, 500, "minibatch", 0.3),
    "C KMeans defaults": (100_000, 768, 500, "kmeans", 0.25),
    "500k KMeans defaults": (500_000, 768, 1000, "kmeans", 1.5),
    "C Lloyd, 25 iterations": (100_000, 768, 500, "lloyd", 25 * 0.003),
    "1M×128 Lloyd, 25 iterations": (1_000_000, 128, 1024, "lloyd", None),
}
LLOYD_ITERATIONS = 25
# What the MLX-ops path (the Mac's) is held to, in seconds, where it has its own target.
OPS_TARGETS = {"C minibatch (ClassKit)": 0.5, "C KMeans defaults": 0.25, "500k KMeans defaults": 2.0}


def dataset(kind: str, n: int, d: int, k: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    if kind == "normal":
        return rng.standard_normal((n, d), dtype=np.float32)
    centres = rng.normal(0.0, 1.0, size=(max(k // 2, 1), d)).astype(np.float32)
    members = rng.integers(0, len(centres), size=n)
    return centres[members] + 0.25 * rng.standard_normal((n, d), dtype=np.float32)


def timed(fn, repeats: int):
    """Median seconds of `repeats` runs after a warm-up (compilation, autotuning, allocator
    growth); one timed run when the warm-up took over 3 s, none when it took over 30 s."""
    start = time.perf_counter()
    result = fn()
    first = time.perf_counter() - start
    if first > 30.0:
        return first, 0, result
    times = []
    for _ in range(1 if first > 3.0 else repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), len(times), result


def ours(call: str, k: int, init):
    import mlx.core as mx

    from mlx_kmeans import KMeans, MiniBatchKMeans, kmeans

    def run(X):
        if call == "minibatch":
            est = MiniBatchKMeans(n_clusters=k, batch_size=1536, max_iter=50, n_init=5, random_state=42).fit(X)
            extra = {"n_steps": int(est.n_steps_)}
        elif call == "kmeans":
            est = KMeans(k, random_state=0).fit(X)
            extra = {"n_iter": int(est.n_iter_)}
        else:
            r = kmeans(X, k, init=init, max_iter=LLOYD_ITERATIONS, tol=0.0)
            mx.eval(r.centroids) if isinstance(r.centroids, mx.array) else None
            return {"inertia": float(r.inertia), "n_iter": int(r.n_iter), "backend": r.backend}
        if isinstance(est.cluster_centers_, mx.array):
            mx.eval(est.cluster_centers_)
        return {"inertia": float(est.inertia_), "backend": est.backend_, **extra}

    return run


def peers(x_t, c0_t, k: int):
    import torch

    def torch_loop():
        c = c0_t.clone()
        n = x_t.shape[0]
        for _ in range(LLOYD_ITERATIONS):
            labels = ((c * c).sum(1)[None, :] - 2.0 * (x_t @ c.T)).argmin(1)
            sums = torch.zeros_like(c).index_add_(0, labels, x_t)
            counts = torch.zeros(k, device="cuda").index_add_(0, labels, torch.ones(n, device="cuda"))
            c = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1.0)[:, None], c)
        torch.cuda.synchronize()
        return {"n_iter": LLOYD_ITERATIONS}

    out = {"PyTorch loop": torch_loop}
    try:
        from flash_kmeans import batch_kmeans_Euclid

        def flash():
            _, _, iters = batch_kmeans_Euclid(x_t[None], k, max_iters=LLOYD_ITERATIONS, tol=0.0, init_centroids=c0_t[None].clone())
            torch.cuda.synchronize()
            return {"n_iter": int(iters)}

        out["flash-kmeans"] = flash
    except Exception as exc:  # reported, not fatal
        logging.warning("flash-kmeans unavailable: %s", exc)
    return out


def with_env(name: str, value: str, fn):
    def run(*args):
        os.environ[name] = value
        try:
            return fn(*args)
        finally:
            del os.environ[name]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", nargs="+", default=list(CALLS), choices=list(CALLS))
    parser.add_argument("--kinds", nargs="+", default=["mixture", "normal"], choices=["mixture", "normal"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    import mlx.core as mx
    import torch

    results = {"versions": versions(), "rows": []}
    print(json.dumps(results["versions"]), flush=True)
    for name in args.calls:
        n, d, k, call, target = CALLS[name]
        for kind in args.kinds:
            X = dataset(kind, n, d, k)
            init = X[np.random.default_rng(11).choice(n, k, replace=False)].copy()
            x_m = mx.array(X)
            mx.eval(x_m)
            run = ours(call, k, mx.array(init) if call == "lloyd" else None)
            variants = {
                "ours, MLX array in": lambda: run(x_m),
                "ours, NumPy in": lambda: run(X),
                "ours, MLX array in, MLX ops only": with_env("MLX_KMEANS_MLX_CUDA_KERNELS", "0", lambda: run(x_m)),
                "ours, MLX array in, MLX ops + shared kernels (CUDA twin)": with_env(
                    "MLX_KMEANS_MLX_SHARED", "cuda", with_env("MLX_KMEANS_MLX_CUDA_KERNELS", "0", lambda: run(x_m))
                ),
            }
            if call != "lloyd" and n <= 100_000:
                # The automatic choice must never be slower than this.
                variants["cpu backend, NumPy in"] = with_env("MLX_KMEANS_BACKEND", "cpu", lambda: run(X))
            if call == "lloyd":
                variants["ours, NumPy in"] = lambda: ours(call, k, init)(X)
                x_t, c0_t = torch.from_numpy(X).cuda(), torch.from_numpy(init).cuda()
                variants.update(peers(x_t, c0_t, k))
            for variant, fn in variants.items():
                try:
                    seconds, repeats, info = timed(fn, args.repeats)
                    row = {"call": name, "data": kind, "variant": variant, "seconds": seconds, "repeats": repeats, **info}
                    if target is not None and variant.startswith("ours"):
                        bound = OPS_TARGETS.get(name, target * 3) if "MLX ops" in variant else target
                        row["target"] = bound
                        row["met"] = seconds <= bound
                except Exception as exc:
                    row = {"call": name, "data": kind, "variant": variant, "error": f"{type(exc).__name__}: {exc}"[:300]}
                results["rows"].append(row)
                print(json.dumps(row), flush=True)
            if args.profile:
                handler = logging.StreamHandler()
                handler.setFormatter(logging.Formatter("  [%(name)s %(relativeCreated)d ms] %(message)s"))
                log = logging.getLogger("mlx_kmeans")
                log.addHandler(handler)
                log.setLevel(logging.DEBUG)
                for label, variant in variants.items():
                    if label.startswith("ours, MLX array in"):
                        print(f"profile: {name}, {kind}, {label}", flush=True)
                        variant()
                log.removeHandler(handler)
                log.setLevel(logging.WARNING)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
