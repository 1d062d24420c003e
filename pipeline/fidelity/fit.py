"""``bcls labels fit``: score human judgments with an ensemble's members, cross-validate it by image and fit it
(:func:`fit_ensemble`); the model and its fitting on arrays are in :mod:`~.fitted_ensemble`."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence, cast

import numpy as np

from bcls.data.captions import CaptionTable, read_captions
from bcls.data.infra.config_checks import check_field_types
from bcls.data.infra.version import package_versions
from bcls.data.judgments import Judgments, read_judgments
from bcls.pipeline.embedding.embed import Encoder, EncoderSpec
from bcls.pipeline.embedding.sentence_models import full_name
from bcls.pipeline.sources.ensemble import build_member, parse_members

from .agreement import score_pairs
from .fitted_ensemble import EnsembleModel, Member, cross_validate, fit_model


@dataclass(frozen=True)
class FitConfig:
    """Settings of ``bcls labels fit``: an ensemble of label sources fitted on human judgments.

    Attributes:
        captions, judgments, format, split, judgment_format: the judged captions and the judgments, read as by
            :class:`~bcls.pipeline.fidelity.agreement.AgreementConfig`.
        out: the ensemble JSON to write.
        sources: the members, comma-separated, each ``NAME[:KEY=VALUE…]`` (:func:`parse_members`).
        folds, seed: cross-validation folds by image, and the seed of their assignment.
        calibrate: fit the monotone calibration to the human 0–1 scale.
        encoder, use_cache: the sentence encoder of the members that embed (its model is recorded: a label build
            with this ensemble must use the same one), and whether it uses the cache.
    """

    captions: str
    judgments: str
    out: str
    sources: str = "sbert,cider,spice"
    folds: int = 5
    seed: int = 0
    calibrate: bool = True
    format: str = "auto"
    split: str | None = None
    judgment_format: str = "auto"
    encoder: EncoderSpec = EncoderSpec()
    use_cache: bool = True

    def __post_init__(self) -> None:
        check_field_types(self, "fit setting")


def run_fit(config: FitConfig) -> tuple[EnsembleModel, dict[str, Any]]:
    """``bcls labels fit``: read the captions and judgments of ``config`` and :func:`fit_ensemble`."""
    return fit_ensemble(read_captions(config.captions, format=config.format, split=config.split),
                        read_judgments(config.judgments, format=config.judgment_format), config.sources, config.out,
                        folds=config.folds, seed=config.seed, calibrate=config.calibrate, spec=config.encoder,
                        use_cache=config.use_cache)


def fit_ensemble(
    captions: CaptionTable,
    judgments: Judgments,
    members: str | Sequence[str] | Sequence[Member],
    out: str | os.PathLike | None = None,
    *,
    folds: int = 5,
    seed: int = 0,
    calibrate: bool = True,
    spec: EncoderSpec = EncoderSpec(),
    use_cache: bool = True,
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
        spec, use_cache, encoder: the sentence encoder of the members that embed, its cache, or a custom encoder
            (as :func:`~bcls.pipeline.fidelity.agreement.score_judgments`); ``spec.model`` is recorded, so a build
            with another model is refused; with a custom ``encoder`` none is recorded.

    Returns:
        ``(model, report)``; ``report`` holds the cross-validation (``cv``: per-fold and mean ± sd held-out
        correlations of the ensemble and of each member), the weights and the file's sha256 (when written).
    """
    given = list(members) if not isinstance(members, str) else []
    parsed: tuple[Member, ...] = tuple(m for m in given if isinstance(m, Member)) if given and isinstance(
        given[0], Member) else tuple(parse_members(cast("str | Sequence[str]", members)))
    spec = replace(spec, model=full_name(spec.model))
    built = [build_member(m) for m in parsed]
    scored, columns, counts = score_pairs(captions, judgments, built, encoder, spec=spec, use_cache=use_cache)
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
                       sentence_model=spec.model if embeds and encoder is None else None, fit=provenance)
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
