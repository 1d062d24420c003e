"""Image side: encoders of region features ``(B, R, D)`` and of global features ``(B, D)``, into the joint space,
L2-normalised."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .gpo import GPO, valid_positions


class RegionImageEncoder(nn.Module):
    """Linear projection of each region, pooled over regions, L2-normalised.

    ``(B, R, D)`` region features (or ``(B, D)`` global features, treated as one region) → ``(B, E)``.
    """

    def __init__(self, image_dim: int, embed_dim: int, pooling: str = "max"):
        super().__init__()
        self.proj = nn.Linear(image_dim, embed_dim)
        self.pooling = pooling

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.dim() == 2:
            feats = feats.unsqueeze(1)
        x = self.proj(feats)
        x = x.amax(dim=1) if self.pooling == "max" else x.mean(dim=1)
        return F.normalize(x, dim=-1)


class ResidualProjection(nn.Module):
    """``fc(x) + mlp(x)``: a linear projection plus a 2-layer MLP (Linear -> BatchNorm -> ReLU -> Linear).

    The form of VSE∞'s encoder for precomputed region features (the MLP's hidden size is ``embed_dim // 2`` by
    default, as there). ``(N, D) -> (N, E)``; BatchNorm normalises over the N rows, so callers pass only real
    (non-padded) rows.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden = hidden_dim or max(out_dim // 2, 1)
        self.fc = nn.Linear(in_dim, out_dim)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, out_dim))
        bound = math.sqrt(6.0) / math.sqrt(in_dim + out_dim)  # Xavier-uniform, as VSE-family encoders do
        nn.init.uniform_(self.fc.weight, -bound, bound)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, E)."""
        return self.fc(x) + self.mlp(x)


class RegionGPOImageEncoder(nn.Module):
    """VSE∞-style encoder of region features: per-region :class:`ResidualProjection`, :class:`GPO` over regions,
    L2 normalisation.

    ``forward(feats, lengths=None)``: ``(B, R, D)`` region features (or ``(B, D)``, one region) and optional
    ``(B,)`` region counts for padded inputs -> ``(B, E)`` unit vectors. Padded regions take no part in the
    BatchNorm statistics nor in the pooling, so the output does not depend on the padding.
    """

    def __init__(self, image_dim: int, embed_dim: int, hidden_dim: int | None = None, gpo_pe_dim: int = 32,
                 gpo_hidden: int = 32) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.proj = ResidualProjection(image_dim, embed_dim, hidden_dim)
        self.gpo = GPO(gpo_pe_dim, gpo_hidden)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if feats.dim() == 2:
            feats = feats.unsqueeze(1)
        if feats.dim() != 3:
            raise ValueError(f"region features must be (B, R, D) or (B, D), got shape {tuple(feats.shape)}")
        B, R, D = feats.shape
        if lengths is None:
            x = self.proj(feats.reshape(B * R, D)).view(B, R, self.embed_dim)
        else:  # project the real regions only (BatchNorm statistics), zeros at the padding
            valid = valid_positions(lengths, B, R, feats.device)
            real = self.proj(feats[valid])  # (n_real, E)
            x = real.new_zeros(B, R, self.embed_dim).masked_scatter(valid.unsqueeze(-1), real)
        return F.normalize(self.gpo(x, lengths), dim=-1)


class GlobalImageAdapter(nn.Module):
    """A light adapter for one global feature per image (e.g. a precomputed CLIP image embedding):
    :class:`ResidualProjection` then L2 normalisation. ``(B, D) -> (B, E)``."""

    def __init__(self, image_dim: int, embed_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        self.proj = ResidualProjection(image_dim, embed_dim, hidden_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.dim() != 2:
            raise ValueError(f"the global adapter takes (B, D) global features, got shape {tuple(feats.shape)}; "
                             "region features need a region model (vse-gru, vse-gpo)")
        return F.normalize(self.proj(feats), dim=-1)
