"""A batch's image features on the training device.

Features are stored float16 or float32 (``.npy``, memory-mapped). On the CPU they are cast there. On an
accelerator the stored bytes travel as they are, from pinned memory without blocking, and the device casts them:
numpy's float16 → float32 cast takes the host longer than a GPU's whole training step at COCO's shape, and the
copy is half the size (docs/benchmarks.md, "Host work of a step at COCO's shape"). Either way the values are the
same float32 numbers.
"""

from __future__ import annotations

import numpy as np
import torch

from bcls.data.features import ImageFeatures


def image_batch(feats: ImageFeatures, idx: np.ndarray, device: torch.device) -> torch.Tensor:
    """float32 ``(B, R, D)`` or ``(B, D)``: the features of images ``idx`` on ``device``."""
    if device.type == "cpu":
        return torch.from_numpy(feats.batch(idx))
    stored = torch.from_numpy(feats.batch(idx, dtype=None))
    if device.type == "cuda":
        stored = stored.pin_memory()  # lets the copy run while the CPU prepares the rest of the batch
    return stored.to(device, non_blocking=True).float()
