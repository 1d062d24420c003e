"""BCLS training losses: a binary triplet loss and a continuous Kendall ranking loss with SW-HS.

Notation (shared by every function here): a batch of ``B`` matched pairs; ``S`` is the ``(B, B)`` matrix of
predicted similarities, ``S[i, j]`` = cosine(image i, caption j); the positive of image ``i`` is caption ``i``.
``R`` is the ``(B, B)`` matrix of continuous labels (``R[i, i] = 1``) and ``label_mask`` the ``(B, B)`` bool matrix
of the entries that are known (labels come from sparse shards, so most off-diagonal entries are unknown).

What the BCLS paper states: training uses a binary loss (a triplet loss with soft-negative mining, "Triplet-SN")
plus a continuous loss (a Kendall ranking loss that makes the order of the predicted similarities agree with the
order of the continuous labels), made robust and cheap by SW-HS (sliding-window sampling + hard-sample mining),
total ``L = L_bin + lambda * L_cont``. The paper's method body is not public: the exact formulas below are our
reading (``/work/shared/DESIGN.md``, "Definitions to implement"), and each docstring says which choices are ours.

Binary losses (registry :data:`BINARY_LOSSES`, built by :func:`make_binary_loss`): ``triplet-hardest`` (VSE++),
``triplet-mean``, and two readings of Triplet-SN: ``triplet-sn-switch`` (hardest negative, mean over negatives
where the hardest is within ``eps`` of the positive) and ``triplet-sn-softmax`` (hinges weighted by a softmax of
the negatives' similarities with temperature ``tau``).

Conventions: losses are pure functions ``(scores, labels) -> per-element terms -> reduction`` with a thin
``nn.Module`` holding the hyper-parameters; mining is separate from the surrogate; "nothing valid" gives a zero
that still has a gradient; everything follows the device of its inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from bcls.data.errors import ConfigError

__all__ = [
    "BINARY_LOSSES",
    "SURROGATES",
    "BCLSLoss",
    "BinaryLossSpec",
    "BinaryTripletLoss",
    "KendallLoss",
    "TripletLoss",
    "TripletSNSoftmaxLoss",
    "TripletSNSwitchLoss",
    "binary_loss_alias",
    "binary_loss_params",
    "kendall_loss",
    "kendall_loss_with_count",
    "kendall_naive",
    "kendall_naive_terms",
    "kendall_swhs_terms",
    "make_binary_loss",
    "triplet_sn_softmax_terms",
    "triplet_sn_switch_terms",
    "triplet_sn_switched",
    "triplet_terms",
]

Mining = Literal["hardest", "mean"]
Surrogate = Literal["sigmoid", "tanh", "hinge"]
MININGS: tuple[str, ...] = ("hardest", "mean")
SURROGATES: tuple[str, ...] = ("sigmoid", "tanh", "hinge")


# --------------------------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------------------------
def _check_square(S: Tensor, name: str = "S") -> int:
    if S.dim() != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"{name} must be a square (B, B) matrix, got shape {tuple(S.shape)}")
    return S.shape[0]


def _check_mask(mask: Tensor | None, shape: torch.Size, name: str) -> None:
    if mask is not None and (mask.shape != shape or mask.dtype != torch.bool):
        raise ValueError(f"{name} must be a bool tensor of shape {tuple(shape)}, got {mask.dtype} {tuple(mask.shape)}")


def _check_mining(mining: str) -> None:
    if mining not in MININGS:
        raise ConfigError(f"unknown triplet mining {mining!r}; valid: {', '.join(MININGS)}")


def _check_kendall_params(
    window: int, gap: float, surrogate: str, temperature: float, margin: float, n_hard: int
) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"kendall window must be an integer >= 1, got {window!r}")
    if isinstance(n_hard, bool) or not isinstance(n_hard, int) or n_hard < 1:
        raise ConfigError(f"kendall n_hard must be an integer >= 1, got {n_hard!r}")
    if not (isinstance(gap, (int, float)) and math.isfinite(gap) and gap >= 0):
        raise ConfigError(f"kendall gap must be a finite number >= 0, got {gap!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"kendall temperature must be a finite number > 0, got {temperature!r}")
    if not (isinstance(margin, (int, float)) and math.isfinite(margin)):
        raise ConfigError(f"kendall margin must be a finite number, got {margin!r}")
    if surrogate not in SURROGATES:
        raise ConfigError(f"unknown kendall surrogate {surrogate!r}; valid: {', '.join(SURROGATES)}")


# --------------------------------------------------------------------------------------------------------------
# binary loss: triplet ranking losses (VSE++ hardest, mean, and two soft-negative "Triplet-SN" variants)
# --------------------------------------------------------------------------------------------------------------
def _check_margin(margin: object) -> float:
    if isinstance(margin, bool) or not (isinstance(margin, (int, float)) and math.isfinite(margin)):
        raise ConfigError(f"triplet margin must be a finite number, got {margin!r}")
    return float(margin)


def _check_eps(eps: object) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or math.isnan(eps):
        raise ConfigError(f"triplet-sn-switch eps must be a number (+-inf allowed), got {eps!r}")
    return float(eps)


def _check_tau(tau: object) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or math.isnan(tau) or tau <= 0:
        raise ConfigError(f"triplet-sn-softmax tau must be a number > 0 (inf allowed), got {tau!r}")
    return float(tau)


def _hinge_matrix(S: Tensor, margin: float, positive_mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Rows are queries, the diagonal holds the positives.

    Returns:
        ``(negative, cost)``, both (B, B): ``negative[i, j]`` is True iff ``j != i`` and not
        ``positive_mask[i, j]``; ``cost[i, j] = relu(margin + S[i, j] - S[i, i])`` on negatives and 0 elsewhere
        (built with ``torch.where`` from ``S``, so even an all-zero row is connected to the graph).
    """
    B = S.shape[0]
    eye = torch.eye(B, dtype=torch.bool, device=S.device)
    negative = ~eye if positive_mask is None else ~(eye | positive_mask)
    pos = S.diagonal().unsqueeze(1)  # (B, 1)
    cost = torch.where(negative, torch.relu(margin + S - pos), torch.zeros_like(S))
    return negative, cost


def _mean_over_negatives(cost: Tensor, negative: Tensor) -> Tensor:
    """(B, B) hinge costs (0 off negatives), (B, B) bool -> (B,) mean over each row's negatives (0 if none)."""
    return cost.sum(dim=1) / negative.sum(dim=1).clamp(min=1).to(cost.dtype)


def _triplet_one_direction(S: Tensor, margin: float, mining: str, positive_mask: Tensor | None) -> Tensor:
    """Rows are queries, the diagonal holds the positives. ``S`` (B, B) -> per-query terms (B,)."""
    negative, cost = _hinge_matrix(S, margin, positive_mask)
    if mining == "hardest":
        return cost.max(dim=1).values  # relu >= 0, so a query without negatives gets 0
    return _mean_over_negatives(cost, negative)


def _both_directions(
    one_direction: Callable[[Tensor, Tensor | None], Tensor], S: Tensor, positive_mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Run a rows-are-queries term function for image queries (``S``) and caption queries (``S.T``)."""
    _check_square(S)
    _check_mask(positive_mask, S.shape, "positive_mask")
    i2t = one_direction(S, positive_mask)
    t2i = one_direction(S.t(), None if positive_mask is None else positive_mask.t())
    return i2t, t2i


def triplet_terms(
    S: Tensor,
    margin: float = 0.2,
    mining: Mining = "hardest",
    positive_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-query hinge terms of the bidirectional triplet ranking loss.

    For image query ``i`` (row of ``S``) the positive is ``S[i, i]`` and the negatives are the captions ``j != i``
    with ``positive_mask[i, j]`` false; the hinge of negative ``j`` is ``relu(margin + S[i, j] - S[i, i])``.
    Caption queries (t2i) use the columns: positive ``S[j, j]``, negatives ``S[i, j]`` with ``i != j`` and
    ``positive_mask[i, j]`` false.

    * ``mining="hardest"``: VSE++ max-violation (Faghri et al., 2018): the largest hinge over the negatives.
    * ``mining="mean"``: mean over the negatives of the hinge (every negative contributes, which is the stable
      choice early in training; VSE∞ warms up with it).

    The soft-negative variants are :func:`triplet_sn_switch_terms` and :func:`triplet_sn_softmax_terms`.

    A query without any negative (B = 1, or every other item marked positive) gets a term of 0 that is still
    connected to the graph.

    Args:
        S: (B, B) similarities, ``S[i, j]`` = sim(image i, caption j).
        margin: hinge margin.
        mining: ``"hardest"`` or ``"mean"``.
        positive_mask: optional (B, B) bool; True marks extra positives (e.g. two captions of the same image in
            the batch) that are never used as negatives. The diagonal is always the positive.

    Returns:
        ``(i2t, t2i)``: two (B,) tensors of per-query terms (image queries, caption queries).
    """
    _check_mining(mining)
    return _both_directions(lambda s, pm: _triplet_one_direction(s, margin, mining, pm), S, positive_mask)


def _sn_switched_one_direction(S: Tensor, eps: float, negative: Tensor) -> Tensor:
    """(B,) bool: True where ``S[i, i] - max_{j negative} S[i, j] < eps`` (never for a row without negatives
    unless ``eps == inf``; such a row's term is 0 either way)."""
    with torch.no_grad():
        hardest = torch.where(negative, S, torch.full_like(S, -math.inf)).amax(dim=1)
        return (S.diagonal() - hardest) < eps


def _sn_switch_one_direction(S: Tensor, margin: float, eps: float, positive_mask: Tensor | None) -> Tensor:
    negative, cost = _hinge_matrix(S, margin, positive_mask)
    switched = _sn_switched_one_direction(S, eps, negative)
    return torch.where(switched, _mean_over_negatives(cost, negative), cost.max(dim=1).values)


def triplet_sn_switch_terms(
    S: Tensor,
    margin: float = 0.2,
    eps: float = 0.05,
    positive_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-query terms of Triplet-SN, *switch* variant: hardest negative, or the mean over negatives when the
    hardest negative is within ``eps`` of the positive.

    For query ``i`` (rows of ``S`` for i2t, of ``S.T`` for t2i; negatives as in :func:`triplet_terms`) with
    positive ``p = S[i, i]`` and hardest negative ``h = max_j S[i, j]``:

    * ``p - h >= eps``: the VSE++ term ``relu(margin + h - p)`` (the positive clearly leads; the hardest
      negative is an informative one);
    * ``p - h < eps``: the mean over the negatives of ``relu(margin + S[i, j] - p)`` (the hardest negative is
      level with or above the positive: it is likely a false negative - a caption that in fact fits the image,
      which is common in COCO - or too hard to learn from yet, e.g. in the collapsed state at the start of
      training, where hardest-negative mining is known to stall; the mean gives every negative a say).

    The switch is decided per query and per direction on the values (no gradient flows through the decision;
    the gradient is that of the chosen branch). ``eps = -inf`` is exactly ``mining="hardest"``, ``eps = +inf``
    exactly ``mining="mean"``. A query without negatives gets 0 (connected to the graph).

    What the paper states: BCLS uses "a triplet loss with soft negative mining" for stable convergence; the
    formula is not public. This switching rule, and the default ``eps = 0.05`` (a quarter of the default
    margin 0.2: the hardest negative is used once the positive leads it by a visible amount, while
    near-ties, where a label can easily be wrong, fall back to the mean), are our choices, not measured yet.

    Args:
        S: (B, B) similarities, ``S[i, j]`` = sim(image i, caption j).
        margin: hinge margin.
        eps: switch threshold on ``S_pos - S_hardest_neg`` (any number; +-inf allowed).
        positive_mask: optional (B, B) bool of extra positives, as in :func:`triplet_terms`.

    Returns:
        ``(i2t, t2i)``: two (B,) tensors of per-query terms.
    """
    margin, eps = _check_margin(margin), _check_eps(eps)
    return _both_directions(lambda s, pm: _sn_switch_one_direction(s, margin, eps, pm), S, positive_mask)


def triplet_sn_switched(
    S: Tensor, eps: float = 0.05, positive_mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Which queries :func:`triplet_sn_switch_terms` sends to the mean branch (for logging the switch rate).

    Args:
        S: (B, B) similarities; eps, positive_mask: as in :func:`triplet_sn_switch_terms`.

    Returns:
        ``(i2t, t2i)``: two (B,) bool tensors, True where the query uses the mean over negatives.
    """
    eps = _check_eps(eps)

    def one(s: Tensor, pm: Tensor | None) -> Tensor:
        return _sn_switched_one_direction(s, eps, _hinge_matrix(s, 0.0, pm)[0])

    return _both_directions(one, S, positive_mask)


def _sn_softmax_one_direction(S: Tensor, margin: float, tau: float, positive_mask: Tensor | None) -> Tensor:
    negative, cost = _hinge_matrix(S, margin, positive_mask)
    with torch.no_grad():
        has_negative = negative.any(dim=1, keepdim=True)
        # rows without negatives get finite logits (uniform weights, zeroed below) instead of a NaN softmax
        logits = torch.where(negative | ~has_negative, S / tau, torch.full_like(S, -math.inf))
        weights = torch.where(negative, torch.softmax(logits, dim=1), torch.zeros_like(S))
    return (weights * cost).sum(dim=1)


def triplet_sn_softmax_terms(
    S: Tensor,
    margin: float = 0.2,
    tau: float = 0.1,
    positive_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-query terms of Triplet-SN, *softmax* variant: hinges of all negatives, weighted by a softmax of their
    similarities.

    For query ``i`` with positive ``p = S[i, i]`` and negatives ``N(i)`` (as in :func:`triplet_terms`; entries of
    ``positive_mask`` are not negatives and get weight 0):
    ``w_ij = exp(S[i, j] / tau) / sum_{k in N(i)} exp(S[i, k] / tau)`` and
    ``term_i = sum_{j in N(i)} w_ij * relu(margin + S[i, j] - p)``.

    ``tau -> 0`` tends to the VSE++ hardest-negative term (all weight on ``argmax_j S[i, j]``, whose hinge is the
    largest), ``tau = inf`` is exactly the mean over negatives; in between, harder negatives count more but no
    single (possibly false) negative takes all the weight. The weights are computed without gradient (our
    choice): with a gradient through the softmax, the loss could also be lowered by *raising* the similarity of
    negatives whose hinge is below the weighted average, which is not what a ranking loss should ask for. A query
    without negatives gets 0 (connected to the graph).

    What the paper states: "triplet loss with soft negative mining"; this weighting and the default
    ``tau = 0.1`` (cosine similarities live in [-1, 1], so 0.1 gives a negative 0.1 more similar e (about 2.7)
    times the weight, in the range of contrastive-learning temperatures) are our choices, not measured yet.

    Args:
        S: (B, B) similarities, ``S[i, j]`` = sim(image i, caption j).
        margin: hinge margin.
        tau: softmax temperature (> 0; ``inf`` allowed).
        positive_mask: optional (B, B) bool of extra positives, as in :func:`triplet_terms`.

    Returns:
        ``(i2t, t2i)``: two (B,) tensors of per-query terms.
    """
    margin, tau = _check_margin(margin), _check_tau(tau)
    return _both_directions(lambda s, pm: _sn_softmax_one_direction(s, margin, tau, pm), S, positive_mask)


class BinaryTripletLoss(nn.Module):
    """Base of the binary losses: ``forward(S, positive_mask=None)`` returns ``i2t.mean() + t2i.mean()`` over the
    per-query terms of :meth:`terms`.

    The two directions are summed, each averaged over its B queries. (VSE++ sums over the batch instead;
    averaging keeps the scale independent of B, which makes ``lam`` in :class:`BCLSLoss` transferable between
    batch sizes. This is our choice.)
    """

    margin: float

    def terms(self, S: Tensor, positive_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``S`` (B, B), ``positive_mask`` (B, B) bool or None -> ``(i2t, t2i)``, two (B,) per-query terms."""
        raise NotImplementedError

    def forward(self, S: Tensor, positive_mask: Tensor | None = None) -> Tensor:
        """``S`` (B, B), ``positive_mask`` (B, B) bool or None -> scalar loss."""
        i2t, t2i = self.terms(S, positive_mask)
        return i2t.mean() + t2i.mean()


class TripletLoss(BinaryTripletLoss):
    """Bidirectional triplet ranking loss with ``mining="hardest"`` (VSE++) or ``"mean"``; see
    :func:`triplet_terms` and :class:`BinaryTripletLoss` for the reduction."""

    def __init__(self, margin: float = 0.2, mining: Mining = "hardest") -> None:
        super().__init__()
        _check_mining(mining)
        self.margin = _check_margin(margin)
        self.mining = mining

    def terms(self, S: Tensor, positive_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return triplet_terms(S, self.margin, self.mining, positive_mask)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return f"margin={self.margin}, mining={self.mining!r}"


class TripletSNSwitchLoss(BinaryTripletLoss):
    """Triplet-SN, switch variant (:func:`triplet_sn_switch_terms`), reduced as in :class:`BinaryTripletLoss`."""

    def __init__(self, margin: float = 0.2, eps: float = 0.05) -> None:
        super().__init__()
        self.margin = _check_margin(margin)
        self.eps = _check_eps(eps)

    def terms(self, S: Tensor, positive_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return triplet_sn_switch_terms(S, self.margin, self.eps, positive_mask)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, eps={self.eps}"


class TripletSNSoftmaxLoss(BinaryTripletLoss):
    """Triplet-SN, softmax variant (:func:`triplet_sn_softmax_terms`), reduced as in :class:`BinaryTripletLoss`."""

    def __init__(self, margin: float = 0.2, tau: float = 0.1) -> None:
        super().__init__()
        self.margin = _check_margin(margin)
        self.tau = _check_tau(tau)

    def terms(self, S: Tensor, positive_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return triplet_sn_softmax_terms(S, self.margin, self.tau, positive_mask)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, tau={self.tau}"


@dataclass(frozen=True)
class BinaryLossSpec:
    """One entry of :data:`BINARY_LOSSES`.

    Attributes:
        factory: builds the module from keyword hyper-parameters.
        params: the hyper-parameter names the loss accepts (``make_binary_loss`` rejects any other).
        summary: one line for listings.
        alias_of: the registered name this entry repeats, or None.
    """

    factory: Callable[..., BinaryTripletLoss]
    params: tuple[str, ...]
    summary: str
    alias_of: str | None = None

    def __call__(self, **kwargs: object) -> BinaryTripletLoss:
        """Build the loss; ``ConfigError`` for a hyper-parameter not in ``params`` or a bad value."""
        unknown = sorted(set(kwargs) - set(self.params))
        if unknown:
            raise ConfigError(f"unexpected hyper-parameter(s) {', '.join(unknown)}; "
                              f"this loss takes: {', '.join(self.params)}")
        return self.factory(**kwargs)


BINARY_LOSSES: dict[str, BinaryLossSpec] = {
    "triplet-hardest": BinaryLossSpec(
        partial(TripletLoss, mining="hardest"), ("margin",), "VSE++ hardest-negative hinge"),
    "triplet-mean": BinaryLossSpec(
        partial(TripletLoss, mining="mean"), ("margin",), "mean over negatives of the hinge"),
    "triplet-sn-switch": BinaryLossSpec(
        TripletSNSwitchLoss, ("margin", "eps"),
        "Triplet-SN: hardest negative, mean over negatives where S_pos - S_hardest < eps"),
    "triplet-sn-softmax": BinaryLossSpec(
        TripletSNSoftmaxLoss, ("margin", "tau"),
        "Triplet-SN: hinges weighted by softmax(S_neg / tau)"),
}
"""Binary losses by name. An alias is one line, e.g.
``BINARY_LOSSES["triplet-sn"] = binary_loss_alias("triplet-sn-switch")``."""


def binary_loss_alias(target: str) -> BinaryLossSpec:
    """A copy of the entry ``target`` marked as an alias of it (to register under another name)."""
    spec = _binary_spec(target)
    return replace(spec, alias_of=spec.alias_of or target, summary=f"alias of {spec.alias_of or target}")


def _binary_spec(name: str) -> BinaryLossSpec:
    try:
        return BINARY_LOSSES[name]
    except KeyError:
        raise ConfigError(
            f"unknown binary loss {name!r}; valid: {', '.join(sorted(BINARY_LOSSES))}"
        ) from None


def binary_loss_params(name: str) -> tuple[str, ...]:
    """Hyper-parameter names accepted by the binary loss ``name`` (``ConfigError`` if unknown)."""
    return _binary_spec(name).params


def make_binary_loss(name: str, **kwargs: object) -> BinaryTripletLoss:
    """Build the binary loss registered as ``name`` (see ``BINARY_LOSSES``) with ``kwargs``.

    Accepted hyper-parameters: ``margin`` (every loss), ``eps`` (``triplet-sn-switch``), ``tau``
    (``triplet-sn-softmax``); :func:`binary_loss_params` lists them per name.

    Raises:
        ConfigError: unknown name (the message lists the valid ones), a hyper-parameter the loss does not take,
            or a bad value.
    """
    spec = _binary_spec(name)
    try:
        return spec(**kwargs)
    except (ConfigError, TypeError) as err:
        raise ConfigError(f"binary loss {name!r}: {err}") from None


# ``triplet-sn``, the paper's "Triplet-SN" name, is the soft-negative variant that measured best on the demo
# (8 epochs, test rsum, seeds 0–2: triplet-sn-switch 279.6–285.9, triplet-sn-softmax 245.1 (seed 0), VSE++ hardest
# 216.5–230.9; docs/results.md). The paper's exact formula is not public: this choice is ours.
BINARY_LOSSES["triplet-sn"] = binary_loss_alias("triplet-sn-switch")


# --------------------------------------------------------------------------------------------------------------
# continuous loss: Kendall ranking loss with SW-HS
# --------------------------------------------------------------------------------------------------------------
def _surrogate(diff: Tensor, surrogate: str, temperature: float, margin: float) -> Tensor:
    """Smooth surrogate of the order violation ``sign(S_ql - S_qk)``; ``diff = S_ql - S_qk`` (any shape)."""
    if surrogate == "sigmoid":
        return torch.sigmoid(diff / temperature)
    if surrogate == "tanh":
        return 0.5 * (1.0 + torch.tanh(diff / temperature))
    return torch.relu(margin + diff)  # "hinge"


def _suffix_topn_indices(key: Tensor, n: int) -> Tensor:
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
    window: int = 1,
    gap: float = 0.0,
    surrogate: Surrogate = "sigmoid",
    temperature: float = 0.1,
    margin: float = 0.0,
    n_hard: int = 1,
) -> tuple[Tensor, Tensor]:
    """Per-anchor Kendall ranking terms with SW-HS, one direction (rows are queries), vectorised.

    Semantics (our reading of BCLS, DESIGN.md "Kendall ranking loss" / "SW-HS"). For query ``q`` (row ``q``):

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
        window: minimum label-rank distance of a compared pair (>= 1).
        gap: minimum label difference of a compared pair (>= 0).
        surrogate: ``"sigmoid"``, ``"tanh"`` or ``"hinge"``.
        temperature: temperature of the sigmoid/tanh surrogates (> 0).
        margin: margin of the hinge surrogate.
        n_hard: number of hardest partners kept per anchor (>= 1).

    Returns:
        ``(terms, valid)``, both (Q, C) in the **original column order of the anchors**: ``terms[q, k]`` is the
        term of anchor ``k`` for query ``q`` (0 where invalid), ``valid[q, k]`` is True iff the anchor has at least
        one valid partner.
    """
    _check_kendall_params(window, gap, surrogate, temperature, margin, n_hard)
    if S.dim() != 2:
        raise ValueError(f"S must be a (Q, C) matrix, got shape {tuple(S.shape)}")
    if R.shape != S.shape:
        raise ValueError(f"R must have the shape of S {tuple(S.shape)}, got {tuple(R.shape)}")
    _check_mask(label_mask, S.shape, "label_mask")
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
        top = _suffix_topn_indices(key, n)  # (Q, C, n) positions of the suffix top-n
        start_c = start.clamp(max=C - 1)
        partner = top.gather(1, start_c.unsqueeze(-1).expand(Q, C, n))  # (Q, C, n) sorted positions
    slot = torch.arange(n, device=dev).view(1, 1, n)
    slot_valid = (start.unsqueeze(-1) + slot) < n_known.unsqueeze(-1)  # (Q, C, n)

    s_l = ss.gather(1, partner.reshape(Q, C * n)).view(Q, C, n)
    pair_terms = _surrogate(s_l - ss.unsqueeze(-1), surrogate, temperature, margin)
    count = slot_valid.sum(-1)  # (Q, C)
    anchor_terms = torch.where(slot_valid, pair_terms, torch.zeros_like(pair_terms)).sum(-1)
    anchor_terms = anchor_terms / count.clamp(min=1).to(anchor_terms.dtype)
    anchor_valid = count > 0

    terms = torch.zeros_like(anchor_terms).scatter(1, perm, anchor_terms)
    valid = torch.zeros_like(anchor_valid).scatter(1, perm, anchor_valid)
    return terms, valid


def kendall_naive_terms(
    S: Tensor,
    R: Tensor,
    label_mask: Tensor,
    window: int = 1,
    gap: float = 0.0,
    surrogate: Surrogate = "sigmoid",
    temperature: float = 0.1,
    margin: float = 0.0,
    n_hard: int = 1,
) -> tuple[Tensor, Tensor]:
    """Reference for :func:`kendall_swhs_terms` (same arguments, same semantics and output), O(QC^2).

    Materialises the (Q, C, C) tensors of label ranks, pair validity and pair terms (index ``[q, k, l]`` =
    anchor ``k``, partner ``l``) and takes the ``n_hard`` valid partners with the largest ``S[q, l]`` with a
    ``topk``. The rank of ``k`` is computed without sorting: the number of known ``j`` with ``R_qj > R_qk`` or
    ``R_qj == R_qk and j < k``. For tests and ``bench/`` only: memory is cubic in the batch size.
    """
    _check_kendall_params(window, gap, surrogate, temperature, margin, n_hard)
    if S.dim() != 2 or R.shape != S.shape:
        raise ValueError(f"S and R must be (Q, C) matrices of one shape, got {tuple(S.shape)}, {tuple(R.shape)}")
    _check_mask(label_mask, S.shape, "label_mask")
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
    terms3 = _surrogate(diff3, surrogate, temperature, margin)
    key3 = torch.where(valid3, S.detach().unsqueeze(1).expand(Q, C, C), torch.full_like(terms3, -math.inf))
    top = key3.topk(n, dim=-1).indices  # (Q, C, n)
    slot_valid = valid3.gather(-1, top)
    t = terms3.gather(-1, top)
    count = slot_valid.sum(-1)
    terms = torch.where(slot_valid, t, torch.zeros_like(t)).sum(-1) / count.clamp(min=1).to(t.dtype)
    return terms, count > 0


_TermsFn = Callable[..., tuple[Tensor, Tensor]]


def _kendall_both_directions(
    terms_fn: _TermsFn, S: Tensor, R: Tensor, label_mask: Tensor, kw: dict[str, object], stack: bool
) -> tuple[Tensor, Tensor]:
    """Pooled mean of the valid terms of i2t (rows) and t2i (rows of the transposes), and their count.

    ``stack=True`` runs both directions as one (2B, B) call (half the kernel launches; used by the fast path);
    ``stack=False`` runs them one after the other (halves the peak memory of the cubic reference)."""
    _check_square(S)
    if R.shape != S.shape:
        raise ValueError(f"R must have the shape of S {tuple(S.shape)}, got {tuple(R.shape)}")
    _check_mask(label_mask, S.shape, "label_mask")
    total = S.new_zeros(())
    count = torch.zeros((), dtype=torch.long, device=S.device)
    if stack:
        directions = [(torch.cat([S, S.t()]), torch.cat([R, R.t()]), torch.cat([label_mask, label_mask.t()]))]
    else:
        directions = [(S, R, label_mask), (S.t(), R.t(), label_mask.t())]
    for s, r, m in directions:
        terms, valid = terms_fn(s, r, m, **kw)
        total = total + torch.where(valid, terms, torch.zeros_like(terms)).sum()
        count = count + valid.sum()
    # no valid term: total is a 0 that is still connected to S, so the loss has a (zero) gradient
    return total / count.clamp(min=1).to(total.dtype), count


def kendall_loss_with_count(
    S: Tensor,
    R: Tensor,
    label_mask: Tensor,
    window: int = 1,
    gap: float = 0.0,
    surrogate: Surrogate = "sigmoid",
    temperature: float = 0.1,
    margin: float = 0.0,
    n_hard: int = 1,
) -> tuple[Tensor, Tensor]:
    """Like :func:`kendall_loss`, also returning the number of valid anchor terms (a 0-dim long tensor, kept
    on the device so that logging it does not force a synchronisation)."""
    kw = dict(window=window, gap=gap, surrogate=surrogate, temperature=temperature, margin=margin, n_hard=n_hard)
    return _kendall_both_directions(kendall_swhs_terms, S, R, label_mask, kw, stack=True)


def kendall_loss(
    S: Tensor,
    R: Tensor,
    label_mask: Tensor,
    window: int = 1,
    gap: float = 0.0,
    surrogate: Surrogate = "sigmoid",
    temperature: float = 0.1,
    margin: float = 0.0,
    n_hard: int = 1,
) -> Tensor:
    """Kendall ranking loss with SW-HS over both directions, the scalar mean of all valid anchor terms.

    i2t uses rows of ``(S, R, label_mask)``, t2i uses rows of their transposes; the terms of both directions are
    pooled and averaged (our choice: every valid anchor weighs the same). When no term is valid the result is 0
    with a (zero) gradient.

    Args:
        S: (B, B) similarities; R: (B, B) labels; label_mask: (B, B) bool. Other arguments: see
            :func:`kendall_swhs_terms`.

    Returns:
        0-dim tensor.
    """
    return kendall_loss_with_count(S, R, label_mask, window, gap, surrogate, temperature, margin, n_hard)[0]


def kendall_naive(
    S: Tensor,
    R: Tensor,
    label_mask: Tensor,
    window: int = 1,
    gap: float = 0.0,
    surrogate: Surrogate = "sigmoid",
    temperature: float = 0.1,
    margin: float = 0.0,
    n_hard: int = 1,
) -> Tensor:
    """Reference for :func:`kendall_loss` built on :func:`kendall_naive_terms` (O(B^3) memory; tests/bench only)."""
    kw = dict(window=window, gap=gap, surrogate=surrogate, temperature=temperature, margin=margin, n_hard=n_hard)
    return _kendall_both_directions(kendall_naive_terms, S, R, label_mask, kw, stack=False)[0]


class KendallLoss(nn.Module):
    """Continuous supervision: Kendall ranking loss with SW-HS (see :func:`kendall_swhs_terms`).

    ``forward(S, R, label_mask)`` with (B, B) inputs returns the scalar :func:`kendall_loss`.
    """

    def __init__(
        self,
        window: int = 1,
        gap: float = 0.0,
        surrogate: Surrogate = "sigmoid",
        temperature: float = 0.1,
        margin: float = 0.0,
        n_hard: int = 1,
    ) -> None:
        super().__init__()
        _check_kendall_params(window, gap, surrogate, temperature, margin, n_hard)
        self.window = window
        self.gap = float(gap)
        self.surrogate = surrogate
        self.temperature = float(temperature)
        self.margin = float(margin)
        self.n_hard = n_hard

    def _kw(self) -> dict[str, object]:
        return dict(
            window=self.window,
            gap=self.gap,
            surrogate=self.surrogate,
            temperature=self.temperature,
            margin=self.margin,
            n_hard=self.n_hard,
        )

    def forward(self, S: Tensor, R: Tensor, label_mask: Tensor) -> Tensor:
        """(B, B), (B, B), (B, B) bool -> scalar loss."""
        return kendall_loss(S, R, label_mask, **self._kw())  # type: ignore[arg-type]

    def forward_with_count(self, S: Tensor, R: Tensor, label_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Scalar loss and the number of valid anchor terms (0-dim long tensor)."""
        return kendall_loss_with_count(S, R, label_mask, **self._kw())  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._kw().items())


# --------------------------------------------------------------------------------------------------------------
# total
# --------------------------------------------------------------------------------------------------------------
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
