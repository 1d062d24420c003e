"""Rank and linear correlations between label values and human scores (:func:`correlations`), shared by the
agreement report (:mod:`~.agreement`) and the ensemble's cross-validation (:mod:`~.fitted_ensemble`)."""

from __future__ import annotations

import math
import warnings

import numpy as np

from bcls.data.infra.errors import ConfigError

CORRELATIONS: tuple[str, ...] = ("spearman", "pearson", "kendall", "kendall_c")
"""The statistics of each result: Spearman ρ, Pearson r, Kendall τ-b (``kendall``) and τ-c (``kendall_c``)."""


def correlations(predicted: np.ndarray, human: np.ndarray) -> dict[str, float | int | None]:
    """Correlations between source values and human scores over the pairs where the source value is finite.

    Args:
        predicted: ``(P,)`` source values (NaN = could not be scored).
        human: ``(P,)`` human scores.

    Returns:
        ``{"spearman", "pearson", "kendall", "kendall_c", "pairs"}``; a statistic is ``None`` when it is undefined
        (fewer than 2 pairs, or constant values on either side).
    """
    from scipy import stats

    predicted = np.asarray(predicted, dtype=np.float64)
    human = np.asarray(human, dtype=np.float64)
    if predicted.shape != human.shape or predicted.ndim != 1:
        raise ConfigError(f"predicted {predicted.shape} and human {human.shape} scores must be 1-D of one length")
    ok = np.isfinite(predicted) & np.isfinite(human)
    x, y = predicted[ok], human[ok]
    out: dict[str, float | int | None] = {k: None for k in CORRELATIONS}
    out["pairs"] = int(ok.sum())
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = {
            "spearman": stats.spearmanr(x, y).statistic,
            "pearson": stats.pearsonr(x, y).statistic,
            "kendall": stats.kendalltau(x, y, variant="b").statistic,
            "kendall_c": stats.kendalltau(x, y, variant="c").statistic,
        }
    for k, v in values.items():
        out[k] = float(v) if v is not None and math.isfinite(float(v)) else None
    return out
