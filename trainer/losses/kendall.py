"""The continuous loss: a Kendall ranking loss with SW-HS (sliding-window sampling + hard-sample mining).

Notation: ``S`` the ``(B, B)`` predicted similarities, ``R`` the ``(B, B)`` continuous labels and ``label_mask``
the ``(B, B)`` bool matrix of the entries that are known (labels from sparse shards leave most off-diagonal
entries unknown). What the paper states: a Kendall ranking loss makes the order of the predicted similarities
agree with the order of the continuous labels, and SW-HS makes it robust to label noise and as cheap as the
triplet loss. The exact formulas are our reading (docs/design.md, "The losses"): see
:func:`kendall_swhs_terms`. The O(B³) reference the tests and benchmarks compare against is
:mod:`bcls.trainer.losses.reference`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from bcls.data.infra.errors import ConfigError, setting

from .validation import check_mask, check_square

Surrogate = Literal["sigmoid", "tanh", "hinge"]
SURROGATES: tuple[str, ...] = ("sigmoid", "tanh", "hinge")


@dataclass(frozen=True)
class KendallParams:
    """The settings of the Kendall ranking loss with SW-HS, carried as one value from the training config to the
    loss (:meth:`bcls.trainer.config.TrainConfig.kendall_params`); the defaults here are the defaults everywhere.

    The defaults were chosen by the sweep on the demo (``bench/sweep_bcls.py``, ``docs/results.md``): a ``gap`` of
    0.4 — compare only pairs whose labels differ by more than 0.4, the noise filter that made the Kendall term help
    — with the sigmoid surrogate at temperature 1. The gap is in label units: 0.4 suits sbert's clipped cosines
    (the demo's ground truth too); a source on another scale needs its own (or ``label_norm``).

    Attributes:
        window: minimum label-rank distance of a compared pair (>= 1; 1 compares every ordered pair).
        gap: minimum label difference of a compared pair (>= 0).
        surrogate: smooth surrogate of the order violation: ``sigmoid``, ``tanh`` or ``hinge``.
        temperature: temperature of the sigmoid / tanh surrogates (> 0).
        margin: margin of the hinge surrogate (ignored by the others).
        n_hard: hardest partners kept per anchor (>= 1).
    """

    window: int = 1
    gap: float = 0.4
    surrogate: str = "sigmoid"
    temperature: float = 1.0
    margin: float = 0.0
    n_hard: int = 1

    def __post_init__(self) -> None:
        window, n_hard, gap, temperature, margin = self.window, self.n_hard, self.gap, self.temperature, self.margin
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ConfigError(f"{setting('kendall.window')} must be an integer >= 1, got {window!r}")
        if isinstance(n_hard, bool) or not isinstance(n_hard, int) or n_hard < 1:
            raise ConfigError(f"{setting('kendall.n_hard')} must be an integer >= 1, got {n_hard!r}")
        if not (isinstance(gap, (int, float)) and math.isfinite(gap) and gap >= 0):
            raise ConfigError(f"{setting('kendall.gap')} must be a finite number >= 0, got {gap!r}")
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise ConfigError(f"{setting('kendall.temperature')} must be a finite number > 0, got {temperature!r}")
        if not (isinstance(margin, (int, float)) and math.isfinite(margin)):
            raise ConfigError(f"{setting('kendall.margin')} must be a finite number, got {margin!r}")
        if self.surrogate not in SURROGATES:
            raise ConfigError(f"unknown {setting('kendall.surrogate')} {self.surrogate!r}; valid: "
                              f"{', '.join(SURROGATES)}")

    def astuple(self) -> tuple[int, float, str, float, float, int]:
        """``(window, gap, surrogate, temperature, margin, n_hard)``."""
        return (self.window, float(self.gap), self.surrogate, float(self.temperature), float(self.margin),
                self.n_hard)


DEFAULT_KENDALL = KendallParams()


def surrogate_terms(diff: Tensor, surrogate: str, temperature: float, margin: float) -> Tensor:
    """Smooth surrogate of the order violation ``sign(S_ql - S_qk)``; ``diff = S_ql - S_qk`` (any shape)."""
    if surrogate == "sigmoid":
        return torch.sigmoid(diff / temperature)
    if surrogate == "tanh":
        return 0.5 * (1.0 + torch.tanh(diff / temperature))
    return torch.relu(margin + diff)  # "hinge"


def suffix_topn_indices(key: Tensor, n: int) -> Tensor:
    """Positions of the ``n`` largest entries of every suffix of every row.

    Args:
        key: (Q, C) values (``-inf`` = not selectable); no gradient needed.
        n: how many to keep.

    Returns:
        (Q, C, n) long: ``out[q, p]`` = positions (in ``[p, C)``) of the n largest ``key[q, p:]``, largest first.
        Where the suffix has fewer than n selectable entries the extra slots hold arbitrary positions; callers
        decide validity themselves.

    ``n == 1`` is a reverse cumulative max (O(QC)). ``n > 1`` is a parallel suffix scan by doubling: after step
    ``t`` slot ``p`` holds the top-n of the window ``[p, p + 2^t)``, and two disjoint windows are merged with a
    ``topk`` over their ``2n`` candidates; ``ceil(log2 C)`` steps, O(QC n log C) time, O(QC n) memory.
    """
    Q, C = key.shape
    if n == 1:
        rev = torch.cummax(key.flip(1), dim=1).indices  # positions in flipped coordinates
        return (C - 1 - rev).flip(1).unsqueeze(-1)
    pos = torch.arange(C, device=key.device).expand(Q, C)
    vals = torch.full((Q, C, n), -math.inf, dtype=key.dtype, device=key.device)
    idx = torch.zeros((Q, C, n), dtype=torch.long, device=key.device)
    vals[..., 0] = key
    idx[..., 0] = pos
    d = 1
    while d < C:
        sh_vals = torch.full_like(vals, -math.inf)
        sh_idx = torch.zeros_like(idx)
        sh_vals[:, : C - d] = vals[:, d:]
        sh_idx[:, : C - d] = idx[:, d:]
        cat_vals = torch.cat([vals, sh_vals], dim=-1)
        cat_idx = torch.cat([idx, sh_idx], dim=-1)
        vals, which = torch.topk(cat_vals, n, dim=-1)
        idx = cat_idx.gather(-1, which)
        d *= 2
    return idx


def kendall_swhs_terms(
    S: Tensor,
    R: Tensor,
    label_mask: Tensor,
    params: KendallParams = DEFAULT_KENDALL,
) -> tuple[Tensor, Tensor]:
    """Per-anchor Kendall ranking terms with SW-HS, one direction (rows are queries), vectorised.

    Semantics (our reading of BCLS, docs/design.md "The losses"). For query ``q`` (row ``q``):

    1. The known candidates (``label_mask[q]``) are ranked by label ``R[q]`` descending; ties are broken by
       column index (stable sort), giving ``rank(k)`` in ``0 .. n_known-1``. Unknown candidates have no rank and
       are never anchors nor partners.
    2. Anchor ``k`` and partner ``l`` form a compared pair iff both are known, ``rank(l) - rank(k) >= window``
       (sliding-window noise filter: labels of near-equal rank are not trusted to order the pair; ``window=1``
       means every ordered pair) and ``R[q, l] < R[q, k] - gap`` (label difference larger than ``gap``; evaluated
       in exactly this form, in the labels' dtype).
    3. Hard-sample mining: among the valid partners of anchor ``k`` keep the ``n_hard`` with the largest
       ``S[q, l]`` (the most violating ones; every surrogate is increasing in ``S[q, l]``).
    4. The term of a pair is a smooth surrogate of the order violation ``sign(S[q, l] - S[q, k])``:
       ``"sigmoid"``: ``sigmoid((S_ql - S_qk) / temperature)``; ``"tanh"``: ``(1 + tanh((S_ql - S_qk) /
       temperature)) / 2``; ``"hinge"``: ``relu(margin + S_ql - S_qk)`` (``margin`` is used by the hinge only).
       The term of anchor ``(q, k)`` is the mean over its kept partners (``n_hard=1``: the hardest pair's term).
       The per-anchor mean for ``n_hard > 1`` is our choice; it keeps one element per anchor.

    Algorithm: per row, a stable sort by label and a stable known-first partition; since labels are sorted, the
    partners satisfying (2) for the anchor at sorted position ``p`` are exactly the contiguous range
    ``[start(p), n_known)`` with ``start(p) = max(p + window, first position whose label < R_qk - gap)`` (a
    ``searchsorted``); the hardest partners are a suffix max (``n_hard=1``, reverse ``cummax``) or a suffix top-n
    (doubling scan) of ``S`` over sorted positions. O(QC log C) time (O(QC n log C) for ``n_hard = n > 1``),
    O(QC n) memory; the index selection runs without gradient and the values are gathered from ``S``, so the
    gradient is that of the selected pairs only.

    Args:
        S: (Q, C) predicted similarities; rows are queries (i2t: ``S``; t2i: ``S.T``).
        R: (Q, C) continuous labels (any value, even NaN, where unknown).
        label_mask: (Q, C) bool, True where ``R`` is known.
        params: ``window`` (minimum label-rank distance of a compared pair), ``gap`` (minimum label difference),
            ``surrogate``, ``temperature`` (sigmoid/tanh), ``margin`` (hinge), ``n_hard`` (hardest partners
            kept per anchor); see :class:`KendallParams`.

    Returns:
        ``(terms, valid)``, both (Q, C) in the **original column order of the anchors**: ``terms[q, k]`` is the
        term of anchor ``k`` for query ``q`` (0 where invalid), ``valid[q, k]`` is True iff the anchor has at least
        one valid partner.
    """
    window, gap, surrogate, temperature, margin, n_hard = params.astuple()
    if S.dim() != 2:
        raise ValueError(f"S must be a (Q, C) matrix, got shape {tuple(S.shape)}")
    if R.shape != S.shape:
        raise ValueError(f"R must have the shape of S {tuple(S.shape)}, got {tuple(R.shape)}")
    check_mask(label_mask, S.shape, "label_mask")
    Q, C = S.shape
    dev = S.device
    n = min(n_hard, C)

    r0 = torch.where(label_mask, R, torch.zeros_like(R))  # unknown labels are never read
    n_known = label_mask.sum(dim=1, keepdim=True)  # (Q, 1)
    # order: known first, then label descending, then column index. A stable sort by label, then a stable
    # partition known/unknown (cumsum + scatter, O(QC) instead of a second sort).
    by_label = torch.sort(r0, dim=1, descending=True, stable=True).indices
    known_sorted = label_mask.gather(1, by_label)
    dest = torch.where(
        known_sorted,
        known_sorted.cumsum(1) - 1,
        n_known + (~known_sorted).cumsum(1) - 1,
    )
    perm = torch.empty_like(by_label).scatter_(1, dest, by_label)  # (Q, C) columns in rank order
    rs = r0.gather(1, perm)
    ms = label_mask.gather(1, perm)
    ss = S.gather(1, perm)  # keeps the gradient
    pos = torch.arange(C, device=dev).unsqueeze(0)  # (1, C)

    # first sorted position whose label < R_qk - gap: search -R (ascending over the known prefix, +inf after)
    neg = torch.where(ms, -rs, torch.full_like(rs, math.inf)).contiguous()
    thr = (-(rs - gap)).contiguous()
    first = torch.searchsorted(neg, thr, right=True)  # (Q, C), first p' with -r_p' > -(r_k - gap)
    start = torch.maximum(first, pos + window)  # (Q, C), valid partners are [start, n_known)

    with torch.no_grad():
        key = torch.where(ms, ss.detach(), torch.full_like(ss, -math.inf))
        top = suffix_topn_indices(key, n)  # (Q, C, n) positions of the suffix top-n
        start_c = start.clamp(max=C - 1)
        partner = top.gather(1, start_c.unsqueeze(-1).expand(Q, C, n))  # (Q, C, n) sorted positions
    slot = torch.arange(n, device=dev).view(1, 1, n)
    slot_valid = (start.unsqueeze(-1) + slot) < n_known.unsqueeze(-1)  # (Q, C, n)

    s_l = ss.gather(1, partner.reshape(Q, C * n)).view(Q, C, n)
    pair_terms = surrogate_terms(s_l - ss.unsqueeze(-1), surrogate, temperature, margin)
    count = slot_valid.sum(-1)  # (Q, C)
    anchor_terms = torch.where(slot_valid, pair_terms, torch.zeros_like(pair_terms)).sum(-1)
    anchor_terms = anchor_terms / count.clamp(min=1).to(anchor_terms.dtype)
    anchor_valid = count > 0

    terms = torch.zeros_like(anchor_terms).scatter(1, perm, anchor_terms)
    valid = torch.zeros_like(anchor_valid).scatter(1, perm, anchor_valid)
    return terms, valid


TermsFn = Callable[[Tensor, Tensor, Tensor, "KendallParams"], tuple[Tensor, Tensor]]
"""A one-direction terms function: ``(S, R, label_mask, params) -> (terms, valid)``."""


def kendall_both_directions(
    terms_fn: TermsFn, S: Tensor, R: Tensor, label_mask: Tensor, params: KendallParams, stack: bool
) -> tuple[Tensor, Tensor]:
    """Pooled mean of the valid terms of i2t (rows) and t2i (rows of the transposes), and their count.

    ``stack=True`` runs both directions as one (2B, B) call (half the kernel launches; used by the fast path);
    ``stack=False`` runs them one after the other (halves the peak memory of the cubic reference)."""
    check_square(S)
    if R.shape != S.shape:
        raise ValueError(f"R must have the shape of S {tuple(S.shape)}, got {tuple(R.shape)}")
    check_mask(label_mask, S.shape, "label_mask")
    total = S.new_zeros(())
    count = torch.zeros((), dtype=torch.long, device=S.device)
    if stack:
        directions = [(torch.cat([S, S.t()]), torch.cat([R, R.t()]), torch.cat([label_mask, label_mask.t()]))]
    else:
        directions = [(S, R, label_mask), (S.t(), R.t(), label_mask.t())]
    for s, r, m in directions:
        terms, valid = terms_fn(s, r, m, params)
        total = total + torch.where(valid, terms, torch.zeros_like(terms)).sum()
        count = count + valid.sum()
    # no valid term: total is a 0 that is still connected to S, so the loss has a (zero) gradient
    return total / count.clamp(min=1).to(total.dtype), count


def kendall_loss_with_count(
    S: Tensor,
    R: Tensor,
    label_mask: Tensor,
    params: KendallParams = DEFAULT_KENDALL,
) -> tuple[Tensor, Tensor]:
    """Like :func:`kendall_loss`, also returning the number of valid anchor terms (a 0-dim long tensor, kept
    on the device so that logging it does not force a synchronisation)."""
    return kendall_both_directions(kendall_swhs_terms, S, R, label_mask, params, stack=True)


def kendall_loss(
    S: Tensor,
    R: Tensor,
    label_mask: Tensor,
    params: KendallParams = DEFAULT_KENDALL,
) -> Tensor:
    """Kendall ranking loss with SW-HS over both directions, the scalar mean of all valid anchor terms.

    i2t uses rows of ``(S, R, label_mask)``, t2i uses rows of their transposes; the terms of both directions are
    pooled and averaged (our choice: every valid anchor weighs the same). When no term is valid the result is 0
    with a (zero) gradient.

    Args:
        S: (B, B) similarities; R: (B, B) labels; label_mask: (B, B) bool.
        params: the Kendall / SW-HS settings (:class:`KendallParams`).

    Returns:
        0-dim tensor.
    """
    return kendall_loss_with_count(S, R, label_mask, params)[0]


class KendallLoss(nn.Module):
    """Continuous supervision: Kendall ranking loss with SW-HS (see :func:`kendall_swhs_terms`).

    ``forward(S, R, label_mask)`` with (B, B) inputs returns the scalar :func:`kendall_loss`.

    Args:
        params: the settings (:class:`KendallParams`; its defaults are those of ``bcls train``).
    """

    def __init__(self, params: KendallParams = DEFAULT_KENDALL) -> None:
        super().__init__()
        if not isinstance(params, KendallParams):
            raise ConfigError(f"KendallLoss takes a KendallParams, got {type(params).__name__}")
        self.params = params

    def forward(self, S: Tensor, R: Tensor, label_mask: Tensor) -> Tensor:
        """(B, B), (B, B), (B, B) bool -> scalar loss."""
        return kendall_loss(S, R, label_mask, self.params)

    def forward_with_count(self, S: Tensor, R: Tensor, label_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Scalar loss and the number of valid anchor terms (0-dim long tensor)."""
        return kendall_loss_with_count(S, R, label_mask, self.params)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(self.params).items())
