"""Semantic evaluation metrics: NCS@K, rank correlation with continuous labels, ECCV Caption / CxC metrics.

All functions take a similarity matrix ``sims`` of shape (Q, N) — one row per query, one column per candidate —
so the same function serves both directions: i2t with ``sims`` (n_images, n_captions), t2i with ``sims.T``.
They follow the device of their inputs and process ``chunk`` query rows at a time, so temporary memory stays
bounded by a small multiple of ``chunk * N`` (see each function).

* :func:`ncs_at_k` — Normalized Cumulative Semantic score (Biten et al., "Is an image worth five sentences? A new
  look into semantics for image-text matching", WACV 2022).
* :func:`rank_correlation` — mean per-query Kendall τ-b and Spearman ρ between predicted similarities and
  continuous labels (ties handled as scipy does).

The ECCV Caption / CxC metrics (through the official ``eccv-caption`` package) are in
:mod:`bcls.trainer.evaluation.eccv`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["extended_precision_at_r", "ncs_at_k", "rank_correlation"]

log = logging.getLogger(__name__)


def _check_pair(name: str, a: Tensor, b: Tensor | None, chunk: int) -> None:
    if a.dim() != 2:
        raise ValueError(f"sims must be a (Q, N) matrix, got shape {tuple(a.shape)}")
    if b is not None and b.shape != a.shape:
        raise ValueError(f"{name} must have the shape of sims {tuple(a.shape)}, got {tuple(b.shape)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")


# --------------------------------------------------------------------------------------------------------------
# NCS@K
# --------------------------------------------------------------------------------------------------------------


def ncs_at_k(
    sims: Tensor,
    relevance: Tensor,
    ks: Sequence[int] = (1, 5, 10, 20, 30),
    gt_mask: Tensor | None = None,
    exclude_gt: bool = True,
    chunk: int = 256,
    return_counts: bool = False,
    empty_queries: str = "zero",
) -> dict[int, float] | tuple[dict[int, float], dict[str, int]]:
    """NCS@K (percent): retrieved relevance over ideal relevance at K, averaged over queries.

    For query q with candidate set C_q (all N candidates, minus the ground truth when ``exclude_gt``) and
    K_q = min(K, |C_q|)::

        NCS@K(q) = mean(rel[q, top-K_q of C_q by sims]) / mean(rel[q, top-K_q of C_q by rel])

    (the ratio of sums, as both means are over K_q items), and NCS@K = 100 * mean over the scored queries.

    Decisions:

    * **Ties in sims** are broken by candidate index: among equal similarities the lower column index is retrieved
      first (as a stable descending sort would). Ties in relevance do not matter for the ideal sum.
    * **Queries without a relevant candidate** (every candidate of C_q has relevance 0, so the ratio is 0 / 0):
      ``empty_queries="zero"`` (default) counts them with a score of 0, as the official ``ncs_metric`` code
      does, so that numbers are comparable with published ones; ``"skip"`` leaves them out of the mean (which
      raises NCS by the factor total / scored when relevance is sparse). Queries with an empty C_q are always
      skipped. Both kinds are counted (logged at INFO; returned with ``return_counts``). If no query is left
      the scores are NaN.
    * Relevance must be non-negative and finite on C_q, and sims finite on C_q (``ValueError`` otherwise);
      excluded entries may hold anything.

    Args:
        sims: (Q, N) predicted similarities (i2t: images × captions; t2i: pass ``sims.T``).
        relevance: (Q, N) relevance of each candidate to each query (e.g. continuous labels).
        ks: cut-offs (each >= 1).
        gt_mask: (Q, N) bool, True at ground-truth pairs; None = no ground truth known.
        exclude_gt: drop ground-truth candidates from both the retrieved and the ideal lists (default, as in the
            paper); False keeps them.
        chunk: query rows per step; temporary memory is about ``chunk * N`` values of each dtype.
        return_counts: also return ``{"queries": in the mean, "skipped": left out, "empty": without a relevant
            candidate}``.
        empty_queries: ``"zero"`` or ``"skip"`` (see above).

    Returns:
        ``{k: percent}`` for each k (Python floats), and with ``return_counts`` the counts as a second element.
    """
    _check_pair("relevance", sims, relevance, chunk)
    if gt_mask is not None:
        _check_pair("gt_mask", sims, gt_mask, chunk)
        if gt_mask.dtype != torch.bool:
            raise ValueError(f"gt_mask must be a bool tensor, got {gt_mask.dtype}")
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be non-empty and >= 1, got {ks}")
    if empty_queries not in ("zero", "skip"):
        raise ValueError(f"empty_queries must be 'zero' or 'skip', got {empty_queries!r}")
    n_q, n = sims.shape
    dev = sims.device
    k_max = min(max(ks), n)
    sums = torch.zeros(len(ks), dtype=torch.float64, device=dev)
    used = empty = 0
    for a in range(0, n_q, chunk):
        b = min(a + chunk, n_q)
        s = sims[a:b]
        rel = relevance[a:b].to(device=dev, dtype=torch.float64)
        excl = gt_mask[a:b].to(dev) if (gt_mask is not None and exclude_gt) else None
        valid = ~excl if excl is not None else torch.ones_like(s, dtype=torch.bool)
        if bool((valid & ~torch.isfinite(s)).any()):
            raise ValueError("sims must be finite on the candidates")
        if bool((valid & ~(torch.isfinite(rel) & (rel >= 0))).any()):
            raise ValueError("relevance must be finite and non-negative on the candidates")
        n_valid = valid.sum(1)  # (c,)
        s_m = s.masked_fill(~valid, -torch.inf)
        r_m = rel.masked_fill(~valid, -torch.inf)

        ideal = torch.topk(r_m, k_max, dim=1).values.clamp_min(0).cumsum(1)  # (c, k_max); -inf slots add 0
        scored = (n_valid > 0) & (ideal[:, 0] > 0)  # ideal top-1 is the max relevance: 0 ⇒ all are 0
        # One extra similarity to detect ties across the top-K boundary.
        top = torch.topk(s_m, min(k_max + 1, n), dim=1)
        got = rel.gather(1, top.indices[:, :k_max]).masked_fill(~valid.gather(1, top.indices[:, :k_max]), 0)
        got = got.cumsum(1)  # (c, k_max): retrieved relevance sums, exact unless ties straddle the boundary
        for j, k in enumerate(ks):
            ke = torch.clamp(torch.minimum(n_valid, torch.tensor(k, device=dev)), min=1)  # (c,) K_q
            num = got.gather(1, (ke - 1)[:, None]).squeeze(1)
            den = ideal.gather(1, (ke - 1)[:, None]).squeeze(1)
            if ke.max() < top.values.shape[1]:
                thr = top.values.gather(1, (ke - 1)[:, None]).squeeze(1)
                nxt = top.values.gather(1, ke[:, None]).squeeze(1)
                tied = scored & (ke < n_valid) & (thr == nxt)
            else:
                tied = torch.zeros_like(scored)
            if bool(tied.any()):
                num = num.clone()
                rows = tied.nonzero().squeeze(1)
                num[rows] = _tie_broken_sum(s_m[rows], rel[rows], valid[rows], ke[rows], thr[rows])
            sums[j] += torch.where(scored, num / den.clamp_min(1e-300), torch.zeros_like(num)).sum()
        n_empty = int(((n_valid > 0) & ~scored).sum())
        empty += n_empty
        used += int(scored.sum()) + (n_empty if empty_queries == "zero" else 0)
    skipped = n_q - used
    if empty or skipped:
        log.info("NCS@K: %d of %d queries without a relevant candidate (%s), %d skipped", empty, n_q,
                 "scored 0" if empty_queries == "zero" else "skipped", skipped)
    scores = {k: (100.0 * float(sums[j]) / used if used else math.nan) for j, k in enumerate(ks)}
    if return_counts:
        return scores, {"queries": used, "skipped": skipped, "empty": empty}
    return scores


def _tie_broken_sum(s: Tensor, rel: Tensor, valid: Tensor, ke: Tensor, thr: Tensor) -> Tensor:
    """Relevance sum of the top-``ke`` of each row with ties at the threshold broken by lower index.

    Shapes: s, rel, valid (r, N); ke, thr (r,). Returns (r,) float64.
    """
    greater = s > thr[:, None]
    eq = (s == thr[:, None]) & valid
    need = ke - greater.sum(1)
    take = greater | (eq & (eq.cumsum(1) <= need[:, None]))
    return (rel * take).sum(1)


# --------------------------------------------------------------------------------------------------------------
# Rank correlation
# --------------------------------------------------------------------------------------------------------------


def _pairwise_rank_correlation(x: Tensor, y: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Kendall τ-b and Spearman ρ of many short rows at once, from all pairwise comparisons.

    ``x, y`` float64 ``(R, L)`` padded rows, ``valid`` bool ``(R, L)``. With ``sx = sign(x_i − x_j)`` and
    ``sy = sign(y_i − y_j)`` over valid pairs, τ-b = Σ sx·sy / sqrt(Σ sx² · Σ sy²) (each unordered pair counted
    twice on every side, so the factor cancels); average 1-based ranks with ties = #smaller + (#equal + 1) / 2.

    Returns ``(tau (R,), rho (R,), ok (R,))`` where ``ok`` marks rows with ≥ 2 valid entries and neither side
    constant.
    """
    pair = valid[:, :, None] & valid[:, None, :]
    dx = x[:, :, None] - x[:, None, :]
    dy = y[:, :, None] - y[:, None, :]
    sx = torch.sign(dx) * pair
    sy = torch.sign(dy) * pair
    tx, ty = (sx * sx).sum((1, 2)), (sy * sy).sum((1, 2))
    ok = (tx > 0) & (ty > 0)
    tau = (sx * sy).sum((1, 2)) / torch.sqrt(tx * ty).clamp_min(1e-300)

    def avg_rank(d: Tensor) -> Tensor:
        less = ((d > 0) & pair).sum(2).double()  # x_i > x_j: j ranks below i
        equal = ((d == 0) & pair).sum(2).double()  # includes i itself
        return less + (equal + 1) / 2

    rx, ry = avg_rank(dx), avg_rank(dy)
    vf = valid.double()
    n = vf.sum(1, keepdim=True).clamp_min(1)
    cx = (rx - (rx * vf).sum(1, keepdim=True) / n) * vf
    cy = (ry - (ry * vf).sum(1, keepdim=True) / n) * vf
    rho = (cx * cy).sum(1) / torch.sqrt((cx * cx).sum(1) * (cy * cy).sum(1)).clamp_min(1e-300)
    return tau, rho, ok


def rank_correlation(sims: Tensor, labels: Tensor, mask: Tensor | None = None,
                     max_pairwise: int = 64) -> dict[str, float]:
    """Mean per-query Kendall τ-b and Spearman ρ between predicted similarities and continuous labels.

    Per query row, over its valid entries (``mask`` True, or all): Kendall τ-b (tie corrected) and Spearman ρ
    (average ranks for ties), as ``scipy.stats.kendalltau`` and ``scipy.stats.spearmanr`` compute them.

    Two paths, chosen by measurement (``bench/bench_eval_coco.py``): rows with at most ``max_pairwise`` valid
    entries (sparse labels: tens per row) are done together from all pairwise comparisons in torch
    (:func:`_pairwise_rank_correlation`); longer rows go to a numba kernel
    (:mod:`~bcls.trainer.evaluation.rankstats`: Knight's O(n log n) count), instead of one scipy call per row
    (figures: docs/benchmarks.md, "Measurements behind the code").

    Rows with fewer than 2 valid entries, or whose valid labels or sims are all equal (both coefficients
    undefined) are skipped and counted in ``"skipped"``.

    Args:
        sims: (Q, N) predicted similarities.
        labels: (Q, N) continuous labels.
        mask: (Q, N) bool, True where the label is known; None = all entries.

    Returns:
        ``{"kendall": mean τ-b, "spearman": mean ρ, "queries": scored rows, "skipped": skipped rows}``; the means
        are NaN when no row is scored.
    """
    _check_pair("labels", sims, labels, 1)
    if mask is not None:
        _check_pair("mask", sims, mask, 1)
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")
    n_q, n = sims.shape
    valid_all = mask.cpu() if mask is not None else None
    counts = valid_all.sum(1) if valid_all is not None else torch.full((n_q,), n)
    tau_sum = rho_sum = 0.0
    used = 0
    # short rows: their valid entries, taken once as a flat (row, col) list, go into padded (rows, L) blocks
    short_row = counts <= max_pairwise
    if bool(short_row.any()):
        if valid_all is not None:
            r, c = torch.nonzero(valid_all & short_row[:, None], as_tuple=True)
        else:
            r = torch.nonzero(short_row).flatten().repeat_interleave(n)
            c = torch.arange(n).repeat(int(short_row.sum()))
        xv = sims.detach().cpu()[r, c].double()
        yv = labels.detach().cpu()[r, c].double()
        if not (bool(torch.isfinite(xv).all()) and bool(torch.isfinite(yv).all())):
            raise ValueError("sims and labels must be finite where mask is True")
        short = torch.nonzero(short_row).flatten()
        n_short = counts[short]
        starts = torch.zeros(len(short) + 1, dtype=torch.long)
        starts[1:] = n_short.cumsum(0)
        width = max(int(n_short.max()), 1)
        chunk = max(1, (1 << 22) // (width * width))
        for lo in range(0, len(short), chunk):
            hi = min(lo + chunk, len(short))
            a, b = int(starts[lo]), int(starts[hi])
            local_row = torch.repeat_interleave(torch.arange(hi - lo), n_short[lo:hi])
            slot = torch.arange(b - a) - (starts[lo:hi] - a).repeat_interleave(n_short[lo:hi])
            x = torch.zeros(hi - lo, width, dtype=torch.float64)
            y = torch.zeros_like(x)
            v = torch.zeros(hi - lo, width, dtype=torch.bool)
            x[local_row, slot], y[local_row, slot], v[local_row, slot] = xv[a:b], yv[a:b], True
            tau, rho, ok = _pairwise_rank_correlation(x, y, v)
            tau_sum += float(tau[ok].sum())
            rho_sum += float(rho[ok].sum())
            used += int(ok.sum())
    long_rows = torch.nonzero(counts > max_pairwise).flatten()
    if len(long_rows):
        from .rankstats import rank_correlation_rows

        step = max(1, (1 << 24) // n)  # rows per block: at most 16M entries in float64 at a time
        for rows in long_rows.split(step):
            xs = sims.detach()[rows].cpu().double()
            ys = labels.detach()[rows].cpu().double()
            keep = valid_all[rows] if valid_all is not None else torch.ones_like(xs, dtype=torch.bool)
            x_kept, y_kept = xs[keep].numpy(), ys[keep].numpy()
            if not (np.isfinite(x_kept).all() and np.isfinite(y_kept).all()):
                raise ValueError("sims and labels must be finite where mask is True")
            tau_rows, rho_rows = rank_correlation_rows(x_kept, y_kept, np.r_[0, np.cumsum(keep.sum(1).numpy())])
            finite = ~np.isnan(tau_rows)
            tau_sum += float(tau_rows[finite].sum())
            rho_sum += float(rho_rows[finite].sum())
            used += int(finite.sum())
    skipped = n_q - used
    if skipped:
        log.info("rank correlation: %d of %d queries skipped (< 2 valid entries or constant)", skipped, n_q)
    return {
        "kendall": tau_sum / used if used else math.nan,
        "spearman": rho_sum / used if used else math.nan,
        "queries": used,
        "skipped": skipped,
    }


# --------------------------------------------------------------------------------------------------------------
# ECCV-style mAP@R and R-Precision with relevance-extended positives
# --------------------------------------------------------------------------------------------------------------


def extended_precision_at_r(sims: Tensor, relevance: Tensor, threshold: float = 1.0,
                            chunk: int = 256) -> dict[str, float]:
    """ECCV Caption's mAP@R and R-Precision (Chun et al., ECCV 2022) with the positives of each query extended to
    every candidate whose relevance reaches ``threshold`` (the annotated pairs, relevance 1, among them).

    For query q with positives P_q = {c : relevance[q, c] >= threshold}, R = |P_q|, and the candidates ranked by
    descending similarity (ties by lower index, as :func:`~bcls.trainer.evaluation.eccv.rankings_from_sims`
    ranks them): R-Precision = |top-R ∩ P_q| / R and mAP@R = (1/R) Σ_{i ≤ R} P@i · [rank i ∈ P_q], the
    definitions of ``eccv_caption``. Plain R@K counts a fully correct caption of another image ranked above an
    image's own captions as a miss; these metrics count it as a hit, so they do not fall when the ranking gets
    more correct. Queries without a positive are skipped.

    Args:
        sims, relevance: (Q, N); i2t passes ``(n_images, n_captions)``, t2i the transposes.
        threshold: the relevance that makes a positive.
        chunk: query rows per step.

    Returns:
        ``{"map_at_r": percent, "rprecision": percent, "queries": scored, "mean_r": mean R}``.
    """
    _check_pair("relevance", sims, relevance, chunk)
    total_map = total_rp = total_r = 0.0
    used = 0
    for a in range(0, sims.shape[0], chunk):
        s, rel = sims[a:a + chunk], relevance[a:a + chunk].to(sims.device)
        positive = rel >= threshold
        r = positive.sum(1)
        keep = r > 0
        if not bool(keep.any()):
            continue
        s, positive, r = s[keep], positive[keep], r[keep]
        width = int(r.max())
        order = torch.sort(s, dim=1, descending=True, stable=True).indices[:, :width]
        hit = positive.gather(1, order).double()  # (q, width)
        rank = torch.arange(1, width + 1, device=s.device, dtype=torch.float64)
        inside = rank[None, :] <= r[:, None]  # the first R ranks of each query
        cum = hit.cumsum(1)
        rd = r.double()
        total_map += float(((cum / rank) * hit * inside).sum(1).div(rd).sum())
        total_rp += float(cum.gather(1, (r - 1)[:, None]).squeeze(1).div(rd).sum())
        total_r += float(rd.sum())
        used += int(keep.sum())
    if not used:
        return {"map_at_r": math.nan, "rprecision": math.nan, "queries": 0, "mean_r": math.nan}
    return {"map_at_r": 100.0 * total_map / used, "rprecision": 100.0 * total_rp / used, "queries": used,
            "mean_r": total_r / used}
