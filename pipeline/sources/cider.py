"""``cider``: CIDEr-D of a caption against an image's other reference captions, exactly as coco-caption computes it.

The value of pair (i, c) is the CIDEr-D score of candidate c against ``refs(i)`` without c (leave-one-out), as
``pycocoevalcap.cider.cider_scorer.CiderScorer`` computes it for one candidate and one reference set:

* every caption becomes counts of its n-grams, n = 1..4 (whitespace tokens of the PTB-like tokenisation below);
* an n-gram's weight is ``tf · (log(D) − log(max(1, df)))``, with ``D`` the number of reference sets (images)
  and ``df`` the number of reference sets that contain the n-gram;
* per order n and per reference r: ``Σ_g min(v_c[g], v_r[g]) · v_r[g] / (‖v_c‖ ‖v_r‖)`` (clipped numerator,
  norms of the *unclipped* vectors; 0 where a norm is 0), times the Gaussian length penalty
  ``exp(−δ² / (2σ²))``, σ = 6;
* score = 10 · mean over n of (sum over references / number of references).

**Document frequencies.** coco-caption computes ``df`` over the reference sets of the images being *evaluated*.
A label build scores candidate pairs, not an evaluation set, so here ``df`` and ``D`` come from the whole corpus:
every image with at least one caption is one document, its *full* caption set counted once (the caption being
scored included: the statistics are a property of the corpus, the same for every pair). This is what
coco-caption returns when it evaluates one candidate per corpus image with that image's full reference set
(``compute_doc_freq`` over those sets); the tests and ``bench/bench_cider.py`` feed ``CiderScorer`` exactly these
``df`` and ``D`` and compare the values to 1e-9.

**Length.** coco-caption's "length" of a sentence is its number of *bigrams* (``if n == 1`` on a 0-based order
index), i.e. ``max(words − 1, 0)``; it is reproduced here, since it changes the penalty of one-word and empty
captions. coco-caption always cooks 1..4-grams whatever ``n`` it is given (and fails for ``n < 4``); with
``n ≠ 4`` this source uses orders 1..n and the same bigram length, a natural generalisation that no reference
implementation checks.

**Values.** Raw CIDEr-D (the ×10 scale, typically 0..10, can exceed 10), not rescaled: raw values go to the
shards, normalisation belongs to the trainer. A pair whose image has no caption besides c gets NaN (undefined).

**Speed.** Per corpus, once (:func:`prepare_cider`, cached per corpus object by :func:`cider_tables`):
tokenisation of all captions at once straight to word ids (:func:`~bcls.pipeline.sources.ptb.ptb_token_ids`, each
distinct token split once); n-gram ids by hashing, each caption's counts and the grouping of the entries by (image,
n-gram) in numba loops with small per-caption / per-image sorts instead of global sorts
(:mod:`~bcls.pipeline.sources.ngram_kernels`, the same tables array for array); document frequencies, tf-idf norms and a
hash index from (image, n-gram) to the captions of the image that hold it are vectorised numpy. Per call
(:func:`cider_d_scores`): a numba-compiled loop over the pairs looks up each candidate n-gram in the (image, n-gram)
index (an n-gram that only the candidate's own image holds is skipped for other images) and accumulates the clipped
products per (reference, order) in one small buffer. This loop is used instead of a vectorised numpy join (gathers,
``bincount``), which is slower (``bench/bench_cider.py``); the parity tests hold it to coco-caption within 1e-9. The
kernel releases the GIL: a call's pairs are split over one thread per core, and dask's threads score shards in parallel;
its speed against pycocoevalcap is in docs/benchmarks.md. float64 throughout; :class:`CiderSource` returns float32 as
the label-source protocol asks.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from bcls.data.infra.errors import ConfigError

from ..corpus import LabelCorpus
from .cache import CorpusCache
from .hashing import HASH_MUL, GroupedHash
from .ngram_kernels import gram_ids, group_by_image, sequence_counts
from .ptb import PTB_PUNCTUATIONS, ptb_token_ids, ptb_tokenize

__all__ = ["CiderSource", "CiderTables", "GroupedHash", "NgramCounts", "PTB_PUNCTUATIONS", "cider_d_scores",
           "cider_tables", "ngram_counts", "ngram_counts_from_ids", "prepare_cider", "ptb_token_ids", "ptb_tokenize"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NgramCounts:
    """N-gram counts of a list of token sequences, with n-grams as integer ids.

    Attributes:
        ptr: int64 ``(N + 1,)``: entries of sequence s are ``ptr[s]:ptr[s+1]`` (sorted by gram id, distinct).
        gram: int64 ``(E,)`` n-gram id of each entry.
        count: int64 ``(E,)`` its count in the sequence (the term frequency).
        order: int8 ``(G,)`` the order (1..n) of each n-gram id; ids are grouped by order.
        n_words: int64 ``(N,)`` tokens per sequence.
    """

    ptr: np.ndarray
    gram: np.ndarray
    count: np.ndarray
    order: np.ndarray
    n_words: np.ndarray

    @property
    def n_grams(self) -> int:
        """Number of distinct n-grams (ids are ``0 .. n_grams-1``)."""
        return len(self.order)


def ngram_counts(tokens: Sequence[Sequence[str]], n: int = 4) -> NgramCounts:
    """Map the 1..n-grams of each token sequence to integer ids and count them (like coco-caption's ``precook``).

    One Python pass maps words to ids; n-gram ids and counts are vectorised: an order-k id is the unique index of
    (order-(k−1) id at position s, word id at s+k−1).
    """
    vocab: dict[str, int] = {}
    flat = np.fromiter((vocab.setdefault(w, len(vocab)) for seq in tokens for w in seq), dtype=np.int64)
    n_words = np.fromiter((len(seq) for seq in tokens), dtype=np.int64, count=len(tokens))
    return ngram_counts_from_ids(flat, n_words, len(vocab), n)


def ngram_counts_from_ids(flat: np.ndarray, n_words: np.ndarray, n_vocab: int, n: int = 4) -> NgramCounts:
    """:func:`ngram_counts` of sequences given as word ids: ``flat`` (int64, every sequence's ids one after
    another, each in ``0 .. n_vocab-1``) and ``n_words`` (int64, the length of each sequence)."""
    if n < 1:
        raise ConfigError(f"n-gram order must be at least 1, got {n}")
    flat = np.ascontiguousarray(flat, dtype=np.int64)
    n_words = np.ascontiguousarray(n_words, dtype=np.int64)
    ids, per_order = gram_ids(flat, n_words, n_vocab, n)
    offsets = np.cumsum([0] + per_order[:-1])
    if int(offsets[-1]) + per_order[-1] >= 1 << 32:
        raise ConfigError(f"more than 2**32 distinct n-grams ({sum(per_order)}); split the caption table")
    ptr, gram, count = sequence_counts(ids, offsets, n_words)
    del ids
    order = np.repeat(np.arange(1, n + 1, dtype=np.int8), per_order)
    return NgramCounts(ptr, gram, count, order, n_words)


@dataclass(frozen=True)
class CiderTables:
    """Per-corpus CIDEr-D statistics (see :func:`prepare_cider`).

    Attributes:
        n: highest n-gram order.
        counts: :class:`NgramCounts` of the ``N`` captions (``E`` entries, ``G`` n-grams).
        n_docs: number of reference sets (images with at least one caption): ``D``.
        idf: float64 ``(G,)`` ``log(D) − log(max(1, df))`` per n-gram id.
        norms: float64 ``(N, n)`` L2 norm of each caption's tf-idf vector per order.
        length: int64 ``(N,)`` coco-caption's length (number of bigrams, ``max(words − 1, 0)``).
        slot: int64 ``(N,)`` position of each caption in its image's row of ``refs``.
        refs: int64 ``(n_images, M)`` the corpus's reference matrix (-1 padded).
        image_of: int64 ``(N,)`` image position of each caption.
        value: float64 ``(E,)`` tf-idf value ``tf · idf`` of each entry of ``counts``.
        shared: int64 ``(S,)`` the entries whose n-gram some other image holds too (df ≥ 2), grouped by caption;
            ``shared_ptr`` (int64 ``(N + 1,)``) delimits each caption's. A caption scored against its own image
            uses all its entries (``counts.ptr``), against another image only these.
        ig_index: :class:`GroupedHash` from (image, gram) to u, for each (image, n-gram of one of its captions).
        ig_ptr: int64 ``(U + 1,)``: the captions of (image, n-gram) u are ``ig_ptr[u]:ig_ptr[u+1]`` in
            ``ig_caption`` / ``ig_value``.
        ig_caption: int64 ``(E,)`` the caption holding that n-gram.
        ig_value: float64 ``(E,)`` its tf-idf value ``tf · idf``.
        seconds: time the preparation took.
    """

    n: int
    counts: NgramCounts
    n_docs: int
    idf: np.ndarray
    norms: np.ndarray
    length: np.ndarray
    slot: np.ndarray
    refs: np.ndarray
    image_of: np.ndarray
    value: np.ndarray
    shared: np.ndarray
    shared_ptr: np.ndarray
    ig_index: GroupedHash
    ig_ptr: np.ndarray
    ig_caption: np.ndarray
    ig_value: np.ndarray
    seconds: float = 0.0

    @property
    def ref_len(self) -> float:
        """coco-caption's ``ref_len``: ``log(D)``."""
        return float(np.log(float(self.n_docs))) if self.n_docs else 0.0


def prepare_cider(texts: Sequence[str], image_index: np.ndarray, refs: np.ndarray, n: int = 4,
                  tokenize: bool = True) -> CiderTables:
    """Tokenise the captions and compute everything CIDEr-D needs that does not depend on the pairs.

    Args:
        texts: ``(N,)`` captions.
        image_index: int64 ``(N,)`` image position of each caption.
        refs: int64 ``(n_images, M)`` caption positions of each image (-1 padded), as in ``LabelCorpus.refs``.
        n: highest n-gram order.
        tokenize: apply :func:`ptb_tokenize` (else split ``texts`` on whitespace as they are).
    """
    t0 = time.perf_counter()
    image_of = np.asarray(image_index, dtype=np.int64)
    refs = np.asarray(refs, dtype=np.int64)
    if tokenize:
        flat, n_words, words = ptb_token_ids(texts)
        counts = ngram_counts_from_ids(flat, n_words, len(words), n)
    else:
        counts = ngram_counts([t.split() for t in texts], n)
    n_cap = len(texts)
    # Each full-size temporary is freed as soon as it is used (full COCO: 21 M entries, 164 MiB per int64 array).
    cap_of_entry = np.repeat(np.arange(n_cap, dtype=np.int64), np.diff(counts.ptr))
    # document frequencies: distinct (image, gram) keys, each image's full caption set counted once
    order, ig_image, ig_keys, ig_ptr = group_by_image(image_of, len(refs), counts.ptr, counts.gram)
    n_docs = int(np.count_nonzero((refs >= 0).any(axis=1))) if refs.size else 0
    df = np.bincount(ig_keys, minlength=counts.n_grams).astype(np.float64)
    ref_len = np.log(float(n_docs)) if n_docs else 0.0
    idf = ref_len - np.log(np.maximum(1.0, df))
    value = counts.count.astype(np.float64) * idf[counts.gram]
    slot_of_entry = cap_of_entry * n + (counts.order[counts.gram] - 1)
    norms = np.sqrt(np.bincount(slot_of_entry, weights=value * value, minlength=n_cap * n)).reshape(n_cap, n)
    del slot_of_entry
    # candidate-side entries against another image: those another image can share (df >= 2)
    shared = np.flatnonzero(df[counts.gram] >= 2)
    shared_ptr = np.zeros(n_cap + 1, dtype=np.int64)
    np.cumsum(np.bincount(cap_of_entry[shared], minlength=n_cap), out=shared_ptr[1:])
    slot = np.full(n_cap, -1, dtype=np.int64)
    rr, ss = np.nonzero(refs >= 0)
    slot[refs[rr, ss]] = ss
    ig_caption = cap_of_entry[order]
    del cap_of_entry
    ig_value = value[order]
    del order
    ig_index = GroupedHash.build(ig_image, ig_keys, np.arange(len(ig_keys), dtype=np.int64), len(refs))
    del ig_image, ig_keys
    tables = CiderTables(
        n=n, counts=counts, n_docs=n_docs, idf=idf, norms=norms, length=np.maximum(counts.n_words - 1, 0),
        slot=slot, refs=refs, image_of=image_of, value=value, shared=shared, shared_ptr=shared_ptr,
        ig_index=ig_index, ig_ptr=ig_ptr, ig_caption=ig_caption,
        ig_value=ig_value, seconds=time.perf_counter() - t0)
    log.info("cider: prepared %d captions of %d images (%d distinct 1..%d-grams) in %.2fs", n_cap, n_docs,
             counts.n_grams, n, tables.seconds)
    return tables


def cider_d_scores(tables: CiderTables, image_pos: np.ndarray, caption_pos: np.ndarray,
                   sigma: float = 6.0) -> np.ndarray:
    """CIDEr-D (×10) of caption ``caption_pos[p]`` against the captions of image ``image_pos[p]`` other than it.

    Args:
        tables: :func:`prepare_cider` output of the corpus.
        image_pos: int ``(P,)`` image positions.
        caption_pos: int ``(P,)`` caption positions.
        sigma: standard deviation of the Gaussian length penalty.

    Returns:
        float64 ``(P,)``; NaN where the image has no caption besides the candidate.
    """
    image_pos = np.asarray(image_pos, dtype=np.int64)
    caption_pos = np.asarray(caption_pos, dtype=np.int64)
    if image_pos.shape != caption_pos.shape or image_pos.ndim != 1:
        raise ConfigError(f"image_pos and caption_pos must be 1-D of one length, got {image_pos.shape} "
                          f"and {caption_pos.shape}")
    if len(image_pos) == 0:
        return np.zeros(0, dtype=np.float64)
    return _score_block(tables, image_pos, caption_pos, sigma)


#: Pairs per thread below which :func:`cider_d_scores` stays on one thread (thread start-up outweighs the work).
MIN_PAIRS_PER_THREAD = 20_000


def _score_block(t: CiderTables, img: np.ndarray, cap: np.ndarray, sigma: float) -> np.ndarray:
    """The kernel over the pairs, split over up to one thread per CPU core (it releases the GIL); a label build
    that already scores shards in parallel hands it shards whose split it simply shares with the others."""
    ig = t.ig_index
    kernel = _compiled_kernel()

    def run(lo: int, hi: int) -> np.ndarray:
        return kernel(img[lo:hi], cap[lo:hi], t.image_of, t.counts.ptr, t.counts.gram, t.value, t.shared,
                      t.shared_ptr, ig.offset, ig.mask, ig.keys, ig.values, t.ig_ptr, t.ig_caption, t.ig_value,
                      t.counts.order, t.slot, t.refs, t.norms, t.length, float(sigma))

    n_threads = min(os.cpu_count() or 1, len(img) // MIN_PAIRS_PER_THREAD)
    if n_threads <= 1:
        return run(0, len(img))
    bounds = np.linspace(0, len(img), n_threads + 1).astype(np.int64)
    with ThreadPoolExecutor(n_threads) as pool:
        parts = list(pool.map(run, bounds[:-1], bounds[1:]))
    return np.concatenate(parts)


@functools.cache
def _compiled_kernel():
    """:func:`_cider_kernel` compiled by numba (``nogil``, on-disk cache); numba is imported on first use, so
    importing the label sources stays cheap."""
    import numba

    return numba.njit(nogil=True, cache=True)(_cider_kernel)


def _cider_kernel(img, cap, image_of, entry_ptr, entry_gram, entry_value, shared, shared_ptr, ig_offset, ig_mask,
                  ig_keys, ig_values, ig_ptr, ig_caption, ig_value, order, slot, refs, norms, length,
                  sigma):  # pragma: no cover (compiled; its results are tested)
    """CIDEr-D of each pair (``img[p]``, ``cap[p]``), one pair at a time in compiled code.

    For each of the candidate's n-gram entries: look up (image, n-gram) in the grouped hash, then add
    ``min(v_hyp, v_ref) · v_ref`` into the accumulator of (reference slot, order) for every caption of the image
    holding it, the candidate itself excepted. Then the cosines with the unclipped norms, the length penalty and
    the means, as in coco-caption. No temporaries: one ``(M, n)`` accumulator reused across pairs.
    """
    n_pairs = img.shape[0]
    m, n = refs.shape[1], norms.shape[1]
    out = np.empty(n_pairs, dtype=np.float64)
    acc = np.zeros((m, n), dtype=np.float64)
    two_s2 = 2.0 * sigma * sigma
    for p in range(n_pairs):
        i, c = img[p], cap[p]
        own = image_of[c] == i
        acc[:, :] = 0.0
        off, msk = ig_offset[i], ig_mask[i]
        lo, hi = (entry_ptr[c], entry_ptr[c + 1]) if own else (shared_ptr[c], shared_ptr[c + 1])
        for q in range(lo, hi):
            e = q if own else shared[q]
            g = entry_gram[e]
            s = off + (np.int64((np.uint64(g) * HASH_MUL) >> np.uint64(32)) & msk)  # GroupedHash.hash
            u = -1
            while True:
                key = ig_keys[s]
                if key == g:
                    u = ig_values[s]
                    break
                if key == -1:
                    break
                s = off + ((s - off + 1) & msk)
            if u < 0:
                continue
            v_hyp = entry_value[e]
            o = order[g] - 1
            for j in range(ig_ptr[u], ig_ptr[u + 1]):
                r = ig_caption[j]
                if r == c:
                    continue
                v_ref = ig_value[j]
                acc[slot[r], o] += min(v_hyp, v_ref) * v_ref
        total = 0.0
        n_refs = 0
        for k in range(m):
            r = refs[i, k]
            if r < 0 or r == c:
                continue
            n_refs += 1
            delta = float(length[c] - length[r])
            penalty = math.exp(-(delta * delta) / two_s2)
            for o in range(n):
                den = norms[c, o] * norms[r, o]
                if den != 0.0:
                    total += acc[k, o] / den * penalty
        out[p] = total / n / n_refs * 10.0 if n_refs > 0 else np.nan
    return out


# ---- per-corpus cache -------------------------------------------------------------------------------------------

_CACHE = CorpusCache(size=4)


def cider_tables(corpus: LabelCorpus, n: int = 4) -> CiderTables:
    """:func:`prepare_cider` of a :class:`~bcls.pipeline.corpus.LabelCorpus`, cached per corpus object (and n).

    The cache holds weak references (an entry dies with its corpus) and at most a few corpora, so scoring the
    shards of one build tokenises and counts its captions once.
    """
    return _CACHE.get(corpus, n, lambda: prepare_cider(corpus.texts, corpus.image_index, corpus.refs, n))


@dataclass(frozen=True)
class CiderSource:
    """``cider``: CIDEr-D of caption c against image i's other reference captions (coco-caption's formula:
    1..n-grams, tf-idf with document frequencies over the corpus's images, clipped numerator, Gaussian length
    penalty σ, ×10). Raw values (not rescaled); NaN where i has no caption besides c. See the module docstring
    for the document-frequency convention and the tokenizer.
    """

    sigma: float = 6.0
    n: int = 4
    name: str = field(default="cider", init=False)
    needs_embeddings: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.n, int) and self.n >= 1):
            raise ConfigError(f"cider n must be a positive integer, got {self.n!r}")
        if not (isinstance(self.sigma, (int, float)) and math.isfinite(self.sigma) and self.sigma > 0):
            raise ConfigError(f"cider sigma must be a positive number, got {self.sigma!r}")

    def settings(self) -> dict[str, Any]:
        return {"variant": "CIDEr-D (coco-caption)", "n": self.n, "sigma": float(self.sigma),
                "df": "images of the corpus, each full caption set once", "references": "refs(i) without c",
                "tokenizer": "PTB-like (lower-case, punctuation dropped)", "scale": "raw (x10)"}

    def score(self, corpus: LabelCorpus, image_pos: np.ndarray, caption_pos: np.ndarray) -> np.ndarray:
        """Raw CIDEr-D, float32 ``(P,)``, of pairs (image_pos[p], caption_pos[p])."""
        tables = cider_tables(corpus, self.n)
        return cider_d_scores(tables, image_pos, caption_pos, self.sigma).astype(np.float32)
