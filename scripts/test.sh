#!/usr/bin/env bash
# Installs the package with its test dependencies, then runs every check: Rust formatting
# and lints, the engine tests, the extension's stubs against the module, then the Python
# tests. pytest exits non-zero (5) when it collects no test, so an empty run fails here too.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check ".[test]"
cargo fmt --all --check
# The MLX kernel's build script uses this interpreter's MLX wheel, CMake and libclang.
export PYO3_PYTHON="${PYO3_PYTHON:-$(command -v python)}"
cargo clippy --locked --all-targets --features python -- -D warnings
# The engine tests (the MLX kernel is exercised through the Python suite).
cargo test --locked --no-default-features
# The stubs beside the package must describe the compiled module.
python -m mypy.stubtest mlx_kmeans._native
# Run from tests/ so the installed package (not the source folder) is imported.
cd tests && python -m pytest -p no:cacheprovider "$@"
