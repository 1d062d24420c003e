"""Benchmark: the IVF search of a large label build, and the candidate-key merge, at full-COCO size.

    python bench/bench_ivf.py --captions coco_full.parquet --cache DIR [--backend onnx-int8] [--queries 60000]

Embeds the distinct captions of the table through the embedding cache (a warm cache from a build embeds
nothing; the captions are shuffled with a fixed seed so their order says nothing about the index), then:

* IVF training with ``train_per_list`` 256 (faiss's default), 64 (the default of
  :class:`bcls.pipeline.search.indexes.IndexSpec`) and 32: training time, and recall@33 / @203 against exact search on 1,000
  sampled captions (the depths a K = 32 build searches);
* ``--queries`` of the indexed captions searched for 203 neighbours in their own order and in inverted-list order
  (:func:`bcls.pipeline.search.indexes.ivf_base_order`), alternating rounds, medians, with a check that both give the
  same neighbours and scores;
* ``--queries`` consecutive captions of the list order (from its middle, as a build searches them) against IVF
  indexes with float16 and float32 codes (the same lists: the k-means is the same), alternating rounds, medians;
  recall of each, and how many of the float32 index's neighbours the float16 one returns too;
* ``np.unique`` against :func:`bcls.pipeline.sources.hashing.sorted_unique` on as many random int64 keys as the
  build's candidate merge holds (``--keys``), with a check that both agree.

The last line printed is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bcls.data.captions import read_captions
from bcls.pipeline.embedding.embed import DEFAULT_MODEL, EmbeddingCache, cached_encoder, model_cache_id, sbert_encoder
from bcls.pipeline.search.indexes import IndexSpec, build_index, ivf_base_order, knn, recall_at_k
from bcls.pipeline.sources.hashing import sorted_unique


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=Path, required=True, help="caption table (bench_coco_full.py table)")
    parser.add_argument("--cache", type=Path, required=True, help="embedding cache folder (of a build)")
    parser.add_argument("--backend", default="torch", help="the backend whose cached embeddings to use")
    parser.add_argument("--queries", type=int, default=60000, help="captions searched in each order")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keys", type=int, default=24_294_599, help="keys of the unique timing (full COCO's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    texts = sorted(set(read_captions(args.captions).texts))
    cache = EmbeddingCache(args.cache, model_cache_id(DEFAULT_MODEL, args.backend))
    emb = cached_encoder(cache, lambda: sbert_encoder(DEFAULT_MODEL, backend=args.backend, cache=args.cache))(texts)
    rng = np.random.default_rng(0)
    emb = np.ascontiguousarray(emb[rng.permutation(len(emb))])
    sample = np.sort(rng.choice(len(emb), size=1000, replace=False))
    exact, _ = build_index(emb, IndexSpec("exact"), use_gpu=False)
    _, truth = knn(exact, emb[sample], 203, phase="exact search (recall sample)")

    training = {}
    index = None
    def recall(index):
        _, got = knn(index, emb[sample], 203, phase="IVF search (recall sample)")
        return {str(k): round(recall_at_k(got[:, :k], truth[:, :k]), 4) for k in (33, 203)}

    for per_list in (256, 32, 64):  # the default last: its index is the one searched below
        (index, info), seconds = timed(build_index, emb, IndexSpec("ivf", train_per_list=per_list), False)
        training[str(per_list)] = {"build_s": round(seconds, 1), "nlist": info["nlist"], "recall": recall(index)}
        print(f"train_per_list {per_list}: {training[str(per_list)]}", flush=True)

    order = ivf_base_order(index)
    rows = order[order < args.queries]  # the first --queries captions, list after list
    own, by_list = [], []
    for _ in range(args.rounds):
        (a, t_own) = timed(index.search, emb[:args.queries], 203)
        (b, t_list) = timed(index.search, np.ascontiguousarray(emb[rows]), 203)
        own.append(t_own)
        by_list.append(t_list)
        back = np.empty_like(rows)
        back[rows] = np.arange(len(rows))
        if not (np.array_equal(a[1], b[1][back]) and np.array_equal(a[0], b[0][back])):
            raise SystemExit("list-order search gave other neighbours than the search in caption order")
    search = {"queries": args.queries, "own_order_s": round(statistics.median(own), 2),
              "list_order_s": round(statistics.median(by_list), 2),
              "speedup": round(statistics.median(own) / statistics.median(by_list), 2), "same_results": True}
    print(f"search of {args.queries} captions: {search}", flush=True)

    (index32, _), seconds = timed(build_index, emb, IndexSpec("ivf", codes="float32"), False)
    middle = (len(order) - args.queries) // 2
    queries = np.ascontiguousarray(emb[order[middle:middle + args.queries]])
    t16, t32 = [], []
    for _ in range(args.rounds):
        (a, t) = timed(index.search, queries, 203)
        t16.append(t)
        (b, t) = timed(index32.search, queries, 203)
        t32.append(t)
    same = np.mean([len(np.intersect1d(x, y)) / len(y) for x, y in zip(a[1], b[1])])
    codes = {"queries": args.queries, "float16_s": round(statistics.median(t16), 2),
             "float32_s": round(statistics.median(t32), 2),
             "speedup": round(statistics.median(t32) / statistics.median(t16), 2),
             "recall_float16": training["64"]["recall"], "recall_float32": recall(index32),
             "float32_neighbours_also_in_float16": round(float(same), 5),
             "max_score_difference": float(np.abs(a[0][:, 0] - b[0][:, 0]).max()),
             "float32_build_s": round(seconds, 1)}
    print(f"IVF codes: {codes}", flush=True)
    del index32

    keys = rng.integers(0, 616767 * 123287, args.keys)
    ref, t_np = timed(np.unique, keys)
    got, t_ours = timed(sorted_unique, keys)
    if not np.array_equal(ref, got):
        raise SystemExit("sorted_unique differs from np.unique")
    unique = {"keys": args.keys, "np_unique_s": round(t_np, 2), "sorted_unique_s": round(t_ours, 2),
              "speedup": round(t_np / t_ours, 1), "numpy": np.__version__}
    print(f"unique of {args.keys} keys: {unique}", flush=True)
    out = {"captions": len(texts), "training": training, "search": search, "codes": codes, "unique": unique}
    print(json.dumps(out), file=sys.stdout, flush=True)
    return out


if __name__ == "__main__":
    main()
