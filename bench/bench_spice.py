"""Benchmark of the ``spice`` (SPICE-like) label source: parse speed and scoring speed on real COCO captions, and
optionally its agreement with the Flickr8k CrowdFlower human judgments.

    OMP_NUM_THREADS=1 python bench/bench_spice.py [--n-captions 5000] [--captions TSV] [--agreement FOLDER]
    OMP_NUM_THREADS=1 python bench/bench_spice.py --ops [--rounds 3] [--coco-full coco_full.parquet --offset 100000]
    OMP_NUM_THREADS=1 python bench/bench_spice.py --memo [--rounds 3] [--coco-full coco_full.parquet --offset 100000]

Reads the COCO Karpathy test captions (``bench/coco_test5k.py``, or ``--captions TSV``) and, with ``--agreement
FOLDER``, the Flickr8k captions and CrowdFlower judgments; logs captions/s of the parse, pairs/s of the vectorised
F1, and the correlations.

With ``--ops`` it instead times the parse (spaCy pipeline plus the tuple rules) with thinc's bundled BLIS and with
numpy's matmul (:func:`bcls.pipeline.sources.spacy_speed.use_matmul_ops`) in alternating rounds on the same
captions, and checks that every caption gets the same scene graph both ways; ``--coco-full`` takes the captions
from the full-COCO table of ``bench/bench_coco_full.py table`` (from row ``--offset``) instead. The last line is
one JSON object of the figures. ``--memo`` likewise compares spaCy's attribute ruler with
:class:`bcls.pipeline.sources.spacy_speed.MemoAttributeRuler` (both on numpy matmul; ``--ops`` compares them both
with spaCy's own ruler).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import coco_test5k  # bench/coco_test5k.py: where the COCO test captions come from
from bcls.pipeline.corpus import LabelCorpus
from bcls.pipeline.sources.spice import load_spacy, load_synsets, prepare_spice, spice_scores
from bcls.pipeline.sources.spice_graph import scene_graph

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


def compare_pipelines(texts: list[str], rounds: int, batch_size: int, pipelines: dict) -> dict[str, float | int]:
    """Parse ``texts`` with the two pipelines (before, after), alternating ``rounds`` times; the median rates,
    their ratio and how many captions got the same scene graph both ways."""
    graphs: dict[str, list] = {}
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for name, nlp in pipelines.items():  # warm-up
        list(nlp.pipe(texts[:256], batch_size=batch_size))
    for _ in range(rounds):
        for name, nlp in pipelines.items():
            t0 = time.perf_counter()
            graphs[name] = [scene_graph(doc) for doc in nlp.pipe(texts, batch_size=batch_size)]
            rates[name].append(len(texts) / (time.perf_counter() - t0))
            log.info("%s: %.0f captions/s", name, rates[name][-1])
    before, after = pipelines
    same = sum(a == b for a, b in zip(graphs[before], graphs[after]))
    rate = {name: statistics.median(values) for name, values in rates.items()}
    return {"captions": len(texts), "rounds": rounds, f"{before}_per_s": round(rate[before], 1),
            f"{after}_per_s": round(rate[after], 1), "ratio": round(rate[after] / rate[before], 3),
            "same_graphs": same}


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
    parser.add_argument("--ops", action="store_true", help="compare thinc's BLIS with numpy matmul (see above)")
    parser.add_argument("--memo", action="store_true", help="compare spaCy's attribute ruler with the memo")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--coco-full", type=Path, default=None,
                        help="with --ops: the Parquet table of bench/bench_coco_full.py table")
    parser.add_argument("--offset", type=int, default=0, help="with --coco-full: first row")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.ops or args.memo:
        if args.coco_full is not None:
            import pyarrow.parquet as pq

            texts = pq.read_table(args.coco_full, columns=["text"]).column("text").to_pylist()
            texts = texts[args.offset:args.offset + args.n_captions]
        else:
            texts = list(_coco(args.n_captions, args.captions).texts)
        pipelines = ({"blis": load_spacy(matmul=False, memo=False), "matmul": load_spacy(memo=False)} if args.ops
                     else {"ruler": load_spacy(memo=False), "memo": load_spacy()})
        print(json.dumps(compare_pipelines(texts, args.rounds, args.batch_size, pipelines)))
        return

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
        from bcls.pipeline.fidelity.agreement import evaluate_agreement

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
