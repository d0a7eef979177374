#!/usr/bin/env bash
# Installs the package with its test dependencies, then runs every check: Rust formatting
# and lints, the engine tests, the extensions' stubs against the modules, then the Python
# tests. pytest exits non-zero (5) when it collects no test, so an empty run fails here too.
#
# The extensions are compiled once: pip builds them in this environment (no isolated build
# environment, whose temporary MLX would make the lints build mlx-c again), in release mode
# into ./target, and the lints and engine tests reuse that build's outputs (`--release`).
set -euo pipefail
cd "$(dirname "$0")/.."
# The build (setuptools-rust) and the lints must see one configuration, or cargo rebuilds.
export PYO3_PYTHON="${PYO3_PYTHON:-$(python -c 'import sys; print(sys.executable)')}" PYO3_BUILD_EXTENSION_MODULE=1
pip_install() { python -m pip install --quiet --disable-pip-version-check "$@"; }
# The build requirements, as pyproject.toml lists them.
python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' \
    >"${TMPDIR:-/tmp}/mlx-kmeans-build-requirements.txt"
pip_install -r "${TMPDIR:-/tmp}/mlx-kmeans-build-requirements.txt"
pip_install --no-build-isolation ".[test]"
cargo fmt --all --check
cargo clippy --locked --release --workspace --all-targets -- -D warnings
# The engine tests (the MLX kernel is exercised through the Python suite).
cargo test --locked --release -p mlx-kmeans
# The stubs beside the package must describe the compiled modules.
python -m mypy.stubtest mlx_kmeans._native mlx_kmeans._mlx
# Run from tests/ so the installed package (not the source folder) is imported.
cd tests && python -m pytest -p no:cacheprovider "$@"
