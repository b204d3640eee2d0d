"""Other processes stopped while a benchmark times (a training run sharing the cores or the GPU), resumed after."""
from __future__ import annotations

import contextlib
import os
import signal
import time


@contextlib.contextmanager
def paused(pids: list[int], settle_s: float = 0.0):
    """SIGSTOP the given processes for the duration (SIGCONT on the way out, whatever happens); yields the ones
    stopped (a process already gone is skipped). settle_s: a wait after stopping, e.g. for a GPU's queued kernels."""
    stopped = []
    try:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            except ProcessLookupError:
                pass
        if stopped and settle_s > 0:
            time.sleep(settle_s)
        yield stopped
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def pids_from_file(path: str | None) -> list[int]:
    """One process id per line; no file (or no path): none."""
    if not path or not os.path.isfile(path):
        return []
    with open(path) as f:
        return [int(line) for line in f if line.strip()]
