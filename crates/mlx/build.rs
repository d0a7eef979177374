//! The run-time search path for libmlx: the extension module lives in
//! `site-packages/mlx_kmeans_mlx/` and the `mlx` wheels keep libmlx in `site-packages/mlx/lib/`.
//! (A dependency's build script cannot set link arguments for the final artifact.) Also hands
//! the MLX version mlx-sys built against to the crate (`MLX_BUILT_AGAINST`).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let origin =
        if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") { "@loader_path" } else { "$ORIGIN" };
    println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,{origin}/../mlx/lib");
    let version = std::env::var("DEP_MLX_VERSION").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=MLX_BUILT_AGAINST={version}");
}
