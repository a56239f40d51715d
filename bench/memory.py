"""Peak resident memory of this process over a block of code, sampled from /proc (Linux)."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

STATUS = Path("/proc/self/status")


def rss_mb() -> float:
    """Current resident set size in MiB."""
    for line in STATUS.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS missing from /proc/self/status")


@contextmanager
def timed(record: dict, interval_s: float = 0.02) -> Iterator[None]:
    """Fill record['seconds'] and record['peak_rss_mb'] (process RSS, sampled every interval_s) for the block."""
    peak = [rss_mb()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(interval_s):
            peak[0] = max(peak[0], rss_mb())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    try:
        yield
    finally:
        record["seconds"] = time.perf_counter() - start
        done.set()
        thread.join()
        record["peak_rss_mb"] = round(max(peak[0], rss_mb()), 1)
