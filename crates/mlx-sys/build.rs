//! Builds mlx-c against the libmlx of the installed `mlx` Python wheels.
//!
//! 1. Finds the wheel's prefix (`<site-packages>/mlx`: `lib/libmlx.*`, headers, CMake config)
//!    through the Python interpreter that builds the extension (`PYO3_PYTHON`, else `python3`).
//! 2. Obtains mlx-c's sources from the crates.io `mlx-sys` package through cargo (nothing
//!    third-party is kept in this repository) and copies them to OUT_DIR.
//! 3. Applies portability fixes there: half-precision typedefs on every architecture, no
//!    `<format>` (GCC 12 lacks it), no examples.
//! 4. Builds mlx-c (CMake, `MLX_C_USE_SYSTEM_MLX=ON`) as a static library, generates the
//!    bindings (bindgen, libclang from the `libclang` wheel when no system one is set), and
//!    links mlxc statically, libmlx dynamically.
//!
//! Where no MLX library for the target is found (a type check for another platform, such as
//! `cargo check --target aarch64-apple-darwin` on Linux, or no MLX installed), it says so in a
//! cargo warning and generates the bindings only, as documentation builds of `-sys` crates
//! do: no CMake, nothing to link. The C API has the same layout on every 64-bit target the
//! project checks, so the host's view of the headers serves.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const UPSTREAM_VERSION: &str = "0.7.0";

fn main() {
    for var in ["PYO3_PYTHON", "PYTHON_SYS_EXECUTABLE", "MLX_PREFIX", "LIBCLANG_PATH", "CMAKE"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/mach_time.c");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let python = python_executable();
    let prefix = match mlx_for_target(&python) {
        Ok(prefix) => prefix,
        Err(reason) => return bindings_only(&python, &out_dir, &reason),
    };
    let mlx_lib = prefix.join("lib");
    // Isolated build environments live in temporary folders: when the one this build
    // linked against is gone (or moved), run again.
    for name in ["libmlx.so", "libmlx.dylib"] {
        if mlx_lib.join(name).exists() {
            println!("cargo:rerun-if-changed={}", mlx_lib.join(name).display());
        }
    }

    let source = fresh_mlx_c(&out_dir);
    apply_fixes(&source, &prefix);

    let install = build_mlx_c(&python, &source, &prefix);
    generate_bindings(&python, &source, &out_dir, false);

    for lib_dir in ["lib", "lib64"] {
        println!("cargo:rustc-link-search=native={}", install.join(lib_dir).display());
    }
    println!("cargo:rustc-link-lib=static=mlxc");
    println!("cargo:rustc-link-search=native={}", mlx_lib.display());
    println!("cargo:rustc-link-lib=dylib=mlx");
    if cfg!(target_os = "macos") {
        println!("cargo:rustc-link-lib=dylib=c++");
    } else {
        println!("cargo:rustc-link-lib=dylib=stdc++");
        cc::Build::new().file("src/mach_time.c").compile("mlx_sys_mach_time");
    }
    // Read by dependents as DEP_MLX_LIB_DIR (e.g. to set a run-time search path) and
    // DEP_MLX_VERSION (the MLX release built against, to check the installed one at run time).
    println!("cargo:lib_dir={}", mlx_lib.display());
    println!("cargo:version={}", mlx_version(&prefix));
}

/// The MLX release of the wheel at `prefix`, from its CMake package version file.
fn mlx_version(prefix: &Path) -> String {
    let file = prefix.join("share/cmake/MLX/MLXConfigVersion.cmake");
    let text = fs::read_to_string(&file).unwrap_or_default();
    text.lines()
        .find_map(|line| line.trim().strip_prefix("set(PACKAGE_VERSION \"")?.split('"').next().map(str::to_string))
        .unwrap_or_else(|| panic!("no PACKAGE_VERSION in {}", file.display()))
}

fn python_executable() -> String {
    env::var("PYO3_PYTHON").or_else(|_| env::var("PYTHON_SYS_EXECUTABLE")).unwrap_or_else(|_| "python3".to_string())
}

fn python_eval(python: &str, code: &str) -> Option<String> {
    let output = Command::new(python).args(["-c", code]).output().ok()?;
    if !output.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&output.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

/// The prefix of the installed MLX wheel when it can serve the target being built, else why not.
fn mlx_for_target(python: &str) -> Result<PathBuf, String> {
    let (target, host) = (env::var("TARGET").unwrap_or_default(), env::var("HOST").unwrap_or_default());
    if target != host {
        return Err(format!("building for {target} on {host}: the installed MLX is the host's"));
    }
    let prefix = env::var("MLX_PREFIX").ok().map(PathBuf::from).or_else(|| {
        // `mlx` is a namespace package when only the library wheel is installed.
        python_eval(python, "import mlx; print(list(mlx.__path__)[0])").map(PathBuf::from)
    });
    let Some(prefix) = prefix else {
        return Err(format!(
            "the MLX library was not found (`{python} -c 'import mlx'` failed); to build the \
             plugin, install the MLX library wheel (`mlx-cpu==0.32.4` on Linux, \
             `mlx-metal==0.32.4` on macOS)"
        ));
    };
    let has_lib = ["libmlx.so", "libmlx.dylib"].iter().any(|name| prefix.join("lib").join(name).exists());
    if !has_lib || !prefix.join("share/cmake/MLX").exists() {
        return Err(format!(
            "{} has no lib/libmlx and share/cmake/MLX: install the MLX library wheel (`mlx-cpu`, \
             `mlx-metal` or `mlx-cuda-13`, version 0.32.4)",
            prefix.display()
        ));
    }
    Ok(prefix)
}

/// No MLX for this target: the bindings alone, enough for `cargo check`; a build that links
/// fails on the missing library, after this warning.
fn bindings_only(python: &str, out_dir: &Path, reason: &str) {
    println!("cargo:warning=mlx-sys: {reason}; generating the bindings only (type checking: no mlx-c build, nothing to link)");
    let source = fresh_mlx_c(out_dir);
    fs::write(source.join("mlx/c/half.h"), HALF_H).unwrap();
    generate_bindings(python, &source, out_dir, true);
    println!("cargo:version=none (bindings only)");
}

/// A fresh copy of mlx-c's sources in OUT_DIR (fixes are applied to the copy).
fn fresh_mlx_c(out_dir: &Path) -> PathBuf {
    let upstream = fetch_mlx_c_sources(out_dir);
    let source = out_dir.join("mlx-c");
    if source.exists() {
        fs::remove_dir_all(&source).expect("clear old mlx-c copy");
    }
    copy_dir(&upstream, &source);
    source
}

/// Asks cargo to download the registry `mlx-sys` package (a tiny manifest of its own, with an
/// empty `[workspace]` so the project's `[patch]` does not apply) and returns its mlx-c folder.
fn fetch_mlx_c_sources(out_dir: &Path) -> PathBuf {
    let fetch = out_dir.join("fetch");
    fs::create_dir_all(&fetch).unwrap();
    fs::write(
        fetch.join("Cargo.toml"),
        format!(
            "[package]\nname = \"mlx-c-source\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
             [lib]\npath = \"lib.rs\"\n\n[dependencies]\nmlx-sys = {{ version = \"={UPSTREAM_VERSION}\", default-features = false }}\n\n\
             [workspace]\n"
        ),
    )
    .unwrap();
    fs::write(fetch.join("lib.rs"), "").unwrap();
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(fetch.join("Cargo.toml"))
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run cargo metadata to fetch the mlx-sys sources");
    if !output.status.success() {
        panic!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            p["name"] == "mlx-sys"
                && p["version"] == UPSTREAM_VERSION
                && p["source"].as_str().is_some_and(|s| s.starts_with("registry+"))
        })
        .and_then(|p| p["manifest_path"].as_str())
        .expect("mlx-sys from the registry in cargo metadata");
    let root = Path::new(manifest).parent().unwrap().join("src/mlx-c");
    assert!(root.join("CMakeLists.txt").exists(), "no mlx-c sources in {}", root.display());
    root
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The half-precision types for every architecture. mlx-c declares them only on aarch64;
/// C++ (the mlx-c build) gets MLX's own types, C (bindgen) gets 16-bit integers, whose
/// Rust forms `src/lib.rs` defines.
const HALF_H: &str = r#"/* Replaced by the mlx-sys build script: the types on every architecture. */
#ifndef MLX_HALF_H
#define MLX_HALF_H
#define HAS_FLOAT16
#define HAS_BFLOAT16
#ifdef __cplusplus
extern "C++" {
#include "mlx/types/half_types.h"
}
typedef mlx::core::float16_t float16_t;
typedef mlx::core::bfloat16_t bfloat16_t;
#else
#include <stdint.h>
typedef uint16_t float16_t;
typedef uint16_t bfloat16_t;
#endif
#endif
"#;

/// `std::format` with `{}` placeholders only, for compilers without `<format>`.
const FORMAT_SHIM: &str = r#"
#include <sstream>
#include <string>
namespace {
inline void mlxc_format_rest(std::ostringstream& out, const char* fmt) { out << fmt; }
template <typename T, typename... Rest>
void mlxc_format_rest(std::ostringstream& out, const char* fmt, const T& value, const Rest&... rest) {
  for (; *fmt; ++fmt) {
    if (fmt[0] == '{' && fmt[1] == '}') {
      out << value;
      mlxc_format_rest(out, fmt + 2, rest...);
      return;
    }
    out << *fmt;
  }
}
template <typename... Args>
std::string mlxc_format(const char* fmt, const Args&... args) {
  std::ostringstream out;
  mlxc_format_rest(out, fmt, args...);
  return out.str();
}
} // namespace
"#;

fn apply_fixes(source: &Path, prefix: &Path) {
    fs::write(source.join("mlx/c/half.h"), HALF_H).unwrap();
    adapt_gather_qmm(source, prefix);
    let io = source.join("mlx/c/private/io.h");
    let text = fs::read_to_string(&io).unwrap();
    let text = text.replace("#include <format>", "").replace("std::format(", "mlxc_format(");
    let text = text.replacen("#include <streambuf>", &format!("#include <streambuf>\n{FORMAT_SHIM}"), 1);
    fs::write(&io, text).unwrap();
}

/// MLX 0.32.4 gave `gather_qmm` an optional `global_scale` before `sorted_indices`; mlx-c
/// 0.7.0 (written for 0.32.2) has no such argument, so its call passes none.
fn adapt_gather_qmm(source: &Path, prefix: &Path) {
    let header = fs::read_to_string(prefix.join("include/mlx/ops.h")).unwrap_or_default();
    let declaration = header.split("array gather_qmm(").nth(1).and_then(|rest| rest.split(';').next()).unwrap_or("");
    if !declaration.contains("global_scale") {
        return;
    }
    let ops = source.join("mlx/c/ops.cpp");
    let text = fs::read_to_string(&ops).unwrap();
    let (start, end) = (
        text.find("int mlx_gather_qmm(").expect("mlx_gather_qmm in mlx-c"),
        text.find("int mlx_gather_qqmm(").expect("mlx_gather_qqmm in mlx-c"),
    );
    let call = "std::string(mode),\n            sorted_indices,";
    let body = &text[start..end];
    assert!(body.contains(call), "mlx-c's gather_qmm call changed: adapt the build script");
    let body = body.replacen(call, "std::string(mode),\n            std::nullopt,\n            sorted_indices,", 1);
    fs::write(&ops, format!("{}{}{}", &text[..start], body, &text[end..])).unwrap();
}

fn build_mlx_c(python: &str, source: &Path, prefix: &Path) -> PathBuf {
    if env::var_os("CMAKE").is_none() {
        // The `cmake` wheel (a build requirement) when no cmake is on PATH.
        if let Some(bin) = python_eval(python, "import cmake, os; print(os.path.join(cmake.CMAKE_BIN_DIR, 'cmake'))") {
            env::set_var("CMAKE", bin);
        }
    }
    cmake::Config::new(source)
        .profile("Release")
        .define("MLX_C_USE_SYSTEM_MLX", "ON")
        .define("MLX_DIR", prefix.join("share/cmake/MLX"))
        .define("MLX_C_BUILD_EXAMPLES", "OFF")
        .define("BUILD_SHARED_LIBS", "OFF")
        .define("CMAKE_POSITION_INDEPENDENT_CODE", "ON")
        .build()
}

/// `as_host`: parse the headers for the host (their layout is the same on the targets checked),
/// with the host's C compiler headers, rather than for a target without its system headers.
fn generate_bindings(python: &str, source: &Path, out_dir: &Path, as_host: bool) {
    if env::var_os("LIBCLANG_PATH").is_none() {
        // libclang from the `libclang` wheel (a build requirement) when none is configured.
        if let Some(dir) =
            python_eval(python, "import clang, os; print(os.path.join(os.path.dirname(clang.__file__), 'native'))")
        {
            env::set_var("LIBCLANG_PATH", dir);
        }
    }
    let mut headers: Vec<PathBuf> = fs::read_dir(source.join("mlx/c"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "h"))
        .collect();
    headers.sort();
    let mut builder = bindgen::Builder::default()
        .rust_target("1.73.0".parse().expect("rust target"))
        .clang_arg(format!("-I{}", source.display()))
        .blocklist_type("float16_t")
        .blocklist_type("bfloat16_t")
        .blocklist_function("malloc")
        // Declared in src/lib.rs with the pointer type mlx-rs passes on every target.
        .blocklist_function("mlx_pad")
        .blocklist_function("realloc");
    let host = env::var("HOST").unwrap_or_default();
    let mut compiler = cc::Build::new();
    if as_host {
        builder = builder.clang_arg(format!("--target={host}"));
        compiler.target(&host);
    }
    // A wheel's libclang has no compiler headers (stddef.h, ...): borrow the C compiler's.
    if let Ok(output) = Command::new(compiler.get_compiler().path()).arg("-print-file-name=include").output() {
        let dir = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if Path::new(&dir).join("stddef.h").exists() {
            builder = builder.clang_arg(format!("-isystem{dir}"));
        }
    }
    for header in &headers {
        builder = builder.header(header.to_string_lossy());
    }
    builder
        .generate()
        .expect("generate mlx-c bindings")
        .write_to_file(out_dir.join("bindings.rs"))
        .expect("write bindings");
}
