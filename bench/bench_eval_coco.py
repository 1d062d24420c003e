"""Benchmark: every evaluation metric on a COCO-sized problem (5,000 images × 25,000 captions).

Run ``python bench/bench_eval_coco.py [--out runs/eval_coco] [--cache DIR]``. It reads the real Karpathy COCO 5K
test captions (``bench/coco_test5k.py``, or ``--captions TSV``, keyed by COCO ids in the order of ECCV
Caption's ``coco_test_ids.npy``), builds their ``sbert`` labels with the label pipeline (the relevance for NCS and
rank correlation), draws random embeddings with some structure (each caption = its image's embedding + noise, so
recall is neither 0 nor 100), and times each metric of ``bcls eval`` on the full 5K × 25K similarity matrix:
R@K over 5K, the 5-fold 1K protocol, NCS@K and rank correlation against the sparse sbert labels, and ECCV Caption /
CxC through the ``eccv-caption`` package. Peak resident memory of the process is reported too. The last line is
one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

import coco_test5k  # bench/coco_test5k.py: where the COCO test captions come from
from bcls.data.captions import CaptionTable
from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
from bcls.pipeline.embedding.embed import EncoderSpec
from bcls.trainer.evaluation.evaluate import load_relevance, relevance_metrics
from bcls.trainer.evaluation.metrics import recall_metrics
from bcls.trainer.evaluation.protocols import coco_5fold_1k
from bcls.trainer.evaluation.eccv import eccv_metrics_from_sims, load_coco_test_ids



def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/eval_coco")
    parser.add_argument("--cache", default=None, help="embedding cache folder for the label build")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--noise", type=float, default=1.6)
    coco_test5k.add_argument(parser)
    args = parser.parse_args()
    rows = coco_test5k.rows(args.captions)
    table = CaptionTable(np.array([int(r["coco_image_id"]) for r in rows], dtype=np.int64),
                         np.array([int(r["coco_ann_id"]) for r in rows], dtype=np.int64),
                         tuple(r["caption"].strip() for r in rows), None, "test5k_captions.tsv", "table")
    coco_images, coco_captions, _ = load_coco_test_ids()
    assert np.array_equal(table.unique_images(), coco_images) and np.array_equal(table.caption_ids, coco_captions)
    figures: dict[str, float] = {}
    start = time.perf_counter()
    labels_dir = Path(args.out) / "labels"
    build_labels(LabelBuildConfig(captions=table.path, out=str(labels_dir), k=32, encoder=EncoderSpec(cache=args.cache)), table=table)
    figures["label_build_s"] = time.perf_counter() - start

    gen = torch.Generator().manual_seed(0)
    c2i = torch.from_numpy(table.image_index().copy())
    img = torch.nn.functional.normalize(torch.randn(5000, args.dim, generator=gen), dim=1)
    cap = torch.nn.functional.normalize(img[c2i] + args.noise * torch.randn(25000, args.dim, generator=gen)
                                        / args.dim ** 0.5, dim=1)
    base = _peak_mib()

    def timed(name, fn):
        t = time.perf_counter()
        result = fn()
        figures[f"{name}_s"] = time.perf_counter() - t
        return result

    sims = timed("similarities", lambda: img @ cap.T)
    r5k = timed("recall_5k", lambda: recall_metrics(sims, c2i))
    r1k = timed("coco_1k_5fold", lambda: coco_5fold_1k(sims, c2i))
    rel, known, _ = timed("load_relevance", lambda: load_relevance(labels_dir, table))
    semantic = timed("ncs_and_rank_correlation", lambda: relevance_metrics(sims, rel, c2i, known))
    eccv = timed("eccv_cxc", lambda: eccv_metrics_from_sims(sims, coco_images, coco_captions))
    figures["peak_rss_mib"] = _peak_mib()
    figures["peak_rss_before_metrics_mib"] = base
    figures["total_metrics_s"] = sum(v for k, v in figures.items() if k.endswith("_s") and k != "label_build_s")
    print(f"{'step':<28}{'seconds':>10}")
    for k, v in figures.items():
        if k.endswith("_s"):
            print(f"{k[:-2]:<28}{v:>10.2f}")
    print(f"peak RSS {figures['peak_rss_mib']:.0f} MiB (before the metrics {base:.0f} MiB)")
    print(f"5K rsum {r5k['rsum']:.1f}, 1K rsum {r1k['rsum']:.1f}, NCS@5 i2t {semantic['ncs_i2t_5']:.1f}, "
          f"Kendall i2t {semantic['rel_kendall_i2t']:.3f}, ECCV mAP@R i2t {eccv.get('eccv_i2t_map_at_r', float('nan')):.1f}")
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
