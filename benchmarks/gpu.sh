#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, CUDA 13 and PyTorch (no internet): install our wheels the
# way `pip install 'mlx-kmeans[cuda]'` does, from the wheels found in $WHEELS (the core
# `mlx_kmeans-*` and the MLX kernel plugin `mlx_kmeans_mlx-*` wheels that `maturin build
# --release` makes at the root and in crates/mlx, mlx and mlx-cuda-13 of the release the
# kernel is built against; the peers flash-kmeans and
# fastkmeans for the benchmarks): pip resolves the `cuda` extra against those wheels and the
# NVIDIA libraries already installed in this Python environment, with no library path set by
# hand. mlx-cuda-13's wheel may arrive split in parts named *.whl.part-*, in $WHEELS or in
# $PARTS (an earlier transfer): they are joined first. Then `backends()`, the GPU tests
# (tests/test_gpu.py), and benchmarks/gpu.py; with --user first, gpu_user.py (the calls users
# make) instead; with --install-only, nothing after `backends()`.
set -euo pipefail
WHEELS=${WHEELS:-.gpu}
PARTS=${PARTS:-/root/parts}
if [ ! -f /root/.installed ]; then
    mkdir -p /root/joined
    for name in $(ls "$WHEELS" "$PARTS" 2>/dev/null | grep '\.whl\.part-' | sed 's/\.part-.*//' | sort -u); do
        for part in $(ls "$WHEELS" "$PARTS" 2>/dev/null | grep -F "$name.part-" | sort -u); do
            if [ -f "$WHEELS/$part" ]; then cat "$WHEELS/$part"; else cat "$PARTS/$part"; fi
        done > /root/joined/"$name"
    done
    ours=$(ls "$WHEELS"/mlx_kmeans-*.whl)
    echo "+ pip install --no-index --find-links $WHEELS --find-links /root/joined '$ours[cuda]'"
    start=$(date +%s)
    python3 -m pip install --no-index --find-links "$WHEELS" --find-links /root/joined "$ours[cuda]"
    echo "installed in $(($(date +%s) - start)) s"
    peers=$(ls "$WHEELS"/*.whl | grep -v -e mlx_kmeans- -e mlx_kmeans_mlx- -e '/mlx-' -e '/mlx_cuda' || true)
    if [ -n "$peers" ]; then python3 -m pip install -q --no-index --no-deps $peers; fi
    touch /root/.installed
fi
python3 -m pip show mlx-kmeans mlx-kmeans-mlx mlx mlx-cuda-13 2>/dev/null | grep -E '^(Name|Version|Requires):'
python3 - <<'EOF'
import time

import numpy as np

import mlx_kmeans

for backend in mlx_kmeans.backends():
    print(f"{backend.name:6} available={backend.available} auto={backend.auto} gpu={backend.gpu}: {backend.reason}")
X = np.random.default_rng(0).normal(size=(100_000, 768)).astype(np.float32)
for attempt in ("first (compiles the kernels)", "second"):
    start = time.perf_counter()
    est = mlx_kmeans.KMeans(500, n_init=1, max_iter=20, random_state=0).fit(X)
    print(f"KMeans(500) on 100k x 768, auto, {attempt}: backend={est.backend_} "
          f"{time.perf_counter() - start:.3f} s, {est.n_iter_} iterations, inertia {est.inertia_:.6e}")
EOF
if [ "${1:-}" = "--install-only" ]; then exit 0; fi
# Correctness first: the GPU tests.
(cd tests && python3 -m pytest -p no:cacheprovider -m gpu -q test_gpu.py) || echo "GPU correctness tests FAILED"
if [ "${1:-}" = "--user" ]; then
    shift
    python3 benchmarks/gpu_user.py "$@"
else
    python3 benchmarks/gpu.py "$@"
fi
