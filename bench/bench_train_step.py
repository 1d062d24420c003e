"""Benchmark: time per training step, BCLS (binary + λ·Kendall SW-HS) vs the triplet loss alone, same model.

Run ``python bench/bench_train_step.py [--data DIR --labels DIR]``. Without arguments it generates the default
demo dataset and builds its sbert labels (with a fast stand-in encoder: only the label *pattern* matters for step
time) in a temporary folder. For batch sizes 128, 256, 512 on CPU it times optimisation steps of the same
``vse-gru`` model after the warm-up epoch (so the configured binary loss and the Kendall term are active):

* ``triplet``: λ = 0 (no label lookup, no continuous loss);
* ``bcls-sparse``: λ = 1, labels looked up from the shards;
* ``bcls-dense``: λ = 1, every in-batch pair labelled on the fly from the stored caption embeddings (the paper's
  setting, and the most Kendall work);
* ``bcls-dense-g0.4``: the same with a label gap of 0.4 (fewer, cleaner compared pairs): today's default;
* ``bcls-neighbours``: λ = 1, sparse labels with the neighbour-aware sampler;
* ``bcls-groups``: λ = 1, sparse labels, batches of groups (a seed and 3 labelled candidates of its image);
* ``bcls-groups-dense-g0.4``: groups batches with the default dense labels and gap.

Besides time, it reports per step the labelled off-diagonal pairs of the batch, the labelled pairs per query
(``labelled / B``: each labelled pair serves an image query and a caption query) and the Kendall anchor terms compared
per query (after the
window / gap filters; ``compared`` of the training log).

Variants are interleaved round by round (this machine is noisy) and the median per variant is reported with its
ratio to ``triplet``, and samples/s. With ``--device cuda`` the steps run on the GPU with bf16 autocast, and
before timing, one BCLS step's loss terms computed on CUDA are checked against the same step on the CPU (same
initial weights and batch; the difference is printed and must stay below ``--tolerance``). The last line printed
is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bcls.data.demo import generate_demo
from bcls.pipeline.build import LabelBuildConfig, build_labels
from bcls.trainer.batches import Batch
from bcls.trainer.config import TrainConfig
from bcls.trainer.train import _Run

VARIANTS = {
    "triplet": {"lam": 0.0},
    "bcls-sparse": {"lam": 1.0, "label_mode": "sparse", "sampler": "random", "gap": 0.0},
    "bcls-dense": {"lam": 1.0, "label_mode": "dense", "sampler": "random", "gap": 0.0},
    "bcls-dense-g0.4": {"lam": 1.0, "label_mode": "dense", "sampler": "random", "gap": 0.4},  # the default
    "bcls-neighbours": {"lam": 1.0, "label_mode": "sparse", "sampler": "neighbours", "gap": 0.0},
    "bcls-groups": {"lam": 1.0, "label_mode": "sparse", "sampler": "groups", "gap": 0.0},
    "bcls-groups-dense-g0.4": {"lam": 1.0, "label_mode": "dense", "sampler": "groups", "gap": 0.4},
}


def _fake_encoder(texts):
    """Bag-of-words hashing encoder: deterministic, no model, same label sparsity pattern as a real one."""
    rng = np.random.default_rng(0)
    table = {}
    out = np.zeros((len(texts), 64), np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().split():
            if word not in table:
                table[word] = rng.standard_normal(64).astype(np.float32)
            out[i] += table[word]
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _check_device(data: str, labels: str, tmp: str, device: str, tolerance: float) -> dict[str, float]:
    """Loss terms of one BCLS step (dense labels) on ``device`` against the CPU, from the same weights."""
    terms = {}
    for dev in ("cpu", device):
        config = TrainConfig(data=data, labels=labels, out=str(Path(tmp) / f"check-{dev}"), batch_size=128,
                             warmup_epochs=0, label_mode="dense", device=dev, seed=0)
        run = _Run(config)
        terms[dev] = run.step(Batch(torch.arange(128)), 2, 0)
    diff = {k: abs(terms[device][k] - terms["cpu"][k]) for k in ("loss", "binary", "continuous")}
    print(f"{device} vs cpu, one step: " + ", ".join(f"{k} {terms['cpu'][k]:.5f} / {terms[device][k]:.5f}"
                                                     for k in diff))
    if max(diff.values()) > tolerance:
        raise SystemExit(f"{device} and cpu losses differ by {max(diff.values()):.4f} > {tolerance}")
    return {f"max_abs_diff_{k}": round(v, 6) for k, v in diff.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--labels")
    parser.add_argument("--sizes", default="128,256,512")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (bf16 autocast)")
    parser.add_argument("--tolerance", type=float, default=0.02, help="max |CUDA − CPU| of a loss term")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    data, labels = args.data, args.labels
    if data is None:
        data = str(Path(tmp.name) / "data")
        generate_demo(data)
    if labels is None:
        labels = str(Path(tmp.name) / "labels")
        build_labels(LabelBuildConfig(captions=data, split="train", out=labels, k=32), encoder=_fake_encoder)
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, dict[str, float]] = {}
    if args.device != "cpu":
        results["cuda_vs_cpu"] = _check_device(data, labels, tmp.name, args.device, args.tolerance)
    where = (f"{torch.cuda.get_device_name()} (bf16 autocast)" if args.device.startswith("cuda")
             else f"CPU, {torch.get_num_threads()} threads")
    print(f"torch {torch.__version__}, {where}")
    print(f"{'batch':>6} {'variant':<16} {'ms/step':>9} {'× triplet':>10} {'labelled pairs':>15} "
          f"{'labelled/query':>15} {'compared/query':>15}")
    for size in sizes:
        runs = {}
        for name, kw in VARIANTS.items():
            config = TrainConfig(data=data, labels=labels, out=str(Path(tmp.name) / name), batch_size=size,
                                 warmup_epochs=0, device=args.device, **kw)
            run = _Run(config)
            batches = list(run.batches(1))
            runs[name] = (run, batches)
            run.step(batches[0], 1, 0)  # warm-up
        times = {name: [] for name in runs}
        pairs = {name: [] for name in runs}
        compared = {name: [] for name in runs}
        for r in range(args.rounds):
            for name, (run, batches) in runs.items():
                for s in range(args.steps):
                    batch = batches[(1 + r * args.steps + s) % len(batches)]
                    start = time.perf_counter()
                    record = run.step(batch, 2, s)
                    if args.device != "cpu":
                        torch.cuda.synchronize()
                    times[name].append(time.perf_counter() - start)
                    pairs[name].append(record["labelled_pairs"])
                    compared[name].append(record["compared"])
        base = statistics.median(times["triplet"])
        for name in runs:
            med = statistics.median(times[name])
            results[f"{name}@{size}"] = {"ms_per_step": round(1000 * med, 2), "ratio": round(med / base, 3),
                                         "samples_per_s": round(size / med, 1),
                                         "labelled_pairs": round(float(np.mean(pairs[name])), 1),
                                         "labelled_per_query": round(float(np.mean(pairs[name])) / size, 2),
                                         "compared_per_query": round(float(np.mean(compared[name])), 2)}
            print(f"{size:>6} {name:<16} {1000 * med:>9.1f} {med / base:>10.2f} {np.mean(pairs[name]):>15.1f} "
                  f"{np.mean(pairs[name]) / size:>15.2f} {np.mean(compared[name]):>15.2f}")
        sys.stdout.flush()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
