"""``bcls eval``: embed a split with a trained model and measure cross-modal retrieval."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

import bcls
from bcls.data.captions import CaptionTable
from bcls.data.features import ImageFeatures
from bcls.data.precomp import read_precomp_split
from bcls.data.atomic import atomic_write_json

from .checkpoint import load_checkpoint, model_from_checkpoint
from .metrics import recall_metrics
from .semantic import ncs_at_k, rank_correlation
from .model import Vocabulary

log = logging.getLogger(__name__)


@torch.no_grad()
def encode_split(model: torch.nn.Module, vocab: Vocabulary, table: CaptionTable, feats: ImageFeatures,
                 device: str | torch.device = "cpu", batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed every image and caption of a split.

    Returns:
        ``(images (n_images, E), captions (n_captions, E))`` float32 on CPU, L2-normalised.
    """
    model.eval()
    images = []
    for lo in range(0, feats.n_images, batch_size):
        idx = np.arange(lo, min(lo + batch_size, feats.n_images))
        images.append(model.encode_images(torch.from_numpy(feats.batch(idx)).to(device)).float().cpu())
    captions = []
    for lo in range(0, len(table), batch_size):
        ids, lengths = vocab.encode(table.texts[lo:lo + batch_size])
        captions.append(model.encode_texts(ids.to(device), lengths).float().cpu())
    return torch.cat(images), torch.cat(captions)


def relevance_metrics(sims: torch.Tensor, relevance: torch.Tensor, caption_to_image: torch.Tensor,
                      ks: tuple[int, ...] = (1, 5, 10, 20, 30)) -> dict[str, float]:
    """How well the predicted similarities follow graded relevance (e.g. the demo's ground truth).

    Args:
        sims, relevance: ``(n_images, n_captions)``; caption_to_image: ``(n_captions,)``.

    Returns:
        ``rel_kendall_{i2t,t2i}`` / ``rel_spearman_{i2t,t2i}``: mean per-query Kendall τ-b / Spearman ρ between
        similarities and relevance over all candidates; ``ncs_{i2t,t2i}_K``: NCS@K in percent, ground-truth pairs
        excluded (Biten et al., WACV 2022).
    """
    gt = caption_to_image[None, :] == torch.arange(sims.shape[0])[:, None]
    out: dict[str, float] = {}
    for direction, s, rel, mask in (("i2t", sims, relevance, gt), ("t2i", sims.T, relevance.T, gt.T)):
        corr = rank_correlation(s, rel)
        out[f"rel_kendall_{direction}"] = corr["kendall"]
        out[f"rel_spearman_{direction}"] = corr["spearman"]
        for k, value in ncs_at_k(s, rel, ks=ks, gt_mask=mask, exclude_gt=True).items():
            out[f"ncs_{direction}_{k}"] = value
    return out


def evaluate_model(model: torch.nn.Module, vocab: Vocabulary, table: CaptionTable, feats: ImageFeatures,
                   device: str | torch.device = "cpu", relevance: np.ndarray | None = None) -> dict[str, float]:
    """Recall@K (i2t, t2i), rsum and ranks of ``model`` on one split (one block over the whole split), plus
    :func:`relevance_metrics` when a ``(n_images, n_captions)`` relevance matrix is given."""
    img, cap = encode_split(model, vocab, table, feats, device)
    caption_to_image = torch.from_numpy(table.image_index().copy())
    sims = img @ cap.T
    metrics = recall_metrics(sims, caption_to_image)
    if relevance is not None:
        metrics |= relevance_metrics(sims, torch.from_numpy(np.asarray(relevance, dtype=np.float32)),
                                     caption_to_image)
    return metrics


def load_relevance(path: str | os.PathLike, n_images: int, n_captions: int) -> np.ndarray:
    """A dense ``(n_images, n_captions)`` relevance matrix from a ``.npy`` file (e.g. the demo's ground truth)."""
    from bcls.data.errors import DataFormatError

    path = Path(path)
    try:
        rel = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataFormatError(f"{path}: not a readable .npy relevance matrix ({err})") from None
    if rel.shape != (n_images, n_captions):
        raise DataFormatError(f"{path}: relevance has shape {rel.shape}, the split has {n_images} images and "
                              f"{n_captions} captions")
    return np.asarray(rel, dtype=np.float32)


def evaluate(checkpoint: str | os.PathLike, data: str | os.PathLike, split: str = "test",
             out: str | os.PathLike | None = None, device: str = "cpu",
             relevance: str | os.PathLike | None = None) -> dict[str, Any]:
    """Evaluate a checkpoint on ``split`` of a precomp folder; write ``out/metrics.json`` when ``out`` is given.

    ``relevance``: a ``.npy`` ``(n_images, n_captions)`` graded relevance for the relevance metrics; by default
    ``{data}/{split}_relevance.npy`` when it exists (the demo writes its ground truth there).
    """
    ckpt = load_checkpoint(checkpoint, device)
    model, vocab = model_from_checkpoint(ckpt, device)
    table, feats = read_precomp_split(data, split)
    image_dim = ckpt["model_settings"].get("image_dim")
    if image_dim is not None and image_dim != feats.dim:
        from bcls.data.errors import DataFormatError
        raise DataFormatError(f"{feats.path}: features have dimension {feats.dim}, the checkpoint's model expects "
                              f"{image_dim}; evaluate on data with the training features' layout")
    default_rel = Path(data) / f"{split}_relevance.npy"
    rel_path = relevance if relevance is not None else (default_rel if default_rel.is_file() else None)
    rel = load_relevance(rel_path, feats.n_images, len(table)) if rel_path is not None else None
    metrics = evaluate_model(model, vocab, table, feats, device, rel)
    log.info("eval %s/%s: rsum %.1f", data, split, metrics["rsum"])
    result = {
        "metrics": metrics,
        "provenance": {"checkpoint": str(checkpoint), "data": str(data), "split": split,
                       "images": feats.n_images, "captions": len(table),
                       "relevance": str(rel_path) if rel_path is not None else None, "epoch": ckpt.get("epoch"),
                       "bcls_version": bcls.__version__, "checkpoint_bcls_version": ckpt.get("bcls_version")},
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "metrics.json", metrics | {"_provenance": result["provenance"]})
    return result
