"""``sbert``: cosine similarity of sentence embeddings between a caption and an image's other captions.

The embeddings come with the corpus (the label build's sentence model, :mod:`bcls.pipeline.embed`); the source
itself only aggregates them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bcls.data.errors import ConfigError

from ..corpus import LabelCorpus, reference_matrix



@dataclass(frozen=True)
class SbertSource:
    """``sbert``: cosine similarity of sentence embeddings between c and each reference r ≠ c of image i,
    clipped to [0, 1] and aggregated over the references by ``max`` (default) or ``mean``.

    The paper uses SBERT similarity between a caption and an image's reference captions; the clipping and the
    choice of aggregate are our reading (docs/design.md). A pair whose image has no reference besides c gets NaN
    (undefined); the trainer treats such a pair as unknown.
    """

    aggregate: str = "max"
    chunk: int = 16384  # pairs per block: the gathered reference embeddings take chunk·M·d·4 bytes per thread
    name: str = field(default="sbert", init=False)
    needs_embeddings: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        if self.aggregate not in ("max", "mean"):
            raise ConfigError(f"sbert aggregate must be 'max' or 'mean', got {self.aggregate!r}")

    def settings(self) -> dict[str, Any]:
        return {"aggregate": self.aggregate, "clip": [0.0, 1.0]}

    def score(self, corpus: LabelCorpus, image_pos: np.ndarray, caption_pos: np.ndarray) -> np.ndarray:
        if corpus.embeddings is None:
            raise ConfigError("the sbert label source needs caption embeddings in the corpus")
        emb = corpus.embeddings
        out = np.empty(len(image_pos), dtype=np.float32)
        for lo in range(0, len(image_pos), self.chunk):
            refs = reference_matrix(corpus, image_pos[lo:lo + self.chunk], caption_pos[lo:lo + self.chunk])
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
