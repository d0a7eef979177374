"""Initial centroids for a fit over chunks: weighted sampling without replacement over all
chunks, greedy k-means++ on a sample, and k-means‖."""

from __future__ import annotations

import logging

import numpy as np

from .tasks import against, checked_chunk, kernel, sum_all

logger = logging.getLogger("mlx_kmeans")

INIT_METHODS = ("k-means||", "k-means++", "random")


def sample_keys_task(chunk, weights, offset, shared, state):
    """Weighted sampling without replacement, one chunk at a time (Efraimidis–Spirakis):
    each positive-weight row draws the key `log(u) / w`; the rows with the largest keys over
    all chunks are the sample. Returns this chunk's best `count` (keys, global indices)."""
    count, seed, weighted = shared
    n = chunk.shape[0]
    rng = np.random.default_rng([seed, offset])
    u = rng.random(n)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if not weighted:
        w = (w > 0).astype(np.float64)
    with np.errstate(divide="ignore"):
        keys = np.where(w > 0, np.log(u) / np.where(w > 0, w, 1.0), -np.inf)
    best = np.argsort(-keys, kind="stable")[:count]
    best = best[np.isfinite(keys[best])]
    return (keys[best], best + offset), None


def combine_keys(parts):
    keys = np.concatenate([p[0] for p in parts])
    indices = np.concatenate([p[1] for p in parts])
    return keys, indices


def rows_task(chunk, weights, offset, shared, state):
    """This chunk's rows among the sorted global `indices`: (indices, rows, weights)."""
    indices, dtype = shared
    lo, hi = np.searchsorted(indices, [offset, offset + chunk.shape[0]])
    local = indices[lo:hi] - offset
    X = checked_chunk(chunk, dtype)
    w = np.ones(len(local)) if weights is None else np.asarray(weights, dtype=np.float64)[local]
    return (local + offset, X[local].copy(), w), None


def combine_rows(parts):
    """Rows gathered from chunks, in global row order whatever order the chunks came in."""
    indices = np.concatenate([p[0] for p in parts])
    order = np.argsort(indices, kind="stable")
    return indices[order], np.concatenate([p[1] for p in parts])[order], np.concatenate([p[2] for p in parts])[order]


def gather_rows(source, indices, dtype):
    """The rows at sorted global `indices` and their weights, by `rows_task`."""
    (_, rows, weights), _ = source.map_reduce(rows_task, combine_rows, (np.asarray(indices), np.dtype(dtype)))
    return rows, weights


def parallel_cost_task(chunk, weights, offset, shared, state):
    """k-means‖: each row's squared distance to the nearest candidate so far (the state),
    updated with the newest candidates; returns the weighted cost."""
    candidates, backend = shared
    X, _, candidates = against(chunk, None, candidates)
    module, native = kernel(backend)
    _, distances, _ = module.assign(X, candidates, backend=native)
    distances = distances.astype(np.float64)
    nearest = distances if state is None else np.minimum(state, distances)
    w = 1.0 if weights is None else np.asarray(weights, dtype=np.float64)
    return float(np.sum(w * nearest)), nearest


def parallel_sample_task(chunk, weights, offset, shared, state):
    """k-means‖: keeps each row with probability `min(1, ℓ · w · d² / cost)`."""
    factor, cost, seed, dtype = shared
    rng = np.random.default_rng([seed, offset])
    w = 1.0 if weights is None else np.asarray(weights, dtype=np.float64)
    p = factor * w * state / cost if cost > 0 else np.zeros(chunk.shape[0])
    keep = np.flatnonzero(rng.random(chunk.shape[0]) < p)
    X = checked_chunk(chunk, dtype)
    return (keep + offset, X[keep].copy(), np.ones(len(keep))), state


def candidate_weight_task(chunk, weights, offset, shared, state):
    """k-means‖: the sample weight of the rows nearest to each candidate."""
    candidates, backend = shared
    X, _, candidates = against(chunk, None, candidates)
    module, native = kernel(backend)
    labels, _, _ = module.assign(X, candidates, backend=native)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    return np.bincount(labels, weights=w, minlength=candidates.shape[0]).astype(np.float64), None


def sample_rows(source, count: int, seed: int, weighted: bool, dtype):
    """`count` distinct rows drawn without replacement (by sample weight when `weighted`,
    else uniformly among the positive-weight rows) and their weights."""
    (keys, indices), _ = source.map_reduce(sample_keys_task, combine_keys, (count, seed, weighted))
    chosen = np.sort(indices[np.argsort(-keys, kind="stable")[:count]])
    return gather_rows(source, chosen, dtype)


def initial_centroids(source, init, k, dtype, seed, backend, init_size, factor, rounds) -> np.ndarray:
    if not isinstance(init, str):
        return np.ascontiguousarray(init, dtype=dtype).copy()
    if init == "random":
        rows, _ = sample_rows(source, k, seed, weighted=True, dtype=dtype)
        return checked_chunk(rows, dtype).copy()
    if init == "k-means++":
        size = max(10 * k, 20_000) if init_size is None else init_size
        size = min(source.n_rows, max(size, k))
        rows, weights = sample_rows(source, size, seed, weighted=False, dtype=dtype)
        return seed_plusplus(rows, weights, k, seed, backend)
    if init == "k-means||":
        return kmeans_parallel(source, k, dtype, seed, backend, factor, rounds)
    raise ValueError(f"init should be one of {INIT_METHODS} or an array of shape (n_clusters, n_features); got {init!r}")


def seed_plusplus(rows, weights, k, seed, backend) -> np.ndarray:
    """Greedy k-means++ (the engine's) on weighted rows held here."""
    module, native = kernel(backend)
    rows = checked_chunk(rows, rows.dtype)
    return module.init_centroids(
        rows,
        checked_chunk(weights, rows.dtype),
        n_clusters=k,
        init="k-means++",
        batch_size=rows.shape[0],
        init_size=rows.shape[0],
        seed=seed % 2**63,
        backend=native,
    )


def kmeans_parallel(source, k, dtype, seed, backend, factor, rounds) -> np.ndarray:
    """k-means‖ (Bahmani et al.): `rounds` passes that each keep about `factor · k` rows
    with probability proportional to their weighted squared distance to the candidates so
    far, then greedy k-means++ on the candidates weighted by the rows nearest to each."""
    rng = np.random.default_rng(seed)
    candidates, _ = sample_rows(source, 1, int(rng.integers(2**63)), weighted=True, dtype=dtype)
    cost, states = source.map_reduce(parallel_cost_task, sum_all, (candidates, backend), keep_states=True)
    newest = candidates
    for _ in range(rounds):
        if not cost > 0:
            break
        round_seed = int(rng.integers(2**63))
        (_, newest, _), states = source.map_reduce(parallel_sample_task, combine_rows, (factor * k, cost, round_seed, np.dtype(dtype)), states, keep_states=True)
        if newest.shape[0] == 0:
            continue
        candidates = np.concatenate([candidates, newest])
        cost, states = source.map_reduce(parallel_cost_task, sum_all, (newest, backend), states, keep_states=True)
    logger.debug("k-means||: %d candidates for %d clusters", candidates.shape[0], k)
    if candidates.shape[0] < k:
        # Too few distinct candidates (tiny or duplicated data): fill with random rows.
        extra, _ = sample_rows(source, k, int(rng.integers(2**63)), weighted=True, dtype=dtype)
        candidates = np.concatenate([candidates, extra])
    weights, _ = source.map_reduce(candidate_weight_task, sum_all, (candidates, backend))
    if candidates.shape[0] == k:
        return np.ascontiguousarray(candidates)
    return seed_plusplus(candidates, weights, k, int(rng.integers(2**63)), backend)
