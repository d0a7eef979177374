"""The runtime switches: read from the environment in one module (`mlx_kmeans._options`),
when a native call begins, and handed to the engine; a bad value is a `ValueError` naming
the variable; no other source file reads the environment."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest

from mlx_kmeans import KMeans, kmeans_plusplus
from mlx_kmeans._options import current

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "name, value",
    [
        ("MLX_KMEANS_SEEDING_PRUNE", "maybe"),
        ("MLX_KMEANS_SEEDING_SCREEN", "2"),
        ("MLX_KMEANS_CPU_DOTS", "avx2"),
        ("MLX_KMEANS_CPU_BOUNDS", "elkan"),
        ("MLX_KMEANS_MLX_FUSED", "yes"),
        ("MLX_KMEANS_MLX_PRODUCTS", "2"),
        ("MLX_KMEANS_MLX_DEVICE_BYTES", "-5"),
        ("MLX_KMEANS_MLX_SHARED", "vulkan"),
        ("MLX_KMEANS_MLX_PAIRS", "both"),
        ("MLX_KMEANS_MLX_SPLIT", "on"),
    ],
)
def test_a_bad_value_names_its_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    X = np.random.default_rng(0).random((50, 3))
    with pytest.raises(ValueError, match=name):
        KMeans(3, n_init=1, random_state=0).fit(X)


def test_defaults_when_nothing_is_set(monkeypatch):
    for name in list(os.environ):
        if name.startswith("MLX_KMEANS_"):
            monkeypatch.delenv(name)
    options = current()
    assert options.backend == "" and options.cpu_dots is None
    assert options.seeding_prune is True and options.seeding_screen is None
    assert options.mlx_cuda_kernels and options.mlx_share
    assert options.mlx_fused is options.mlx_ahead is options.mlx_device_bytes is options.mlx_shared is None
    assert options.mlx_pairs is None and options.mlx_split is False and options.mlx_products is None


def test_a_switch_set_between_calls_takes_effect_at_the_next_call(monkeypatch, caplog):
    # Pruning logs what it skipped; with MLX_KMEANS_SEEDING_PRUNE=0 the same picks come
    # without it, in the same process.
    rng = np.random.default_rng(1)
    X = (rng.normal(0, 4, (20, 8))[rng.integers(0, 20, 3000)] + rng.standard_normal((3000, 8))).astype(np.float32)
    picks = {}
    for prune in ("1", "0", "1"):
        monkeypatch.setenv("MLX_KMEANS_SEEDING_PRUNE", prune)
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="mlx_kmeans"):
            _, indices = kmeans_plusplus(X, 40, random_state=3)
        logged = [r.getMessage() for r in caplog.records if "k-means++ pruning" in r.getMessage()]
        assert (len(logged) == 1) == (prune == "1"), (prune, logged)
        picks.setdefault(prune, indices.tolist())
    assert picks["1"] == picks["0"]


def test_the_environment_is_read_in_one_module():
    sources = [*ROOT.glob("src/**/*.rs"), *ROOT.glob("crates/*/src/**/*.rs"), *ROOT.glob("python/**/*.py")]
    assert len(sources) > 50, "the source tree is where this test expects it"
    reads = re.compile(r"std::env::var|os\.environ|os\.getenv|getenv\(")
    readers = [p.relative_to(ROOT).as_posix() for p in sources if reads.search(p.read_text())]
    assert readers == ["python/mlx_kmeans/_options.py"], readers
