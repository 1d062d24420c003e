"""numba kernels behind CIDEr-D's per-corpus tables (:mod:`.cider`): n-gram ids, each caption's n-gram counts and
the grouping of the entries by (image, n-gram).

Each replaces a global sort of all n-gram occurrences with hashing and small per-caption or per-image sorts, and
gives exactly the arrays of the sort-based numpy code it replaced: the same ids in the same order (ids of one
order are numbered in sorted order of their (previous id, word) key, as ``np.unique`` numbers them). Our code,
faster than the sorts (docs/benchmarks.md, "Measurements behind the code"); ``bench/bench_cider.py`` measures the
cold preparation of the 25,000 COCO test captions. A test holds the kernels equal to a plain Python
construction. They compile once per installation (numba's on-disk cache); their own small heapsort instead of
``np.sort`` keeps that short.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np

from .hashing import HASH_MUL

__all__ = ["gram_ids", "group_by_image", "sequence_counts"]

_SMALL = 64  # runs of at most this many entries are insertion-sorted in place (no allocation)
_MERGE = 16  # an image with at most this many captions has its entries merged, more are sorted


@functools.cache
def _kernels() -> SimpleNamespace:
    """The kernels compiled by numba (``nogil``, on-disk cache); numba is imported on first use."""
    import numba

    jit = numba.njit(nogil=True, cache=True)
    global _heapsort  # the kernels call it by this global name, so it must be compiled first
    _heapsort = jit(_heapsort_impl)
    return SimpleNamespace(order_ids=jit(_order_ids), counts=jit(_sequence_counts), group=jit(_group_by_image))


def _heapsort_impl(a, m):  # pragma: no cover (compiled)
    """Sort ``a[:m]`` in place (heapsort: O(m log m), no allocation, and quick to compile: numba's ``np.sort``
    compiles a generic quicksort into every kernel that calls it, seconds each)."""
    start, end = m // 2 - 1, m
    while end > 1:
        if start >= 0:  # first, heapify: sift down every parent, last first
            root = start
            start -= 1
        else:  # then move the largest to the end, shrink the heap, sift down the new root
            end -= 1
            a[0], a[end] = a[end], a[0]
            root = 0
        while 2 * root + 1 < end:
            child = 2 * root + 1
            if child + 1 < end and a[child] < a[child + 1]:
                child += 1
            if a[root] >= a[child]:
                break
            a[root], a[child] = a[child], a[root]
            root = child


_heapsort = _heapsort_impl  # replaced by the compiled function in _kernels()


def gram_ids(flat: np.ndarray, n_words: np.ndarray, n_vocab: int, n: int) -> tuple[np.ndarray, list[int]]:
    """The id of the order-k n-gram starting at every position, for k = 1..n.

    Args:
        flat: int64 ``(T,)`` every sequence's word ids one after another (``0 .. n_vocab-1``).
        n_words: int64 ``(N,)`` the length of each sequence.

    Returns:
        ``(ids, n_per_order)``: int64 ``(n, T)``, ``ids[k-1, p]`` the id (``0 .. n_per_order[k-1]-1``) of the
        order-k gram at ``p``, -1 where the sequence ends before it; order 1 ids are the word ids, order k ids
        number the distinct (order k-1 id, next word) keys in sorted order.
    """
    starts = np.zeros(len(n_words) + 1, dtype=np.int64)
    np.cumsum(n_words, out=starts[1:])
    room = np.repeat(starts[1:], n_words) - np.arange(len(flat), dtype=np.int64)  # positions left in the sequence
    ids = np.empty((n, len(flat)), dtype=np.int64)  # the kernel writes every position of rows 2..n
    ids[0] = flat
    per_order = [int(n_vocab)]
    kernel = _kernels().order_ids
    v = max(int(n_vocab), 1)
    for k in range(2, n + 1):
        n_valid = int(np.count_nonzero(room >= k))
        size = 1 << max(int(2 * n_valid - 1).bit_length(), 1)  # a power of two >= 2 × keys: load at most 1/2
        table = np.full(size, -1, dtype=np.int64)
        first_key = np.empty(n_valid, dtype=np.int64)
        found = kernel(ids[k - 2], flat, room, k, v, table, np.empty(size, dtype=np.int32), ids[k - 1], first_key)
        del table
        rank = np.empty(found, dtype=np.int64)  # first-occurrence number -> number in sorted key order
        rank[np.argsort(first_key[:found])] = np.arange(found, dtype=np.int64)
        valid = ids[k - 1] >= 0
        ids[k - 1][valid] = rank[ids[k - 1][valid]]
        per_order.append(found)
    return ids, per_order


def _order_ids(prev, flat, room, k, v, table_key, table_id, out, first_key):  # pragma: no cover (compiled)
    """Number the keys ``prev[p] · v + flat[p + k - 1]`` of the positions with room for an order-k gram in
    order of first occurrence (open addressing, linear probing); ``first_key[i]`` is the key numbered ``i``."""
    mask = len(table_key) - 1
    found = 0
    for p in range(len(flat)):
        if room[p] < k:
            out[p] = -1
            continue
        key = prev[p] * v + flat[p + k - 1]
        s = np.int64((np.uint64(key) * HASH_MUL) >> np.uint64(32)) & mask
        while table_key[s] != -1 and table_key[s] != key:
            s = (s + 1) & mask
        if table_key[s] == -1:
            table_key[s] = key
            table_id[s] = found
            first_key[found] = key
            found += 1
        out[p] = table_id[s]
    return found


def sequence_counts(ids: np.ndarray, offsets: np.ndarray, n_words: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each sequence's distinct n-grams (global id ``ids[k-1, p] + offsets[k-1]``) sorted by id, with counts.

    Returns:
        ``(ptr int64 (N + 1,), gram int64 (E,), count int64 (E,))``.
    """
    starts = np.zeros(len(n_words) + 1, dtype=np.int64)
    np.cumsum(n_words, out=starts[1:])
    bound = int(np.count_nonzero(ids >= 0))
    gram, count = np.empty(bound, dtype=np.int64), np.empty(bound, dtype=np.int64)
    ptr = np.zeros(len(n_words) + 1, dtype=np.int64)
    width = len(ids) * int(n_words.max(initial=0))
    used = _kernels().counts(ids, np.asarray(offsets, dtype=np.int64), starts, np.empty(width, np.int64), gram,
                             count, ptr)
    gram.resize(used, refcheck=False)  # in place: no copy
    count.resize(used, refcheck=False)
    return ptr, gram, count


def _sequence_counts(ids, offsets, starts, buf, gram, count, ptr):  # pragma: no cover (compiled)
    e = 0
    for s in range(len(starts) - 1):
        m = 0
        for k in range(ids.shape[0]):
            for p in range(starts[s], starts[s + 1]):
                if ids[k, p] >= 0:
                    buf[m] = ids[k, p] + offsets[k]
                    m += 1
        if m <= _SMALL:  # insertion sort in place
            for a in range(1, m):
                x = buf[a]
                b = a - 1
                while b >= 0 and buf[b] > x:
                    buf[b + 1] = buf[b]
                    b -= 1
                buf[b + 1] = x
        else:
            _heapsort(buf, m)
        i = 0
        while i < m:
            j = i + 1
            while j < m and buf[j] == buf[i]:
                j += 1
            gram[e] = buf[i]
            count[e] = j - i
            e += 1
            i = j
        ptr[s + 1] = e
    return e


def group_by_image(image_of: np.ndarray, n_images: int, ptr: np.ndarray, gram: np.ndarray) -> tuple[np.ndarray, ...]:
    """The entries (caption, gram) grouped by (image, gram): the order of a sort by (image, gram, caption).

    Args:
        image_of: int64 ``(N,)`` image position of each caption (``0 .. n_images-1``).
        ptr, gram: the captions' entries (:class:`~.cider.NgramCounts`), distinct grams per caption.

    Returns:
        ``(order int64 (E,), ig_image int64 (U,), ig_gram int64 (U,), ig_ptr int64 (U + 1,))``: the entry at
        each position of that order, and for each distinct (image, gram) u, in that order, its image, its gram
        and its positions ``ig_ptr[u]:ig_ptr[u+1]`` (captions ascending).
    """
    image_of = np.asarray(image_of, dtype=np.int64)
    captions = np.argsort(image_of, kind="stable")
    img_ptr = np.zeros(n_images + 1, dtype=np.int64)
    np.cumsum(np.bincount(image_of, minlength=n_images), out=img_ptr[1:])
    per_caption = np.diff(ptr)
    widest = int(np.bincount(image_of, weights=per_caption, minlength=n_images).max(initial=0))
    n_entries = len(gram)
    order, ig_image = np.empty(n_entries, np.int64), np.empty(n_entries, np.int64)
    ig_gram, ig_ptr = np.empty(n_entries, np.int64), np.empty(n_entries + 1, np.int64)
    found = _kernels().group(captions, img_ptr, ptr, gram, max(widest, 1), np.empty(widest, np.int64),
                             np.empty(widest, np.int64), order, ig_image, ig_gram, ig_ptr)
    ig_ptr[found] = n_entries
    for a, size in ((ig_image, found), (ig_gram, found), (ig_ptr, found + 1)):
        a.resize(size, refcheck=False)  # in place: no copy
    return order, ig_image, ig_gram, ig_ptr


def _group_by_image(captions, img_ptr, ptr, gram, width, key, entry, order, ig_image, ig_gram,
                    ig_ptr):  # pragma: no cover (compiled)
    pos = 0
    u = 0
    head = np.empty(_MERGE, np.int64)
    stop = np.empty(_MERGE, np.int64)
    for i in range(len(img_ptr) - 1):
        mine = captions[img_ptr[i]:img_ptr[i + 1]]  # ascending
        k = len(mine)
        m = 0
        if k <= _MERGE:  # merge the captions' entry lists, each sorted by gram; ties go to the earlier caption
            for j in range(k):
                head[j] = ptr[mine[j]]
                stop[j] = ptr[mine[j] + 1]
            while True:
                best = -1
                for j in range(k):
                    if head[j] < stop[j] and (best < 0 or gram[head[j]] < gram[head[best]]):
                        best = j
                if best < 0:
                    break
                entry[m] = head[best]
                head[best] += 1
                m += 1
        else:  # many captions: one sort by (gram, position), positions rising with the caption
            for c in mine:
                for e in range(ptr[c], ptr[c + 1]):
                    entry[m] = e
                    m += 1
            for j in range(m):
                key[j] = gram[entry[j]] * width + j  # distinct, and fits: gram < 2**32, width < 2**31
            _heapsort(key, m)
            for j in range(m):
                key[j] = entry[key[j] % width]
            entry[:m] = key[:m]
        last = -1
        for j in range(m):
            g = gram[entry[j]]
            if g != last:
                ig_image[u] = i
                ig_gram[u] = g
                ig_ptr[u] = pos
                u += 1
                last = g
            order[pos] = entry[j]
            pos += 1
    return u
