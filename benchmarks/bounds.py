"""How much Hamerly's bounds spare the cpu backend on `bench.py`'s workloads: for the
equal-work fit (k random rows of seed `--seed` as init, tol=0, the workload's iterations at
most, `algorithm="auto"`), the share of row-iterations whose full search the bounds skipped,
and the share of rows each bounded pass still searched (from the engine's debug log: a pass
that makes the bounds, after dense passes, searches every row).

    python benchmarks/bounds.py [--workloads S C L] [--mixture bench|dirichlet] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import logging
import re

import numpy as np

from bench import MIXTURES, WORKLOADS


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=["S", "C", "L"], choices=list(WORKLOADS))
    parser.add_argument("--mixture", default="bench", choices=list(MIXTURES))
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="the seed of the initial rows")
    args = parser.parse_args()
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
        est = KMeans(spec["k"], init=init, n_init=1, max_iter=spec["iters"], tol=0.0, backend="cpu").fit(X)
        searched = [int(s) for s in re.findall(r"(\d+) of \d+ rows searched all centroids", log.getvalue())]
        n = spec["n"]
        skipped = sum(n - s for s in searched) / (n * est.n_iter_)
        shares = " ".join(f"{100 * s / n:.0f}" for s in searched)
        print(
            f"{name} ({args.mixture} mixture): {est.n_iter_} iterations, inertia {est.inertia_:.6e}; "
            f"full searches skipped {100 * skipped:.1f} % of row-iterations; "
            f"rows searched by each bounded pass (%): {shares or 'none'}"
        )


if __name__ == "__main__":
    main()
