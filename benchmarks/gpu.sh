#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and PyTorch (no internet): install the wheels found in $WHEELS
# (our abi3 wheel, mlx and mlx-cuda-13 of the same MLX version, flash-kmeans, fastkmeans) into
# $SITE, put the CUDA libraries that mlx-cuda-13's libmlx needs on the library path, and run
# benchmarks/gpu.py. mlx-cuda-13's wheel may arrive split in parts named *.whl.part-*, in $WHEELS
# or in $PARTS (an earlier transfer): they are joined first. The GPU tests (tests/test_gpu.py)
# run before the benchmark. Arguments go to gpu.py; with --user first, the rest go to
# gpu_user.py (the calls users make) instead.
set -euo pipefail
WHEELS=${WHEELS:-.gpu}
PARTS=${PARTS:-/root/parts}
SITE=${SITE:-/root/site}
if [ ! -f "$SITE/.installed" ]; then
    mkdir -p /root/joined
    for name in $(ls "$WHEELS" "$PARTS" 2>/dev/null | grep '\.whl\.part-' | sed 's/\.part-.*//' | sort -u); do
        for part in $(ls "$WHEELS" "$PARTS" 2>/dev/null | grep -F "$name.part-" | sort -u); do
            if [ -f "$WHEELS/$part" ]; then cat "$WHEELS/$part"; else cat "$PARTS/$part"; fi
        done > /root/joined/"$name"
    done
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
        "$WHEELS"/*.whl /root/joined/*.whl
    touch "$SITE/.installed"
fi
TORCH_SITE=$(python3 -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
NVIDIA_LIBS=$(ls -d "$TORCH_SITE"/nvidia/*/lib | tr '\n' ':')
export LD_LIBRARY_PATH="$NVIDIA_LIBS$SITE/mlx_cuda_13.libs:${LD_LIBRARY_PATH:-}"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
# Correctness first: the GPU tests (pytest must be among the carried wheels or installed).
if python3 -c 'import pytest' 2>/dev/null; then
    (cd tests && python3 -m pytest -p no:cacheprovider -m gpu -q test_gpu.py) || echo "GPU correctness tests FAILED"
else
    echo "pytest is not installed here: the GPU correctness tests (tests/test_gpu.py) did not run"
fi
if [ "${1:-}" = "--user" ]; then
    shift
    python3 benchmarks/gpu_user.py "$@"
else
    python3 benchmarks/gpu.py "$@"
fi
