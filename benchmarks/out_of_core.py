"""A `.npy` file larger than the memory a fit may use, fitted from disk: the command line's
`--stream` mode (Lloyd over chunks read in turn) against the same fit with the file memory
mapped in place, each in its own process, with its peak resident size (`ru_maxrss`).

    python benchmarks/out_of_core.py [--path /tmp/big.npy] [--gb 4] [--d 768] [-k 500]
                                     [--iters 5] [--chunk-mb 256] [--in-place]

The file is written once (a float32 Gaussian mixture, chunk by chunk) and kept for reruns.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np


def make_file(path: str, rows: int, d: int, seed: int = 0) -> None:
    if os.path.exists(path):
        existing = np.load(path, mmap_mode="r")
        if existing.shape == (rows, d) and existing.dtype == np.float32:
            return
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(1000, d)).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, d))
    for start in range(0, rows, 65536):
        end = min(rows, start + 65536)
        block = means[rng.integers(0, len(means), end - start)]
        block += rng.standard_normal((end - start, d), dtype=np.float32)
        out[start:end] = block
    out.flush()
    del out


# Runs a command in a child and reports that child's peak RSS (RUSAGE_CHILDREN of a wrapper
# that has no other child).
WRAPPER = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:])
print("PEAK_RSS", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
sys.exit(done.returncode)
"""


def measured(command: list[str]) -> tuple[float, int, str]:
    """Seconds, the command's peak RSS in bytes, and its output."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", WRAPPER, *command], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr}")
    output, peak = done.stdout.rsplit("PEAK_RSS", 1)
    return seconds, int(peak.split()[0]), output


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", default="/tmp/mlx_kmeans_big.npy")
    parser.add_argument("--gb", type=float, default=4.0, help="file size in GiB")
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("-k", type=int, default=500)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--chunk-mb", type=float, default=256)
    parser.add_argument("--in-place", action="store_true", help="also fit the memory-mapped file in place, for comparison")
    args = parser.parse_args(argv)
    rows = int(args.gb * 2**30) // (4 * args.d)
    start = time.perf_counter()
    make_file(args.path, rows, args.d)
    size = os.path.getsize(args.path)
    print(f"{args.path}: {rows}x{args.d} float32, {size / 2**30:.2f} GiB ({size / 1e9:.2f} GB), ready in {time.perf_counter() - start:.0f} s")
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    print(f"machine: {os.cpu_count()} CPUs, {total / 2**30:.1f} GiB of memory")
    stream = [sys.executable, "-m", "mlx_kmeans", args.path, "-k", str(args.k), "--stream", "--chunk-mb", str(args.chunk_mb), "--max-iter", str(args.iters), "--quiet"]
    seconds, peak, out = measured(stream)
    print(f"--stream (chunks of {args.chunk_mb:g} MiB): {seconds:.1f} s, peak RSS {peak / 2**20:.0f} MiB")
    print("  " + out.strip().replace("\n", "\n  "))
    if args.in_place:
        in_place = [sys.executable, "-m", "mlx_kmeans", args.path, "-k", str(args.k), "--max-iter", str(args.iters), "--quiet"]
        seconds, peak, out = measured(in_place)
        print(f"in place (memory mapped): {seconds:.1f} s, peak RSS {peak / 2**20:.0f} MiB")
        print("  " + out.strip().replace("\n", "\n  "))


if __name__ == "__main__":
    main()
