"""Initial centroids for a fit over chunks: weighted sampling without replacement over all
chunks, greedy k-means++ on a sample, and k-means‖."""

from __future__ import annotations

import logging

import numpy as np

from .._options import current as current_options
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


# What k-means‖'s pruning allows for the rounding of a computed squared distance between
# rows `u` and `v`: `|computed − exact| ≤ (DISTANCE_ERROR + 4·d·2⁻²⁴)·(‖u‖² + ‖v‖²)`, above
# the bound of every kernel here (float32 GEMMs, TF32 products split in bfloat16 halves).
DISTANCE_ERROR = 2.0**-12


# Rows gathered at once for k-means‖'s measured rows, and measured at once in float64.
GATHER_ROWS = 8192
EXACT_ROWS = 2048


def distance_error(d: int) -> float:
    return DISTANCE_ERROR + 4 * d * 2.0**-24


def exact_distances(X, rows, centres) -> np.ndarray:
    """Float64 squared distances from the rows `rows` of `X` to `centres` (one per row), a
    few rows at a time so the float64 copies stay small."""
    out = np.empty(len(rows))
    for i in range(0, len(rows), EXACT_ROWS):
        diff = X[rows[i : i + EXACT_ROWS]].astype(np.float64) - centres[i : i + EXACT_ROWS]
        out[i : i + EXACT_ROWS] = np.einsum("ij,ij->i", diff, diff)
    return out


def rounded(exact: np.ndarray) -> np.ndarray:
    """The squared distances k-means‖ samples by: the float32 values the kernels return."""
    return exact.astype(np.float32).astype(np.float64)


def parallel_cost_task(chunk, weights, offset, shared, state):
    """k-means‖: each row's squared distance to the nearest candidate so far (in float64,
    exact: a row between two candidates equally near in float32 belongs to the nearer), which
    candidate that is (the lowest-numbered of equals), and the row's squared norm (the state),
    updated with the newest candidates (numbered from `first`); returns the weighted cost and
    how many rows were measured.

    Pruning (after Raff, Ferraro and Matuszek, AAAI 2021), where `gaps` is given (each older
    candidate's smallest computed squared distance to a newest one) with `top` (the largest
    squared norm of any candidate): a row whose nearest candidate `a` lies at least
    `2·√D` from every newest candidate cannot come nearer to one (triangle inequality, with
    the rounding of the computed gaps bounded by `distance_error`); so it is not measured and
    its state is what measuring it leaves."""
    newest, first, gaps, top, backend = shared
    X, _, newest = against(chunk, None, newest)
    module, native = kernel(backend)
    centres = newest.astype(np.float64)
    if state is None:
        # No candidate yet: every row takes its nearest newest one.
        n = X.shape[0]
        exact, owner = np.full(n, np.inf), np.zeros(n, dtype=np.int32)
        norms = np.einsum("ij,ij->i", X, X, dtype=np.float64).astype(np.float32)
        rows = np.arange(n)
    else:
        exact, owner, norms = state
        if gaps is None:
            rows = np.arange(X.shape[0])
        else:
            error = distance_error(X.shape[1])
            # True gap² ≥ g̃ − 2e·top; a candidate at true distance ≥ √gap − √D ≥ √D (the
            # norms' term is a margin for the float64 arithmetic here) cannot be nearer.
            proven = gaps[owner] >= 4.0 * (exact + error * (norms + top)) + 2.0 * error * top
            rows = np.flatnonzero(~proven)
        if rows.size:
            exact, owner = exact.copy(), owner.copy()
    measured = rows.size
    # The rows left are gathered a block at a time: the copies stay small beside the chunk.
    whole = measured == X.shape[0]
    for block in [rows] if whole else [rows[i : i + GATHER_ROWS] for i in range(0, measured, GATHER_ROWS)]:
        part = X if block.size == X.shape[0] else np.ascontiguousarray(X[block])
        labels, _, _ = module.assign(part, newest, backend=native)
        distances = exact_distances(X, block, centres[labels])
        nearer = distances < exact[block]
        exact[block[nearer]] = distances[nearer]
        owner[block[nearer]] = labels[nearer] + first
    w = 1.0 if weights is None else np.asarray(weights, dtype=np.float64)
    return np.array([float(np.sum(w * rounded(exact))), measured]), (exact, owner, norms)


def parallel_sample_task(chunk, weights, offset, shared, state):
    """k-means‖: keeps each row with probability `min(1, ℓ · w · d² / cost)`."""
    factor, cost, seed, dtype = shared
    nearest = rounded(state[0])
    rng = np.random.default_rng([seed, offset])
    w = 1.0 if weights is None else np.asarray(weights, dtype=np.float64)
    p = factor * w * nearest / cost if cost > 0 else np.zeros(chunk.shape[0])
    keep = np.flatnonzero(rng.random(chunk.shape[0]) < p)
    X = checked_chunk(chunk, dtype)
    return (keep + offset, X[keep].copy(), np.ones(len(keep))), state


def owner_weight_task(chunk, weights, offset, shared, state):
    """k-means‖: the sample weight of the rows nearest to each of the `shared` candidates, by
    the nearest candidate the rounds found for each row (the cost passes' state)."""
    _, owner, _ = state
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    return np.bincount(owner, weights=w, minlength=shared).astype(np.float64), None


def candidate_gaps(candidates, newest, backend):
    """For k-means‖'s pruning: each candidate's smallest computed squared distance to any of
    the `newest`, and the largest squared norm of any of them."""
    module, native = kernel(backend)
    candidates, newest = checked_chunk(candidates, candidates.dtype), checked_chunk(newest, candidates.dtype)
    _, gaps, _ = module.assign(candidates, newest, backend=native)
    top = max(float(np.max(np.einsum("ij,ij->i", rows, rows, dtype=np.float64))) for rows in (candidates, newest))
    return gaps.astype(np.float64), top


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
    prune = current_options().seeding_prune
    candidates, _ = sample_rows(source, 1, int(rng.integers(2**63)), weighted=True, dtype=dtype)
    (cost, measured), states = source.map_reduce(parallel_cost_task, sum_all, (candidates, 0, None, 0.0, backend), keep_states=True)
    newest = candidates
    measurable = measured_total = 0.0
    for _ in range(rounds):
        if not cost > 0:
            break
        round_seed = int(rng.integers(2**63))
        (_, newest, _), states = source.map_reduce(parallel_sample_task, combine_rows, (factor * k, cost, round_seed, np.dtype(dtype)), states, keep_states=True)
        if newest.shape[0] == 0:
            continue
        gaps = top = None
        if prune:
            gaps, top = candidate_gaps(candidates, newest, backend)
        shared = (newest, candidates.shape[0], gaps, top, backend)
        candidates = np.concatenate([candidates, newest])
        (cost, measured), states = source.map_reduce(parallel_cost_task, sum_all, shared, states, keep_states=True)
        measurable += source.n_rows * newest.shape[0]
        measured_total += measured * newest.shape[0]
    if prune and measurable:
        logger.debug("k-means|| pruning: %.1f %% of candidate distances skipped", 100.0 * (1.0 - measured_total / measurable))
    logger.debug("k-means||: %d candidates for %d clusters", candidates.shape[0], k)
    if candidates.shape[0] == k:
        return np.ascontiguousarray(candidates)
    if candidates.shape[0] < k:
        # Too few distinct candidates (tiny or duplicated data): fill with random rows.
        extra, _ = sample_rows(source, k, int(rng.integers(2**63)), weighted=True, dtype=dtype)
        candidates = np.concatenate([candidates, extra])
        weights, _ = source.map_reduce(candidate_weight_task, sum_all, (candidates, backend))
    else:
        # Each row's nearest candidate is known from the rounds: no more distances to compute.
        weights, _ = source.map_reduce(owner_weight_task, sum_all, candidates.shape[0], states)
    return seed_plusplus(candidates, weights, k, int(rng.integers(2**63)), backend)
