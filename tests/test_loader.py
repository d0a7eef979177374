"""The install as users get it: `import mlx_kmeans` and the cpu backend need no MLX, the MLX
kernel plugin (`mlx_kmeans_mlx._kernel`, distribution `mlx-kmeans-mlx`) loads only where it is
of the package's own version and MLX of the release it was built against is installed, and
`backends()` says why not and what to install; once loaded it runs every backend; the package
metadata asks for the plugin and MLX only through the extras on Linux."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mlx_kmeans
from mlx_kmeans import _loader

VERSION = _loader.MLX_VERSION
ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, path: list[Path], isolated: bool) -> subprocess.CompletedProcess:
    """Runs `code` in a new interpreter with `path` first on sys.path; `isolated`: with
    the standard library and `path` only (no site-packages, so no MLX)."""
    prefix = f"import sys; sys.path[:0] = {[str(p) for p in path]!r}\n"
    flags = ["-I", "-S"] if isolated else []
    env = {k: v for k, v in os.environ.items() if k != "MLX_KMEANS_BACKEND"}
    return subprocess.run(
        [sys.executable, *flags, "-c", prefix + textwrap.dedent(code)], capture_output=True, text=True, env=env
    )


FIT_AND_REPORT = """
    import numpy as np, mlx_kmeans
    rows = {b.name: b for b in mlx_kmeans.backends()}
    print("MLX ROW:", rows["mlx"].available, rows["mlx"].reason)
    X = np.random.default_rng(0).normal(size=(500, 4)).astype(np.float32)
    for backend in ("auto", "cpu"):
        est = mlx_kmeans.KMeans(3, random_state=0, n_init=1, backend=backend).fit(X)
        print("FIT:", backend, est.backend_, est.labels_.shape)
    try:
        mlx_kmeans.KMeans(3, backend="mlx").fit(X)
    except ValueError as exc:
        print("MLX REFUSED:", exc)
    print("MODULES:", sorted(m for m in sys.modules if m == "mlx" or m.startswith(("mlx.", "mlx_kmeans_mlx"))))
    if sys.platform.startswith("linux"):
        print("LIBMLX MAPPED:", any("libmlx" in line for line in open("/proc/self/maps")))
"""


def _lines(out: subprocess.CompletedProcess, tag: str) -> list[str]:
    assert out.returncode == 0, out.stderr
    return [line[len(tag) :].strip() for line in out.stdout.splitlines() if line.startswith(tag)]


def test_problem_names_what_is_missing_and_what_to_install():
    missing = _loader.mlx_problem(None, {}, "linux")
    assert "not installed" in missing and "mlx-kmeans[cuda]" in missing and "mlx-kmeans[mlx]" in missing
    assert f"mlx=={VERSION}" in _loader.mlx_problem(None, {}, "darwin")
    no_library = _loader.mlx_problem(None, {"mlx": VERSION}, "linux")
    assert "has no libmlx" in no_library and f"mlx {VERSION}" in no_library
    other = _loader.mlx_problem("/site/mlx/lib/libmlx.so", {"mlx": VERSION, "mlx-cpu": "0.32.3"}, "linux")
    assert f"built against MLX {VERSION}" in other and "mlx-cpu 0.32.3 is installed" in other
    assert f"mlx {VERSION}" not in other  # only the mismatched ones are named
    assert _loader.mlx_problem("/site/mlx/lib/libmlx.so", {"mlx": VERSION, "mlx-cuda-13": VERSION}, "linux") is None
    # Built from source (no distribution metadata): the library decides.
    assert _loader.mlx_problem("/site/mlx/lib/libmlx.so", {}, "linux") is None


def test_import_and_fits_need_no_mlx(tmp_path):
    """(1) of the install: with nothing but NumPy and tqdm beside the package, it imports,
    fits on `auto` and `cpu`, explains the mlx row and refuses `backend="mlx"` with it; libmlx
    is never loaded."""
    import numpy
    import tqdm

    for module in (mlx_kmeans, numpy, tqdm):
        package = Path(module.__file__).resolve().parent
        for folder in (package, package.with_name(package.name + ".libs")):  # and its bundled libraries
            if folder.exists():
                (tmp_path / folder.name).symlink_to(folder)
    out = _run(FIT_AND_REPORT, [tmp_path], isolated=True)
    (row,) = _lines(out, "MLX ROW:")
    assert row.startswith("False") and "plugin (mlx-kmeans-mlx) is not installed" in row and "mlx-kmeans[" in row
    assert _lines(out, "FIT:") == ["auto cpu (500,)", "cpu cpu (500,)"]
    (refused,) = _lines(out, "MLX REFUSED:")
    assert "not available" in refused and "mlx-kmeans-mlx" in refused
    assert _lines(out, "MODULES:") == ["[]"]
    assert _lines(out, "LIBMLX MAPPED:") in ([], ["False"])


PLUGIN = importlib.util.find_spec("mlx_kmeans_mlx")


@pytest.mark.skipif(PLUGIN is None, reason="needs the MLX kernel plugin")
def test_the_plugin_without_mlx_says_mlx_is_missing(tmp_path):
    """The plugin installed, MLX not: the mlx row names MLX and what to install; nothing of
    MLX is loaded."""
    import numpy
    import tqdm

    for module in (mlx_kmeans, numpy, tqdm):
        package = Path(module.__file__).resolve().parent
        for folder in (package, package.with_name(package.name + ".libs")):
            if folder.exists():
                (tmp_path / folder.name).symlink_to(folder)
    (tmp_path / "mlx_kmeans_mlx").symlink_to(Path(PLUGIN.origin).parent)
    out = _run(FIT_AND_REPORT, [tmp_path], isolated=True)
    (row,) = _lines(out, "MLX ROW:")
    assert row.startswith("False") and "MLX is not installed" in row
    assert _lines(out, "FIT:") == ["auto cpu (500,)", "cpu cpu (500,)"]
    assert _lines(out, "MODULES:") == ["[]"]
    assert _lines(out, "LIBMLX MAPPED:") in ([], ["False"])


@pytest.mark.skipif(PLUGIN is None or _loader._libmlx_path() is None, reason="needs the plugin and an installed MLX")
def test_a_plugin_of_another_version_is_refused_before_it_loads(tmp_path):
    """The plugin's distribution of another version than the package: the mlx row says so
    and what to install, and neither the plugin nor libmlx is loaded."""
    info = tmp_path / "mlx_kmeans_mlx-0.0.9.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mlx-kmeans-mlx\nVersion: 0.0.9\n")
    out = _run(FIT_AND_REPORT, [tmp_path], isolated=False)
    (row,) = _lines(out, "MLX ROW:")
    assert row.startswith("False") and "mlx-kmeans-mlx 0.0.9 is installed" in row
    assert f"mlx-kmeans-mlx=={mlx_kmeans.__version__}" in row
    assert _lines(out, "FIT:") == ["auto cpu (500,)", "cpu cpu (500,)"]
    assert _lines(out, "MODULES:") == ["[]"]
    assert _lines(out, "LIBMLX MAPPED:") in ([], ["False"])


@pytest.mark.skipif(_loader._libmlx_path() is None, reason="needs an installed MLX")
def test_an_mlx_of_another_release_is_refused_before_it_loads(tmp_path):
    """An installed MLX library wheel of another release: the mlx row says which and what to
    install, `backend="mlx"` is refused with that, `auto` and `cpu` still fit, and neither
    the plugin nor libmlx is loaded."""
    info = tmp_path / "mlx_cpu-0.32.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mlx-cpu\nVersion: 0.32.3\n")
    out = _run(FIT_AND_REPORT, [tmp_path], isolated=False)
    (row,) = _lines(out, "MLX ROW:")
    assert row.startswith("False") and f"built against MLX {VERSION}" in row and "mlx-cpu 0.32.3" in row
    (refused,) = _lines(out, "MLX REFUSED:")
    assert "mlx-cpu 0.32.3" in refused
    assert _lines(out, "FIT:") == ["auto cpu (500,)", "cpu cpu (500,)"]
    assert _lines(out, "MODULES:") == ["[]"]
    assert _lines(out, "LIBMLX MAPPED:") in ([], ["False"])


@pytest.mark.skipif(_loader._libmlx_path() is None, reason="needs an installed MLX")
def test_the_mlx_kernel_loads_with_the_mlx_it_was_built_against():
    module, problem = _loader.load_mlx()
    assert problem is None and module is not None
    assert module.MLX_BUILT_AGAINST == VERSION
    assert module.__version__ == mlx_kmeans.__version__
    assert module is not mlx_kmeans._native


@pytest.mark.skipif(PLUGIN is None or _loader._libmlx_path() is None, reason="needs the plugin and an installed MLX")
def test_once_loaded_the_plugin_runs_every_backend():
    """One engine per process: after the plugin loads, the cpu backend and the functions of
    no backend run in it, with the results `_native` gives."""
    code = """
        import numpy as np, mlx_kmeans
        from mlx_kmeans import _backend, _native
        X = np.random.default_rng(1).normal(size=(800, 6))
        before = mlx_kmeans.KMeans(5, random_state=0, backend="cpu").fit(X)
        assert _backend.engine_module("cpu") is _native and _backend.native() is _native
        mlx_kmeans.backends()  # probes mlx: loads the plugin
        plugin = _backend.engine_module("mlx")
        assert plugin is not _native
        print("ROUTED:", _backend.engine_module("cpu") is plugin, _backend.native() is plugin)
        after = mlx_kmeans.KMeans(5, random_state=0, backend="cpu").fit(X)
        print("SAME:", np.array_equal(before.labels_, after.labels_), before.inertia_ == after.inertia_)
    """
    out = _run(code, [], isolated=False)
    assert _lines(out, "ROUTED:") == ["True True"]
    assert _lines(out, "SAME:") == ["True True"]


def _requirements(platform_system: str, extra: str) -> list[str]:
    from packaging.requirements import Requirement

    env = {"platform_system": platform_system, "sys_platform": platform_system.lower(), "extra": extra}
    active = []
    for line in importlib.metadata.requires("mlx-kmeans") or []:
        requirement = Requirement(line)
        if requirement.name.startswith("mlx") and (requirement.marker is None or requirement.marker.evaluate(env)):
            active.append(f"{requirement.name}{sorted(requirement.extras)}{requirement.specifier}")
    return active


def test_metadata_asks_for_mlx_only_through_the_extras_on_linux():
    """(3) of the install, read from the installed distribution's metadata (the wheel's)."""
    core = mlx_kmeans.__version__
    plugin = f"mlx-kmeans-mlx[]=={core}"
    assert _requirements("Linux", "") == []
    assert _requirements("Linux", "mlx") == [plugin, f"mlx['cpu']=={VERSION}"]
    assert _requirements("Linux", "cuda") == [plugin, f"mlx['cuda13']=={VERSION}"]
    assert _requirements("Linux", "test") == [plugin, f"mlx['cpu']=={VERSION}"]
    assert _requirements("Darwin", "") == [plugin, f"mlx[]=={VERSION}"]
    assert _requirements("Windows", "") == []


def test_every_pin_is_the_release_built_against():
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    core = tomllib.loads((ROOT / "pyproject.toml").read_text())
    plugin = tomllib.loads((ROOT / "crates" / "mlx" / "pyproject.toml").read_text())
    pins = []
    for project in (core, plugin):
        pins += project["build-system"]["requires"] + project["project"]["dependencies"]
        pins += [r for extra in project["project"].get("optional-dependencies", {}).values() for r in extra]
    requirements = [Requirement(r) for r in pins]
    mlx_pins = [r for r in requirements if r.name in _loader.MLX_DISTRIBUTIONS]
    assert len(mlx_pins) >= 7
    for requirement in mlx_pins:
        assert str(requirement.specifier) == f"=={VERSION}", requirement
    # One version for both distributions, everywhere it is written, and each names the other's.
    version = core["project"]["version"]
    assert plugin["project"]["version"] == version == mlx_kmeans.__version__ == importlib.metadata.version("mlx-kmeans")
    ours = [r for r in requirements if r.name in ("mlx-kmeans", "mlx-kmeans-mlx")]
    assert len(ours) >= 4 and all(str(r.specifier) == f"=={version}" for r in ours)
    # The core builds with maturin alone; the plugin's build brings MLX, CMake and libclang.
    assert core["build-system"] == {"requires": core["build-system"]["requires"], "build-backend": "maturin"}
    assert [Requirement(r).name for r in core["build-system"]["requires"]] == ["maturin"]
    assert plugin["build-system"]["build-backend"] == "maturin"
