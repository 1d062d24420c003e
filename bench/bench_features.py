"""Throughput of ``bcls features extract``: generated 224-px images through a ViT-B/32-sized CLIP vision tower.

    python bench/bench_features.py --images 10000 --device cuda --batch-size 256     # a GPU machine
    python bench/bench_features.py --images 256                                      # CPU

No weights are downloaded: the tower has CLIP ViT-B/32's shape (12 layers, width 768, 32-px patches, 224-px input)
with random weights, so the compute per image is the real model's while the values mean nothing. Images are PNGs
of random noise (decoding them is part of the measured time). Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--regions", action="store_true")
    args = parser.parse_args()

    import torch
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    from bcls.data.captions import CaptionTable
    from bcls.pipeline.features import extract_features

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        (root / "images").mkdir()
        for i in range(args.images):
            Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        made = time.perf_counter() - t0
        torch.manual_seed(0)
        CLIPVisionModel(CLIPVisionConfig()).save_pretrained(root / "encoder")  # ViT-B/32 shape
        CLIPImageProcessor().save_pretrained(root / "encoder")
        table = CaptionTable.from_lists(np.arange(args.images), np.arange(args.images),
                                        [f"image {i}" for i in range(args.images)])
        t0 = time.perf_counter()
        extract_features(table, root / "images", root / "feats", str(root / "encoder"), regions=args.regions,
                         batch_size=args.batch_size, device=args.device)
        seconds = time.perf_counter() - t0
    rate = args.images / seconds
    print(f"{'images':>8} {'device':>8} {'batch':>6} {'seconds':>9} {'images/s':>9}")
    print(f"{args.images:>8} {args.device:>8} {args.batch_size:>6} {seconds:>9.1f} {rate:>9.1f}")
    print(json.dumps({"images": args.images, "device": args.device, "batch_size": args.batch_size,
                      "regions": args.regions, "seconds": round(seconds, 2), "images_per_s": round(rate, 1),
                      "image_generation_s": round(made, 2), "torch_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
