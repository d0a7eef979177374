"""How much the triangle-inequality bounds spare the cpu backend on `bench.py`'s workloads:
for the equal-work fit (k random rows of seed `--seed` as init, tol=0, the workload's
iterations at most, `algorithm="auto"`), with Hamerly's bounds (`--bounds hamerly`, the
default) or grouped ones (`--bounds grouped`, `MLX_KMEANS_CPU_BOUNDS`): the share of
row-iterations whose full search the bounds skipped, the share of rows each bounded pass
still searched (from the engine's debug log: a pass that makes the bounds, after dense
passes, searches every row), and for grouped bounds the share of all row–centroid distances
each pass computed (rows searched in full count every centroid). Also the fit's time
(one run; `bench.py` times against the peers).

    python benchmarks/bounds.py [--workloads S C L] [--mixture bench|dirichlet] [--seed 0]
                                [--bounds hamerly|grouped]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import time

import numpy as np

from bench import MIXTURES, WORKLOADS


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=["S", "C", "L"], choices=list(WORKLOADS))
    parser.add_argument("--mixture", default="bench", choices=list(MIXTURES))
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="the seed of the initial rows")
    parser.add_argument("--bounds", default="hamerly", choices=["hamerly", "grouped"])
    args = parser.parse_args()
    os.environ["MLX_KMEANS_CPU_BOUNDS"] = args.bounds
    from mlx_kmeans import KMeans

    log = io.StringIO()
    logger = logging.getLogger("mlx_kmeans")
    logger.addHandler(logging.StreamHandler(log))
    logger.setLevel(logging.DEBUG)
    for name in args.workloads:
        spec = WORKLOADS[name]
        centers = spec["k"] if args.mixture == "dirichlet" else spec["centers"]
        X = MIXTURES[args.mixture](spec["n"], spec["d"], centers, args.data_seed)
        init = X[np.sort(np.random.default_rng(args.seed).choice(len(X), spec["k"], replace=False))]
        log.seek(0)
        log.truncate()
        start = time.perf_counter()
        est = KMeans(spec["k"], init=init, n_init=1, max_iter=spec["iters"], tol=0.0, backend="cpu").fit(X)
        elapsed = time.perf_counter() - start
        searched = [int(s) for s in re.findall(r"(\d+) of \d+ rows searched all centroids", log.getvalue())]
        computed = [float(s) for s in re.findall(r"\(([\d.]+) % of all distances computed\)", log.getvalue())]
        n = spec["n"]
        skipped = sum(n - s for s in searched) / (n * est.n_iter_)
        shares = " ".join(f"{100 * s / n:.0f}" for s in searched)
        # Dense passes (before the bounds are made) compute every distance.
        dense = est.n_iter_ - len(computed)
        distances = (
            f"; distances computed by each pass (%): {' '.join(f'{c:.0f}' for c in computed)}, "
            f"{(100 * dense + sum(computed)) / est.n_iter_:.1f} % over the fit"
            if computed
            else ""
        )
        print(
            f"{name} ({args.mixture} mixture, {args.bounds} bounds): {est.n_iter_} iterations, "
            f"inertia {est.inertia_:.6e}, {elapsed:.2f} s; full searches skipped {100 * skipped:.1f} % of "
            f"row-iterations; rows searched by each bounded pass (%): {shares or 'none'}{distances}"
        )


if __name__ == "__main__":
    main()
