"""Benchmark of the ``spice`` (SPICE-like) label source: parse speed and scoring speed on real COCO captions, and
optionally its agreement with the Flickr8k CrowdFlower human judgments.

    OMP_NUM_THREADS=1 python bench/bench_spice.py [--captions 5000] [--agreement]

Reads ``../shared/data/coco_karpathy/test5k_captions.tsv`` (and ``../shared/data/flickr8k/`` with
``--agreement``); logs captions/s of the parse, pairs/s of the vectorised F1, and the correlations.
"""

from __future__ import annotations

import argparse
import csv
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from bcls.pipeline.corpus import LabelCorpus
from bcls.pipeline.sources.spice import load_spacy, load_synsets, prepare_spice, spice_scores

log = logging.getLogger("bench_spice")
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _coco(n_captions: int) -> LabelCorpus:
    """The first ``n_captions`` captions of the COCO Karpathy test split, grouped by image."""
    seen: dict[str, int] = {}
    texts: list[str] = []
    index: list[int] = []
    with open(SHARED / "coco_karpathy" / "test5k_captions.tsv", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        for _row, _ann, image, caption in reader:
            if len(texts) == n_captions:
                break
            texts.append(caption)
            index.append(seen.setdefault(image, len(seen)))
    return LabelCorpus.from_groups(tuple(texts), np.asarray(index))


def main() -> None:
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--captions", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--agreement", action="store_true", help="also correlate with Flickr8k CrowdFlower")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    nlp = load_spacy()
    load_synsets()
    corpus = _coco(args.captions)
    t0 = time.perf_counter()
    tables = prepare_spice(corpus.texts, corpus.image_index, len(corpus.refs), nlp=nlp, batch_size=args.batch_size)
    seconds = time.perf_counter() - t0
    log.info("parse + tables: %d captions in %.1fs = %.0f captions/s (%.1f tuples per caption)",
             len(corpus.texts), seconds, len(corpus.texts) / seconds, float(tables.n_tuples.mean()))
    rng = np.random.default_rng(0)
    img = rng.integers(0, len(corpus.refs), args.pairs)
    cap = rng.integers(0, len(corpus.texts), args.pairs)
    t0 = time.perf_counter()
    values = spice_scores(tables, img, cap)
    seconds = time.perf_counter() - t0
    log.info("scoring: %d pairs in %.2fs = %.2g pairs/s (mean F1 %.3f)", args.pairs, seconds,
             args.pairs / seconds, float(np.nanmean(values)))

    if args.agreement:
        from bcls.data.captions import read_captions
        from bcls.data.judgments import read_judgments
        from bcls.pipeline.agreement import evaluate_agreement

        folder = SHARED / "flickr8k"
        with tempfile.TemporaryDirectory() as out:
            result = evaluate_agreement(read_captions(folder / "Flickr8k.token.txt"),
                                        read_judgments(folder / "CrowdFlowerAnnotations.txt"), ["spice"], out=out)
        stats = result["overall"]["spice"]
        log.info("Flickr8k CrowdFlower agreement: spearman %.3f, kendall tau-b %.3f, tau-c %.3f, pearson %.3f "
                 "over %d pairs", stats["spearman"], stats["kendall"], stats["kendall_c"], stats["pearson"],
                 stats["pairs"])


if __name__ == "__main__":
    main()
