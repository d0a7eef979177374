"""Run by test_interrupt.py in a child process: `python interrupted_child.py BACKEND PHASE`.

Prepares a call that runs for far longer than the test waits, prints `ready` just before it,
and reports what happened once SIGINT arrives: `interrupted fitted=<bool>` (whether the
estimator gained fitted attributes), then `refit ok` after a small fit in the same process."""

from __future__ import annotations

import logging
import sys
import time

import numpy as np

import mlx_kmeans as mk


class SlowHandler(logging.Handler):
    """Keeps Python busy in the log bridge, where a Ctrl-C used to be raised and lost."""

    def emit(self, record):
        time.sleep(0.002)


def main(backend: str, phase: str) -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200_000, 32), dtype=np.float32)
    forever = dict(n_init=10**6, max_iter=10**6, tol=0.0)
    call = None
    if phase == "init":
        # k-means++ over 200k rows for 20000 centres: minutes of seeding.
        est = mk.KMeans(20_000, n_init=1, max_iter=1, random_state=0, backend=backend)
    elif phase in ("lloyd", "lloyd-verbose", "lloyd-logging"):
        est = mk.KMeans(50, random_state=0, verbose=phase == "lloyd-verbose", backend=backend, **forever)
        if phase == "lloyd-logging":
            logger = logging.getLogger("mlx_kmeans")
            logger.setLevel(logging.DEBUG)
            logger.addHandler(SlowHandler())
    elif phase == "minibatch":
        est = mk.MiniBatchKMeans(
            50, max_iter=10**6, tol=0.0, max_no_improvement=None, random_state=0, backend=backend
        )
    elif phase == "predict":
        est = mk.KMeans(4000, init="random", n_init=1, max_iter=1, random_state=0, backend=backend).fit(X[:8000])
        big = np.concatenate([X] * 4)

        def call():
            for _ in range(10**6):
                est.predict(big)

    else:
        raise SystemExit(f"unknown phase {phase}")
    fitted_before = hasattr(est, "cluster_centers_")
    print("ready", flush=True)
    try:
        if call is None:
            est.fit(X)
        else:
            call()
        print("finished without an interrupt", flush=True)
    except KeyboardInterrupt:
        fitted = hasattr(est, "cluster_centers_") and not fitted_before
        print(f"interrupted fitted={fitted}", flush=True)
    logging.getLogger("mlx_kmeans").handlers.clear()
    again = mk.KMeans(3, n_init=1, random_state=0, backend=backend).fit(X[:2000])
    assert again.cluster_centers_.shape == (3, 32)
    print("refit ok", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
