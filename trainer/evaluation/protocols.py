"""Evaluation protocols of image–text retrieval: which blocks of the test set Recall@K is computed on.

* ``coco``: the MS-COCO Karpathy 5K test set (recognised by its image ids, :func:`detect_protocol`), reported as
  the "5-fold 1K" protocol (:func:`coco_5fold_1k`: the 5,000 test images cut into 5 folds of 1,000 consecutive
  images, each fold with the captions of its images, metrics per fold averaged over the folds) and as one
  5K-image / 25K-caption block, plus ECCV Caption / CxC;
* ``flickr``: the Flickr30K 1K test set as one block;
* ``full``: any other test set, as one block.

Every block is scored with :func:`bcls.trainer.evaluation.metrics.recall_metrics`, so the keys and conventions
(ties, median rank) are those of that function. Averaging over folds is done key by key: ``rsum`` of the 5-fold protocol
is the mean of the folds' rsums, which equals the sum of the averaged recalls.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from bcls.data.captions import CaptionTable
from bcls.data.infra.errors import DataFormatError

from .eccv import load_coco_test_ids
from .metrics import recall_metrics

__all__ = ["PROTOCOLS", "SimsFn", "coco_5fold_1k", "detect_protocol"]

log = logging.getLogger(__name__)

#: ``sims_fn(image_indices (n_i,) long, caption_indices (n_c,) long) -> (n_i, n_c)`` similarities of a block.
SimsFn = Callable[[Tensor, Tensor], Tensor]

#: Protocol names ``bcls eval --protocol`` takes (``auto`` = :func:`detect_protocol`).
PROTOCOLS = ("auto", "coco", "flickr", "full")

COCO_TEST_IMAGES = 5000
FLICKR_TEST_IMAGES = 1000


def _block(sims: Tensor | SimsFn, images: Tensor, captions: Tensor) -> Tensor:
    """The (len(images), len(captions)) block of ``sims`` (a matrix or a callable)."""
    if callable(sims):
        out = sims(images, captions)
        if out.shape != (images.numel(), captions.numel()):
            raise ValueError(
                f"sims_fn returned shape {tuple(out.shape)}, expected ({images.numel()}, {captions.numel()})"
            )
        return out
    return sims.index_select(0, images.to(sims.device)).index_select(1, captions.to(sims.device))


def coco_5fold_1k(
    sims: Tensor | SimsFn,
    caption_to_image: Tensor,
    n_folds: int = 5,
    ks: Sequence[int] = (1, 5, 10),
    chunk: int = 1024,
) -> dict[str, float]:
    """MS-COCO 5-fold 1K protocol: :func:`recall_metrics` per fold of consecutive images, averaged over folds.

    Fold f holds images ``[f * n_images / n_folds, (f + 1) * n_images / n_folds)`` and every caption whose image is
    in the fold (captions keep their relative order; they need not be grouped by image).

    Args:
        sims: (n_images, n_captions) similarities, or a callable ``sims_fn(image_idx (n_i,), caption_idx (n_c,))
            -> (n_i, n_c)`` that computes one fold's block (so the full matrix never has to exist).
        caption_to_image: (n_captions,) long, the image index of each caption.
        n_folds: number of folds; ``n_images`` must be divisible by it (5 for COCO 5K → 1K).
        ks: recall cut-offs, as in :func:`recall_metrics`.
        chunk: passed to :func:`recall_metrics`.

    Returns:
        The keys of :func:`recall_metrics`, each the mean over the folds (Python floats).

    Raises:
        ValueError: ``n_images`` is not divisible by ``n_folds`` or the shapes do not match.
        DataFormatError: a fold has an image without a caption (from :func:`recall_metrics`).
    """
    if caption_to_image.dim() != 1:
        raise ValueError(f"caption_to_image must be 1-D, got shape {tuple(caption_to_image.shape)}")
    if callable(sims):
        if caption_to_image.numel() == 0:
            raise ValueError("caption_to_image is empty")
        n_images = int(caption_to_image.max()) + 1
    else:
        if sims.dim() != 2 or sims.shape[1] != caption_to_image.numel():
            raise ValueError(
                f"sims must be (n_images, {caption_to_image.numel()}), got shape {tuple(sims.shape)}"
            )
        n_images = sims.shape[0]
    if n_folds < 1 or n_images % n_folds:
        raise ValueError(f"{n_images} images cannot be split into {n_folds} equal folds")
    size = n_images // n_folds
    c2i = caption_to_image.to(torch.long)
    folds: list[dict[str, float]] = []
    for f in range(n_folds):
        lo, hi = f * size, (f + 1) * size
        captions = ((c2i >= lo) & (c2i < hi)).nonzero().squeeze(1)
        if captions.numel() == 0:
            raise DataFormatError(f"fold {f} (images {lo}..{hi - 1}) has no caption")
        images = torch.arange(lo, hi, device=c2i.device)
        block = _block(sims, images, captions)
        folds.append(recall_metrics(block, (c2i[captions] - lo).to(block.device), ks=ks, chunk=chunk))
        log.debug("coco 1k fold %d: rsum %.2f", f, folds[-1]["rsum"])
    return {key: sum(m[key] for m in folds) / n_folds for key in folds[0]}


def detect_protocol(table: CaptionTable, data: str | os.PathLike) -> tuple[str, np.ndarray | None]:
    """``coco`` when the split is the Karpathy COCO 5K test set (its image ids, in order, match ECCV Caption's),
    ``flickr`` for a 1,000-image split in a folder named like Flickr30K, else ``full``.

    Returns the protocol and, for COCO, the COCO caption id of each row of the split: the table's own ids when
    they are COCO's annotation ids (a caption table or COCO / Karpathy-with-cocoid JSON, in any caption order),
    else ECCV's ids in its order (a precomp folder, whose rows are in that order)."""
    images = table.unique_images()
    if len(images) == COCO_TEST_IMAGES:
        try:
            coco_images, coco_captions, _ = load_coco_test_ids()
        except Exception as err:  # the package may be missing; then COCO-specific metrics are unavailable
            log.warning("cannot load the COCO test ids from eccv-caption (%s): evaluating one block", err)
            return "full", None
        if np.array_equal(images, coco_images) and len(table) == len(coco_captions):
            own = np.array_equal(np.sort(table.caption_ids), np.sort(coco_captions))
            return "coco", (table.caption_ids if own else coco_captions)
    if len(images) == FLICKR_TEST_IMAGES and any(h in str(data).lower() for h in ("f30k", "flickr")):
        return "flickr", None
    return "full", None
