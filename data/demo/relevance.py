"""Ground-truth relevance: the fraction of a caption's facts that are true of an image."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .demo_config import DemoFacts


def _rows(rows: Sequence[int] | np.ndarray | None, n: int, what: str) -> np.ndarray:
    if rows is None:
        return np.arange(n, dtype=np.int64)
    out = np.asarray(rows, dtype=np.int64).reshape(-1)
    if out.size and (out.min() < -n or out.max() >= n):
        raise IndexError(f"{what} rows out of range for {n} {what}s")
    return np.where(out < 0, out + n, out)


def _gather_csr(ptr: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(local row, fact id) pairs of ``rows`` of a CSR fact table."""
    starts, counts = ptr[rows], ptr[rows + 1] - ptr[rows]
    local = np.repeat(np.arange(rows.size, dtype=np.int64), counts)
    offsets = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
    return local, ids[offsets]


def demo_relevance(facts: DemoFacts, image_rows: Sequence[int] | np.ndarray | None = None,
                   caption_rows: Sequence[int] | np.ndarray | None = None,
                   max_block_elements: int = 1 << 24) -> np.ndarray:
    """Ground-truth relevance: the fraction of each caption's facts that are true of each image.

    Vectorised with an inverted index (image rows sorted by fact id, ``np.searchsorted`` per caption fact,
    ``np.bincount`` of hits), in caption blocks of at most ``max_block_elements`` output cells.

    Args:
        facts: the split's ground truth (:func:`read_demo_facts`).
        image_rows: image rows to score (default all), shape ``(I,)``.
        caption_rows: caption rows to score (default all), shape ``(C,)``.

    Returns:
        ``(I, C)`` float32 in [0, 1]; an image's own captions score 1.
    """
    img = _rows(image_rows, facts.n_images, "image")
    cap = _rows(caption_rows, facts.n_captions, "caption")
    out = np.zeros((img.size, cap.size), dtype=np.float32)
    if img.size == 0 or cap.size == 0:
        return out
    img_local, img_fact = _gather_csr(facts.image_fact_ptr, facts.image_fact_ids, img)
    order = np.argsort(img_fact, kind="stable")
    img_fact, img_local = img_fact[order], img_local[order]
    n_facts = (facts.caption_fact_ptr[cap + 1] - facts.caption_fact_ptr[cap]).astype(np.float32)
    block = max(1, max_block_elements // img.size)
    for start in range(0, cap.size, block):
        sub = cap[start:start + block]
        cap_local, cap_fact = _gather_csr(facts.caption_fact_ptr, facts.caption_fact_ids, sub)
        lo = np.searchsorted(img_fact, cap_fact, side="left")
        hits = np.searchsorted(img_fact, cap_fact, side="right") - lo
        total = int(hits.sum())
        pos = np.repeat(lo - np.cumsum(hits) + hits, hits) + np.arange(total)
        flat = img_local[pos] * sub.size + np.repeat(cap_local, hits)
        counts = np.bincount(flat, minlength=img.size * sub.size).reshape(img.size, sub.size)
        out[:, start:start + sub.size] = counts
    with np.errstate(divide="ignore", invalid="ignore"):
        out /= np.where(n_facts > 0, n_facts, np.float32(np.inf))[None, :]
    return out



def demo_pair_relevance(facts: DemoFacts, image_rows: Sequence[int] | np.ndarray,
                        caption_rows: Sequence[int] | np.ndarray) -> np.ndarray:
    """Ground-truth relevance of ``P`` (image, caption) pairs: ``demo_relevance(facts)[image_rows[p],
    caption_rows[p]]`` without the matrix.

    Each caption fact of each pair is looked up in a sorted array of ``image_row * n_facts + fact`` keys.

    Args:
        facts: the split's ground truth.
        image_rows, caption_rows: int ``(P,)`` rows of the pairs.

    Returns:
        float32 ``(P,)`` in [0, 1].
    """
    img = _rows(image_rows, facts.n_images, "image")
    cap = _rows(caption_rows, facts.n_captions, "caption")
    if img.shape != cap.shape:
        raise ValueError(f"image_rows {img.shape} and caption_rows {cap.shape} must have one length")
    n_facts = max(len(facts.fact_names), 1)
    img_owner = np.repeat(np.arange(facts.n_images, dtype=np.int64), np.diff(facts.image_fact_ptr))
    keys = np.sort(img_owner * n_facts + facts.image_fact_ids)
    pair, fact = _gather_csr(facts.caption_fact_ptr, facts.caption_fact_ids, cap)
    want = img[pair] * n_facts + fact
    at = np.minimum(np.searchsorted(keys, want), max(len(keys) - 1, 0))
    hit = (keys[at] == want) if len(keys) else np.zeros(len(want), dtype=bool)
    n_cap_facts = np.diff(facts.caption_fact_ptr)[cap].astype(np.float32)
    hits = np.bincount(pair, weights=hit, minlength=len(cap)).astype(np.float32)
    return np.divide(hits, n_cap_facts, out=np.zeros(len(cap), dtype=np.float32), where=n_cap_facts > 0)
