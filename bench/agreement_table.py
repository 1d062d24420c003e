"""One table of held-out agreement with judgments from the ensemble files that ``bcls labels fit`` wrote.

    bcls labels fit --captions captions_val2014.json --judgments sits_val.csv --sources SOURCES --out cxc.json
    ...
    python bench/agreement_table.py cxc.json f8.json demo.json [--stat spearman,kendall,kendall_c]

Each file's fit records, per member and for the ensemble, the mean ± sd over its cross-validation folds (folds by
image) of Spearman, Kendall τ-b and τ-c on the held-out pairs; this prints them side by side, one row per
(judgments, sentence model, labels), marking each set's best single source.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows(path: Path, stats: list[str]) -> list[str]:
    doc = json.loads(path.read_text())
    fit = doc["fit"]
    cv = fit["cv"]
    judged = f"{Path(fit['judgments']['path']).name} ({fit['judgments']['format']})"
    model = doc.get("sentence_model") or "–"
    singles = [k for k in cv["mean"] if k != "ensemble"]
    best = max(singles, key=lambda k: cv["mean"][k]["spearman"])
    out = []
    for label in ["ensemble", *singles]:
        cells = []
        for stat in stats:
            m, s = cv["mean"][label][stat], cv["sd"][label][stat]
            cells.append("–" if m is None else f"{m:.3f} ± {s:.3f}" if s is not None else f"{m:.3f}")
        name = f"**{label}**" if label == best else label
        weight = "" if label == "ensemble" else f"{doc['weights'][label]:.2f}"
        out.append(f"| {judged} | {model} | {name} | {weight} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--stat", default="spearman,kendall,kendall_c")
    args = parser.parse_args()
    stats = args.stat.split(",")
    names = {"spearman": "Spearman", "kendall": "Kendall τ-b", "kendall_c": "Kendall τ-c", "pearson": "Pearson"}
    print("| judgments | model | labels | weight | " + " | ".join(names.get(s, s) for s in stats) + " |")
    print("|---|---|---|---:|" + "---:|" * len(stats))
    for path in args.files:
        print("\n".join(rows(path, stats)))


if __name__ == "__main__":
    main()
