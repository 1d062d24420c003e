"""Experiment: the triplet loss alone vs BCLS on the demo dataset, several seeds, with ground-truth relevance.

Run ``python bench/compare_bcls.py --out runs/compare [--seeds 0,1,2] [--epochs 8] [--variants a,b]``.
It generates the default demo data (seed 0) and builds its sbert labels once, then trains every variant with every
seed (an existing ``OUT/labels`` folder, finished runs and their evaluations are reused) and evaluates the
best-by-dev checkpoint on the test split: R@K / rsum, plus how well the predicted
similarities follow the demo's *ground-truth* relevance (mean per-query Kendall τ-b, NCS@K with the ground truth
as relevance). It prints a markdown table of mean ± std over seeds; the last line is one JSON object of all runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

from bcls.data.demo import generate_demo
from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
from bcls.trainer.evaluation.evaluate import evaluate
from bcls.trainer.config import TrainConfig
from bcls.trainer.train import train

HARD = {"binary_loss": "triplet-hardest"}
# The settings these variants were measured with (docs/results.md, "Binary losses"): the Kendall term of that
# round — sparse labels, no gap — pinned, so the names keep their meaning under today's defaults.
OLD_KENDALL = {"label_mode": "sparse", "gap": 0.0}
VARIANTS = {
    "triplet": {"lam": 0.0, **HARD},
    "bcls-sparse": {"lam": 1.0, **OLD_KENDALL, **HARD},
    "bcls-dense": {"lam": 1.0, **OLD_KENDALL, "label_mode": "dense", **HARD},
    "bcls-neighbours": {"lam": 1.0, **OLD_KENDALL, "sampler": "neighbours", **HARD},
    "triplet-mean": {"lam": 0.0, "binary_loss": "triplet-mean"},
    "triplet-sn-switch": {"lam": 0.0, "binary_loss": "triplet-sn-switch"},
    "triplet-sn-softmax": {"lam": 0.0, "binary_loss": "triplet-sn-softmax"},
    "bcls-sn-switch": {"lam": 1.0, **OLD_KENDALL, "binary_loss": "triplet-sn-switch"},
    "bcls-default": {"lam": 1.0},  # today's defaults (dense labels, gap 0.4, triplet-sn)
}
COLUMNS = ["rsum", "i2t_r1", "t2i_r1", "rel_kendall_i2t", "rel_kendall_t2i", "ncs_i2t_5", "ncs_t2i_5"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/compare")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--variants", default="triplet,bcls-sparse,bcls-dense")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    data, labels = out / "data", out / "labels"
    if not (data / "demo.json").is_file():
        generate_demo(data)
    if not (labels / "_manifest.json").is_file():  # an existing label folder is reused as it is
        build_labels(LabelBuildConfig(captions=str(data), split="train", out=str(labels), k=32))
    results: dict[str, list[dict[str, float]]] = {}
    for name in args.variants.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            start = time.perf_counter()
            run = out / f"{name}-s{seed}"
            config = TrainConfig.from_dict(dict(data=str(data), labels=str(labels), out=str(run),
                                                epochs=args.epochs, seed=seed, **VARIANTS[name]))
            if not (run / "summary.json").is_file():
                train(config, overwrite=True)
            done = run / "eval" / "metrics.json"
            if done.is_file() and done.stat().st_mtime >= (run / "best.pt").stat().st_mtime:
                metrics = json.loads(done.read_text())  # already evaluated: reuse
            else:
                metrics = evaluate(run / "best.pt", data, "test", run / "eval")["metrics"]
            results.setdefault(name, []).append(metrics)
            print(f"{name} seed {seed}: rsum {metrics['rsum']:.1f}, τ_i2t {metrics['rel_kendall_i2t']:.4f} "
                  f"({time.perf_counter() - start:.0f}s)", flush=True)
    print()
    print("| variant | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, runs in results.items():
        cells = []
        for col in COLUMNS:
            vals = [r[col] for r in runs]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            fmt = "{:.4f} ± {:.4f}" if col.startswith("rel_") else "{:.2f} ± {:.2f}"
            cells.append(fmt.format(statistics.mean(vals), sd))
        print(f"| {name} (n={len(runs)}) | " + " | ".join(cells) + " |")
    print(json.dumps({name: [{k: r[k] for k in COLUMNS} for r in runs] for name, runs in results.items()}))


if __name__ == "__main__":
    main()
