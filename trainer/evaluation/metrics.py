"""Retrieval evaluation metrics: ranks of the ground truth, Recall@K, rsum, median and mean rank.

Pure, vectorised functions on a similarity matrix ``sims`` of shape (n_images, n_captions) and the map
``caption_to_image`` (n_captions,) from each caption to its image (usually 5 captions per image). They follow the
device of their inputs and work in chunks so that memory stays bounded by ``chunk * max(n_images, n_captions)``.

Ties are ranked **pessimistically**: a rank counts the negatives scoring *greater than or equal to* the ground truth,
so a model cannot gain from ties (constant similarities give R@K = 0, not 100; heavily quantised similarities,
e.g. bf16, score no better than their unquantised ranking could). This is our choice; the VSE++ evaluation code uses
``argsort``, whose placement of tied entries depends on the sort implementation. Without ties both agree.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from bcls.data.infra.errors import DataFormatError

__all__ = ["recall_metrics", "retrieval_ranks"]


def _check_inputs(sims: Tensor, caption_to_image: Tensor, chunk: int) -> None:
    if sims.dim() != 2:
        raise ValueError(f"sims must be a (n_images, n_captions) matrix, got shape {tuple(sims.shape)}")
    n_images, n_captions = sims.shape
    if caption_to_image.shape != (n_captions,):
        raise ValueError(
            f"caption_to_image must have shape ({n_captions},), got {tuple(caption_to_image.shape)}"
        )
    if caption_to_image.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"caption_to_image must be an integer tensor, got {caption_to_image.dtype}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if n_captions and (int(caption_to_image.min()) < 0 or int(caption_to_image.max()) >= n_images):
        raise DataFormatError(f"caption_to_image has image indices outside [0, {n_images})")


def retrieval_ranks(
    sims: Tensor, caption_to_image: Tensor, chunk: int = 1024
) -> tuple[Tensor, Tensor]:
    """0-based ranks of the ground truth for both retrieval directions.

    * i2t (image query): the best rank among the image's captions = the number of *other* images' captions
      scoring at least as high as the image's best-scoring ground-truth caption (ties count against the model;
      the image's other ground-truth captions never count).
    * t2i (caption query): the number of other images scoring at least as high as the caption's image.

    Computed by counting, O(n_images * n_captions) time; never sorts. Rows (i2t) and columns (t2i) are processed
    ``chunk`` at a time, so the temporary boolean matrices hold at most ``chunk * n_captions`` and
    ``n_images * chunk`` entries.

    Args:
        sims: (n_images, n_captions) similarities.
        caption_to_image: (n_captions,) long, the image index of each caption.
        chunk: rows/columns per step (results do not depend on it).

    Returns:
        ``(i2t_ranks (n_images,), t2i_ranks (n_captions,))``, long tensors on ``sims.device``.

    Raises:
        DataFormatError: an image index out of range, or an image without any caption.
    """
    _check_inputs(sims, caption_to_image, chunk)
    n_images, n_captions = sims.shape
    c2i = caption_to_image.to(device=sims.device, dtype=torch.long)
    cap = torch.arange(n_captions, device=sims.device)
    pos = sims[c2i, cap]  # (n_captions,) score of each caption with its own image

    has_caption = torch.zeros(n_images, dtype=torch.bool, device=sims.device)
    has_caption[c2i] = True
    if not bool(has_caption.all()):
        missing = int((~has_caption).nonzero()[0])
        raise DataFormatError(f"image {missing} has no caption in caption_to_image; its i2t rank is undefined")
    best = torch.full((n_images,), -torch.inf, dtype=sims.dtype, device=sims.device)
    best = best.scatter_reduce(0, c2i, pos, reduce="amax", include_self=True)  # (n_images,)

    # ground-truth captions tied with their image's best one: counted by the >= below, then taken off
    own_at_best = torch.zeros(n_images, dtype=torch.long, device=sims.device)
    own_at_best.index_add_(0, c2i, (pos == best[c2i]).long())
    i2t = torch.empty(n_images, dtype=torch.long, device=sims.device)
    for a in range(0, n_images, chunk):
        b = min(a + chunk, n_images)
        i2t[a:b] = (sims[a:b] >= best[a:b, None]).sum(dim=1) - own_at_best[a:b]
    t2i = torch.empty(n_captions, dtype=torch.long, device=sims.device)
    for a in range(0, n_captions, chunk):
        b = min(a + chunk, n_captions)
        t2i[a:b] = (sims[:, a:b] >= pos[None, a:b]).sum(dim=0) - 1  # the caption's own image
    return i2t, t2i


def recall_metrics(
    sims: Tensor, caption_to_image: Tensor, ks: Sequence[int] = (1, 5, 10), chunk: int = 1024
) -> dict[str, float]:
    """Recall@K (percent), rsum and median/mean rank for both directions.

    Keys: ``i2t_r{k}`` and ``t2i_r{k}`` for each k in ``ks`` (percent of queries whose 0-based rank < k),
    ``rsum`` (sum of all those recalls), ``i2t_medr``, ``t2i_medr`` (1-based median rank, VSE++ convention
    ``floor(median(rank0)) + 1``, with ``median`` the mean of the two middle values for an even count, as in numpy),
    ``i2t_meanr``, ``t2i_meanr`` (1-based mean rank). All values are Python floats.

    Args:
        sims: (n_images, n_captions) similarities.
        caption_to_image: (n_captions,) long.
        ks: recall cut-offs.
        chunk: see :func:`retrieval_ranks`.
    """
    i2t, t2i = retrieval_ranks(sims, caption_to_image, chunk)
    out: dict[str, float] = {}
    rsum = 0.0
    for name, ranks in (("i2t", i2t), ("t2i", t2i)):
        for k in ks:
            r = 100.0 * float((ranks < k).double().mean())
            out[f"{name}_r{k}"] = r
            rsum += r
    out["rsum"] = rsum
    for name, ranks in (("i2t", i2t), ("t2i", t2i)):
        as_float = ranks.double()
        out[f"{name}_medr"] = float(torch.floor(torch.quantile(as_float, 0.5))) + 1.0
        out[f"{name}_meanr"] = float(as_float.mean()) + 1.0
    return out
