"""`verbose`: the lines scikit-learn prints during a fit, printed the same way, since scripts
and tests look for them; `verbose="progress"` shows a progress bar instead (`_progress`).

The engine calls a fit's callback as `(run, iteration, inertia, center_shift, event)`:
`event` is "iteration" after each Lloyd iteration or mini-batch step, "init" after a
mini-batch fit scores one of its initial centroid sets (`inertia`: on the validation rows),
"reassign" before a mini-batch step's "iteration" when that step moved starved centres
(`inertia` then holds how many), and "strict", "tolerance" or "no_improvement" when a run
stops early for that reason.
Iterations are counted from 1 there and from 0 in scikit-learn's lines, as it prints them.
"""

from __future__ import annotations

import numpy as np

from ._validation import is_sparse


def tolerance(X, tol: float):
    """The absolute tolerance scikit-learn prints (and stops at): `tol` times the mean
    variance of the features (of sparse rows too, as scikit-learn computes it there)."""
    if tol == 0:
        return 0
    if is_sparse(X):
        means = np.asarray(X.mean(axis=0)).ravel()
        variances = np.asarray(X.multiply(X).mean(axis=0)).ravel() - means**2
        return np.mean(variances) * tol
    return np.mean(np.var(X, axis=0)) * tol


class KMeansLines:
    """`KMeans`: "Initialization complete" before each run, "Iteration i, inertia x." per
    iteration (without the period for 'elkan', as there), and why a run stopped early."""

    def __init__(self, algorithm: str, tol) -> None:
        """`tol`: the absolute tolerance, or a function that gives it once it is known (a fit
        over chunks learns it in its first pass)."""
        # 'auto' prints as scikit-learn's default, 'lloyd', does.
        self.period = "" if algorithm == "elkan" else "."
        self.tol = tol
        self.run: int | None = None

    def __call__(self, run: int, iteration: int, inertia: float, center_shift: float, event: str = "iteration") -> None:
        if event == "iteration":
            if run != self.run:
                self.run = run
                print("Initialization complete")
            print(f"Iteration {iteration - 1}, inertia {inertia}{self.period}")
        elif event == "strict":
            print(f"Converged at iteration {iteration - 1}: strict convergence.")
        elif event == "tolerance":
            tol = self.tol() if callable(self.tol) else self.tol
            print(f"Converged at iteration {iteration - 1}: center shift {center_shift} within tolerance {tol}.")


def reassigning(centres: int) -> None:
    """scikit-learn's line for a mini-batch step (or `partial_fit`) that moved starved centres."""
    print(f"[MiniBatchKMeans] Reassigning {centres} cluster centers.")


class MiniBatchLines:
    """`MiniBatchKMeans`: each initial centroid set and its validation inertia, each step's
    mean batch inertia (and from the second step its exponentially weighted average, as the
    engine smooths it), and why the fit stopped early."""

    def __init__(self, init, n_init: int, n_steps: int, batch_size: int, n_samples: int) -> None:
        self.init, self.n_init, self.n_steps = init, n_init, n_steps
        self.alpha = min(batch_size * 2.0 / (n_samples + 1), 1)
        self.ewa: float | None = None

    def __call__(self, run: int, iteration: int, inertia: float, center_shift: float, event: str = "iteration") -> None:
        step = f"{iteration}/{self.n_steps}"
        if event == "init":
            print(f"Init {run + 1}/{self.n_init} with method {self.init}")
            print(f"Inertia for init {run + 1}/{self.n_init}: {inertia}")
        elif event == "reassign":
            reassigning(int(inertia))
        elif event == "iteration" and iteration == 1:
            print(f"Minibatch step {step}: mean batch inertia: {inertia}")
        elif event == "iteration":
            self.ewa = inertia if self.ewa is None else self.ewa * (1 - self.alpha) + inertia * self.alpha
            print(f"Minibatch step {step}: mean batch inertia: {inertia}, ewa inertia: {self.ewa}")
        elif event == "tolerance":
            print(f"Converged (small centers change) at step {step}")
        elif event == "no_improvement":
            print(f"Converged (lack of improvement in inertia) at step {step}")
