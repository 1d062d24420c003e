"""``bcls labels fit``: score human judgments with an ensemble's members, cross-validate it by image and fit it
(:func:`fit_ensemble`); the model and its fitting on arrays are in :mod:`~.fitted_ensemble`."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from bcls.data.captions import CaptionTable
from bcls.data.judgments import Judgments
from bcls.data.infra.version import package_versions

from .agreement import score_pairs
from bcls.pipeline.embedding.embed import DEFAULT_MODEL, Encoder
from .fitted_ensemble import EnsembleModel, Member, cross_validate, fit_model
from bcls.pipeline.embedding.sentence_models import full_name
from bcls.pipeline.sources.ensemble import build_member, parse_members


def fit_ensemble(
    captions: CaptionTable,
    judgments: Judgments,
    members: str | Sequence[str] | Sequence[Member],
    out: str | os.PathLike | None = None,
    *,
    folds: int = 5,
    seed: int = 0,
    calibrate: bool = True,
    model: str | None = None,
    cache: str | os.PathLike | None = None,
    use_cache: bool = True,
    device: str | None = None,
    encoder: Encoder | None = None,
) -> tuple[EnsembleModel, dict[str, Any]]:
    """Score the judged pairs with every member, cross-validate the ensemble (folds by image) and fit it on all
    pairs.

    Args:
        captions: the caption table the judgments refer to (:func:`~bcls.data.captions.read_captions`).
        judgments: human judgments (:func:`~bcls.data.judgments.read_judgments`), e.g. CxC val SITS.
        members: member sources (``"sbert,cider,spice:measure=precision"``, see :func:`parse_members`).
        out: the ensemble JSON to write (atomically); nothing is written when None.
        folds, seed: cross-validation folds by image and their seed.
        calibrate: fit the monotone calibration to the human scale.
        model, cache, use_cache, device, encoder: the sentence model for embedding members and its cache (as
            :func:`~bcls.pipeline.fidelity.agreement.score_judgments`); ``model`` defaults to all-MiniLM-L6-v2 and is
            recorded, so a build with another model is refused; with a custom ``encoder`` none is recorded.

    Returns:
        ``(model, report)``; ``report`` holds the cross-validation (``cv``: per-fold and mean ± sd held-out
        correlations of the ensemble and of each member), the weights and the file's sha256 (when written).
    """
    parsed = tuple(members) if members and isinstance(next(iter(members)), Member) else parse_members(members)
    model = full_name(model or DEFAULT_MODEL)
    built = [build_member(m) for m in parsed]
    scored, columns, counts = score_pairs(captions, judgments, built, encoder, device=device, model=model,
                                          cache=cache, use_cache=use_cache)
    values = np.stack(columns, axis=1).astype(np.float64)
    if judgments.kind == "caption-caption":
        groups = judgments.candidate_ids
    else:
        groups = judgments.caption_image_pairs()[1]
    human = np.where(scored, judgments.scores, np.nan)
    cv = cross_validate(parsed, values, human, groups, folds, seed, calibrate)
    embeds = any(s.needs_embeddings for s in built)
    provenance = {
        "judgments": {"path": judgments.path, "format": judgments.format, "kind": judgments.kind, **counts},
        "captions": {"path": captions.path, "format": captions.format, "fingerprint": captions.fingerprint()},
        "member_settings": {m.label: s.settings() for m, s in zip(parsed, built)},
        "human_scale": [float(np.nanmin(human)), float(np.nanmax(human))],
        "cv": {k: cv[k] for k in ("folds", "seed", "mean", "sd", "per_fold")},
        "versions": package_versions(("numpy", "scipy", "sentence-transformers")),
    }
    fitted = fit_model(parsed, values, human, calibrate=calibrate,
                       sentence_model=model if embeds and encoder is None else None, fit=provenance)
    report = {"cv": cv, "weights": {m.label: float(w) for m, w in zip(parsed, fitted.weights)},
              "pairs": int((np.all(np.isfinite(values), axis=1) & np.isfinite(human)).sum())}
    if out is not None:
        report["sha256"] = fitted.save(out)
        report["path"] = str(out)
    return fitted, report


def fit_report_markdown(report: Mapping[str, Any]) -> str:
    """The cross-validated comparison of a :func:`fit_ensemble` report as a markdown table."""
    cv = report["cv"]
    lines = [f"Held-out agreement, {cv['folds']} folds by image (mean ± sd over folds):", "",
             "| labels | weight | Spearman | Kendall τ-b | Kendall τ-c | Pearson |", "|---|---:|---:|---:|---:|---:|"]

    def cell(label: str, stat: str) -> str:
        m, s = cv["mean"][label][stat], cv["sd"][label][stat]
        return "–" if m is None else f"{m:.3f} ± {s:.3f}" if s is not None else f"{m:.3f}"

    for label in cv["mean"]:
        weight = "" if label == "ensemble" else f"{report['weights'][label]:.3f}"
        lines.append(f"| {label} | {weight} | {cell(label, 'spearman')} | {cell(label, 'kendall')} | "
                     f"{cell(label, 'kendall_c')} | {cell(label, 'pearson')} |")
    members = [k for k in cv["mean"] if k != "ensemble" and cv["mean"][k]["spearman"] is not None]
    if members and cv["mean"]["ensemble"]["spearman"] is not None:
        best = max(members, key=lambda k: cv["mean"][k]["spearman"])
        diffs = [f["ensemble"]["spearman"] - f[best]["spearman"] for f in cv["per_fold"]
                 if f["ensemble"]["spearman"] is not None and f[best]["spearman"] is not None]
        lines += ["", f"Ensemble − best single source ({best}), Spearman on the same held-out pairs: "
                      f"{np.mean(diffs):+.3f} (folds {min(diffs):+.3f} … {max(diffs):+.3f})."]
    return "\n".join(lines) + "\n"
