"""`python -m mlx_kmeans [FILE] -k K ...`: cluster the rows of a .npy, Parquet or Arrow IPC
file and print a summary (optionally saving the result), or, without FILE, cluster a
generated dataset and report backend, time and inertia (and scikit-learn's, when installed)."""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

import numpy as np

from . import KMeans, MiniBatchKMeans, __version__


def make_data(n_samples: int, n_features: int, n_centers: int, seed: int) -> np.ndarray:
    """A Gaussian mixture in float32, the same for the same arguments."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=1.0, size=(n_centers, n_features)).astype(np.float32)
    members = rng.integers(0, n_centers, size=n_samples)
    noise = rng.standard_normal((n_samples, n_features), dtype=np.float32)
    return np.ascontiguousarray(centers[members] + noise)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlx_kmeans",
        description="Cluster the rows of FILE (.npy, Parquet, or Arrow IPC .arrow/.feather) "
        "into k groups and print a summary; --out saves centroids and labels. Without FILE, "
        "cluster a generated Gaussian mixture and compare with scikit-learn's KMeans when it "
        "is installed.",
        epilog="examples:\n  python -m mlx_kmeans embeddings.npy -k 500 --mini-batch --out result.npz\n"
        "  python -m mlx_kmeans table.parquet --column embedding -k 100\n  python -m mlx_kmeans",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", nargs="?", metavar="FILE", help="data to cluster, one row per sample")
    parser.add_argument("-k", "--n-clusters", type=int, default=None, help="number of clusters (FILE: required; demo: 500)")
    parser.add_argument("--column", help="for Parquet/Arrow files with several columns: the one holding the vectors")
    parser.add_argument("--backend", default="auto", help="auto (default), cpu, mlx or faiss")
    parser.add_argument("--mini-batch", action="store_true", help="MiniBatchKMeans instead of KMeans")
    parser.add_argument("--batch-size", type=int, default=1024, help="rows per mini-batch step (default 1024)")
    parser.add_argument("--max-iter", type=int, default=None, help="Lloyd iterations or mini-batch epochs (FILE: 300 / 100; demo: 20)")
    parser.add_argument("--n-init", type=int, default=1, help="initialisations, the best is kept (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="save centroids, labels, inertia, n_iter and backend to this .npz file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    stream = parser.add_argument_group("files larger than memory")
    stream.add_argument(
        "--stream",
        action="store_true",
        help="read FILE in chunks: .npy runs Lloyd over chunks (memory bounded by --chunk-mb, "
        "whatever the file's size); Parquet/Arrow runs MiniBatchKMeans.partial_fit over its record "
        "batches, --max-iter passes (default 1)",
    )
    stream.add_argument("--chunk-mb", type=float, default=256, help="MiB of rows per chunk with --stream (default 256)")
    demo = parser.add_argument_group("demo (no FILE)")
    demo.add_argument("--n-samples", type=int, default=10_000)
    demo.add_argument("--n-features", type=int, default=128)
    demo.add_argument("--no-sklearn", action="store_true", help="skip the scikit-learn comparison")
    return parser


def cluster_file(args) -> int:
    from ._io import load_matrix

    if args.n_clusters is None:
        raise SystemExit("error: -k/--n-clusters is required with FILE")
    out = output_path(args.out)
    if args.stream:
        return stream_file(args, out)
    X = load_matrix(args.file, args.column)
    common = dict(n_clusters=args.n_clusters, n_init=args.n_init, random_state=args.seed, backend=args.backend, verbose=0 if args.quiet else "progress")
    if args.mini_batch:
        model = MiniBatchKMeans(batch_size=args.batch_size, max_iter=default(args.max_iter, 100), **common)
    else:
        model = KMeans(max_iter=default(args.max_iter, 300), **common)
    start = time.perf_counter()
    model.fit(X)
    elapsed = time.perf_counter() - start
    n, d = model.labels_.shape[0], model.n_features_in_
    summary = f"{n}x{d}, k={args.n_clusters}, {type(model).__name__}"
    report(args, out, summary, elapsed, model.cluster_centers_, model.labels_, model.inertia_, model.n_iter_, model.backend_)
    return 0


def report(args, out, summary, elapsed, centroids, labels, inertia, n_iter, backend) -> None:
    """Prints the fit's summary and cluster sizes; saves the result to `out` when given."""
    print(f"{args.file}: {summary}, backend={backend}, time={elapsed:.3f} s, iterations={n_iter}, inertia={inertia:.6e}")
    sizes = np.bincount(labels, minlength=args.n_clusters)
    print(f"cluster sizes: min {sizes.min()}, median {int(np.median(sizes))}, max {sizes.max()}, empty {int((sizes == 0).sum())}")
    if out is not None:
        with open(out, "wb") as file:  # exactly this path: NumPy would add a suffix to a name
            np.savez(file, centroids=centroids, labels=labels, inertia=inertia, n_iter=n_iter, backend=backend)
        print(f"saved centroids {centroids.shape} and labels to {out}")


def stream_file(args, out) -> int:
    """`--stream`: a .npy file by Lloyd over chunks (or, with --mini-batch, by mini-batch
    steps over its chunks); Parquet/Arrow by mini-batch steps over record batches. Neither
    holds the file in memory."""
    import math

    from ._params import Int, check_params

    if not (math.isfinite(args.chunk_mb) and args.chunk_mb > 0) or args.chunk_mb * 2**20 < 1:
        raise ValueError(f"--chunk-mb must be a positive number of MiB; got {args.chunk_mb}")
    chunk_bytes = int(args.chunk_mb * 2**20)
    check_params({"batch_size": Int(1), "max_iter": Int(1, optional=True)}, dict(batch_size=args.batch_size, max_iter=args.max_iter))
    start = time.perf_counter()
    npy = args.file.lower().endswith(".npy")
    if npy and args.column is not None:
        raise ValueError("--column applies to Parquet and Arrow files, not .npy")
    if npy and not args.mini_batch:
        from ._progress import progress_bar
        from ._stream import kmeans_streaming

        with progress_bar(not args.quiet, default(args.max_iter, 300), "KMeans (streamed)", "it") as bar:
            result = kmeans_streaming(
                args.file, args.n_clusters, n_init=args.n_init, max_iter=default(args.max_iter, 300),
                seed=args.seed, backend=args.backend, chunk_bytes=chunk_bytes, progress=bar,
            )
        elapsed = time.perf_counter() - start
        n, d = result.labels.shape[0], result.centroids.shape[1]
        summary = f"{n}x{d}, k={args.n_clusters}, KMeans streamed in chunks of {args.chunk_mb:g} MiB"
        report(args, out, summary, elapsed, result.centroids, result.labels, result.inertia, result.n_iter, result.backend)
        return 0
    if args.n_init != 1:
        raise ValueError("--n-init applies to Lloyd fits; mini-batch steps over a streamed file start from one initialisation")
    from ._io import matrix_chunks

    model = MiniBatchKMeans(n_clusters=args.n_clusters, batch_size=args.batch_size, random_state=args.seed, backend=args.backend)
    epochs = default(args.max_iter, 1)
    for _ in range(epochs):
        for batch in mini_batches(matrix_chunks(args.file, args.column, chunk_bytes), args.batch_size, 3 * args.n_clusters):
            model.partial_fit(batch)
    labels, inertia = [], 0.0
    for batch in matrix_chunks(args.file, args.column, chunk_bytes):
        labels.append(model.predict(batch))
        inertia -= model.score(batch)
    elapsed = time.perf_counter() - start
    labels = np.concatenate(labels)
    summary = f"{labels.shape[0]}x{model.n_features_in_}, k={args.n_clusters}, MiniBatchKMeans.partial_fit over {'chunks' if npy else 'record batches'}, {epochs} pass(es)"
    report(args, out, summary, elapsed, model.cluster_centers_, labels, inertia, model.n_steps_, model.backend_)
    return 0


def mini_batches(chunks, batch_size: int, first_size: int):
    """Mini-batches of `batch_size` rows from a stream of row chunks; the first holds at least
    `first_size` rows (the initialisation samples from it, as scikit-learn's `init_size`),
    or the whole stream when it is shorter."""
    pending, held = [], 0
    for chunk in chunks:
        pending.append(chunk)
        held += chunk.shape[0]
        if held >= first_size:
            break
    if not pending:
        return
    first = np.concatenate(pending) if len(pending) > 1 else pending[0]
    head = max(first_size, batch_size)
    yield first[:head]
    for rows in itertools.chain([first[head:]], chunks):
        for at in range(0, rows.shape[0], batch_size):
            yield rows[at : at + batch_size]


def default(value, fallback):
    """`value` unless the option was not given (0 stays 0, and is refused by the model)."""
    return fallback if value is None else value


def output_path(out: str | None) -> str | None:
    """The file `--out` names, checked before the fit so that a bad path fails at once rather
    than after the work. A new file's name gets NumPy's `.npz` suffix when it has none; an
    existing file that is not a regular one (a device such as /dev/null, a pipe) is written
    as named."""
    if out is None:
        return None
    if not out.strip():
        raise ValueError("--out needs a file name")
    if os.path.isdir(out):
        raise IsADirectoryError(f"--out {out} is a directory; name a file in it")
    special = os.path.exists(out) and not os.path.isfile(out)
    path = out if out.endswith(".npz") or special else out + ".npz"
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"--out {out}: {path} is a directory")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--out {out}: no such directory {folder}")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise PermissionError(f"--out {out}: cannot write {path}")
    return path


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return cluster_file(args) if args.file is not None else demo(args)
    except (OSError, ValueError, TypeError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def demo(args) -> int:
    args.n_clusters = 500 if args.n_clusters is None else args.n_clusters
    args.max_iter = default(args.max_iter, 20)
    X = make_data(args.n_samples, args.n_features, max(args.n_clusters, 1), args.seed)
    print(
        f"mlx-kmeans {__version__}: {args.n_samples}x{args.n_features} float32, "
        f"k={args.n_clusters}, k-means++ init, up to {args.max_iter} Lloyd iterations"
    )
    params = dict(n_clusters=args.n_clusters, max_iter=args.max_iter, tol=0.0, n_init=1, random_state=args.seed)
    start = time.perf_counter()
    ours = KMeans(backend=args.backend, **params).fit(X)
    elapsed = time.perf_counter() - start
    print(
        f"mlx_kmeans   backend={ours.backend_:<6} time={elapsed:8.3f} s  "
        f"iterations={ours.n_iter_:<4} inertia={ours.inertia_:.6e}"
    )
    if args.no_sklearn:
        return 0
    try:
        from sklearn.cluster import KMeans as SkKMeans
    except ImportError:
        print("scikit-learn is not installed: no comparison")
        return 0
    start = time.perf_counter()
    ref = SkKMeans(**params).fit(X)
    ref_elapsed = time.perf_counter() - start
    print(
        f"scikit-learn               time={ref_elapsed:8.3f} s  "
        f"iterations={ref.n_iter_:<4} inertia={ref.inertia_:.6e}"
    )
    print(f"speed-up {ref_elapsed / elapsed:.2f}x, inertia ratio (ours / scikit-learn) {ours.inertia_ / ref.inertia_:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
