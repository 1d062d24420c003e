"""ECCV Caption mAP@R / R-Precision / R@1, CxC R@K and COCO R@K through the official ``eccv-caption`` package,
with :func:`rankings_from_sims` and :func:`load_coco_test_ids` to feed it."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bcls.data.infra.errors import DataFormatError

__all__ = ["eccv_metrics", "eccv_metrics_from_sims", "eccv_required_length", "load_coco_test_ids",
           "rankings_from_sims"]

log = logging.getLogger(__name__)




def _eccv_package() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "failed to import `ujson`"
            import eccv_caption
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("ECCV Caption metrics need the `eccv-caption` package: pip install eccv-caption") from e
    return eccv_caption


def load_coco_test_ids(data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, Tensor]:
    """COCO ids of the Karpathy 5K test split in the order our matrices use.

    Captions are in the order of ``coco_test_ids.npy`` (Karpathy order, 5 consecutive captions per image); images
    are in order of first appearance of their captions, image ids from ``original_caption_to_image.json``.

    Args:
        data_dir: folder with ``coco_test_ids.npy`` and ``original_caption_to_image.json``; None = the data shipped
            with the ``eccv-caption`` package (the same files).

    Returns:
        ``image_ids (5000,) int64``, ``caption_ids (25000,) int64`` (COCO annotation ids) and
        ``caption_to_image (25000,) long`` (index into ``image_ids``).
    """
    folder = Path(data_dir) if data_dir is not None else Path(_eccv_package().__file__).parent / "data"
    caption_ids = np.load(folder / "coco_test_ids.npy").astype(np.int64)
    with open(folder / "original_caption_to_image.json") as f:
        c2img = {int(k): [int(v) for v in vs] for k, vs in json.load(f).items()}
    try:
        img_of_cap = np.array([c2img[int(c)][0] for c in caption_ids], dtype=np.int64)
    except KeyError as e:
        raise DataFormatError(f"caption id {e.args[0]} of coco_test_ids.npy has no image in {folder}") from e
    image_ids, first = np.unique(img_of_cap, return_index=True)
    image_ids = img_of_cap[np.sort(first)]
    index = {int(i): j for j, i in enumerate(image_ids)}
    caption_to_image = torch.tensor([index[int(i)] for i in img_of_cap], dtype=torch.long)
    return image_ids, caption_ids, caption_to_image


def rankings_from_sims(
    sims: Tensor, topk: int | None = None, chunk: int = 256
) -> tuple[Tensor, Tensor]:
    """Rankings of candidates for both directions, best first, ties broken by lower index.

    Args:
        sims: (n_images, n_captions) similarities.
        topk: keep only the first ``topk`` of each ranking (None = full rankings).
        chunk: rows (i2t) / columns (t2i) sorted per step; temporary memory ~ ``chunk * max(n_images, n_captions)``.

    Returns:
        ``i2t (n_images, min(topk, n_captions))`` caption indices and ``t2i (n_captions, min(topk, n_images))``
        image indices, int32 on ``sims.device`` (int32 halves the 5K×25K rankings to 0.5 GB each).
    """
    if sims.dim() != 2:
        raise ValueError(f"sims must be a (n_images, n_captions) matrix, got shape {tuple(sims.shape)}")
    if chunk < 1 or (topk is not None and topk < 1):
        raise ValueError("chunk and topk must be >= 1")
    n_img, n_cap = sims.shape
    l_i = n_cap if topk is None else min(topk, n_cap)
    l_t = n_img if topk is None else min(topk, n_img)
    i2t = torch.empty((n_img, l_i), dtype=torch.int32, device=sims.device)
    t2i = torch.empty((n_cap, l_t), dtype=torch.int32, device=sims.device)
    for a in range(0, n_img, chunk):
        b = min(a + chunk, n_img)
        i2t[a:b] = _top_stable(sims[a:b], l_i)
    for a in range(0, n_cap, chunk):
        b = min(a + chunk, n_cap)
        t2i[a:b] = _top_stable(sims[:, a:b].T, l_t)
    return i2t, t2i


def _top_stable(s: Tensor, length: int) -> Tensor:
    """First ``length`` indices of each row of ``s`` (c, N) by descending value, ties by ascending index.

    Full rankings use a stable sort. Truncated ones use ``topk(length + 1)`` (much cheaper than sorting N),
    re-ordered stably by (value desc, index asc); rows whose tie straddles the cut fall back to a stable sort.
    Returns (c, length) long.
    """
    n = s.shape[1]
    if length >= n:
        return torch.sort(s, dim=1, descending=True, stable=True).indices
    vals, idx = torch.topk(s, length + 1, dim=1)
    by_index = idx.argsort(dim=1)
    vals, idx = vals.gather(1, by_index), idx.gather(1, by_index)
    order = torch.sort(vals, dim=1, descending=True, stable=True)
    out = idx.gather(1, order.indices)[:, :length]
    straddle = (order.values[:, length - 1] == order.values[:, length]).nonzero().squeeze(1)
    if straddle.numel():
        out[straddle] = torch.sort(s[straddle], dim=1, descending=True, stable=True).indices[:, :length]
    return out


_ECCV_DATASETS = ("coco_1k", "coco_5k", "cxc", "eccv")


def _rename(key: str, direction: str) -> str:
    """``coco_5k_r1`` + ``i2t`` → ``coco_5k_i2t_r1``; ``eccv_map_at_r`` → ``eccv_i2t_map_at_r``."""
    for d in _ECCV_DATASETS:
        if key.startswith(d + "_"):
            return f"{d}_{direction}_{key[len(d) + 1:]}"
    return f"{key}_{direction}"  # pragma: no cover - the package has no other keys


def eccv_required_length(ks: Sequence[int] = (1, 5, 10)) -> dict[str, int]:
    """Shortest truncated rankings :func:`eccv_metrics` accepts without ``coco_1k``: ``{"i2t": L, "t2i": L}``.

    R@K needs the top max(ks); mAP@R and R-Precision need the top R (the number of ECCV positives of a query).
    """
    return _required_length(_metrics_object(), ks)


def _required_length(m: Any, ks: Sequence[int]) -> dict[str, int]:
    return {d: max(max(ks), max(len(set(v)) for v in m.eccv_gts[d].values())) for d in ("i2t", "t2i")}


def _metrics_object() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _eccv_package().Metrics()


def eccv_metrics(
    i2t_ranking: Tensor | np.ndarray,
    t2i_ranking: Tensor | np.ndarray,
    image_ids: Sequence[int] | np.ndarray,
    caption_ids: Sequence[int] | np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
    coco_1k: bool = False,
) -> dict[str, float]:
    """ECCV Caption, CxC and COCO retrieval metrics computed by ``eccv_caption.Metrics().compute_all_metrics``.

    The index rankings are mapped to COCO ids and handed to the official code as id-keyed dicts (values are numpy
    int rows, which the package handles like lists of ints without 250M Python objects).

    Args:
        i2t_ranking: (n_images, L_i) caption indices per image, best first (see :func:`rankings_from_sims`).
        t2i_ranking: (n_captions, L_t) image indices per caption, best first.
        image_ids: (n_images,) COCO image ids of our image order.
        caption_ids: (n_captions,) COCO caption annotation ids of our caption order.
        ks: cut-offs of CxC / COCO R@K.
        coco_1k: also compute the package's COCO 5-fold 1K recalls. They need FULL rankings (the package filters
            each ranking to the fold) and cost about a minute on 5K/25K;
            :func:`bcls.trainer.evaluation.protocols.coco_5fold_1k` computes the same numbers from the sims in a second.

    Returns:
        Percentages (Python floats) with keys ``eccv_{d}_map_at_r``, ``eccv_{d}_rprecision``, ``eccv_{d}_r1``,
        ``cxc_{d}_r{k}``, ``coco_5k_{d}_r{k}`` (and ``coco_1k_{d}_r{k}``) for ``d`` in ``i2t``, ``t2i``.

    Raises:
        ValueError: rankings too short (see :func:`eccv_required_length`), or not full when ``coco_1k``; shapes.
        DataFormatError: a query id of the official ground truth is not among ``image_ids`` / ``caption_ids``.
    """
    i2t = i2t_ranking.cpu().numpy() if isinstance(i2t_ranking, Tensor) else np.asarray(i2t_ranking)
    t2i = t2i_ranking.cpu().numpy() if isinstance(t2i_ranking, Tensor) else np.asarray(t2i_ranking)
    img_ids = np.asarray(image_ids, dtype=np.int64)
    cap_ids = np.asarray(caption_ids, dtype=np.int64)
    if i2t.ndim != 2 or i2t.shape[0] != len(img_ids) or t2i.ndim != 2 or t2i.shape[0] != len(cap_ids):
        raise ValueError(
            f"rankings must be (n_images={len(img_ids)}, L) and (n_captions={len(cap_ids)}, L), "
            f"got {i2t.shape} and {t2i.shape}"
        )
    m = _metrics_object()
    for d, ids, what in (("i2t", img_ids, "image"), ("t2i", cap_ids, "caption")):
        have = set(ids.tolist())
        for gts in (m.coco_gts, m.cxc_gts, m.eccv_gts):
            missing = [q for q in gts[d] if q not in have]
            if missing:
                raise DataFormatError(
                    f"{len(missing)} {what} ids of the ECCV Caption ground truth are not in {what}_ids "
                    f"(e.g. {missing[0]}); these metrics need the COCO Karpathy 5K test split"
                )
    need = _required_length(m, ks)
    if coco_1k:
        need = {"i2t": len(cap_ids), "t2i": len(img_ids)}
    for d, r in (("i2t", i2t), ("t2i", t2i)):
        if r.shape[1] < need[d]:
            raise ValueError(
                f"{d} rankings hold {r.shape[1]} items, need {need[d]}"
                + (" (coco_1k needs full rankings)" if coco_1k else " (max of ks and of the ECCV positives)")
            )
    # Downcast ids when they fit: halves the id-ranking arrays (numpy ints hash and compare like Python ints).
    id_dtype = np.int32 if max(img_ids.max(initial=0), cap_ids.max(initial=0)) < 2**31 else np.int64
    i2t_ids = cap_ids.astype(id_dtype)[i2t]
    t2i_ids = img_ids.astype(id_dtype)[t2i]
    i2t_dict = {int(q): i2t_ids[j] for j, q in enumerate(img_ids)}
    t2i_dict = {int(q): t2i_ids[j] for j, q in enumerate(cap_ids)}
    targets = ["eccv_r1", "eccv_map_at_r", "eccv_rprecision", "cxc_recalls", "coco_5k_recalls"]
    if coco_1k:
        targets.append("coco_1k_recalls")
    raw = m.compute_all_metrics(i2t_dict, t2i_dict, target_metrics=targets, Ks=list(ks), verbose=False)
    out = {}
    for key, per_dir in sorted(raw.items()):
        for d in ("i2t", "t2i"):
            out[_rename(key, d)] = 100.0 * float(per_dir[d])
    return out


def eccv_metrics_from_sims(
    sims: Tensor,
    image_ids: Sequence[int] | np.ndarray,
    caption_ids: Sequence[int] | np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
    coco_1k: bool = False,
    chunk: int = 256,
) -> dict[str, float]:
    """:func:`eccv_metrics` from a (n_images, n_captions) sims matrix: builds the rankings in chunks, truncated to
    what the metrics need unless ``coco_1k`` (full rankings). Ties are broken by lower index."""
    topk = None if coco_1k else max(eccv_required_length(ks).values())
    i2t, t2i = rankings_from_sims(sims, topk=topk, chunk=chunk)
    return eccv_metrics(i2t, t2i, image_ids, caption_ids, ks=ks, coco_1k=coco_1k)
