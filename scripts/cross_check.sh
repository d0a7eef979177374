#!/usr/bin/env bash
# Type-checks every crate of the workspace for the platforms this machine cannot run: macOS
# on Apple silicon (aarch64-apple-darwin, the platform the project exists for) and ARM Linux
# servers (aarch64-unknown-linux-gnu). `cargo check` builds the standard library for each
# target from Debian's rust-web-src with Debian's rustc-web (nothing is downloaded at build
# time); the MLX bindings come from mlx-c's headers without an MLX library for the target
# (crates/mlx-sys says so in a warning). Nothing is linked, so nothing here runs on a Mac:
# it proves the Rust compiles there, cfg(target_os = "macos") lines included.
#
#   bash scripts/cross_check.sh [TARGET...]     (default: both targets above)
set -euo pipefail
cd "$(dirname "$0")/.."
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(aarch64-apple-darwin aarch64-unknown-linux-gnu)
rustc_web=/usr/bin/rustc
if ! "$rustc_web" --version 2>/dev/null | grep -q '^rustc 1\.9[6-9]\|^rustc 1\.[1-9][0-9][0-9]' || [ ! -d /usr/lib/rustlib/src/rust/library ]; then
    echo "cross_check: installing Debian's rustc-web and rust-web-src" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rustc-web rust-web-src >/dev/null
fi
# bindgen reads mlx-c's headers with libclang: the plugin's build requirement provides it.
python -c 'import clang' 2>/dev/null || python -m pip install --quiet --disable-pip-version-check 'libclang>=16'
# -Zbuild-std on a released compiler; PyO3 needs only the Python version when cross-checking
# (abi3); the MLX bindings are generated with the build environment's libclang.
export RUSTC="$rustc_web" RUSTC_BOOTSTRAP=1 PYO3_CROSS_PYTHON_VERSION=3.12
export PYO3_PYTHON="${PYO3_PYTHON:-$(python -c 'import sys; print(sys.executable)')}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/cross"
# Only the host's build scripts and proc macros are compiled here (the target's crates are only
# checked): the dev profile's optimized dependencies (Cargo.toml, for local tests) made them
# take most of the time; unoptimized and without debug information they build several times
# faster and check the same code.
unoptimized=(--config 'profile.dev.package."*".opt-level=0' --config profile.dev.debug=0)
for target in "${targets[@]}"; do
    echo "cross_check: cargo check --workspace --all-targets --target $target" >&2
    start=$SECONDS
    cargo check --locked --workspace --all-targets --target "$target" -Zbuild-std=std,panic_abort,test "${unoptimized[@]}"
    echo "cross_check: $target clean in $((SECONDS - start)) s" >&2
done
