"""Caption neighbours with FAISS and the candidate (image, caption) pairs built from them."""

from __future__ import annotations

import logging
import time

import numpy as np

log = logging.getLogger(__name__)


def faiss_gpu_count() -> int:
    """Number of GPUs faiss can use (0 with faiss-cpu)."""
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def exact_knn(queries: np.ndarray, base: np.ndarray, k: int, block: int = 8192,
              use_gpu: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product k-nearest neighbours, in query blocks so memory stays bounded.

    Args:
        queries: float32 ``(Q, d)``; base: float32 ``(N, d)`` (L2-normalised for cosine).
        k: neighbours per query (clipped to ``N``).
        use_gpu: ``None`` uses a GPU index whenever faiss sees a GPU.

    Returns:
        ``(scores float32 (Q, k), indices int64 (Q, k))``, best first.
    """
    import faiss

    k = min(k, base.shape[0])
    index = faiss.IndexFlatIP(base.shape[1])
    if use_gpu is None:
        use_gpu = faiss_gpu_count() > 0
    if use_gpu:
        index = faiss.index_cpu_to_all_gpus(index)
        log.info("FAISS exact search on %d GPU(s)", faiss_gpu_count())
    index.add(np.ascontiguousarray(base, dtype=np.float32))
    scores = np.empty((queries.shape[0], k), dtype=np.float32)
    ids = np.empty((queries.shape[0], k), dtype=np.int64)
    start = time.perf_counter()
    for lo in range(0, queries.shape[0], block):
        hi = min(lo + block, queries.shape[0])
        scores[lo:hi], ids[lo:hi] = index.search(np.ascontiguousarray(queries[lo:hi], dtype=np.float32), k)
        rate = hi / max(time.perf_counter() - start, 1e-9)
        log.info("neighbour search: %d/%d queries (%.0f/s, ETA %.0fs)", hi, queries.shape[0], rate,
                 (queries.shape[0] - hi) / rate)
    return scores, ids


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
    n_neighbours = neighbours.shape[1]
    image = np.repeat(image_index, n_neighbours)
    query = np.repeat(np.arange(len(image_index)), n_neighbours)
    caption = neighbours.ravel()
    score = scores.ravel()
    keep = (caption != query) & (caption >= 0)
    image, caption, score = image[keep], caption[keep], score[keep]
    # max over references of the same (image, caption): sort by key, reduce.
    key = image * np.int64(len(image_index)) + caption
    order = np.lexsort((-score, key))
    key, score = key[order], score[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    key, score = key[first], score[first]
    image, caption = key // len(image_index), key % len(image_index)
    # top-k per image by score (ties: lower caption position first)
    order = np.lexsort((caption, -score, image))
    image, caption, score = image[order], caption[order], score[order]
    starts = np.flatnonzero(np.r_[True, image[1:] != image[:-1]])
    rank = np.arange(len(image)) - np.repeat(starts, np.diff(np.r_[starts, len(image)]))
    keep = rank < k
    return image[keep], caption[keep], score[keep]
