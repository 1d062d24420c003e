"""GPO: the Generalized Pooling Operator of VSE∞ (Chen et al., "Learning the Best Pooling Strategy for Visual
Semantic Embedding", CVPR 2021), written from the paper's description, not from its code."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from bcls.data.infra.errors import ConfigError


def positional_encoding(length: int, dim: int, device: torch.device | None = None,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sinusoidal encoding of the positions ``0 .. length-1``: ``(length, dim)``.

    ``pe[p, 2i] = sin(p / 10000^(2i/dim))``, ``pe[p, 2i+1] = cos(p / 10000^(2i/dim))`` (Vaswani et al.); an odd
    ``dim`` drops the last cosine.
    """
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device, dtype=torch.float32)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe.to(dtype)


def valid_positions(lengths: torch.Tensor | None, batch: int, size: int, device: torch.device) -> torch.Tensor:
    """(B, K) bool: position ``k`` of row ``b`` is valid iff ``k < lengths[b]`` (all valid when None)."""
    if lengths is None:
        return torch.ones(batch, size, dtype=torch.bool, device=device)
    lengths = lengths.to(device)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
    if bool((lengths < 1).any()) or bool((lengths > size).any()):
        raise ValueError(f"lengths must lie in [1, {size}], got min {int(lengths.min())} max {int(lengths.max())}")
    return torch.arange(size, device=device).unsqueeze(0) < lengths.unsqueeze(1)


def gpo_pool(features: torch.Tensor, weights: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """The pooling step of GPO: sort every feature dimension, then take a weighted sum over sorted positions.

    For row ``b`` and dimension ``e``, the valid values ``features[b, :lengths[b], e]`` are sorted in descending
    order, giving ``v_1 >= v_2 >= ...``; the result is ``sum_k weights[b, k] * v_{k+1}``. One-hot weights on
    position 0 give max pooling; ``1 / lengths[b]`` on the valid positions give mean pooling; one-hot on position
    ``k`` gives the (k+1)-th largest value. Weights at padded positions (``k >= lengths[b]``) are ignored.

    Args:
        features: (B, K, E) per-position features (K regions or tokens, padded to K).
        weights: (B, K) pooling weights over *sorted* positions (normally a softmax, see :class:`GPO`).
        lengths: optional (B,) number of valid positions per row (1 <= length <= K); None means all K are valid.

    Returns:
        (B, E) pooled features (not normalised).
    """
    if features.dim() != 3 or weights.shape != features.shape[:2]:
        raise ValueError(f"features must be (B, K, E) and weights (B, K), got {tuple(features.shape)}, "
                         f"{tuple(weights.shape)}")
    B, K, _ = features.shape
    valid = valid_positions(lengths, B, K, features.device).unsqueeze(-1)  # (B, K, 1)
    ranked = features.masked_fill(~valid, -math.inf).sort(dim=1, descending=True).values
    ranked = ranked.masked_fill(~valid, 0.0)  # after the sort the valid values occupy positions < length
    return (ranked * weights.unsqueeze(-1).to(ranked.dtype)).sum(dim=1)


class GPO(nn.Module):
    """Generalized Pooling Operator (VSE∞): learned weights over sorted positions, then :func:`gpo_pool`.

    The weights depend only on the number of valid positions L: the sinusoidal encodings of positions
    ``0 .. L-1`` run through a small bidirectional GRU (the two directions averaged), a linear layer scores each
    position, and a softmax over the L positions (with a fixed temperature) gives the weights. The weights are
    thus a learned function of (position, L) that can express max, mean, top-k means and anything between, and
    that works for any number of regions or tokens.

    What VSE∞ states and what is ours: GPO itself (sorted features, PE -> bi-GRU -> weights) is from the paper; the
    sizes ``pe_dim = hidden_dim = 32`` and the softmax temperature 0.1 follow our reading of the VSE∞ setup. Our
    implementation runs the GRU once per *distinct* length in the batch (the weights of two rows of equal length
    are identical), which is one short sequence for fixed-R region features.

    ``forward(features (B, K, E), lengths (B,) or None) -> (B, E)``; ``weights(lengths (B,), K) -> (B, K)``.
    """

    def __init__(self, pe_dim: int = 32, hidden_dim: int = 32, temperature: float = 0.1) -> None:
        super().__init__()
        if pe_dim < 1 or hidden_dim < 1 or not temperature > 0:
            raise ConfigError(f"GPO needs pe_dim, hidden_dim >= 1 and temperature > 0, got {pe_dim}, {hidden_dim}, "
                              f"{temperature}")
        self.pe_dim = pe_dim
        self.temperature = float(temperature)
        self.gru = nn.GRU(pe_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.score = nn.Linear(hidden_dim, 1)

    def weights(self, lengths: torch.Tensor, size: int) -> torch.Tensor:
        """Pooling weights ``(B, size)`` for rows with ``lengths`` (B,) valid positions; 0 at padded positions,
        each row sums to 1."""
        device = self.score.weight.device
        distinct, inverse = torch.unique(lengths.to(device), return_inverse=True)  # (U,), (B,)
        valid = valid_positions(distinct, distinct.shape[0], size, device)  # (U, size)
        pe = positional_encoding(size, self.pe_dim, device, self.score.weight.dtype)
        pe = pe.unsqueeze(0).expand(distinct.shape[0], size, self.pe_dim)
        packed = pack_padded_sequence(pe, distinct.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=size)  # (U, size, 2H)
        half = out.shape[-1] // 2
        scores = self.score((out[..., :half] + out[..., half:]) / 2).squeeze(-1)  # (U, size)
        scores = scores.masked_fill(~valid, -math.inf)
        return torch.softmax(scores / self.temperature, dim=1)[inverse]

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``features`` (B, K, E), ``lengths`` (B,) or None (all K valid) -> pooled (B, E)."""
        B, K = features.shape[:2]
        if lengths is None:
            lengths = torch.full((B,), K, dtype=torch.long)
        return gpo_pool(features, self.weights(lengths, K), lengths)
