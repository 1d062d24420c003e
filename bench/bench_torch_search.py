"""Benchmark: the torch exact search (:class:`bcls.pipeline.search.torch_search.TorchExactIndex`) with one ``torch.topk``
per row against the two exact alternatives of :func:`~bcls.pipeline.search.torch_search.select_topk` (``chunk:N``,
``threshold:G``), side by side.

Run ``python bench/bench_torch_search.py --embeddings LABELS/_caption_embeddings.npy --device cuda`` (a label
build's stored caption embeddings; without ``--embeddings``, random unit vectors of ``--n`` rows). The first
``--queries`` rows are searched against all rows for ``--k`` neighbours (203: what full COCO's caption side asks
for) with each of ``--variants`` (``torch`` = one ``torch.topk`` per row; it must come first), in alternating rounds
(the median is reported). Also timed: the float16 score matrices alone, without any top-k (the floor of this
search). Every variant's neighbours are compared with those of ``torch``: the share of rows with identical ids,
of rows with identical scores, and the largest score difference. Duplicate captions (full COCO has 592,623
distinct texts of 616,767) have identical embeddings, and such exact ties may come back in another order: their
ids differ while the scores are the same. The last line printed is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from bcls.pipeline.search.torch_search import TorchExactIndex


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings", default=None)
    parser.add_argument("--n", type=int, default=100_000, help="rows of random unit vectors without --embeddings")
    parser.add_argument("--queries", type=int, default=50_000)
    parser.add_argument("--k", type=int, default=203)
    parser.add_argument("--variants", default="torch,chunk:4096,chunk:16384,threshold:1024,threshold:4096,"
                                                  "threshold:16384")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if args.embeddings:
        base = np.load(args.embeddings).astype(np.float32)
    else:
        base = np.random.default_rng(0).standard_normal((args.n, 384)).astype(np.float32)
        base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = base[: args.queries]
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    variants = args.variants.split(",")
    low = torch.float16 if args.device.startswith("cuda") else torch.bfloat16
    indexes = {v: TorchExactIndex(base, args.device, low_precision=low, topk=v) for v in variants}
    first = indexes[variants[0]]

    def scores_only() -> None:  # the same sub-blocks' float16 products, no top-k
        step = first.block_rows
        with torch.no_grad():
            for lo in range(0, len(queries), step):
                q = torch.from_numpy(queries[lo:lo + step]).to(first.device).to(first.low.dtype)
                (q @ first.low.T).max()  # something must read the matrix
        sync()

    for index in indexes.values():
        index.search(queries[:2048], args.k)  # warm-up (kernels, allocator)
    scores_only()
    rates: dict[str, list[float]] = {v: [] for v in variants} | {"scores_only": []}
    out = {}
    for _ in range(args.rounds):
        for v, index in indexes.items():
            sync()
            start = time.perf_counter()
            out[v] = index.search(queries, args.k)
            sync()
            rates[v].append(len(queries) / (time.perf_counter() - start))
        start = time.perf_counter()
        scores_only()
        rates["scores_only"].append(len(queries) / (time.perf_counter() - start))
    ref_scores, ref_ids = out[variants[0]]
    figures: dict[str, object] = {"base": len(base), "queries": len(queries), "k": args.k, "device": args.device,
                                  "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None}
    base_rate = statistics.median(rates[variants[0]])
    print(f"{len(queries)} queries against {len(base)} vectors, k = {args.k}, {args.rounds} rounds")
    for name, values in rates.items():
        rate = statistics.median(values)
        row: dict[str, float] = {"queries_per_s": round(rate, 1), "ratio": round(rate / base_rate, 3)}
        if name != "scores_only":
            scores, ids = out[name]
            row |= {"same_id_rows": round(float((ids == ref_ids).all(axis=1).mean()), 6),
                    "same_score_rows": round(float((scores == ref_scores).all(axis=1).mean()), 6),
                    "max_score_diff": float(np.abs(scores - ref_scores).max())}
        figures[name] = row
        print(f"{name.replace('_', ' '):<16} {rate:10.0f} queries/s  "
              f"{rate / base_rate:5.2f}× one topk" + (f"  identical rows: ids {row['same_id_rows']:.4f}, "
                                                       f"scores {row['same_score_rows']:.4f}, "
                                                       f"max score diff {row['max_score_diff']:.1e}"
                                                       if "same_id_rows" in row else ""))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
