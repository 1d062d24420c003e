"""What every label source works on and offers: the caption corpus and the label-source protocol.

A label source is a small protocol (:class:`LabelSource`): a name, its settings, and ``score`` over candidate
pairs given a :class:`LabelCorpus`. Sources do no file I/O, so tests can hand them any corpus. The sources bcls
ships live in :mod:`bcls.pipeline.sources`, registered by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from bcls.data.infra.errors import ConfigError

__all__ = ["LabelCorpus", "LabelSource", "reference_matrix"]


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


    def ids_of(self, image_pos: np.ndarray, caption_pos: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
        """The image ids and caption ids of pairs given by position, for a ``source`` that looks pairs up by id;
        a corpus without ids is a :class:`ConfigError` naming the source."""
        if self.image_ids is None or self.caption_ids is None:
            raise ConfigError(f"the {source} label source looks pairs up by id, but the corpus has no image_ids/"
                              "caption_ids; build it with LabelCorpus.from_groups(..., image_ids=, caption_ids=)")
        return (self.image_ids[np.asarray(image_pos, dtype=np.int64)],
                self.caption_ids[np.asarray(caption_pos, dtype=np.int64)])


class LabelSource(Protocol):
    """What every label source offers (``name`` and ``needs_embeddings`` may be class attributes or frozen
    fields: read-only here)."""

    @property
    def name(self) -> str:
        """The registered name, the shard column."""

    @property
    def needs_embeddings(self) -> bool:
        """Whether :meth:`score` reads the corpus's caption embeddings."""

    def settings(self) -> dict[str, Any]:
        """JSON-able settings recorded in the shard provenance."""

    def score(self, corpus: LabelCorpus, image_pos: np.ndarray, caption_pos: np.ndarray) -> np.ndarray:
        """Raw label values, float32 ``(P,)``, for pairs (image_pos[p], caption_pos[p])."""


def reference_matrix(corpus: LabelCorpus, image_pos: np.ndarray, caption_pos: np.ndarray) -> np.ndarray:
    """int64 ``(P, max_refs)``: the references of each pair's image without the pair's caption (-1 = none)."""
    refs = corpus.refs[image_pos]
    return np.where(refs == caption_pos[:, None], -1, refs)
