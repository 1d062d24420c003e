"""O(B³) references of the Kendall loss, for tests and ``bench/`` only (memory is cubic in the batch size)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .kendall import DEFAULT_KENDALL, KendallParams, kendall_both_directions, surrogate_terms
from .validation import check_mask


def kendall_naive_terms(
    S: Tensor,
    R: Tensor,
    label_mask: Tensor,
    params: KendallParams = DEFAULT_KENDALL,
) -> tuple[Tensor, Tensor]:
    """Reference for :func:`kendall_swhs_terms` (same arguments, same semantics and output), O(QC^2).

    Materialises the (Q, C, C) tensors of label ranks, pair validity and pair terms (index ``[q, k, l]`` =
    anchor ``k``, partner ``l``) and takes the ``n_hard`` valid partners with the largest ``S[q, l]`` with a
    ``topk``. The rank of ``k`` is computed without sorting: the number of known ``j`` with ``R_qj > R_qk`` or
    ``R_qj == R_qk and j < k``. For tests and ``bench/`` only: memory is cubic in the batch size.
    """
    window, gap, surrogate, temperature, margin, n_hard = params.astuple()
    if S.dim() != 2 or R.shape != S.shape:
        raise ValueError(f"S and R must be (Q, C) matrices of one shape, got {tuple(S.shape)}, {tuple(R.shape)}")
    check_mask(label_mask, S.shape, "label_mask")
    Q, C = S.shape
    n = min(n_hard, C)
    m = label_mask
    r0 = torch.where(m, R, torch.zeros_like(R))
    cols = torch.arange(C, device=S.device)
    r_k = r0.unsqueeze(2)  # (Q, C, 1)
    r_j = r0.unsqueeze(1)  # (Q, 1, C)
    before = (r_j > r_k) | ((r_j == r_k) & (cols.view(1, 1, C) < cols.view(1, C, 1)))  # [q, k, j]: j before k
    rank = (before & m.unsqueeze(1)).sum(-1)  # (Q, C)
    valid3 = (
        m.unsqueeze(2)
        & m.unsqueeze(1)
        & ((rank.unsqueeze(1) - rank.unsqueeze(2)) >= window)
        & (r_j < (r_k - gap))
    )  # (Q, C, C) [q, k, l]
    diff3 = S.unsqueeze(1) - S.unsqueeze(2)  # [q, k, l] = S_ql - S_qk
    terms3 = surrogate_terms(diff3, surrogate, temperature, margin)
    key3 = torch.where(valid3, S.detach().unsqueeze(1).expand(Q, C, C), torch.full_like(terms3, -math.inf))
    top = key3.topk(n, dim=-1).indices  # (Q, C, n)
    slot_valid = valid3.gather(-1, top)
    t = terms3.gather(-1, top)
    count = slot_valid.sum(-1)
    terms = torch.where(slot_valid, t, torch.zeros_like(t)).sum(-1) / count.clamp(min=1).to(t.dtype)
    return terms, count > 0


def kendall_naive(
    S: Tensor,
    R: Tensor,
    label_mask: Tensor,
    params: KendallParams = DEFAULT_KENDALL,
) -> Tensor:
    """Reference for :func:`kendall_loss` built on :func:`kendall_naive_terms` (O(B^3) memory; tests/bench only)."""
    return kendall_both_directions(kendall_naive_terms, S, R, label_mask, params, stack=False)[0]
