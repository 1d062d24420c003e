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

Then, for each ``--epoch-dims`` size (512, train's default, and 256, the demo's), one full epoch of the default
settings — sampler, label lookup and steps, data loading included — and the dev evaluation are timed (samples/s
of the epoch), and 20 steps are profiled phase by phase (feature and token gathering, image and text encoder
forward, label lookup, loss forward, backward, clip + optimizer; on CUDA the device is synchronised at each phase
end), with the work each phase dispatches in one step (``torch.profiler``): kernel launches on CUDA, where a small
step is bound by them, top-level aten operators on the CPU.

Variants are interleaved round by round (this machine is noisy) and the median per variant is reported with its
ratio to ``triplet``, and samples/s. ``--compile`` also times the default BCLS step (batch 128) with its loss
(``BCLSLoss``: triplet + Kendall, many small tensor operations) run eagerly and through ``torch.compile`` (and, on
CUDA, ``torch.compile(mode="reduce-overhead")``, which replays the loss's kernels as a CUDA graph), and with
Adam's fused implementation: compile time, ms/step and the ratio to eager, after checking that the first step's
loss terms agree, and how far each variant's weights are from the eager run's after the timed steps. With
``--device cuda`` the steps run on the GPU with bf16 autocast, and
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
from typing import Any

import numpy as np
import torch

from bcls.data.demo import generate_demo
from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
from bcls.trainer.batches import Batch
from bcls.trainer.config import TrainConfig
from bcls.trainer.train import Trainer

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
        run = Trainer(config)
        terms[dev] = run.step(Batch(torch.arange(128)), 2, 0)
    diff = {k: abs(terms[device][k] - terms["cpu"][k]) for k in ("loss", "binary", "continuous")}
    print(f"{device} vs cpu, one step: " + ", ".join(f"{k} {terms['cpu'][k]:.5f} / {terms[device][k]:.5f}"
                                                     for k in diff))
    if max(diff.values()) > tolerance:
        raise SystemExit(f"{device} and cpu losses differ by {max(diff.values()):.4f} > {tolerance}")
    return {f"max_abs_diff_{k}": round(v, 6) for k, v in diff.items()}


def _phase_step(run: Trainer, rows: torch.Tensor, mark) -> None:
    """One default BCLS step of :meth:`Trainer.step` (same work, bf16 autocast on CUDA), calling ``mark(name)`` as
    each phase ends."""
    from bcls.trainer.batches.inputs import image_batch
    from bcls.trainer.models import pad_batch

    images = run.image_index[rows]
    feats = image_batch(run.data.feats, images.numpy(), run.device)
    ids, lengths = pad_batch([run.token_ids[r] for r in rows.tolist()])
    ids = ids.to(run.device)
    mark("feature and token gathering")
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.amp):
        img = run.model.encode_images(feats).float()
        mark("image encoder forward")
        txt = run.model.encode_texts(ids, lengths).float()
    mark("text encoder forward")
    values, known, positive, _ = run.targets((rows, None))
    values, known, positive = values.to(run.device), known.to(run.device), positive.to(run.device)
    mark("label lookup")
    terms = run.losses.main((img @ txt.T).float(), values, known, positive)
    mark("loss forward")
    run.optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    mark("backward")
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.config.grad_clip)
    run.optimizer.step()
    mark("clip + optimizer")


def _phase_profile(run: Trainer, batches: list, n_steps: int) -> tuple[dict[str, float], dict[str, int]]:
    """ms per step of each phase of :meth:`Trainer.step` (timed piece by piece, after 2 untimed steps; on CUDA the
    device is synchronised at each phase end), and the work each phase dispatches in one more step, from
    ``torch.profiler``: on CUDA the kernel launches (what bounds a small GPU step), on the CPU the top-level aten
    operators. Backward work the autograd engine runs on its own thread counts as "backward"."""
    from collections import Counter, defaultdict

    cuda = run.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    spent: dict[str, float] = defaultdict(float)
    for s, (rows, _) in enumerate(batches[:n_steps + 2]):
        if s == 2:
            spent.clear()
        sync()
        last = [time.perf_counter()]

        def mark(name: str) -> None:
            sync()
            now = time.perf_counter()
            spent[name] += now - last[0]
            last[0] = now
        _phase_step(run, rows, mark)
    ms = {name: round(1000 * t / n_steps, 2) for name, t in spent.items()}

    from torch.profiler import ProfilerActivity, profile, record_function

    class Scopes:  # one record_function range per phase: mark(name) ends that phase and opens the next one
        def __init__(self) -> None:
            self.at, self.scope = 0, record_function(f"phase: {names[0]}")
            self.scope.__enter__()

        def __call__(self, name: str) -> None:
            self.scope.__exit__(None, None, None)
            self.at += 1
            if self.at < len(names):
                self.scope = record_function(f"phase: {names[self.at]}")
                self.scope.__enter__()
    names = list(ms)
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        _phase_step(run, batches[(n_steps + 2) % len(batches)][0], Scopes())
        sync()
    counts: Counter[str] = Counter()
    for event in prof.events():
        launch = "LaunchKernel" in event.name
        if not (launch if cuda else event.name.startswith("aten::")):
            continue
        parent = event.cpu_parent
        if not cuda and parent is not None and parent.name.startswith("aten::"):
            continue  # only top-level operators
        while parent is not None and not parent.name.startswith("phase: "):
            parent = parent.cpu_parent
        counts[parent.name[len("phase: "):] if parent is not None else "backward"] += 1
    return ms, {name: counts.get(name, 0) for name in names}


def _epoch(data: str, labels: str, tmp: str, device: str, embed_dim: int, profile_steps: int) -> dict[str, Any]:
    """One full epoch of the default BCLS settings (sampler, label lookup, steps: everything ``bcls train`` does
    in an epoch after the warm-up) plus the dev evaluation, and a per-phase profile of its steps."""
    from bcls.trainer.evaluation import evaluate_model

    config = TrainConfig(data=data, labels=labels, out=str(Path(tmp) / f"epoch-{embed_dim}"), warmup_epochs=0,
                         device=device, embed_dim=embed_dim)
    run = Trainer(config)
    run.step(next(iter(run.batches(1))), 1, 0)  # warm-up
    start = time.perf_counter()
    steps = 0
    for s, batch in enumerate(run.batches(2)):
        run.step(batch, 2, s)
        steps += 1
    if device != "cpu":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    evaluate_model(run.model, run.vocab, run.data.dev[0], run.data.dev[1], run.device) if run.data.dev is not None else None
    dev_seconds = time.perf_counter() - start
    run.model.train()  # as `bcls train` does after each dev evaluation (cuDNN's GRU has no backward in eval mode)
    profile, dispatched = _phase_profile(run, list(run.batches(3)), profile_steps)
    return {"embed_dim": embed_dim, "steps": steps, "samples": len(run.data.table), "epoch_s": round(seconds, 2),
            "samples_per_s": round(len(run.data.table) / seconds, 1), "dev_eval_s": round(dev_seconds, 2),
            "phase_ms_per_step": profile,
            ("phase_kernel_launches" if device.startswith("cuda") else "phase_aten_ops"): dispatched}


def _compiled(data: str, labels: str, tmp: str, device: str, rounds: int, steps: int,
               tolerance: float) -> dict[str, Any]:
    """The default BCLS step with its loss eager and compiled, and with Adam's fused implementation (the whole
    update in one multi-tensor kernel instead of one per stage of the update), from the same initial weights on
    the same batches, interleaved; after the timed steps, each variant's weights are compared with the eager
    run's."""
    modes = {"eager": (None, False), "compile": ("default", False), "fused-adam": (None, True)} | (
        {"compile-cudagraphs": ("reduce-overhead", False)} if device.startswith("cuda") else {})
    runs, first, out = {}, {}, {}
    for name, (mode, fused) in modes.items():
        config = TrainConfig(data=data, labels=labels, out=str(Path(tmp) / f"compile-{name}"), batch_size=128,
                             warmup_epochs=0, device=device, seed=0)
        run = Trainer(config)
        if mode is not None:
            run.losses.main = torch.compile(run.losses.main, mode=mode, dynamic=False)
        if fused:
            groups = [{k: v for k, v in g.items() if k not in ("fused", "foreach")}
                      for g in run.optimizer.param_groups]
            run.optimizer = type(run.optimizer)(groups, fused=True)
            assert all(g["fused"] for g in run.optimizer.param_groups)
        batches = list(run.batches(1))
        start = time.perf_counter()
        first[name] = run.step(batches[0], 2, 0)  # compiles here
        out[name] = {"first_step_s": round(time.perf_counter() - start, 2)}
        runs[name] = (run, batches)
    for name in runs:
        diff = max(abs(first[name][k] - first["eager"][k]) for k in ("loss", "binary", "continuous"))
        if diff > tolerance:
            raise SystemExit(f"{name}: loss terms differ from eager by {diff:.4f} > {tolerance}")
        out[name]["max_abs_diff_to_eager"] = round(diff, 7)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(rounds):
        for name, (run, batches) in runs.items():
            for s in range(steps):
                start = time.perf_counter()
                run.step(batches[(1 + r * steps + s) % len(batches)], 2, s)
                if device != "cpu":
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["eager"])
    eager = runs["eager"][0].model.state_dict()
    for name, (run, _) in runs.items():
        med = statistics.median(times[name])
        weights = max(float((v.float() - eager[k].float()).abs().max()) for k, v in run.model.state_dict().items())
        out[name] |= {"ms_per_step": round(1000 * med, 2), "speedup": round(base / med, 3),
                      "max_abs_weight_diff_to_eager": weights}
        print(f"{name:<19} {1000 * med:>8.1f} ms/step  {base / med:>5.2f}× eager  (first step "
              f"{out[name]['first_step_s']:.1f} s, its loss terms within {out[name]['max_abs_diff_to_eager']:.1e}; "
              f"weights after {1 + rounds * steps} steps within {weights:.1e})")
    sys.stdout.flush()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--labels")
    parser.add_argument("--sizes", default="128,256,512")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (bf16 autocast)")
    parser.add_argument("--tolerance", type=float, default=0.02, help="max |CUDA − CPU| of a loss term")
    parser.add_argument("--epoch-dims", default="512,256",
                        help="joint-space sizes of the full-epoch runs ('' = none): train's default and the demo's")
    parser.add_argument("--profile-steps", type=int, default=20)
    parser.add_argument("--compile", action="store_true",
                        help="also time the loss eager vs torch.compile, and Adam's fused implementation")
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
            config = TrainConfig.from_dict(dict(data=data, labels=labels, out=str(Path(tmp.name) / name),
                                                batch_size=size, warmup_epochs=0, device=args.device, **kw))
            run = Trainer(config)
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
    if args.compile:
        results["compile@128"] = _compiled(data, labels, tmp.name, args.device, args.rounds, args.steps,
                                           args.tolerance)
    for dim in [int(d) for d in args.epoch_dims.split(",") if d]:
        epoch = _epoch(data, labels, tmp.name, args.device, dim, args.profile_steps)
        results[f"epoch@{dim}"] = epoch
        print(f"one epoch, embed_dim {dim}: {epoch['samples']} captions in {epoch['epoch_s']:.1f} s "
              f"({epoch['samples_per_s']:.0f} samples/s, {epoch['steps']} steps) + dev evaluation "
              f"{epoch['dev_eval_s']:.1f} s; ms per step: " +
              ", ".join(f"{k} {v:.1f}" for k, v in epoch["phase_ms_per_step"].items()))
        what, counts = next((k, v) for k, v in epoch.items() if k in ("phase_kernel_launches", "phase_aten_ops"))
        print(f"  {what[6:].replace('_', ' ')} per step: " + ", ".join(f"{k} {v}" for k, v in counts.items()) +
              f"; {sum(counts.values())} in all")
        sys.stdout.flush()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
