"""A training epoch at COCO size: samples/s with data loading, peak memory and GPU utilisation, with and without the
Kendall term — the bcls half of issue 33's GPU comparison with VSE∞ (whose own ``train.py`` runs beside it on the same
folder; see ``bench/gpu_coco_train.sh``).

    python bench/coco_size_epoch.py make --out /tmp/coco_shape                   # 113,287 × 36 × 2,048 float16
    python bench/coco_size_epoch.py labels --data /tmp/coco_shape --device cuda  # sbert labels of its captions
    python bench/coco_size_epoch.py epoch --data /tmp/coco_shape --device cuda   # triplet, then BCLS

``make`` writes a precomp folder of COCO's training shape on this machine's disk: random float16 region features
(written in chunks, never whole in memory) and five captions per image, drawn from ``--captions`` (a caption table,
e.g. COCO's) or made of random words; a 1,000-image ``dev`` split beside it. ``labels`` builds sbert labels of
its train captions in ``DATA/labels``. ``epoch`` trains ``--model vse-gpo`` at ``--batch-size 128`` for ``--steps``
steps (default: one whole epoch) with λ = 0 (the triplet loss alone) and with bcls's default λ and dense
in-batch labels, both after the warm-up (the Kendall term is on), and reports for each: samples/s over the timed
steps (batches drawn by the sampler and gathered from the memory-mapped features, as ``bcls train`` does), the
time the step spent computing the in-batch labels, peak GPU memory (``torch.cuda.max_memory_allocated``) and the
GPU utilisation sampled by ``nvidia-smi`` every 200 ms. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

WORDS = ("a", "man", "woman", "dog", "cat", "street", "table", "pizza", "red", "large", "small", "sitting", "riding",
         "on", "with", "of", "the", "in", "next", "to", "bus", "train", "plate", "field", "grass", "white", "two")


def make(out: Path, images: int, regions: int, dim: int, dev_images: int, captions: str | None, seed: int) -> None:
    """The precomp folder: ``train`` and ``dev`` splits of ``images`` and ``dev_images`` images."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    texts: list[str] | None = None
    if captions:
        from bcls.data.captions import read_captions

        texts = list(read_captions(captions).texts)
    for split, n in (("train", images), ("dev", dev_images)):
        feats = np.lib.format.open_memmap(out / f".{split}_ims.npy.part", mode="w+", dtype=np.float16,
                                          shape=(n, regions, dim))
        t0, chunk = time.perf_counter(), max(1, 2**28 // (regions * dim * 2))  # 256 MiB at a time
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            feats[lo:hi] = rng.standard_normal((hi - lo, regions, dim), dtype=np.float32).astype(np.float16)
            print(f"{split}: {hi}/{n} images ({hi / (time.perf_counter() - t0):.0f}/s)", file=sys.stderr, flush=True)
        feats.flush()
        del feats
        (out / f".{split}_ims.npy.part").rename(out / f"{split}_ims.npy")
        lines = (texts[i] for i in rng.integers(0, len(texts), 5 * n)) if texts else (
            " ".join(rng.choice(WORDS, int(rng.integers(6, 14)))) for _ in range(5 * n))
        (out / f"{split}_caps.txt").write_text("\n".join(t.replace("\n", " ") for t in lines) + "\n")


def labels(data: Path, device: str) -> None:
    from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
    from bcls.pipeline.embedding.embed import EncoderSpec

    build_labels(LabelBuildConfig(captions=str(data), split="train", out=str(data / "labels"), sources=("sbert",),
                                  k=32, encoder=EncoderSpec(device=device)))


class GpuSampler:
    """``nvidia-smi`` utilisation samples (percent, every 200 ms) while the block runs; none without a GPU."""

    def __enter__(self) -> "GpuSampler":
        self.samples: list[float] = []
        try:
            self.proc: subprocess.Popen | None = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE, text=True)
        except OSError:
            self.proc = None
            return self
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.samples.append(float(line.split(",")[0]))
            except ValueError:
                pass

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def summary(self) -> dict[str, float] | None:
        if not self.samples:
            return None
        return {"mean": round(float(np.mean(self.samples)), 1), "median": float(np.median(self.samples)),
                "samples": len(self.samples)}


def epoch(data: Path, device: str, steps: int | None, batch_size: int, lam: float, host_inputs: bool = False) -> dict:
    """One variant's figures. ``host_inputs``: the trainer's former way, for an A/B on the same GPU: features cast
    to float32 on the CPU and dense labels computed on the CPU (bench/bench_host_prep.py times that host work)."""
    import torch

    import bcls.trainer.train as train_module
    from bcls.trainer.batches.labels import DenseSbertLabels
    from bcls.trainer.config import TrainConfig
    from bcls.trainer.train import Trainer

    config = TrainConfig(data=str(data), labels=str(data / "labels") if lam > 0 else None, out=str(data / "run"),
                         model="vse-gpo", device=device, batch_size=batch_size, lam=lam, warmup_epochs=0, epochs=1)
    run = Trainer(config)
    image_batch = train_module.image_batch
    if host_inputs:
        train_module.image_batch = lambda feats, idx, dev: torch.from_numpy(feats.batch(idx)).to(dev)
        if run.labels is not None and isinstance(run.labels.in_batch, DenseSbertLabels):
            run.labels.in_batch = DenseSbertLabels(run.labels.in_batch.corpus, run.labels.in_batch.source, "cpu")
    n_steps = min(steps or run.steps_per_epoch, run.steps_per_epoch)
    label_seconds = 0.0
    targets = run.targets

    def timed_targets(batch):  # the in-batch labels' share of the step (on the device, unless host_inputs)
        nonlocal label_seconds
        t = time.perf_counter()
        out = targets(batch)
        label_seconds += time.perf_counter() - t
        return out

    run.targets = timed_targets  # type: ignore[method-assign]
    cuda = run.device.type == "cuda"
    batches = iter(run.batches(1))
    for step in range(3):  # warm the allocator, cuDNN's GRU plans and the label lookup
        run.step(next(batches), 1, step)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    label_seconds = 0.0
    with GpuSampler() as gpu:
        t0 = time.perf_counter()
        for step in range(3, n_steps):
            run.step(next(batches), 1, step)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    train_module.image_batch = image_batch
    timed = n_steps - 3
    return {"lam": lam, "host_inputs": host_inputs, "steps": timed, "steps_per_epoch": run.steps_per_epoch,
            "batch": batch_size,
            "samples_per_s": round(timed * batch_size / seconds, 1), "seconds": round(seconds, 2),
            "label_share": round(label_seconds / seconds, 3),
            "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            "gpu_utilisation": gpu.summary()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("make")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--images", type=int, default=113_287)
    p.add_argument("--regions", type=int, default=36)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--dev-images", type=int, default=1000)
    p.add_argument("--captions", help="a caption table to draw the captions from (else random words)")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("labels")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p = sub.add_parser("epoch")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, help="steps per variant (default: one whole epoch)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lams", default="0,0.3", help="λ of each variant (0: the triplet loss alone)")
    p.add_argument("--host-inputs", action="store_true",
                   help="add a variant of the last λ with the former host-side inputs (features cast and dense "
                        "labels computed on the CPU)")
    args = parser.parse_args()
    if args.what == "make":
        make(args.out, args.images, args.regions, args.dim, args.dev_images, args.captions, args.seed)
    elif args.what == "labels":
        labels(args.data, args.device)
    else:
        lams = [float(lam) for lam in args.lams.split(",")]
        results = [epoch(args.data, args.device, args.steps, args.batch_size, lam) for lam in lams]
        if args.host_inputs:
            results.append(epoch(args.data, args.device, args.steps, args.batch_size, lams[-1], host_inputs=True))
        for r in results:
            variant = f"λ {r['lam']}" + (" (host inputs)" if r["host_inputs"] else "")
            print(f"{variant}: {r['samples_per_s']} samples/s over {r['steps']} steps, labels "
                  f"{100 * r['label_share']:.1f} % of the time, peak GPU {r['peak_gpu_gib']} GiB, "
                  f"GPU utilisation {r['gpu_utilisation']}", file=sys.stderr)
        if len(lams) == 2:
            print(f"step time BCLS / triplet: {results[0]['samples_per_s'] / results[1]['samples_per_s']:.3f}",
                  file=sys.stderr)
        if args.host_inputs:
            ratio = results[-2]["samples_per_s"] / results[-1]["samples_per_s"]
            print(f"samples/s now / with host inputs: {ratio:.3f}", file=sys.stderr)
        print(json.dumps({"device": args.device, "variants": results}))


if __name__ == "__main__":
    main()
