#!/usr/bin/env bash
# Installs the package with its test dependencies, then runs every test: Rust, then Python.
# pytest exits non-zero (5) when it collects no test, so an empty run fails here too.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check ".[test]"
# The engine tests (the MLX kernel is exercised through the Python suite).
cargo test --locked --no-default-features
# Run from tests/ so the installed package (not the source folder) is imported.
cd tests && python -m pytest -p no:cacheprovider "$@"
