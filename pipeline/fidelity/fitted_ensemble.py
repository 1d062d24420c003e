"""An ensemble of label sources, fitted on human judgments: rank-normalised members, non-negative weights and a
monotone calibration, stored as plain JSON.

The paper uses one similarity per pseudo label; combining sources is our addition (docs/design.md), measured
against people in docs/results.md. The model (:class:`EnsembleModel`):

1. **Members**: label sources with their options, written ``NAME[:KEY=VALUE[:KEY=VALUE…]]``
   (``sbert``, ``spice:measure=precision``, ``sbert:aggregate=topk:k=2``); :func:`parse_members`.
2. **Rank normalisation**: each member's raw value v becomes F(v) ∈ [0, 1], its mid-rank empirical CDF over a
   reference sample (the fit's pairs; for an unfitted rank average, pairs drawn from the corpus), stored as at most
   ``max_knots`` knots and interpolated linearly, so sources of any scale (CIDEr-D's 0–10, cosines, F1) are
   comparable and a new pair is normalised the same way in every shard and batch.
   (parsed by :func:`bcls.pipeline.sources.ensemble.parse_members`).
3. **Weights**: s = Σ_k w_k F_k(v_k), w ≥ 0, Σ w = 1, fitted by non-negative least squares (with a free intercept)
   of the judgments' mid-ranks on the members' F values, i.e. the linear combination whose ranks best follow the
   human ranks (what Spearman measures).
4. **Calibration**: an isotonic regression of the human score, scaled to [0, 1] by the judgments' min and max, on
   s; interpolated linearly between its block centres (constant beyond the outer ones) and mixed with 0.1 % of s,
   so the map is strictly increasing (no two different s tie) and its values read as "human relevance on a 0–1
   scale". Calibration changes no ranking; it gives label differences (the Kendall loss's ``gap``) a human scale.

:func:`fit_ensemble` fits all of it and cross-validates it with folds by image (never the same image in fit and
report); the ``ensemble`` label source (:mod:`bcls.pipeline.sources.ensemble`) applies a fitted model.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from bcls.data.infra.errors import ConfigError, DataFormatError

FORMAT = "bcls-ensemble-v1"
"""The ``format`` field of an ensemble JSON file."""

CALIBRATION_MIX = 1e-3
"""Share of the uncalibrated score in a calibrated one (keeps the calibration strictly increasing)."""


# ---- members ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Member:
    """One label source of an ensemble: its registered ``source`` name and ``options``; ``label`` names it
    (``sbert``, ``spice:measure=precision``)."""

    source: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return ":".join([self.source] + [f"{k}={v}" for k, v in sorted(self.options.items())])

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "options": dict(self.options)}


# ---- rank normalisation -----------------------------------------------------------------------------------------

def rank_knots(values: np.ndarray, max_knots: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Knots ``(x, F)`` of the mid-rank empirical CDF of ``values`` (NaN ignored): x strictly increasing distinct
    values, F(x) = (number below + half the number equal) / n; at most ``max_knots`` of them, evenly spaced in F
    (the smallest and largest value always kept)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        raise ConfigError("no finite value to rank-normalise")
    x, counts = np.unique(v, return_counts=True)
    cdf = (np.cumsum(counts) - counts / 2.0) / len(v)
    if len(x) > max_knots:
        keep = np.unique(np.searchsorted(cdf, np.linspace(cdf[0], cdf[-1], max_knots)).clip(0, len(x) - 1))
        x, cdf = x[keep], cdf[keep]
    return x, cdf


def apply_knots(values: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Piecewise-linear map through the knots ``(x, y)``, constant beyond them; NaN stays NaN."""
    values = np.asarray(values, dtype=np.float64)
    out = np.interp(values, x, y) if len(x) > 1 else np.full(values.shape, float(y[0]) if len(y) else 0.5)
    return np.where(np.isfinite(values), out, np.nan)


def mid_ranks(values: np.ndarray) -> np.ndarray:
    """Mid-ranks of ``values`` scaled to (0, 1)."""
    from scipy.stats import rankdata

    return (rankdata(values) - 0.5) / len(values)


# ---- the model --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class EnsembleModel:
    """A fitted (or unfitted rank-average) ensemble; see the module docstring.

    Attributes:
        members: the member sources.
        knots: per member, ``(x, F)`` of its rank normalisation.
        weights: float64 ``(m,)``, non-negative, summing to 1.
        calibration: ``(x, y)`` knots from s to the human 0–1 scale, or None (s itself).
        sentence_model: the sentence model the embedding members were fitted with (None when none embeds).
        fit: provenance and cross-validation of the fit (JSON-able).
    """

    members: tuple[Member, ...]
    knots: tuple[tuple[np.ndarray, np.ndarray], ...]
    weights: np.ndarray
    calibration: tuple[np.ndarray, np.ndarray] | None = None
    sentence_model: str | None = None
    fit: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (len(self.members) == len(self.knots) == len(self.weights)):
            raise ConfigError(f"ensemble: {len(self.members)} members, {len(self.knots)} knot sets and "
                              f"{len(self.weights)} weights must agree")

    def normalise(self, values: np.ndarray) -> np.ndarray:
        """``(P, m)`` raw member values → ``(P, m)`` rank-normalised values in [0, 1]."""
        return np.stack([apply_knots(values[:, k], *self.knots[k]) for k in range(len(self.members))], axis=1)

    def combine(self, values: np.ndarray) -> np.ndarray:
        """``(P, m)`` raw member values → ``(P,)`` uncalibrated scores s ∈ [0, 1] (NaN where a member is NaN)."""
        return self.normalise(values) @ self.weights

    def predict(self, values: np.ndarray) -> np.ndarray:
        """``(P, m)`` raw member values → ``(P,)`` ensemble labels (calibrated when the model has a calibration)."""
        s = self.combine(values)
        if self.calibration is None:
            return s
        return (1.0 - CALIBRATION_MIX) * apply_knots(s, *self.calibration) + CALIBRATION_MIX * s

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "members": [m.to_json() | {"label": m.label} for m in self.members],
            "sentence_model": self.sentence_model,
            "normalisation": {m.label: {"x": _floats(x), "cdf": _floats(f)}
                              for m, (x, f) in zip(self.members, self.knots)},
            "weights": {m.label: float(w) for m, w in zip(self.members, self.weights)},
            "calibration": None if self.calibration is None else
            {"x": _floats(self.calibration[0]), "y": _floats(self.calibration[1]), "mix": CALIBRATION_MIX},
            "fit": dict(self.fit),
        }

    def save(self, path: str | os.PathLike) -> str:
        """Write the model as JSON (atomically); returns its sha256."""
        from bcls.data.infra.atomic import atomic_write_bytes

        raw = (json.dumps(self.to_json(), indent=1) + "\n").encode("utf-8")
        atomic_write_bytes(Path(path), raw)
        return hashlib.sha256(raw).hexdigest()


def _floats(a: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=np.float64)]


def load_ensemble(path: str | os.PathLike) -> tuple[EnsembleModel, str]:
    """Read an ensemble JSON written by :meth:`EnsembleModel.save`; returns the model and the file's sha256.

    Raises:
        DataFormatError: a missing or malformed file, naming the file and the field.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(f"{p}: ensemble file not found; fit one with `bcls labels fit`") from None
    except OSError as err:
        raise DataFormatError(f"{p}: cannot read the ensemble file ({err.strerror})") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise DataFormatError(f"{p}: not a JSON file ({err}); give an ensemble.json from `bcls labels fit`") from None

    def bad(what: str) -> DataFormatError:
        return DataFormatError(f"{p}: {what}; refit it with `bcls labels fit`")

    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise bad(f"field 'format' must be {FORMAT!r}")
    try:
        members = tuple(Member(str(m["source"]), dict(m.get("options") or {})) for m in doc["members"])
    except (KeyError, TypeError):
        raise bad("field 'members' must be a list of {source, options}") from None
    if not members:
        raise bad("field 'members' lists no source")
    knots, weights = [], []
    for m in members:
        try:
            norm = doc["normalisation"][m.label]
            x, f = np.asarray(norm["x"], dtype=np.float64), np.asarray(norm["cdf"], dtype=np.float64)
            w = float(doc["weights"][m.label])
        except (KeyError, TypeError, ValueError):
            raise bad(f"member {m.label!r} has no normalisation knots or weight") from None
        if x.ndim != 1 or x.shape != f.shape or not len(x) or np.any(np.diff(x) <= 0) or not np.all(np.isfinite(f)):
            raise bad(f"normalisation of {m.label!r} must be increasing x and finite cdf of one length")
        if not (math.isfinite(w) and w >= 0):
            raise bad(f"weight of {m.label!r} must be a non-negative number, got {w!r}")
        knots.append((x, f))
        weights.append(w)
    weights_arr = np.asarray(weights, dtype=np.float64)
    if not weights_arr.sum() > 0:
        raise bad("the weights sum to 0")
    calibration = None
    if doc.get("calibration") is not None:
        try:
            cx = np.asarray(doc["calibration"]["x"], dtype=np.float64)
            cy = np.asarray(doc["calibration"]["y"], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            raise bad("field 'calibration' must hold x and y") from None
        if cx.ndim != 1 or cx.shape != cy.shape or not len(cx) or np.any(np.diff(cx) < 0) or np.any(np.diff(cy) < 0):
            raise bad("calibration x and y must be non-decreasing and of one length")
        calibration = (cx, cy)
    model = EnsembleModel(members, tuple(knots), weights_arr / weights_arr.sum(), calibration,
                          doc.get("sentence_model"), doc.get("fit") or {})
    return model, hashlib.sha256(raw).hexdigest()


# ---- fitting ----------------------------------------------------------------------------------------------------

def fit_weights(features: np.ndarray, human: np.ndarray) -> np.ndarray:
    """Non-negative weights (summing to 1) of the least-squares fit, with a free intercept, of the mid-ranks of
    ``human`` ``(P,)`` on ``features`` ``(P, m)`` (rank-normalised member values)."""
    from scipy.optimize import lsq_linear

    m = features.shape[1]
    design = np.c_[features, np.ones(len(features))]
    lower = np.r_[np.zeros(m), -np.inf]
    upper = np.full(m + 1, np.inf)
    w = lsq_linear(design, mid_ranks(human), bounds=(lower, upper)).x[:m]
    return w / w.sum() if w.sum() > 0 else np.full(m, 1.0 / m)


def fit_calibration(score: np.ndarray, human: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots ``(x, y)`` of the isotonic regression of ``human`` scaled to [0, 1] on ``score`` (block centres)."""
    from scipy.optimize import isotonic_regression

    lo, hi = float(np.min(human)), float(np.max(human))
    y = (human - lo) / (hi - lo) if hi > lo else np.full(len(human), 0.5)
    xs, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ys = np.bincount(inverse.ravel(), weights=y) / counts
    fitted = isotonic_regression(ys, weights=counts.astype(np.float64), increasing=True).x
    block = np.r_[0, np.cumsum(np.diff(fitted) != 0)]  # one id per run of equal fitted values
    w = np.bincount(block, weights=counts)
    cx = np.bincount(block, weights=xs * counts) / w
    cy = np.bincount(block, weights=fitted * counts) / w
    return cx, cy


def fit_model(members: Sequence[Member], values: np.ndarray, human: np.ndarray, *, calibrate: bool = True,
              sentence_model: str | None = None, max_knots: int = 512,
              fit: Mapping[str, Any] | None = None) -> EnsembleModel:
    """Fit normalisation, weights and calibration on ``values`` ``(P, m)`` (raw member values; rows with a NaN
    are left out) against ``human`` ``(P,)``."""
    ok = np.all(np.isfinite(values), axis=1) & np.isfinite(human)
    if ok.sum() < 10:
        raise ConfigError(f"only {int(ok.sum())} judged pairs have a value from every member; an ensemble needs "
                          "at least 10")
    values, human = values[ok], human[ok]
    knots = tuple(rank_knots(values[:, k], max_knots) for k in range(values.shape[1]))
    model = EnsembleModel(tuple(members), knots, np.full(len(members), 1.0 / len(members)),
                          sentence_model=sentence_model)
    weights = fit_weights(model.normalise(values), human)
    model = EnsembleModel(model.members, knots, weights, sentence_model=sentence_model, fit=fit or {})
    if calibrate:
        model = EnsembleModel(model.members, knots, weights, fit_calibration(model.combine(values), human),
                              sentence_model, fit or {})
    return model


def image_folds(groups: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """Fold number ``(P,)`` of each pair: its group (image) is assigned to one of ``folds`` folds at random
    (seeded), so no image is in two folds."""
    uniq, inverse = np.unique(groups, return_inverse=True)
    if len(uniq) < folds:
        raise ConfigError(f"{len(uniq)} images cannot make {folds} cross-validation folds; use fewer folds")
    perm = np.random.default_rng(seed).permutation(len(uniq))
    return (perm % folds)[inverse.ravel()]


def cross_validate(members: Sequence[Member], values: np.ndarray, human: np.ndarray, groups: np.ndarray,
                   folds: int = 5, seed: int = 0, calibrate: bool = True) -> dict[str, Any]:
    """Held-out agreement of the ensemble and of each member alone, folds by image.

    Returns:
        ``{"folds", "seed", "per_fold": [{label: correlations}], "mean": {label: {stat: mean}},
        "sd": {label: {stat: sd}}}`` where labels are ``ensemble`` and each member's label; every fold compares
        all of them on the same held-out pairs (those every member can score).
    """
    from .correlation import CORRELATIONS, correlations

    if folds < 2:
        raise ConfigError(f"folds must be at least 2, got {folds}")
    fold = image_folds(groups, folds, seed)
    ok = np.all(np.isfinite(values), axis=1) & np.isfinite(human)
    per_fold: list[dict[str, Any]] = []
    for f in range(folds):
        train, test = ok & (fold != f), ok & (fold == f)
        model = fit_model(members, values[train], human[train], calibrate=calibrate)
        row = {"ensemble": correlations(model.predict(values[test]), human[test]),
               "weights": {m.label: float(w) for m, w in zip(members, model.weights)}}
        for k, m in enumerate(members):
            row[m.label] = correlations(values[test, k], human[test])
        per_fold.append(row)
    labels = ["ensemble"] + [m.label for m in members]

    def over_folds(lab: str, stat: str) -> list[float]:
        return [r[lab][stat] for r in per_fold if r[lab][stat] is not None]

    mean = {lab: {s: float(np.mean(over_folds(lab, s))) if over_folds(lab, s) else None for s in CORRELATIONS}
            for lab in labels}
    sd = {lab: {s: float(np.std(over_folds(lab, s), ddof=1)) if len(over_folds(lab, s)) > 1 else None
                for s in CORRELATIONS} for lab in labels}
    return {"folds": folds, "seed": seed, "per_fold": per_fold, "mean": mean, "sd": sd}
