//! Two things for the crate's own build:
//! - `cfg(mlx_kernel)`: the MLX kernel is built in (the `mlx` feature on Linux or macOS), one
//!   alias instead of the feature-and-platform condition at every use.
//! - The run-time search path for libmlx: the extension module lives in
//!   `site-packages/mlx_kmeans/` and the `mlx` wheel keeps libmlx in `site-packages/mlx/lib/`.
//!   (A dependency's build script cannot set link arguments for the final artifact.)

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(mlx_kernel)");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let mlx_platform = target_os == "linux" || target_os == "macos";
    if std::env::var_os("CARGO_FEATURE_MLX").is_none() || !mlx_platform {
        return;
    }
    println!("cargo::rustc-cfg=mlx_kernel");
    let origin = if target_os == "macos" { "@loader_path" } else { "$ORIGIN" };
    println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,{origin}/../mlx/lib");
}
