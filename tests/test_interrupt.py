"""Ctrl-C in every phase (seeding, Lloyd iterations, mini-batch steps, predict) on every
backend, sent to a child process in the middle of that phase: the call raises
KeyboardInterrupt within about a second, leaves the estimator unfitted, and the next fit in
the same process works."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mlx_kmeans

BACKENDS = [b.name for b in mlx_kmeans.backends() if b.available]
PHASES = ["init", "lloyd", "minibatch", "predict"]
CHILD = Path(__file__).resolve().parent / "interrupted_child.py"

# Seconds the child runs its phase before the signal, and the most it may take to stop: the
# engine checks between chunks sized for a fraction of a second; the rest is margin for a
# loaded 2-core machine.
RUN_BEFORE_SIGNAL = 1.5
STOP_WITHIN = 4.0


def interrupt_child(backend: str, phase: str) -> tuple[float, str]:
    """Starts the child, sends SIGINT `RUN_BEFORE_SIGNAL` seconds after it is ready, and returns
    the seconds until it reported the interrupt, and its whole output."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), backend, phase],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        for line in child.stdout:
            lines.append(line)
            if line.strip() == "ready":
                break
        else:
            raise AssertionError("the child never got ready:\n" + "".join(lines))
        time.sleep(RUN_BEFORE_SIGNAL)
        sent = time.perf_counter()
        child.send_signal(signal.SIGINT)
        reported = None
        # A child that ignores the signal would run for minutes: give up after a while.
        while time.perf_counter() - sent < 60:
            if not select.select([child.stdout], [], [], 1.0)[0]:
                continue
            line = child.stdout.readline()
            if not line:
                break
            lines.append(line)
            if reported is None and (line.startswith("interrupted") or line.startswith("finished")):
                reported = time.perf_counter()
            if line.startswith("refit ok"):
                break
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    output = "".join(lines)
    assert reported is not None, f"no report after SIGINT:\n{output}"
    return reported - sent, output


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32", reason="needs POSIX signals")
@pytest.mark.parametrize("phase", PHASES + ["lloyd-verbose", "lloyd-logging"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_mid_phase(backend, phase):
    if phase.startswith("lloyd-") and backend != "cpu":
        pytest.skip("the progress bar and log bridge are the same on every backend")
    delay, output = interrupt_child(backend, phase)
    assert "interrupted fitted=False" in output, output
    assert "refit ok" in output, output
    assert "Error" not in output, output
    assert delay < STOP_WITHIN, f"{delay:.2f} s to stop:\n{output}"
