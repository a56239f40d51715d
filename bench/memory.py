"""Peak resident memory of this process (and of other processes, e.g. the emulator) over a block of code, sampled
from /proc (Linux)."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

STATUS = Path("/proc/self/status")


def rss_mb(status: Path = STATUS) -> float:
    """Current resident set size in MiB (of this process by default)."""
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"VmRSS missing from {status}")


def tree_rss_mb(pid: int) -> float:
    """Resident set size in MiB of a process and all its descendants (0 when it is gone)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += rss_mb(Path(f"/proc/{p}/status"))
        except (OSError, RuntimeError):
            continue
        todo += children.get(p, [])
    return total


@contextmanager
def timed(record: dict, interval_s: float = 0.02, other: int | None = None, other_name: str = "emulator"
          ) -> Iterator[None]:
    """Fill record['seconds'] and record['peak_rss_mb'] (process RSS, sampled every interval_s) for the block; with
    `other` (a pid) also record['<other_name>_peak_rss_mb'], that process tree's peak (sampled every 0.5 s)."""
    peak = [rss_mb(), tree_rss_mb(other) if other else 0.0]
    done = threading.Event()

    def sample() -> None:
        ticks = 0
        while not done.wait(interval_s):
            peak[0] = max(peak[0], rss_mb())
            ticks += 1
            if other and ticks % max(1, int(0.5 / interval_s)) == 0:  # a /proc walk: not every tick
                peak[1] = max(peak[1], tree_rss_mb(other))

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
        if other:
            record[f"{other_name}_peak_rss_mb"] = round(max(peak[1], tree_rss_mb(other)), 1)
