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


def evaluate_model(model: torch.nn.Module, vocab: Vocabulary, table: CaptionTable, feats: ImageFeatures,
                   device: str | torch.device = "cpu") -> dict[str, float]:
    """Recall@K (i2t, t2i), rsum and ranks of ``model`` on one split (one block over the whole split)."""
    img, cap = encode_split(model, vocab, table, feats, device)
    caption_to_image = torch.from_numpy(table.image_index().copy())
    return recall_metrics(img @ cap.T, caption_to_image)


def evaluate(checkpoint: str | os.PathLike, data: str | os.PathLike, split: str = "test",
             out: str | os.PathLike | None = None, device: str = "cpu") -> dict[str, Any]:
    """Evaluate a checkpoint on ``split`` of a precomp folder; write ``out/metrics.json`` when ``out`` is given."""
    ckpt = load_checkpoint(checkpoint, device)
    model, vocab = model_from_checkpoint(ckpt, device)
    table, feats = read_precomp_split(data, split)
    image_dim = ckpt["model_settings"].get("image_dim")
    if image_dim is not None and image_dim != feats.dim:
        from bcls.data.errors import DataFormatError
        raise DataFormatError(f"{feats.path}: features have dimension {feats.dim}, the checkpoint's model expects "
                              f"{image_dim}; evaluate on data with the training features' layout")
    metrics = evaluate_model(model, vocab, table, feats, device)
    log.info("eval %s/%s: rsum %.1f", data, split, metrics["rsum"])
    result = {
        "metrics": metrics,
        "provenance": {"checkpoint": str(checkpoint), "data": str(data), "split": split,
                       "images": feats.n_images, "captions": len(table), "epoch": ckpt.get("epoch"),
                       "bcls_version": bcls.__version__, "checkpoint_bcls_version": ckpt.get("bcls_version")},
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "metrics.json", metrics | {"_provenance": result["provenance"]})
    return result
