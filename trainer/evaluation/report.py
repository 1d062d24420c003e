"""Human-readable evaluation outputs: ``report.md``, PNG plots, and side-by-side comparisons of runs."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from bcls.data.infra.atomic import atomic_path, atomic_write_bytes
from bcls.data.infra.errors import DataFormatError

from .judged import JUDGED_COUNTS

log = logging.getLogger(__name__)

RECALL_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")


def recall_curve(ranks: torch.Tensor, max_k: int = 50) -> np.ndarray:
    """R@K in percent for K = 1..max_k from 0-based ranks ``(Q,)``."""
    values = ranks.cpu().numpy()
    return np.array([100.0 * np.mean(values < k) for k in range(1, max_k + 1)])


def _figure():
    """A fresh 6×4 inch figure and axes, drawn off-screen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 4))


def _save(fig, ax, title: str, path: str | os.PathLike) -> Path:
    """Grid, legend and title, then the PNG written atomically and the figure closed."""
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_recall_curves(curves: dict[str, np.ndarray], path: str | os.PathLike, subtitle: str = "") -> Path:
    """R@K for K = 1..50, one line per direction; saved as a PNG."""
    fig, ax = _figure()
    for name, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1), curve, label=name)
    ax.set_xlabel("K")
    ax.set_ylabel("R@K (%)")
    ax.set_ylim(0, 100)
    return _save(fig, ax, "Recall at K" + (f"\n{subtitle}" if subtitle else ""), path)


def plot_similarity_vs_label(sims: torch.Tensor, relevance: torch.Tensor, known: torch.Tensor | None,
                             path: str | os.PathLike, n: int = 5000, seed: int = 0, subtitle: str = "") -> Path:
    """Predicted similarity against label for a random sample of (known) pairs, with the per-label mean;
    ``subtitle`` (e.g. the run's model, λ and label source) goes under the title."""
    s, r = sims.flatten().numpy(), relevance.flatten().numpy()
    idx = np.flatnonzero(known.flatten().numpy()) if known is not None else np.arange(len(s))
    rng = np.random.default_rng(seed)
    pick = rng.choice(idx, size=min(n, len(idx)), replace=False)
    # half the sample from pairs with a non-zero label, so graded pairs are visible among the many zeros
    nonzero = idx[r[idx] > 0]
    if len(nonzero):
        pick = np.concatenate([pick[: n // 2], rng.choice(nonzero, size=min(n // 2, len(nonzero)), replace=False)])
    fig, ax = _figure()
    ax.scatter(r[pick], s[pick], s=4, alpha=0.25, label="pairs (sample)")
    levels = np.unique(np.round(r[pick], 2))
    if len(levels) <= 30:
        means = [s[pick][np.round(r[pick], 2) == v].mean() for v in levels]
        ax.plot(levels, means, "o-", color="C3", label="mean per label")
    ax.set_xlabel("label (relevance)")
    ax.set_ylabel("predicted similarity")
    return _save(fig, ax, "Predicted similarity vs label" + (f"\n{subtitle}" if subtitle else ""), path)


def _fmt(value: Any) -> str:
    """One number format for reports and comparisons: 4 decimals below 1 in magnitude, else 2."""
    if isinstance(value, float):
        return "nan" if np.isnan(value) else (f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}")
    return str(value)


def markdown_report(metrics: dict[str, Any], provenance: dict[str, Any], plots: Sequence[str]) -> str:
    """``report.md``: recall per protocol, relevance metrics, ECCV/CxC, plots and provenance."""
    lines = ["# bcls evaluation report", ""]
    lines += [f"checkpoint `{provenance.get('checkpoint')}` on `{provenance.get('data')}` split "
              f"`{provenance.get('split')}` ({provenance.get('images')} images, {provenance.get('captions')} "
              f"captions), protocol `{provenance.get('protocol')}`", ""]
    prefixes = [""] + sorted({k.split("_i2t")[0] + "_" for k in metrics if "_i2t_r1" in k and not
                              k.startswith("i2t")})
    lines += ["## Retrieval", "", "| block | " + " | ".join(RECALL_KEYS) + " |", "|---" * (len(RECALL_KEYS) + 1) + "|"]
    for prefix in prefixes:
        if all(f"{prefix}{k}" in metrics for k in RECALL_KEYS):
            name = prefix.rstrip("_") or "whole split"
            lines.append(f"| {name} | " + " | ".join(f"{metrics[prefix + k]:.2f}" for k in RECALL_KEYS) + " |")
    rel = {k: v for k, v in metrics.items() if k.startswith(("rel_", "ncs_"))}
    if rel:
        lines += ["", f"## Relevance (`{provenance.get('relevance')}`)", "",
                  "Mean per-query Kendall τ-b / Spearman ρ between predicted similarities and relevance, NCS@K "
                  "(%, ground truth excluded) and, with a full relevance matrix, ECCV-style mAP@R / R-Precision (%) "
                  "whose positives are every pair of relevance 1 (plain R@K counts a fully correct caption of "
                  "another image as a miss; these count it as a hit).", "", "| metric | i2t | t2i |", "|---|---|---|"]
        names = sorted({k.replace("_i2t", "").replace("_t2i", "") for k in rel},
                       key=lambda n: (not n.startswith("rel"), int(n.split("_")[-1]) if n[-1].isdigit() else 0, n))
        for name in names:
            i2t, t2i = (f"{name}_{d}" if name.startswith("rel") else name.replace("ncs_", f"ncs_{d}_")
                        for d in ("i2t", "t2i"))
            lines.append(f"| {name} | {_fmt(metrics.get(i2t))} | {_fmt(metrics.get(t2i))} |")
    judged = {k: v for k, v in metrics.items() if k.startswith("judged_")}
    if judged:
        j = provenance.get("judgments") or {}
        lines += ["", f"## Agreement with human judgments (`{j.get('path')}`, {j.get('format')})", "",
                  "The model's similarity of every judged (image, caption) pair of the split against the human "
                  "score: over all judged pairs, and Kendall τ-b within each query averaged over the queries.", "",
                  "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {int(v) if k in JUDGED_COUNTS else _fmt(v)} |" for k, v in judged.items()]
    train = provenance.get("train_config") or {}
    if any(v is not None for v in train.values()):
        lines[3:3] = ["trained with " + ", ".join(f"{k} `{v}`" for k, v in train.items() if v is not None), ""]
    eccv = {k: v for k, v in metrics.items() if k.startswith(("eccv_", "cxc_"))}
    if provenance.get("eccv_skipped"):
        lines += ["", f"ECCV Caption and CxC metrics were not computed: {provenance['eccv_skipped']}."]
    if eccv:
        lines += ["", "## ECCV Caption and CxC (eccv-caption package)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(eccv.items())]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(lines) + "\n"


def compare_runs(paths: Sequence[str | os.PathLike], out: str | os.PathLike | None = None) -> str:
    """A side-by-side markdown table of several ``metrics.json`` (files or eval folders), runs numbered from 1,
    with each run's difference to run 1; a metric one run lacks shows as ``—``. When the runs were evaluated on
    different data or splits the table starts with a warning (and one is logged): their numbers are not
    comparable. Written to ``out/compare.md`` when ``out`` is given."""
    runs = []
    for p in paths:
        p = Path(p)
        path = p / "metrics.json" if p.is_dir() else p
        if not path.is_file():
            raise DataFormatError(f"{path}: no metrics.json; run `bcls eval --out` first")
        try:
            runs.append((p, json.loads(path.read_text())))
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{path}: not valid JSON ({err})") from None
    keys: list[str] = []
    for _, metrics in runs:
        keys += [k for k, v in metrics.items() if isinstance(v, (int, float)) and k not in keys]
    lines = []
    where = {(r.get("_provenance", {}).get("data"), r.get("_provenance", {}).get("split")) for _, r in runs}
    if len(where) > 1:
        shown = "; ".join(f"run {i + 1}: {r.get('_provenance', {}).get('data')} split "
                          f"{r.get('_provenance', {}).get('split')}" for i, (_, r) in enumerate(runs))
        log.warning("the compared runs were evaluated on different data or splits (%s)", shown)
        lines += [f"**Warning:** the runs were evaluated on different data or splits ({shown}); their numbers are "
                  "not comparable.", ""]
    lines += [" ".join(f"run {i + 1}: `{p}`" + (";" if i + 1 < len(runs) else "") for i, (p, _) in enumerate(runs)),
              ""]
    lines.append("| metric | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) +
                 "".join(f" | run {i + 1} − run 1" for i in range(1, len(runs))) + " |")
    lines.append("|---" * (2 * len(runs)) + "|")
    for k in keys:
        vals = [r.get(k) for _, r in runs]
        cells = [_fmt(float(v)) if isinstance(v, (int, float)) else "—" for v in vals]
        base = vals[0]
        deltas = [_fmt(float(v) - float(base)) if isinstance(v, (int, float)) and isinstance(base, (int, float))
                  else "—" for v in vals[1:]]
        deltas = [d if d.startswith(("-", "—", "nan")) else f"+{d}" for d in deltas]
        lines.append(f"| {k} | " + " | ".join(cells) + "".join(f" | {d}" for d in deltas) + " |")
    text = "\n".join(lines) + "\n"
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(Path(out) / "compare.md", text.encode())
    return text


def metrics_table(rows: dict[str, dict[str, float]]) -> str:
    """A fixed-width text table of R@K / rsum (and the semantic metrics every row has), one row per model."""
    keys = ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum"]
    extra = [k for k in ("coco_1k_rsum", "rel_kendall_i2t", "rel_kendall_t2i", "ncs_i2t_5", "ncs_t2i_5",
                         "rel_map_at_r_i2t", "rel_map_at_r_t2i", "judged_spearman", "judged_query_kendall_b")
             if all(k in m for m in rows.values())]
    width = {k: max(17, len(k) + 2) for k in extra}
    head = f"{'model':<22}" + "".join(f"{k:>9}" for k in keys) + "".join(f"{k:>{width[k]}}" for k in extra)
    lines = [head, "-" * len(head)]
    for name, m in rows.items():
        lines.append(f"{name:<22}" + "".join(f"{m[k]:>9.2f}" for k in keys) +
                     "".join(f"{m[k]:>{width[k]}.4f}" if k.startswith(("rel_kendall", "judged_"))
                             else f"{m[k]:>{width[k]}.2f}" for k in extra))
    return "\n".join(lines)
