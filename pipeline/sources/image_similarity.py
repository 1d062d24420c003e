"""``image``: relevance of image i to caption c from the images alone — the cosine of i's features and of the
features of c's own image.

This is ITM_CLS's second kind of continuous label (a caption is as relevant to i as its own image is similar to
i). The paper names the label kind; the image encoder, the global (mean-pooled) vector and the plain cosine are
our choices: any feature folder written by ``bcls features extract`` (or
:func:`bcls.data.feature_folder.write_feature_folder`) can serve, e.g. ``-o image.features=feats_lite2/``. A
caption's own image scores 1. Values are raw cosines (for the EfficientNet-Lite features, means of ReLU6
activations, they lie in [0, 1]); a pair whose image or caption image has no features is NaN (unknown).

The folder is read when the source is made (its factory), never in :meth:`ImageSource.score`, so the source
itself does no file I/O; pairs are looked up by image id, so the corpus must carry ``image_ids``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from bcls.data.feature_folder import read_feature_folder
from bcls.data.infra.errors import ConfigError
from bcls.data.tables import id_positions

from ..corpus import LabelCorpus


@dataclass(frozen=True, eq=False)
class ImageSource:
    """``image``: cosine of the global image features of the pair's image and of the caption's own image.

    Attributes:
        image_ids: int64 ``(M,)`` ids of the feature rows (the factory sorts them).
        vectors: float32 ``(M, D)`` L2-normalised global features, row k for ``image_ids[k]``.
        fingerprint: sha256 of the feature file (from its ``features.json``), recorded in :meth:`settings`.
        features: the folder they came from (provenance only).
    """

    image_ids: np.ndarray
    vectors: np.ndarray
    fingerprint: str = ""
    features: str = ""
    name: str = field(default="image", init=False)
    needs_embeddings: bool = field(default=False, init=False)
    provenance_only: ClassVar[tuple[str, ...]] = ("features",)

    def settings(self) -> dict[str, Any]:
        return {"features": self.features, "fingerprint": self.fingerprint, "dim": int(self.vectors.shape[1]),
                "definition": "cosine of the global features of the image and of the caption's own image"}

    def score(self, corpus: LabelCorpus, image_pos: np.ndarray, caption_pos: np.ndarray) -> np.ndarray:
        """Cosine, float32 ``(P,)``, of the features of image_pos[p] and of caption_pos[p]'s own image."""
        image_pos = np.asarray(image_pos, dtype=np.int64)
        caption_pos = np.asarray(caption_pos, dtype=np.int64)
        img_ids, _ = corpus.ids_of(image_pos, caption_pos, "image")
        own_ids, _ = corpus.ids_of(corpus.image_index[caption_pos], caption_pos, "image")
        a, b = id_positions(self.image_ids, img_ids), id_positions(self.image_ids, own_ids)
        ok = (a >= 0) & (b >= 0)
        out = np.full(len(image_pos), np.nan, dtype=np.float32)
        if ok.any():
            out[ok] = np.einsum("pd,pd->p", self.vectors[a[ok]], self.vectors[b[ok]])
        return out


def image_source(features: str | os.PathLike | None = None) -> ImageSource:
    """Registry factory of the ``image`` source: the global features of the feature folder ``features``."""
    if features is None or str(features) == "":
        raise ConfigError("the image label source needs its features option (-o image.features=DIR): a feature "
                          "folder written by `bcls features extract`")
    ids, feats, info = read_feature_folder(features, "global")
    vectors = np.asarray(feats.batch(np.arange(feats.n_images)), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.maximum(norms, 1e-12)
    order = np.argsort(ids)  # sorted once, so each batch's id lookup sorts an already sorted array
    fingerprint = str(info.get("sha256", {}).get("features.npy", ""))
    return ImageSource(ids[order], np.ascontiguousarray(vectors[order]), fingerprint, str(features))
