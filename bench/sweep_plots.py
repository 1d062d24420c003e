"""Plots of the BCLS sweep (``python bench/sweep_bcls.py plot --out runs/sweep``), written to ``OUT/plots``.

* ``tau_gain_vs_teacher.png``: the τ gain over λ = 0 (dev, mean of the seeds) of each label source's best run
  against the source's own agreement with the ground truth over random pairs (``teacher``; what dense labels
  see);
* ``tau_rsum_frontier.png``: every run's mean τ (i2t and t2i averaged) against its rsum on dev, λ = 0 marked, and
  the Pareto frontier (no other run has both more τ and more rsum).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from sweep_bcls import results, teacher


def _mean(runs: list[dict], split: str, key: str) -> float:
    return statistics.mean(r[split][key] for r in runs)


def _tau(runs: list[dict], split: str) -> float:
    return (_mean(runs, split, "rel_kendall_i2t") + _mean(runs, split, "rel_kendall_t2i")) / 2


def plots(out: Path, split: str = "dev") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results(out)
    base = next(v for k, v in rows.items() if k.startswith("lam0 "))
    base_tau, base_rsum = _tau(base, split), _mean(base, split, "rsum")
    folder = out / "plots"
    folder.mkdir(exist_ok=True)
    written = []

    quality = teacher(out)["random_pairs"] | {"truth": 1.0}  # dense labels see random pairs
    fig, ax = plt.subplots(figsize=(6, 4))
    for source, q in quality.items():
        mine = {k: v for k, v in rows.items() if k.startswith(f"{source}-")}
        if not mine:
            continue
        # the selection rule of the sweep: the best τ among runs whose rsum is at least λ = 0's (else any run)
        eligible = [runs for runs in mine.values() if _mean(runs, split, "rsum") >= base_rsum] or list(mine.values())
        best = max(eligible, key=lambda runs: _tau(runs, split))
        for key, marker in (("rel_kendall_i2t", "o"), ("rel_kendall_t2i", "s")):
            gain = _mean(best, split, key) - _mean(base, split, key)
            ax.scatter([q], [gain], marker=marker, color="C0" if marker == "o" else "C1",
                       label=("i2t" if marker == "o" else "t2i") if source == "sbert" else None)
        ax.annotate(source, (q, _tau(best, split) - base_tau), textcoords="offset points", xytext=(5, 5))
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("teacher: per-image Kendall τ of the source vs the ground truth (random pairs)")
    ax.set_ylabel(f"τ gain over λ = 0 ({split})")
    ax.set_title("each source's best run with rsum ≥ λ = 0's (else its best run)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    written.append(folder / "tau_gain_vs_teacher.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 5))
    points = [(_mean(v, split, "rsum"), _tau(v, split), k.rsplit(" ", 1)[0]) for k, v in rows.items()]
    for rsum, tau, name in points:
        colour = "C3" if name == "lam0" else "C2" if name.startswith("truth") else "C0"
        ax.scatter([rsum], [tau], color=colour, s=18)
        ax.annotate(name, (rsum, tau), fontsize=6, textcoords="offset points", xytext=(3, 2))
    frontier = sorted(p for p in points if not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in points))
    ax.plot([p[0] for p in frontier], [p[1] for p in frontier], color="grey", lw=0.8, label="frontier")
    ax.axvline(base_rsum - 3, color="C3", lw=0.6, ls="--", label="λ = 0 rsum − 3")
    ax.axhline(base_tau, color="C3", lw=0.6, ls=":", label="λ = 0 τ")
    ax.set_xlabel(f"rsum ({split})")
    ax.set_ylabel(f"mean τ vs ground truth, i2t and t2i ({split})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    written.append(folder / "tau_rsum_frontier.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    print(json.dumps([str(p) for p in written]))
    return written
