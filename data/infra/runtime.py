"""The process's runtime settings that must be decided before torch loads: OpenMP's wait policy on a busy machine."""

from __future__ import annotations

import ctypes
import os
from typing import Any, MutableMapping

__all__ = ["busy_cores", "choose_openmp_wait_policy", "release_free_memory"]


def busy_cores(seconds: float = 0.25) -> float | None:
    """Cores kept busy by other processes, sampled from ``/proc/stat`` over ``seconds`` (None where it is not
    readable). This process is idle while it samples, so all the busy time is someone else's."""
    import time

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields) - idle, sum(fields)

    try:
        busy0, total0 = sample()
        time.sleep(seconds)
        busy1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return (busy1 - busy0) / max(total1 - total0, 1) * (os.cpu_count() or 1)


def choose_openmp_wait_policy(environ: MutableMapping[str, str] | None = None,
                              busy: float | None | str = "measure") -> str | None:
    """``OMP_WAIT_POLICY`` for a heavy command, decided before torch loads (returns what was set, or None).

    Beside a busy process, torch's default OpenMP threads spin at every barrier while their partner is descheduled, and
    training slows down several times; with ``PASSIVE`` idle threads sleep, which costs speed when the machine is
    otherwise idle (measured: docs/benchmarks.md, "Measurements behind the code"). So bcls sleeps its idle threads only
    when other processes already keep at least half a core busy, and never overrides a policy the user set.
    """
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" in env:
        return None
    load = busy_cores() if busy == "measure" else busy
    if not isinstance(load, (int, float)) or load < 0.5:
        return None
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    return f"other processes keep {load:.1f} of {os.cpu_count()} cores busy"


_malloc_trim: Any = None  # the C function once looked up; False where there is none


def release_free_memory() -> bool:
    """Give the free pages inside the C heap back to the system (glibc's ``malloc_trim(0)``); False where the C
    library has no such call (nothing happens there).

    glibc serves an array of up to 32 MiB from its heap once a freed array of that size has raised its mmap
    threshold, and it returns freed heap memory to the system only from the heap's top. A label build frees
    many such arrays in each phase (search blocks, tokenisation), so without this they stayed resident through
    every later phase (docs/label_builds.md). A label build calls this between its phases and after each shard.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(None).malloc_trim
            _malloc_trim.argtypes, _malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError):
            _malloc_trim = False
    if not _malloc_trim:
        return False
    _malloc_trim(0)
    return True
