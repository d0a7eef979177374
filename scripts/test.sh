#!/usr/bin/env bash
# Installs both distributions with the test dependencies, then runs every check: Rust
# formatting and lints, the engine tests, the extensions' stubs against the modules, then the
# Python tests. pytest exits non-zero (5) when it collects no test, so an empty run fails here too.
#
# The two wheels are built by maturin in this environment (no isolated build environment,
# whose temporary MLX would make the lints build mlx-c again): the core (`mlx-kmeans`, the
# root pyproject.toml) and the MLX kernel plugin (`mlx-kmeans-mlx`, crates/mlx), which pip
# resolves from the folder given in the same command. Both build into ./target.
set -euo pipefail
cd "$(dirname "$0")/.."
# The builds and the lints must see one interpreter, or cargo rebuilds.
export PYO3_PYTHON="${PYO3_PYTHON:-$(python -c 'import sys; print(sys.executable)')}"
pip_install() { python -m pip install --quiet --disable-pip-version-check "$@"; }
# The build requirements of both distributions, as their pyproject.toml files list them.
requirements="${TMPDIR:-/tmp}/mlx-kmeans-build-requirements.txt"
python - "$requirements" <<'PY'
import sys, tomllib
lines = []
for path in ("pyproject.toml", "crates/mlx/pyproject.toml"):
    lines += tomllib.load(open(path, "rb"))["build-system"]["requires"]
open(sys.argv[1], "w").write("\n".join(dict.fromkeys(lines)) + "\n")
PY
pip_install -r "$requirements"
# Both modules with the test-only entry points (the cargo feature `test-hooks`).
MATURIN_PEP517_ARGS="--features test-hooks" pip_install --no-build-isolation ".[test]" ./crates/mlx
cargo fmt --all --check
cargo clippy --locked --release --workspace --all-targets -- -D warnings
# The engine tests (the MLX kernel is exercised through the Python suite).
cargo test --locked --release -p mlx-kmeans
# The stubs beside each package must describe its compiled module.
python -m mypy.stubtest mlx_kmeans._native mlx_kmeans_mlx._kernel
# Run from tests/ so the installed packages (not the source folders) are imported.
cd tests && python -m pytest -p no:cacheprovider "$@"
