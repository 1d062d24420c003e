"""Benchmark of the ``spice`` (SPICE-like) label source: parse speed and scoring speed on real COCO captions, and
optionally its agreement with the Flickr8k CrowdFlower human judgments.

    OMP_NUM_THREADS=1 python bench/bench_spice.py [--n-captions 5000] [--captions TSV] [--agreement FOLDER]

Reads the COCO Karpathy test captions (``bench/coco_test5k.py``, or ``--captions TSV``) and, with ``--agreement
FOLDER``, the Flickr8k captions and CrowdFlower judgments; logs captions/s of the parse, pairs/s of the vectorised
F1, and the correlations.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

import coco_test5k  # bench/coco_test5k.py: where the COCO test captions come from
from bcls.pipeline.corpus import LabelCorpus
from bcls.pipeline.sources.spice import load_spacy, load_synsets, prepare_spice, spice_scores

log = logging.getLogger("bench_spice")


def _coco(n_captions: int, path: Path | None) -> LabelCorpus:
    """The first ``n_captions`` captions of the COCO Karpathy test split, grouped by image."""
    seen: dict[str, int] = {}
    texts: list[str] = []
    index: list[int] = []
    for row in coco_test5k.rows(path)[:n_captions]:
        texts.append(row["caption"])
        index.append(seen.setdefault(row["coco_image_id"], len(seen)))
    return LabelCorpus.from_groups(tuple(texts), np.asarray(index))


def main() -> None:
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-captions", type=int, default=5000)
    coco_test5k.add_argument(parser)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--agreement", type=Path, default=None, metavar="FLICKR8K_FOLDER",
                        help="also correlate with the Flickr8k CrowdFlower judgments: the folder holding "
                        "Flickr8k.token.txt and CrowdFlowerAnnotations.txt (from the Flickr8k dataset's "
                        "Flickr8k_text.zip)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    nlp = load_spacy()
    load_synsets()
    corpus = _coco(args.n_captions, args.captions)
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

        folder = args.agreement
        with tempfile.TemporaryDirectory() as out:
            result = evaluate_agreement(read_captions(folder / "Flickr8k.token.txt"),
                                        read_judgments(folder / "CrowdFlowerAnnotations.txt"), ["spice"], out=out)
        stats = result["overall"]["spice"]
        log.info("Flickr8k CrowdFlower agreement: spearman %.3f, kendall tau-b %.3f, tau-c %.3f, pearson %.3f "
                 "over %d pairs", stats["spearman"], stats["kendall"], stats["kendall_c"], stats["pearson"],
                 stats["pairs"])


if __name__ == "__main__":
    main()
