"""Greedy k-means++ with exact pruning (a row whose nearest chosen centre is at least twice
its distance from every candidate is not measured) and, where the CPU has 8-bit dot products
(AVX512-VNNI), the screen (a row whose distances from an 8-bit copy, less their error bound,
keep every candidate at or beyond its closest distance is not measured in float32) picks
exactly the rows the unpruned greedy k-means++ picks for the same seed, on the cpu backend's
every distance kernel (`MLX_KMEANS_CPU_DOTS`, read once per process: each kernel runs in a
child), with the screen forced on (`MLX_KMEANS_SEEDING_SCREEN=1`: by default it runs on data
of 8 MiB or more) and off (`0`). Cases: float32 and
float64, weights with zeros, a large common offset, duplicated rows, few and many features,
k close to the number of distinct rows. `MLX_KMEANS_SEEDING_PRUNE=0` turns both off."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# The children's start: the package, and the `mlx_kmeans` logger's records kept in `records`.
PRELUDE = r"""
import json, logging, os, sys
import numpy as np
from mlx_kmeans import kmeans_plusplus
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
logging.getLogger("mlx_kmeans").addHandler(Keep())
logging.getLogger("mlx_kmeans").setLevel(logging.DEBUG)
"""

CHILD = PRELUDE + r"""
from mlx_kmeans._backend import native

def mixture(n, d, centres, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    c = rng.normal(0.0, 4.0, size=(centres, d))
    return (c[rng.integers(0, centres, n)] + rng.standard_normal((n, d))).astype(dtype)

cases = {}
rng = np.random.default_rng(5)
for n, d, k in [(3000, 5, 60), (4000, 24, 150), (2500, 130, 90), (3000, 64, 100)]:
    X = mixture(n, d, k // 2, n)
    w = rng.uniform(0.0, 3.0, n).astype(np.float32)
    w[::7] = 0.0
    cases[f"{n}x{d} k={k}"] = (X, k, None)
    cases[f"{n}x{d} k={k} weights"] = (X, k, w)
    cases[f"{n}x{d} k={k} offset"] = (X + np.float32(1e3), k, None)
    cases[f"{n}x{d} k={k} float64"] = (X.astype(np.float64), k, None)
    dups = np.repeat(X[: n // 10], 10, axis=0)
    cases[f"{n}x{d} k={k} duplicates"] = (dups, min(k, n // 10), None)
out = {"kernel": native().cpu_kernel(), "cases": {}, "screens": {}}
for name, (X, k, w) in cases.items():
    picks = []
    for prune in ("1", "0"):
        os.environ["MLX_KMEANS_SEEDING_PRUNE"] = prune
        centres, indices = kmeans_plusplus(X, k, sample_weight=w, random_state=11)
        picks.append(indices.tolist())
    out["cases"][name] = picks
    out["screens"][name] = [m for m in records if "k-means++ screening" in m]
    records.clear()
print(json.dumps(out))
"""


def vnni():
    """Whether this CPU has the screen's 8-bit dot products (Linux's flags)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":")[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return {"avx512f", "avx512bw", "avx512_vnni"} <= set(flags)


@pytest.mark.parametrize("screen", ["1", "0"])
@pytest.mark.parametrize("kind", ["auto", "gemm", "f32", "bf16"])
def test_pruned_kmeans_plusplus_picks_the_unpruned_rows(kind, screen):
    env = dict(os.environ, MLX_KMEANS_BACKEND="cpu", MLX_KMEANS_SEEDING_SCREEN=screen)
    if kind != "auto":
        env["MLX_KMEANS_CPU_DOTS"] = kind
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["cases"]
    # The asked kernel ran (one this CPU lacks falls back to the automatic choice).
    if kind != "auto":
        from mlx_kmeans._backend import native

        assert report["kernel"] in ((kind,) if kind == "gemm" else (kind, native().cpu_kernel())), report["kernel"]
    for name, (pruned, unpruned) in report["cases"].items():
        assert pruned == unpruned, f"{name} on the {report['kernel']} kernel: picks differ"
        assert len(set(unpruned)) == len(unpruned), name
    # The screen runs where the CPU has 8-bit dot products, for float32 rows of 32 features
    # or more (once per fit, logged when it ends), with every kernel; it skips rows unless a
    # large offset makes the float32 kernel's own error bound wider than the clusters.
    for name, logged in report["screens"].items():
        wide = int(name.split("x")[1].split()[0]) >= 32 and "float64" not in name
        if screen == "1" and vnni() and wide:
            assert len(logged) == 1, (name, logged)
            if "offset" not in name:
                assert int(logged[0].split(":")[1].split()[0]) > 0, (name, logged)
        else:
            assert logged == [], (name, report["kernel"], screen, logged)


SEPARATED = PRELUDE + r"""
rng = np.random.default_rng(2)
centres = rng.normal(0.0, 20.0, size=(20, 16))
X = (centres[rng.integers(0, 20, 20_000)] + rng.standard_normal((20_000, 16))).astype(np.float32)
picks = {}
for prune in ("1", "0"):
    os.environ["MLX_KMEANS_SEEDING_PRUNE"] = prune
    picks[prune] = kmeans_plusplus(X, 200, random_state=3)[1].tolist()
print(json.dumps({"picks": picks, "log": [m for m in records if "k-means++ pruning" in m]}))
"""


def test_pruning_skips_most_rows_of_separated_clusters():
    """On well-separated clusters, once every cluster has a centre nearly every row is
    skipped: the log (`mlx_kmeans`, DEBUG) reports the fraction of candidate distances not
    computed, and the picks equal the unpruned ones."""
    env = dict(os.environ, MLX_KMEANS_BACKEND="cpu")
    done = subprocess.run([sys.executable, "-c", SEPARATED], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report["log"]) == 1, report["log"]  # the unpruned run reports nothing
    skipped = float(report["log"][0].split(":")[1].split("%")[0])
    assert skipped > 50.0, report["log"][0]
    assert report["picks"]["1"] == report["picks"]["0"]


SIZES = PRELUDE + r"""
rng = np.random.default_rng(4)
out = {}
for n, d in [(3000, 64), (12_000, 192)]:
    centres = rng.normal(0.0, 4.0, size=(40, d))
    X = (centres[rng.integers(0, 40, n)] + rng.standard_normal((n, d))).astype(np.float32)
    records.clear()
    kmeans_plusplus(X, 60, random_state=1)
    out[f"{X.nbytes}"] = [m for m in records if "k-means++ screening" in m]
print(json.dumps(out))
"""


def test_screen_by_default_only_on_data_past_the_caches():
    """Without the switch the screen runs on float32 data of 8 MiB or more (where reading the
    rows is what a step costs), not on smaller data."""
    env = dict(os.environ, MLX_KMEANS_BACKEND="cpu")
    env.pop("MLX_KMEANS_SEEDING_SCREEN", None)
    done = subprocess.run([sys.executable, "-c", SIZES], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for size, logged in report.items():
        expected = 1 if vnni() and int(size) >= 8 << 20 else 0
        assert len(logged) == expected, (size, logged)
