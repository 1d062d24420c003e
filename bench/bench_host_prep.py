"""Benchmark: the CPU work of one training step's inputs at COCO's shape, as the trainer did it and as it does now.

Run ``python bench/bench_host_prep.py`` (defaults: batches of 128, 256 and 512 captions; a memory-mapped float16
feature file of ``--images`` images × 36 regions × 2,048 in a temporary folder, page-cached as a warm epoch's would
be; COCO's 113,287 training images with 5 captions each and 384-d unit caption embeddings for the dense ``sbert``
labels, max aggregate). Per batch size, in alternating rounds (medians reported), it times:

* ``features, cast on the host``: ``feats.batch(idx)``, the float32 copy (what the CPU did for every device, and
  still does for CPU training);
* ``features, stored dtype``: ``feats.batch(idx, dtype=None)``, what the host does now when the step runs on an
  accelerator (plus a pinned copy, timed too when CUDA is present), which then casts on the device;
* ``dense labels, numpy aggregate``: the trainer's former lookup (torch products, then the numpy definition
  :func:`~bcls.pipeline.sources.sbert.aggregate_similarities`), on the CPU whatever the device;
* ``dense labels, torch``: :class:`~bcls.trainer.batches.DenseSbertLabels` as it is now, here on the CPU (what CPU
  training pays; on an accelerator this work runs there, and this bench does not time it).

The device's own time is not measured here (``bench/coco_size_epoch.py`` does that on a GPU). The last line is one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bcls.data.features import load_features
from bcls.pipeline.corpus import LabelCorpus
from bcls.pipeline.sources.sbert import SbertSource, aggregate_similarities
from bcls.trainer.batches.labels import DenseSbertLabels


def numpy_aggregate_lookup(dense: DenseSbertLabels, images: torch.Tensor, captions: torch.Tensor) -> np.ndarray:
    """The former lookup: the same products in torch, then the numpy aggregate on the CPU."""
    refs = dense.refs[images]
    ref_emb = dense.embeddings[refs.clamp(min=0)]
    raw = torch.einsum("imd,jd->ijm", ref_emb, dense.embeddings[captions])
    valid = (refs >= 0)[:, None, :] & (refs[:, None, :] != captions[None, :, None])
    return aggregate_similarities(raw.numpy(), valid.numpy(), dense.source.aggregate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=20_000, help="images in the feature file (page-cached)")
    parser.add_argument("--coco-images", type=int, default=113_287, help="images behind the caption embeddings")
    parser.add_argument("--sizes", default="128,256,512")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=10, help="batches timed per round")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train_ims.npy"
        array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(args.images, 36, 2048))
        for lo in range(0, args.images, 1000):
            hi = min(args.images, lo + 1000)
            array[lo:hi] = rng.standard_normal((hi - lo, 36, 2048), dtype=np.float32).astype(np.float16)
        array.flush()
        del array
        feats = load_features(path, check_finite=False)
        n_caps = 5 * args.coco_images
        emb = rng.standard_normal((n_caps, 384), dtype=np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        image_index = np.repeat(np.arange(args.coco_images), 5)
        dense = DenseSbertLabels(LabelCorpus.from_groups(("",) * n_caps, image_index, emb), SbertSource())

        results: dict[str, dict[str, float]] = {}
        for size in (int(s) for s in args.sizes.split(",")):
            batches = []
            for _ in range(args.reps):
                rows = torch.from_numpy(rng.choice(n_caps, size, replace=False))
                batches.append((rng.choice(args.images, size), torch.from_numpy(image_index[rows.numpy()]), rows))
            ways = {
                "features, cast on the host": lambda b: feats.batch(b[0]),
                "features, stored dtype": lambda b: feats.batch(b[0], dtype=None),
                "dense labels, numpy aggregate": lambda b: numpy_aggregate_lookup(dense, b[1], b[2]),
                "dense labels, torch": lambda b: dense.lookup(b[1], b[2]),
            }
            if torch.cuda.is_available():
                ways["features, stored dtype, pinned"] = lambda b: torch.from_numpy(
                    feats.batch(b[0], dtype=None)).pin_memory()
            for b in batches[:1]:  # warm: first touches, allocator
                for way in ways.values():
                    way(b)
            times: dict[str, list[float]] = {name: [] for name in ways}
            for _ in range(args.rounds):
                for name, way in ways.items():
                    t0 = time.perf_counter()
                    for b in batches:
                        way(b)
                    times[name].append((time.perf_counter() - t0) / len(batches) * 1e3)
            b = batches[0]
            before = numpy_aggregate_lookup(dense, b[1], b[2])
            after = dense.lookup(b[1], b[2])[0].numpy()
            assert np.array_equal(np.nan_to_num(before), after), "torch labels differ from the numpy aggregate"
            results[str(size)] = {name: round(statistics.median(t), 2) for name, t in times.items()}
            print(f"batch {size}: " + ", ".join(f"{n} {v:.1f} ms" for n, v in results[str(size)].items()),
                  flush=True)
    print(json.dumps({"threads": args.threads, "images": args.images, "ms_per_batch": results,
                      "numpy": np.__version__, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
