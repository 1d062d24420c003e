"""``sbert``: cosine similarity of sentence embeddings between a caption and an image's other captions.

The embeddings come with the corpus (the label build's sentence model, :mod:`bcls.pipeline.embedding.embed`); the source
itself only aggregates them. :func:`aggregate_similarities` is the one definition of every aggregate, used by the
source (per pair) and by the trainer's dense in-batch labels (per batch). The per-pair cosines come from a small
numba kernel (:func:`reference_cosines`), faster than the equivalent numpy (docs/benchmarks.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bcls.data.infra.errors import ConfigError

from ..corpus import LabelCorpus, reference_matrix

AGGREGATES: tuple[str, ...] = ("max", "mean", "topk", "softmax", "centroid")
"""How the similarities of a caption to an image's references become one label (see :class:`SbertSource`)."""


def aggregate_similarities(raw: np.ndarray, valid: np.ndarray, aggregate: str, *, k: int = 2,
                           temperature: float = 0.1, gram: np.ndarray | None = None) -> np.ndarray:
    """One label per pair from the cosines of its caption to its image's references.

    Args:
        raw: float32 ``(..., M)`` cosine of the caption to each reference slot (unclipped).
        valid: bool ``(..., M)`` which slots are real references (not padding, not the caption itself).
        aggregate: one of :data:`AGGREGATES`.
        k: references averaged by ``topk``.
        temperature: softmax temperature of ``softmax``.
        gram: float32 ``(..., M, M)`` cosines between the references (broadcastable to ``raw``'s leading shape);
            needed by ``centroid`` only.

    Returns:
        float32 ``(...)`` labels in [0, 1]; NaN where a pair has no valid reference.
    """
    n_valid = valid.sum(axis=-1)
    sims = np.clip(raw, 0.0, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if aggregate == "max":
            value = np.where(valid, sims, -np.inf).max(axis=-1)
        elif aggregate == "mean":
            value = np.where(valid, sims, 0.0).sum(axis=-1) / n_valid
        elif aggregate == "topk":
            top = -np.sort(-np.where(valid, sims, -np.inf), axis=-1)[..., :k]
            used = np.minimum(n_valid, k)
            value = np.where(np.isfinite(top), top, 0.0).sum(axis=-1) / used
        elif aggregate == "softmax":
            logits = np.where(valid, sims / temperature, -np.inf)
            weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
            value = (weights * np.where(valid, sims, 0.0)).sum(axis=-1) / weights.sum(axis=-1)
        elif aggregate == "centroid":
            if gram is None:
                raise ConfigError("the centroid aggregate needs the references' cosines (gram)")
            # cos(c, Σ r) = Σ c·r / ‖Σ r‖ with ‖Σ r‖² = Σ_m Σ_n r_m·r_n over the valid references (padding slots
            # may hold anything, NaN included, so they are masked, not multiplied by 0)
            pair_valid = valid[..., :, None] & valid[..., None, :]
            norm = np.sqrt(np.maximum(np.where(pair_valid, gram, 0.0).sum(axis=(-2, -1)), 1e-12))
            value = np.clip(np.where(valid, raw, 0.0).sum(axis=-1) / norm, 0.0, 1.0)
        else:
            raise ConfigError(f"unknown sbert aggregate {aggregate!r}; valid: {', '.join(AGGREGATES)}")
    return np.where(n_valid > 0, value, np.nan).astype(np.float32)


def _reference_cosines(emb, caption_pos, refs, out):  # pragma: no cover (compiled)
    """``out[p, m] = emb[caption_pos[p]] · emb[refs[p, m]]`` (0 where ``refs[p, m] < 0``), float32 sums."""
    d = emb.shape[1]
    for p in range(refs.shape[0]):
        c = caption_pos[p]
        for m in range(refs.shape[1]):
            r = refs[p, m]
            total = np.float32(0.0)
            if r >= 0:
                for j in range(d):
                    total += emb[c, j] * emb[r, j]
            out[p, m] = total


@functools.cache
def _cosines_kernel():
    """:func:`_reference_cosines` compiled by numba (``nogil``, on-disk cache; ``fastmath`` lets the dot product
    use SIMD lanes, which reorders its float32 sum: within ~1e-7 of numpy's)."""
    import numba

    return numba.njit(nogil=True, cache=True, fastmath=True)(_reference_cosines)


def reference_cosines(emb: np.ndarray, caption_pos: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """float32 ``(P, M)``: the cosine of caption ``caption_pos[p]`` to each reference ``refs[p, m]`` (0 where
    ``refs[p, m] < 0``) from L2-normalised float32 ``emb``.

    Our code, instead of gathering the references' embeddings and ``np.einsum("pd,pmd->pm")``, which streams a
    gathered ``(P, M, d)`` block through memory (speed: docs/benchmarks.md, "Measurements behind the code"). Same
    products; a test holds it to that einsum within 1e-6."""
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    out = np.empty(refs.shape, dtype=np.float32)
    _cosines_kernel()(emb, np.ascontiguousarray(caption_pos, dtype=np.int64),
                      np.ascontiguousarray(refs, dtype=np.int64), out)
    return out


@dataclass(frozen=True)
class SbertSource:
    """``sbert``: cosine similarity of sentence embeddings between c and each reference r ≠ c of image i,
    clipped to [0, 1] and aggregated over the references.

    Aggregates (``aggregate``): ``max`` (default), ``mean``, ``topk`` (mean of the ``k`` largest), ``softmax``
    (the similarities weighted by their softmax at ``temperature``: between mean, T → ∞, and max, T → 0) and
    ``centroid`` (the cosine of c to the normalised sum of the references' embeddings).

    The paper uses SBERT similarity between a caption and an image's reference captions; the clipping and the
    aggregates are our choices (docs/design.md; measured against human judgments in docs/results.md). A pair
    whose image has no reference besides c gets NaN (undefined); the trainer treats such a pair as unknown.
    """

    aggregate: str = "max"
    k: int = 2
    temperature: float = 0.1
    chunk: int = 16384  # pairs per block (the centroid aggregate gathers chunk·M·d·4 bytes of references)
    name: str = field(default="sbert", init=False)
    needs_embeddings: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        if self.aggregate not in AGGREGATES:
            raise ConfigError(f"sbert aggregate must be one of {', '.join(AGGREGATES)}, got {self.aggregate!r}")
        if self.k < 1:
            raise ConfigError(f"sbert k must be at least 1, got {self.k}")
        if not self.temperature > 0:
            raise ConfigError(f"sbert temperature must be > 0, got {self.temperature}")

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"aggregate": self.aggregate, "clip": [0.0, 1.0]}
        if self.aggregate == "topk":
            out["k"] = self.k
        if self.aggregate == "softmax":
            out["temperature"] = self.temperature
        return out

    def aggregate_raw(self, raw: np.ndarray, valid: np.ndarray, gram: np.ndarray | None = None) -> np.ndarray:
        """:func:`aggregate_similarities` with this source's settings."""
        return aggregate_similarities(raw, valid, self.aggregate, k=self.k, temperature=self.temperature, gram=gram)

    def score(self, corpus: LabelCorpus, image_pos: np.ndarray, caption_pos: np.ndarray) -> np.ndarray:
        if corpus.embeddings is None:
            raise ConfigError("the sbert label source needs caption embeddings in the corpus")
        emb = np.ascontiguousarray(corpus.embeddings, dtype=np.float32)  # once, not per chunk
        out = np.empty(len(image_pos), dtype=np.float32)
        for lo in range(0, len(image_pos), self.chunk):
            caps = caption_pos[lo:lo + self.chunk]
            refs = reference_matrix(corpus, image_pos[lo:lo + self.chunk], caps)
            gram = None
            if self.aggregate == "centroid":
                ref_emb = emb[np.maximum(refs, 0)]
                gram = np.einsum("pmd,pnd->pmn", ref_emb, ref_emb)
            out[lo:lo + self.chunk] = self.aggregate_raw(reference_cosines(emb, caps, refs), refs >= 0, gram)
        return out
