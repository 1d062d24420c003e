"""Exact vs IVF-Flat vs HNSW caption neighbours on the real COCO Karpathy test captions (25,000).

Embeds the captions with the packaged all-MiniLM-L6-v2 through the embedding cache (so only the first run
embeds), then for each index: build time, search time of every caption's top-K neighbours, and recall@K against
the exact search. The last line printed is a JSON object with every figure.

    OMP_NUM_THREADS=2 python bench/bench_neighbours.py [--k 33] [--cache DIR] [--captions FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path


import coco_test5k  # bench/coco_test5k.py: where the COCO test captions come from
from bcls.pipeline.embed import (DEFAULT_MODEL, EmbeddingCache, cached_encoder, default_cache_dir, model_cache_id,
                                 sbert_encoder)
from bcls.pipeline.neighbours import IndexSpec, build_index, faiss_gpu_count, knn, recall_at_k

log = logging.getLogger("bench_neighbours")
def read_texts(path: Path | None) -> list[str]:
    """The ``caption`` column of the Karpathy test captions (``bench/coco_test5k.py``; or ``text`` of a bcls
    caption table given as a TSV)."""
    rows = coco_test5k.rows(path)
    column = "caption" if "caption" in rows[0] else "text"
    return [r[column].strip() for r in rows]


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; return (and print last) the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    coco_test5k.add_argument(parser)
    parser.add_argument("--k", type=int, default=33, help="neighbours per caption (K + 1 of a build with K=32)")
    parser.add_argument("--cache", type=Path, default=None, help="embedding cache folder")
    parser.add_argument("--nprobe", type=int, nargs="*", default=[8, 32])
    parser.add_argument("--ef-search", type=int, nargs="*", default=[64, 128])
    parser.add_argument("--gpu", action="store_true", help="allow GPU indexes (default: CPU, comparable figures)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    texts = read_texts(args.captions)
    t0 = time.perf_counter()
    cache = EmbeddingCache(args.cache or default_cache_dir(), model_cache_id(DEFAULT_MODEL))
    emb = cached_encoder(cache, lambda: sbert_encoder(DEFAULT_MODEL))(texts)
    embed_s = time.perf_counter() - t0
    use_gpu = None if args.gpu else False

    results = []
    truth = None
    configs = [IndexSpec("exact")]
    configs += [IndexSpec("ivf", nprobe=p) for p in args.nprobe]
    configs += [IndexSpec("hnsw", ef_search=e) for e in args.ef_search]
    for spec in configs:
        t0 = time.perf_counter()
        index, info = build_index(emb, spec, use_gpu)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, ids = knn(index, emb, args.k)
        search_s = time.perf_counter() - t0
        if truth is None:
            truth = ids
        row = {"index": spec.settings() | {"description": info["description"]}, "device": info["device"],
               "build_s": round(build_s, 3), "search_s": round(search_s, 3),
               "queries_per_s": round(len(emb) / search_s, 1),
               "recall_at_k": {str(k): round(recall_at_k(ids[:, :k], truth[:, :k]), 5)
                               for k in sorted({1, 10, args.k})}}
        log.info("%s", row)
        results.append(row)
    out = {"captions": len(texts), "dim": int(emb.shape[1]), "k": args.k, "embed_s": round(embed_s, 2),
           "gpus_visible": faiss_gpu_count(), "results": results}
    print(json.dumps(out), file=sys.stdout, flush=True)
    return out


if __name__ == "__main__":
    main()
