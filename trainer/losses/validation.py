"""Shape and dtype checks shared by the losses (a ``ValueError`` names the argument and the shapes)."""

from __future__ import annotations

import torch
from torch import Tensor


def check_square(S: Tensor, name: str = "S") -> int:
    """``B`` of a square ``(B, B)`` matrix, else ``ValueError``."""
    if S.dim() != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"{name} must be a square (B, B) matrix, got shape {tuple(S.shape)}")
    return S.shape[0]


def check_mask(mask: Tensor | None, shape: torch.Size, name: str) -> None:
    """``ValueError`` unless ``mask`` is None or a bool tensor of ``shape``."""
    if mask is not None and (mask.shape != shape or mask.dtype != torch.bool):
        raise ValueError(f"{name} must be a bool tensor of shape {tuple(shape)}, got {mask.dtype} {tuple(mask.shape)}")
