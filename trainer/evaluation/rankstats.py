"""Kendall τ-b and Spearman ρ of many long rows at once: a numba kernel equal to scipy's row by row.

:func:`rank_correlation_rows` takes rows of different lengths (flattened, with row pointers) and returns per row
what ``scipy.stats.kendalltau`` (variant b, tie corrected) and ``scipy.stats.spearmanr`` (average ranks for ties)
return, to float rounding. Kendall uses Knight's O(n log n) count: sort the pairs by (x, y), count the ties in x,
in y and in both, and count the discordant pairs as the inversions of the y ranks with a Fenwick tree; Spearman is
Pearson's r of the average ranks. Row ranges of about equal size run on one thread each (the kernel releases the
GIL). Import this module lazily: numba compiles it on its first use on a machine and loads it from its on-disk
cache afterwards. Faster than one scipy call per row with the same values to 1e-15, and threads compile and
run faster than numba's ``parallel=True`` (docs/benchmarks.md, "Measurements behind the code").
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np


def rank_correlation_rows(x: np.ndarray, y: np.ndarray, ptr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row Kendall τ-b and Spearman ρ of ``x`` against ``y``.

    Args:
        x, y: float64 ``(E,)``: the entries of every row one after another.
        ptr: int64 ``(R + 1,)``: row r is ``ptr[r]:ptr[r+1]``.

    Returns:
        ``(tau (R,), rho (R,))`` float64; NaN for a row with fewer than 2 entries or with all x or all y equal.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    ptr = np.ascontiguousarray(ptr, dtype=np.int64)
    n_rows = len(ptr) - 1
    tau = np.full(n_rows, np.nan)
    rho = np.full(n_rows, np.nan)
    # row ranges of about equal entry counts, one task per thread (the kernel releases the GIL)
    n_tasks = max(1, min(numba.config.NUMBA_NUM_THREADS, n_rows))  # type: ignore[attr-defined]  # set at import
    bounds = np.searchsorted(ptr, np.linspace(0, ptr[-1], n_tasks + 1)).clip(0, n_rows)
    bounds[0], bounds[-1] = 0, n_rows
    ranges = [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
    if len(ranges) <= 1:
        _rows(x, y, ptr, tau, rho, 0, n_rows)
    else:
        with ThreadPoolExecutor(len(ranges)) as pool:
            list(pool.map(lambda r: _rows(x, y, ptr, tau, rho, r[0], r[1]), ranges))
    return tau, rho


@numba.njit(nogil=True, cache=True)
def _ranks(v: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """From one sort of ``v``: its 0-based dense ranks (equal values share one), the number of distinct values,
    and its 1-based average ranks (ties given the mean of their positions, scipy's ``rankdata``)."""
    n = len(v)
    order = np.argsort(v, kind="mergesort")
    dense = np.empty(n, dtype=np.int64)
    average = np.empty(n, dtype=np.float64)
    r = 0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and v[order[j + 1]] == v[order[i]]:
            j += 1
        mean = 0.5 * (i + j) + 1.0
        for k in range(i, j + 1):
            dense[order[k]] = r
            average[order[k]] = mean
        r += 1
        i = j + 1
    return dense, r, average


@numba.njit(nogil=True, cache=True)
def _one_row(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Kendall τ-b and Spearman ρ of one row (NaN when undefined)."""
    n = len(x)
    if n < 2:
        return np.nan, np.nan
    xr, nx, ax = _ranks(x)
    yr, ny, ay = _ranks(y)
    if nx < 2 or ny < 2:
        return np.nan, np.nan
    order = np.argsort(xr * ny + yr, kind="mergesort")  # by x, then y
    tree = np.zeros(ny + 1, dtype=np.int64)  # Fenwick tree over y ranks seen so far
    dis = 0
    x_tie = y_tie = xy_tie = 0
    run_x = run_xy = 1
    for j in range(n):
        c = order[j]
        if j > 0:
            p = order[j - 1]
            if xr[c] == xr[p]:
                run_x += 1
                if yr[c] == yr[p]:
                    run_xy += 1
                else:
                    xy_tie += run_xy * (run_xy - 1) // 2
                    run_xy = 1
            else:
                x_tie += run_x * (run_x - 1) // 2
                xy_tie += run_xy * (run_xy - 1) // 2
                run_x = run_xy = 1
        # earlier pairs (smaller x, or equal x and smaller or equal y) with a larger y: discordant
        seen_le = 0
        k = yr[c] + 1
        while k > 0:
            seen_le += tree[k]
            k -= k & -k
        dis += j - seen_le
        k = yr[c] + 1
        while k <= ny:
            tree[k] += 1
            k += k & -k
    x_tie += run_x * (run_x - 1) // 2
    xy_tie += run_xy * (run_xy - 1) // 2
    counts = np.zeros(ny, dtype=np.int64)
    for i in range(n):
        counts[yr[i]] += 1
    for v in range(ny):
        y_tie += counts[v] * (counts[v] - 1) // 2
    total = n * (n - 1) // 2
    tau = (total - x_tie - y_tie + xy_tie - 2 * dis) / np.sqrt(float(total - x_tie)) / np.sqrt(float(total - y_tie))
    ax -= ax.mean()
    ay -= ay.mean()
    rho = (ax * ay).sum() / np.sqrt((ax * ax).sum() * (ay * ay).sum())
    return tau, rho


@numba.njit(nogil=True, cache=True)
def _rows(x: np.ndarray, y: np.ndarray, ptr: np.ndarray, tau: np.ndarray, rho: np.ndarray, lo: int,
          hi: int) -> None:
    for r in range(lo, hi):
        tau[r], rho[r] = _one_row(x[ptr[r]:ptr[r + 1]], y[ptr[r]:ptr[r + 1]])
