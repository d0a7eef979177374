"""Progress of a fit for `verbose="progress"`: a tqdm.auto bar (a widget in Jupyter, text in
a terminal) per run, showing the current inertia."""

from __future__ import annotations

import contextlib


class ProgressBar:
    """Called by the engine as `(run, iteration, inertia, center_shift, event)` (see
    `_verbose`); one bar per run, moved on each iteration (or mini-batch step)."""

    def __init__(self, total: int | None, desc: str, unit: str = "it"):
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.total, self.desc, self.unit = total, desc, unit
        self.run: int | None = None
        self.bar = None

    def __call__(self, run: int, iteration: int, inertia: float, center_shift: float, event: str = "iteration") -> None:
        if event != "iteration":
            return
        if run != self.run:
            self.close()
            self.run = run
            self.bar = self._tqdm(total=self.total, desc=f"{self.desc} run {run + 1}", unit=self.unit, leave=True)
        self.bar.update(iteration - self.bar.n)
        self.bar.set_postfix(inertia=f"{inertia:.6g}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextlib.contextmanager
def progress_bar(enabled, total: int | None, desc: str, unit: str = "it"):
    """A `ProgressBar` while the block runs when `enabled`, else None; closed on exit."""
    if not enabled:
        yield None
        return
    bar = ProgressBar(total, desc, unit)
    try:
        yield bar
    finally:
        bar.close()
