"""Exact vs IVF-Flat vs HNSW caption neighbours on the real COCO Karpathy test captions (25,000).

Embeds the captions with the packaged all-MiniLM-L6-v2 through the embedding cache (so only the first run
embeds), then for each index: build time, search time of every caption's top-K neighbours, and recall@K against
the exact search; then the image-side candidate merge on the exact lists, on one thread and on one thread per core
(same pairs). The last line printed is a JSON object with every figure.

    OMP_NUM_THREADS=2 python bench/bench_neighbours.py [--k 33] [--cache DIR] [--captions FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

import coco_test5k  # bench/coco_test5k.py: where the COCO test captions come from
from bcls.pipeline.embedding.embed import (DEFAULT_MODEL, EmbeddingCache, cached_encoder, default_cache_dir, model_cache_id,
                                 sbert_encoder)
from bcls.pipeline.search.indexes import IndexSpec, build_index, faiss_gpu_count, knn, recall_at_k

log = logging.getLogger("bench_neighbours")
def read_texts(path: Path | None) -> list[str]:
    """The ``caption`` column of the Karpathy test captions (``bench/coco_test5k.py``; or ``text`` of a bcls
    caption table given as a TSV)."""
    rows = coco_test5k.rows(path)
    column = "caption" if "caption" in rows[0] else "text"
    return [r[column].strip() for r in rows]


def image_positions(path: Path | None) -> np.ndarray:
    """The image position of each caption (order of first appearance of its COCO image id)."""
    rows = coco_test5k.rows(path)
    column = "coco_image_id" if "coco_image_id" in rows[0] else "image_id"
    seen: dict[str, int] = {}
    return np.array([seen.setdefault(r[column], len(seen)) for r in rows], dtype=np.int64)


def merge_timings(ids: np.ndarray, emb: np.ndarray, image_index: np.ndarray, k: int, rounds: int) -> dict:
    """The image-side candidate merge (``_image_side``, K = k − 1) of the exact neighbour lists on one thread and
    on one thread per core, in alternating rounds (medians), with a check that both give the same pairs."""
    import statistics

    from bcls.pipeline.search import neighbours

    scores = np.einsum("nd,nkd->nk", emb, emb[ids]).astype(np.float32)
    neighbours.MIN_ROWS_PER_THREAD = 1000  # the 25k test captions are below the library's own threshold
    times: dict[str, list[float]] = {"one_thread": [], "all_cores": []}
    for _ in range(rounds):
        for name, threads in (("one_thread", 1), ("all_cores", None)):
            t0 = time.perf_counter()
            got = neighbours._image_side(scores, ids, image_index, k - 1, threads=threads)
            times[name].append(time.perf_counter() - t0)
            if name == "one_thread":
                first = got
            else:
                assert all(np.array_equal(a, b) for a, b in zip(got, first))
    med = {name: statistics.median(v) for name, v in times.items()}
    return {"one_thread_s": round(med["one_thread"], 4), "all_cores_s": round(med["all_cores"], 4),
            "speedup": round(med["one_thread"] / med["all_cores"], 2), "pairs": int(len(first[0]))}


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; return (and print last) the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    coco_test5k.add_argument(parser)
    parser.add_argument("--k", type=int, default=33, help="neighbours per caption (K + 1 of a build with K=32)")
    parser.add_argument("--cache", type=Path, default=None, help="embedding cache folder")
    parser.add_argument("--nprobe", type=int, nargs="*", default=[8, 32])
    parser.add_argument("--ef-search", type=int, nargs="*", default=[64, 128])
    parser.add_argument("--gpu", action="store_true", help="allow GPU indexes (default: CPU, comparable figures)")
    parser.add_argument("--merge-rounds", type=int, default=5, help="alternating rounds of the merge timing")
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
    merge = merge_timings(truth, emb, image_positions(args.captions), args.k, args.merge_rounds)
    log.info("image-side candidate merging: %s", merge)
    out = {"captions": len(texts), "dim": int(emb.shape[1]), "k": args.k, "embed_s": round(embed_s, 2),
           "gpus_visible": faiss_gpu_count(), "results": results, "image_side_merge": merge}
    print(json.dumps(out), file=sys.stdout, flush=True)
    return out


if __name__ == "__main__":
    main()
