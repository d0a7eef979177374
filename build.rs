//! Run-time search path for libmlx: the extension module lives in `site-packages/mlx_kmeans/`
//! and the `mlx` wheel keeps libmlx in `site-packages/mlx/lib/`. (A dependency's build script
//! cannot set link arguments for the final artifact, so this crate does it.)

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_MLX").is_none() {
        return;
    }
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "linux" && target_os != "macos" {
        return;
    }
    let origin = if target_os == "macos" { "@loader_path" } else { "$ORIGIN" };
    println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,{origin}/../mlx/lib");
}
