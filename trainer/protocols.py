"""Evaluation protocols of image–text retrieval: which blocks of the test set Recall@K is computed on.

* ``coco_1k``: the MS-COCO "5-fold 1K" protocol. The 5,000 Karpathy test images are cut into 5 folds of 1,000
  consecutive images (0–999, 1000–1999, …), each fold keeps the captions of its images, metrics are computed per
  fold (each fold is a 1K-image / 5K-caption retrieval problem) and averaged over the folds.
* ``coco_5k``: the same test set as one 5K-image / 25K-caption block.
* ``flickr_1k``: the Flickr30K 1K test set as one block.
* ``full``: any other test set, as one block.

Every block is scored with :func:`bcls.trainer.metrics.recall_metrics`, so the keys and conventions (ties, median
rank) are those of that function. Averaging over folds is done key by key: ``rsum`` of the 5-fold protocol is the
mean of the folds' rsums, which equals the sum of the averaged recalls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from bcls.data.errors import DataFormatError
from bcls.trainer.metrics import recall_metrics
from torch import Tensor

__all__ = [
    "PROTOCOLS",
    "SimsFn",
    "choose_protocol",
    "coco_5fold_1k",
    "evaluate_protocols",
]

log = logging.getLogger(__name__)

#: ``sims_fn(image_indices (n_i,) long, caption_indices (n_c,) long) -> (n_i, n_c)`` similarities of a block.
SimsFn = Callable[[Tensor, Tensor], Tensor]

#: Protocol names understood by :func:`evaluate_protocols`.
PROTOCOLS = ("coco_1k", "coco_5k", "flickr_1k", "full")

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


def choose_protocol(n_images: int, dataset_hint: str | None = None) -> tuple[str, ...]:
    """The protocols to report for a test set of ``n_images`` images.

    * hint starting with ``"coco"`` and 5,000 images → ``("coco_1k", "coco_5k")``;
    * hint starting with ``"flickr"`` or ``"f30k"`` and 1,000 images → ``("flickr_1k",)``;
    * anything else (no hint, another size, another dataset) → ``("full",)``: one block over all images.

    The hint is case-insensitive. A COCO/Flickr hint with an unexpected size logs a warning and falls back to
    ``("full",)``.
    """
    hint = (dataset_hint or "").strip().lower()
    if hint.startswith("coco"):
        if n_images == COCO_TEST_IMAGES:
            return ("coco_1k", "coco_5k")
        log.warning("COCO test set with %d images (not %d): evaluating one block", n_images, COCO_TEST_IMAGES)
    elif hint.startswith(("flickr", "f30k")):
        if n_images == FLICKR_TEST_IMAGES:
            return ("flickr_1k",)
        log.warning("Flickr test set with %d images (not %d): evaluating one block", n_images, FLICKR_TEST_IMAGES)
    return ("full",)


def evaluate_protocols(
    sims: Tensor | SimsFn,
    caption_to_image: Tensor,
    protocols: Sequence[str],
    ks: Sequence[int] = (1, 5, 10),
    chunk: int = 1024,
) -> dict[str, dict[str, float]]:
    """Recall metrics for each protocol name (see :data:`PROTOCOLS` and :func:`choose_protocol`).

    Args:
        sims: (n_images, n_captions) similarities or a ``sims_fn`` (see :func:`coco_5fold_1k`); a callable is asked
            for the full block for the single-block protocols.
        caption_to_image: (n_captions,) long.
        protocols: names from :data:`PROTOCOLS`.

    Returns:
        ``{protocol: recall_metrics-style dict}``.

    Raises:
        ValueError: an unknown protocol name (the message lists the valid ones).
    """
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol(s) {unknown}; valid: {', '.join(PROTOCOLS)}")
    out: dict[str, dict[str, float]] = {}
    for p in protocols:
        if p == "coco_1k":
            out[p] = coco_5fold_1k(sims, caption_to_image, n_folds=5, ks=ks, chunk=chunk)
        else:
            if callable(sims):
                n_images = int(caption_to_image.max()) + 1
                dev = caption_to_image.device
                block = _block(
                    sims, torch.arange(n_images, device=dev), torch.arange(caption_to_image.numel(), device=dev)
                )
            else:
                block = sims
            out[p] = recall_metrics(block, caption_to_image, ks=ks, chunk=chunk)
    return out
