"""Candidate (image, caption) pairs from caption neighbours (the indexes themselves: :mod:`.indexes`).

Candidates (:func:`candidate_pairs`) are the union of

* for each image, its top-``k`` captions by ``max over r in refs(i), r != c of <e_c, e_r>``;
* for each caption, its top-``caption_k`` images by the same score, and always its own image (the positive
  pair); ``caption_k = 0`` turns the caption side off (image side only, as before).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from bcls.pipeline.sources.hashing import sorted_unique

from .indexes import IndexSpec, build_index, exact_knn, ivf_base_order, measure_recall, search_blocks

log = logging.getLogger(__name__)

#: Query captions per thread below which the image side is reduced on one thread.
MIN_ROWS_PER_THREAD = 50_000


def _image_side(scores: np.ndarray, neighbours: np.ndarray, image_index: np.ndarray,
                k: int, threads: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` captions per image from every caption's neighbour list (see :func:`image_candidates`).

    The images are split into ``threads`` (default: one per CPU core) contiguous ranges of about equal caption
    counts, each reduced in its own thread (numpy's sorts release the GIL); the ranges' results, concatenated in
    order, are exactly the single-threaded result, which is sorted by image first."""
    n = len(image_index)
    threads = min(threads or os.cpu_count() or 1, max(1, n // MIN_ROWS_PER_THREAD))
    if threads <= 1:
        return _image_side_rows(scores, neighbours, image_index, None, n, k)
    n_images = int(image_index.max()) + 1
    cuts = np.searchsorted(np.cumsum(np.bincount(image_index, minlength=n_images)),
                           np.linspace(0, n, threads + 1)[1:-1])
    bounds = np.r_[0, cuts, n_images]
    part_of = np.searchsorted(bounds[1:], image_index, side="right")
    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(lambda t: _image_side_rows(scores, neighbours, image_index,
                                                         np.flatnonzero(part_of == t), n, k), range(threads)))
    return tuple(np.concatenate([p[j] for p in parts]) for j in range(3))  # type: ignore[return-value]


def _image_side_rows(scores: np.ndarray, neighbours: np.ndarray, image_index: np.ndarray, rows: np.ndarray | None,
                     n: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_image_side` over the query captions ``rows`` (the images of one range; None: all, no copy)."""
    if rows is None:
        rows = np.arange(n, dtype=np.int64)
    else:
        scores, neighbours = scores[rows], neighbours[rows]
    n_neighbours = neighbours.shape[1]
    image = np.repeat(image_index[rows], n_neighbours)
    query = np.repeat(rows, n_neighbours)
    caption = neighbours.ravel()
    score = scores.ravel()
    keep = (caption != query) & (caption >= 0)
    image, caption, score = image[keep], caption[keep], score[keep]
    # max over references of the same (image, caption): sort by key, reduce.
    key = image * np.int64(n) + caption
    order = np.lexsort((-score, key))
    key, score = key[order], score[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    key, score = key[first], score[first]
    image, caption = key // n, key % n
    # top-k per image by score (ties: lower caption position first)
    order = np.lexsort((caption, -score, image))
    image, caption, score = image[order], caption[order], score[order]
    starts = np.flatnonzero(np.r_[True, image[1:] != image[:-1]])
    rank = np.arange(len(image)) - np.repeat(starts, np.diff(np.r_[starts, len(image)]))
    keep = rank < k
    return image[keep], caption[keep], score[keep]


def image_candidates(embeddings: np.ndarray, image_index: np.ndarray, k: int,
                     use_gpu: bool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each image, its top-``k`` captions by maximum similarity to the image's reference captions.

    A caption is never its own reference: the score of (image i, caption c) is
    ``max over r in refs(i), r != c of <e_c, e_r>``.

    Searching ``k + 1`` neighbours per caption is exact: if c is in image i's top-k through reference r*,
    every caption closer to r* than c is also scored above c for image i, so at most ``k - 1`` captions plus r*
    itself precede c in r*'s neighbour list.

    Args:
        embeddings: float32 ``(N, d)`` L2-normalised caption embeddings.
        image_index: int64 ``(N,)`` image position (0..n_images-1) of each caption.

    Returns:
        ``(image_pos int64 (P,), caption_pos int64 (P,), score float32 (P,))`` sorted by image, then by score
        descending; ``P <= n_images * k``.
    """
    scores, neighbours = exact_knn(embeddings, embeddings, k + 1, use_gpu=use_gpu)
    return _image_side(scores, neighbours, np.asarray(image_index, dtype=np.int64), k)


def _caption_side(ids: np.ndarray, rows: np.ndarray, image_index: np.ndarray, n_images: int,
                  k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` images of captions ``rows`` from their neighbour lists ``ids`` (int64 ``(B, m)``, best first).

    An image's score for caption c is its best caption other than c, i.e. its first appearance in c's list.
    One pass over each list in a numba kernel (``nogil``: it runs beside the search without holding it up).
    Our code, instead of two ``np.lexsort`` over every (row, image, rank), which would pace the whole GPU search
    (docs/benchmarks.md, "Measurements behind the code"); a test holds it equal to that code.

    Returns:
        ``(image_pos (P,), caption_pos (P,), found int64 (B,))``: the pairs (by row, then rank), and how many
        distinct images each row's list held (capped at ``k``).
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    b, width = ids.shape[0], min(k, ids.shape[1])
    images = np.empty(b * width, dtype=np.int64)
    found = np.zeros(b, dtype=np.int64)
    seen = np.full(n_images, -1, dtype=np.int64)
    _caption_kernel()(ids, rows, np.asarray(image_index, dtype=np.int64), k, seen, images, found)
    keep = (np.arange(width)[None, :] < found[:, None]).ravel()
    return images[keep], np.repeat(rows, found), found


def _caption_lists(ids, rows, image_index, k, seen, images, found):  # pragma: no cover (compiled)
    """For each row r: the first ``k`` distinct images of ``ids[r]`` (skipping -1 and the row's own caption) into
    ``images[r * width:]``, their number into ``found[r]``; ``seen[img] == r`` marks the images met in row r."""
    width = min(k, ids.shape[1])
    for r in range(ids.shape[0]):
        n = 0
        for j in range(ids.shape[1]):
            if n == k:
                break
            c = ids[r, j]
            if c < 0 or c == rows[r]:
                continue
            img = image_index[c]
            if seen[img] != r:
                seen[img] = r
                images[r * width + n] = img
                n += 1
        found[r] = n


@functools.cache
def _caption_kernel():
    import numba

    return numba.njit(nogil=True, cache=True)(_caption_lists)


@dataclass(frozen=True)
class CandidateSet:
    """Candidate (image, caption) pairs of a build.

    Attributes:
        image_pos, caption_pos: int64 ``(P,)``, sorted by image, then caption; unique pairs.
        info: JSON-able description (index, device, counts, recall against exact search).
    """

    image_pos: np.ndarray
    caption_pos: np.ndarray
    info: dict[str, Any]


def candidate_pairs(embeddings: np.ndarray, image_index: np.ndarray, k: int, caption_k: int = 0,
                    spec: IndexSpec = IndexSpec(), use_gpu: bool | None = None, recall_queries: int = 1000,
                    block: int = 8192, seed: int = 0) -> CandidateSet:
    """The union of the image-side top-``k`` and the caption-side top-``caption_k`` (plus positive) pairs.

    One neighbour search serves both sides: ``max(k + 1, ~1.25·caption_k·captions-per-image + 2)`` neighbours
    per caption. The image side is exact with ``k + 1`` neighbours (see :func:`image_candidates`). A caption
    whose list holds fewer than ``caption_k`` distinct images is searched again with
    ``caption_k · max-captions-per-image + 1`` neighbours, which always holds them, so with ``exact`` both
    sides are exact.

    Args:
        embeddings: float32 ``(N, d)`` L2-normalised caption embeddings.
        image_index: int64 ``(N,)`` image position of each caption.
        k: captions per image; caption_k: images per caption besides its own (0: no caption side, no positives).
        spec: the FAISS index; recall@K against exact search is measured on ``recall_queries`` sampled
            captions for approximate kinds and recorded in ``info["recall"]``.
    """
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    image_index = np.asarray(image_index, dtype=np.int64)
    n = len(image_index)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return CandidateSet(empty, empty, {"index": spec.settings(), "pairs": 0})
    n_images = int(image_index.max()) + 1
    counts = np.bincount(image_index, minlength=n_images)
    max_refs = int(counts.max())
    depth = k + 1
    if caption_k:
        depth = max(depth, int(math.ceil(1.25 * caption_k * n / max(int((counts > 0).sum()), 1))) + 2)
    depth = min(depth, n)
    full_depth = min(n, caption_k * max_refs + 1)
    t0 = time.perf_counter()
    index, info = build_index(embeddings, spec, use_gpu, seed=seed)
    order = ivf_base_order(index)  # queries near each other in the index, searched together (same results)
    img_scores = np.empty((n, min(k + 1, depth)), dtype=np.float32)
    img_ids = np.empty_like(img_scores, dtype=np.int64)
    cap_parts: list[tuple[np.ndarray, np.ndarray]] = []
    retry: list[np.ndarray] = []
    pending: list[tuple[np.ndarray, Any]] = []

    def collect(keep: int) -> None:  # the merged caption sides of all but the last ``keep`` blocks, in order
        while len(pending) > keep:
            rows, future = pending.pop(0)
            ci, cc, found = future.result()
            short = found < min(caption_k, n_images - 1)
            if depth < full_depth and short.any():
                ok = ~np.isin(cc, rows[short])
                ci, cc = ci[ok], cc[ok]
                retry.append(rows[short])
            cap_parts.append((ci, cc))

    with ThreadPoolExecutor(1) as merger:  # a block's caption side is merged while the next block is searched
        for lo, hi, scores, ids in search_blocks(index, embeddings, depth, block, rows=order):
            rows = np.arange(lo, hi, dtype=np.int64) if order is None else order[lo:hi]
            img_scores[rows], img_ids[rows] = scores[:, :img_scores.shape[1]], ids[:, :img_scores.shape[1]]
            if caption_k:
                pending.append((rows, merger.submit(_caption_side, ids, rows, image_index, n_images, caption_k)))
                collect(1)  # at most two blocks' neighbour lists alive at once
        collect(0)
    n_retry = int(sum(len(r) for r in retry))
    if n_retry:
        rows = np.concatenate(retry)
        log.info("caption-side candidates: %d captions searched again with %d neighbours", n_retry, full_depth)
        for lo, hi, _, ids in search_blocks(index, embeddings[rows], full_depth, block, "neighbour search (deeper)"):
            ci, cc, _ = _caption_side(ids, rows[lo:hi], image_index, n_images, caption_k)
            cap_parts.append((ci, cc))
    t_search = time.perf_counter() - t0
    ii, ic, _ = _image_side(img_scores, img_ids, image_index, k)
    parts_i = [ii] + [p[0] for p in cap_parts]
    parts_c = [ic] + [p[1] for p in cap_parts]
    if caption_k:  # the caption side always holds the caption's own image
        parts_i.append(image_index)
        parts_c.append(np.arange(n, dtype=np.int64))
    unique = getattr(index, "sorted_unique", sorted_unique)  # on the GPU when the search ran there (torch)
    key = unique(np.concatenate(parts_i) * np.int64(n) + np.concatenate(parts_c))
    image_pos, caption_pos = key // n, key % n
    info = {"index": spec.settings() | {"description": info["description"]}, "device": info["device"],
            "neighbours_searched": int(depth), "captions_searched_deeper": n_retry,
            "image_side_pairs": int(len(ii)), "caption_side_pairs": int(sum(len(p[0]) for p in cap_parts)),
            "pairs": int(len(key))}
    if spec.kind != "exact" and recall_queries > 0:
        ks = sorted({min(k + 1, n), depth})
        info["recall"] = measure_recall(index, embeddings, ks, recall_queries, seed, use_gpu)
        log.info("%s recall against exact search on %d sampled captions: %s", spec.kind,
                 info["recall"]["queries"], ", ".join(f"R@{a}={b:.4f}" for a, b in info["recall"]["recall"].items()))
    else:
        info["recall"] = {"exact": True}
    log.info("candidates: %d pairs (%d image-side, %d caption-side%s) in %.1fs", len(key), len(ii),
             info["caption_side_pairs"], f", {n} positives" if caption_k else "", t_search)
    return CandidateSet(image_pos, caption_pos, info)
