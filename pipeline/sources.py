"""Continuous label sources: how relevant image i is to caption c, from c and i's reference captions.

A label source is a small protocol (:class:`LabelSource`): a name, its settings, and ``score`` over candidate
pairs given a :class:`LabelCorpus`. Sources do no file I/O, so tests can hand them any corpus.
Sources are registered by name in :data:`LABEL_SOURCES`; ``bcls labels sources`` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from bcls.data.errors import ConfigError

from .cider import CiderSource
from .embed import DEFAULT_MODEL
from .file_source import file_source
from .spice import SpiceSource


@dataclass(frozen=True)
class LabelCorpus:
    """The captions a label build works on.

    Attributes:
        texts: ``(N,)`` caption texts.
        image_index: int64 ``(N,)`` image position of each caption.
        refs: int64 ``(n_images, max_refs)`` caption positions of each image's captions, padded with -1.
        embeddings: float32 ``(N, d)`` L2-normalised sentence embeddings, when a source needs them.
        image_ids: int64 ``(n_images,)`` the id of each image position, when known (sources that look pairs up
            by id, such as ``file``, need it).
        caption_ids: int64 ``(N,)`` the id of each caption position, when known.
    """

    texts: tuple[str, ...]
    image_index: np.ndarray
    refs: np.ndarray
    embeddings: np.ndarray | None = None
    image_ids: np.ndarray | None = None
    caption_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.image_ids is not None and np.shape(self.image_ids) != (len(self.refs),):
            raise ConfigError(f"LabelCorpus image_ids must have shape ({len(self.refs)},) (one per image), "
                              f"got {np.shape(self.image_ids)}")
        if self.caption_ids is not None and np.shape(self.caption_ids) != (len(self.texts),):
            raise ConfigError(f"LabelCorpus caption_ids must have shape ({len(self.texts)},) (one per caption), "
                              f"got {np.shape(self.caption_ids)}")

    @classmethod
    def from_groups(cls, texts: tuple[str, ...], image_index: np.ndarray,
                    embeddings: np.ndarray | None = None, *, image_ids: np.ndarray | None = None,
                    caption_ids: np.ndarray | None = None) -> "LabelCorpus":
        """Build ``refs`` from the image position of each caption.

        ``image_ids`` (``(n_images,)``, indexed by image position) and ``caption_ids`` (``(N,)``) are optional;
        they are stored as int64 for sources that look pairs up by id.
        """
        image_index = np.asarray(image_index, dtype=np.int64)
        n_images = int(image_index.max()) + 1 if len(image_index) else 0
        counts = np.bincount(image_index, minlength=n_images)
        order = np.argsort(image_index, kind="stable")
        slot = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
        refs = np.full((n_images, int(counts.max()) if n_images else 0), -1, dtype=np.int64)
        refs[image_index[order], slot] = order
        return cls(tuple(texts), image_index, refs, embeddings,
                   None if image_ids is None else np.asarray(image_ids, dtype=np.int64),
                   None if caption_ids is None else np.asarray(caption_ids, dtype=np.int64))


class LabelSource(Protocol):
    """What every label source offers."""

    name: str
    needs_embeddings: bool

    def settings(self) -> dict[str, Any]:
        """JSON-able settings recorded in the shard provenance."""

    def score(self, corpus: LabelCorpus, image_pos: np.ndarray, caption_pos: np.ndarray) -> np.ndarray:
        """Raw label values, float32 ``(P,)``, for pairs (image_pos[p], caption_pos[p])."""


def _reference_matrix(corpus: LabelCorpus, image_pos: np.ndarray, caption_pos: np.ndarray) -> np.ndarray:
    """int64 ``(P, max_refs)``: the references of each pair's image without the pair's caption (-1 = none)."""
    refs = corpus.refs[image_pos]
    return np.where(refs == caption_pos[:, None], -1, refs)


@dataclass(frozen=True)
class SbertSource:
    """``sbert``: cosine similarity of sentence embeddings between c and each reference r ≠ c of image i,
    clipped to [0, 1] and aggregated over the references by ``max`` (default) or ``mean``.

    The paper uses SBERT similarity between a caption and an image's reference captions; the clipping and the
    choice of aggregate are our reading (DESIGN.md). A pair whose image has no reference besides c gets NaN
    (undefined); the trainer treats such a pair as unknown.
    """

    aggregate: str = "max"
    model: str = DEFAULT_MODEL
    chunk: int = 16384  # pairs per block: the gathered reference embeddings take chunk·M·d·4 bytes per thread
    name: str = field(default="sbert", init=False)
    needs_embeddings: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        if self.aggregate not in ("max", "mean"):
            raise ConfigError(f"sbert aggregate must be 'max' or 'mean', got {self.aggregate!r}")

    def settings(self) -> dict[str, Any]:
        return {"aggregate": self.aggregate, "model": self.model, "clip": [0.0, 1.0]}

    def score(self, corpus: LabelCorpus, image_pos: np.ndarray, caption_pos: np.ndarray) -> np.ndarray:
        if corpus.embeddings is None:
            raise ConfigError("the sbert label source needs caption embeddings in the corpus")
        emb = corpus.embeddings
        out = np.empty(len(image_pos), dtype=np.float32)
        for lo in range(0, len(image_pos), self.chunk):
            refs = _reference_matrix(corpus, image_pos[lo:lo + self.chunk], caption_pos[lo:lo + self.chunk])
            valid = refs >= 0
            sims = np.einsum("pd,pmd->pm", emb[caption_pos[lo:lo + self.chunk]], emb[np.maximum(refs, 0)])
            sims = np.clip(sims, 0.0, 1.0)
            n_valid = valid.sum(axis=1)
            with np.errstate(invalid="ignore"):
                if self.aggregate == "max":
                    value = np.where(valid, sims, -np.inf).max(axis=1)
                else:
                    value = np.where(valid, sims, 0.0).sum(axis=1) / n_valid
            out[lo:lo + self.chunk] = np.where(n_valid > 0, value, np.nan)
        return out


@dataclass(frozen=True)
class SourceSpec:
    factory: Callable[..., LabelSource]
    description: str


LABEL_SOURCES: dict[str, SourceSpec] = {
    "sbert": SourceSpec(SbertSource, "cosine of sentence embeddings (sentence-transformers) between the caption "
                                     "and the image's other captions, clipped to [0, 1], max over references"),
    "cider": SourceSpec(CiderSource, "CIDEr-D (coco-caption formula, df over the corpus's images, sigma 6, x10, "
                                     "raw) of the caption against the image's other captions"),
    "spice": SourceSpec(SpiceSource, "SPICE-like scene-graph F1 (spaCy objects/attributes/relations, lemma + "
                                     "WordNet-synonym matching) of the caption against the union of the image's "
                                     "other captions' tuples"),
    "file": SourceSpec(file_source, "user-supplied scores read from a CSV/TSV/Parquet file of (image_id, "
                                    "caption_id, score), looked up by id (path=); pairs absent from it are NaN"),
}


def make_source(name: str, **settings: Any) -> LabelSource:
    """Instantiate a registered label source; an unknown name lists the valid ones."""
    if name not in LABEL_SOURCES:
        raise ConfigError(f"unknown label source {name!r}; valid: {', '.join(sorted(LABEL_SOURCES))}")
    return LABEL_SOURCES[name].factory(**settings)
