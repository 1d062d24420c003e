"""The process's runtime settings that must be decided before torch loads: OpenMP's wait policy on a busy machine."""

from __future__ import annotations

import os

__all__ = ["busy_cores", "choose_openmp_wait_policy"]


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


def choose_openmp_wait_policy(environ: dict | None = None, busy: float | None | str = "measure") -> str | None:
    """``OMP_WAIT_POLICY`` for a heavy command, decided before torch loads (returns what was set, or None).

    Measured with ``bench/bench_contention.py`` on 2 cores: beside one busy process, torch's default OpenMP
    threads spin at every barrier while their partner is descheduled, and training ran 3.5× slower than alone;
    with ``PASSIVE`` (idle threads sleep) only 1.3×. Alone, though, ``PASSIVE`` was 35–45 % slower than the
    default. So bcls sleeps its idle threads only when other processes already keep at least half a core busy,
    and never overrides a policy the user set.
    """
    environ = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" in environ:
        return None
    busy = busy_cores() if busy == "measure" else busy
    if busy is None or busy < 0.5:
        return None
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return f"other processes keep {busy:.1f} of {os.cpu_count()} cores busy"
