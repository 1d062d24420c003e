"""The BCLS total: ``L = L_bin + lam * L_cont`` (as the paper states it)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bcls.data.infra.errors import ConfigError

from .kendall import KendallLoss


class BCLSLoss(nn.Module):
    """``L = L_bin + lam * L_cont`` (the BCLS total, as the paper states it).

    ``forward(S, R, label_mask, positive_mask=None)`` with (B, B) inputs returns a dict:
    ``"loss"`` (0-dim, the total), ``"binary"`` (0-dim), ``"continuous"`` (0-dim; a constant 0 when ``lam == 0``,
    in which case the continuous loss is not computed at all) and ``"valid_pairs"`` (0-dim long tensor: number of
    valid Kendall anchor terms over both directions; 0 when ``lam == 0``).

    Args:
        binary: a module called as ``binary(S, positive_mask=positive_mask)`` (e.g. from
            :func:`make_binary_loss`).
        continuous: the :class:`KendallLoss`.
        lam: weight of the continuous loss (>= 0).
    """

    def __init__(self, binary: nn.Module, continuous: KendallLoss, lam: float) -> None:
        super().__init__()
        if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
            raise ConfigError(f"BCLS lambda must be a finite number >= 0, got {lam!r}")
        self.binary = binary
        self.continuous = continuous
        self.lam = float(lam)

    def forward(
        self, S: Tensor, R: Tensor, label_mask: Tensor, positive_mask: Tensor | None = None
    ) -> dict[str, Tensor]:
        binary = self.binary(S, positive_mask=positive_mask)
        if self.lam == 0.0:
            continuous = S.new_zeros(())
            count = torch.zeros((), dtype=torch.long, device=S.device)
            loss = binary
        else:
            continuous, count = self.continuous.forward_with_count(S, R, label_mask)
            loss = binary + self.lam * continuous
        return {"loss": loss, "binary": binary, "continuous": continuous, "valid_pairs": count}

    def extra_repr(self) -> str:
        return f"lam={self.lam}"
