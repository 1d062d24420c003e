"""Vectorised helpers shared by the label pipeline: CSR range expansion, the sorted distinct values of a large
array, and a grouped open-addressing hash map from (image, key) to a value."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["GroupedHash", "HASH_MUL", "expand_ranges", "sorted_unique"]


def expand_ranges(ptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row r in ``rows``, the indices ``ptr[r]:ptr[r+1]``: returns (index into ``rows``, entry index)."""
    lo = ptr[rows]
    lens = ptr[rows + 1] - lo
    owner = np.repeat(np.arange(len(rows), dtype=np.int64), lens)
    first = np.cumsum(lens) - lens
    entry = np.arange(int(lens.sum()), dtype=np.int64) - np.repeat(first - lo, lens)
    return owner, entry


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` (sorted distinct values, flattened) by a sort and a mask.

    numpy 2.3+ answers a bare ``np.unique`` from a hash table, which is far slower on large arrays of spread-out keys
    such as a full-COCO build's candidate keys (docs/benchmarks.md, "Measurements behind the code"). ``np.unique`` with
    ``return_index`` / ``return_inverse`` / ``return_counts`` still sorts."""
    out = np.sort(np.asarray(values).ravel())
    return out[run_starts(out)] if len(out) > 1 else out


def run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Positions (int64) where each run of equal values of a sorted 1-d array starts, so its distinct values are
    ``sorted_values[run_starts(sorted_values)]`` and their counts ``np.diff(starts, append=len(sorted_values))``;
    one boolean temporary, no copy of the values."""
    first = np.empty(len(sorted_values), dtype=bool)
    first[:1] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=first[1:])
    return np.flatnonzero(first)


HASH_MUL = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class GroupedHash:
    """A read-only open-addressing hash map from (group, key) to a value, built and queried with vectorised numpy.

    Every group (here: an image) owns a small region of the table (a power of two at least twice its number of
    keys, so the load is at most 1/2) with linear probing inside it: the lookups of one group's pairs stay in a few
    cache lines, and a lookup costs a couple of gathers instead of a binary search's ~20.

    Attributes:
        offset: int64 ``(n_groups,)`` start of each group's region.
        mask: int64 ``(n_groups,)`` region size − 1.
        keys: ``(T,)`` keys (-1 = empty slot); int32 when every key fits, else int64.
        values: ``(T,)`` their values; int32 when every value fits, else int64. At full-COCO size the CIDEr
            n-gram index has 55 M slots: 32-bit slots save 420 MiB there.
    """

    offset: np.ndarray
    mask: np.ndarray
    keys: np.ndarray
    values: np.ndarray

    @staticmethod
    def hash(keys: np.ndarray) -> np.ndarray:
        """int64 hash of int64 keys (a group's region uses its low bits)."""
        return ((keys.astype(np.uint64) * HASH_MUL) >> np.uint64(32)).astype(np.int64)

    @classmethod
    def build(cls, groups: np.ndarray, keys: np.ndarray, values: np.ndarray, n_groups: int) -> "GroupedHash":
        """Map distinct pairs (``groups[k]``, ``keys[k]``) (int64, keys non-negative) to ``values[k]``."""
        per_group = np.bincount(groups, minlength=n_groups)
        # a power of two >= 2 * keys; an empty group gets one empty slot, so that its lookups end at once
        size = np.left_shift(1, np.ceil(np.log2(np.maximum(2 * per_group, 1))).astype(np.int64))
        offset = np.cumsum(size) - size
        mask = np.maximum(size - 1, 0)
        table_k: np.ndarray = np.full(int(size.sum()), -1, dtype=_slot_dtype(keys))
        table_v: np.ndarray = np.full(int(size.sum()), -1, dtype=_slot_dtype(values))
        _insert_kernel()(offset, mask, np.ascontiguousarray(groups, dtype=np.int64),
                         np.ascontiguousarray(keys, dtype=np.int64), np.ascontiguousarray(values, dtype=np.int64),
                         table_k, table_v)
        return cls(offset, mask, table_k, table_v)

    def get(self, groups: np.ndarray, keys: np.ndarray, home: np.ndarray | None = None) -> np.ndarray:
        """int64 values of (``groups``, ``keys``) (int64 ``(Q,)`` each), -1 where absent; ``home``: the keys'
        :meth:`hash` when already known."""
        out = np.full(len(keys), -1, dtype=np.int64)
        off, msk = self.offset[groups], self.mask[groups]
        s = off + ((self.hash(keys) if home is None else home) & msk)
        pending = np.arange(len(keys), dtype=np.int64)
        keys_p = keys
        while pending.size:
            k = self.keys[s]
            found = k == keys_p
            out[pending[found]] = self.values[s[found]]
            go_on = np.flatnonzero(~found & (k != -1))
            pending, keys_p = pending[go_on], keys_p[go_on]
            o, s = off[pending], s[go_on]
            s = o + ((s - o + 1) & msk[pending])
        return out


def _slot_dtype(a: np.ndarray) -> type:
    """int32 if every entry of ``a`` and the empty marker -1 fit in it, else int64."""
    fits = len(a) == 0 or (int(a.min()) >= -1 and int(a.max()) <= np.iinfo(np.int32).max)
    return np.int32 if fits else np.int64


@functools.cache
def _insert_kernel():
    """:func:`_insert` compiled by numba (on-disk cache), imported on first use; instead of vectorised rounds of
    claiming slots, much slower on the n-gram index of the COCO test captions (cProfile)."""
    import numba

    return numba.njit(nogil=True, cache=True)(_insert)


def _insert(offset, mask, groups, keys, values, table_k, table_v):  # pragma: no cover (compiled; lookups tested)
    """Insert each (group, key) → value with linear probing inside the group's region (keys distinct per group)."""
    for k in range(len(keys)):
        off, msk, key = offset[groups[k]], mask[groups[k]], keys[k]
        s = off + (np.int64((np.uint64(key) * HASH_MUL) >> np.uint64(32)) & msk)
        while table_k[s] != -1 and table_k[s] != key:
            s = off + ((s - off + 1) & msk)
        table_k[s] = key
        table_v[s] = values[k]
