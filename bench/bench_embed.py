"""Benchmark: the label pipeline's caption embedding against a bare ``SentenceTransformer.encode``.

Run ``python bench/bench_embed.py [--n 5000]``. Both embed the same real COCO captions
(``bench/coco_test5k.py``, or ``--captions TSV``) with the packaged all-MiniLM-L6-v2, batch 256, normalised.
The pipeline encoder (:func:`bcls.pipeline.embed.sbert_encoder`, no cache) sorts captions by length so padded
batches are tight and logs progress. Rounds alternate between the two (this machine is noisy); the median
throughput of each and their ratio are reported, and the embeddings are checked to agree. The last line is one
JSON object of the figures.

With ``--backends torch,onnx,onnx-int8`` (or any of :data:`bcls.pipeline.onnx_backend.BACKENDS`, e.g.
``openvino-int8``) it also times the pipeline encoder on each backend (ONNX and OpenVINO files exported on first
use, not timed: the export is timed apart) in the same alternating rounds, and reports each backend's
throughput ratio to ``torch`` and the cosine of its embeddings to the ``torch`` ones (mean, 1st percentile,
minimum) on all ``--n`` captions.

With ``--batch-sizes 32,64,128,256`` it instead times the pipeline encoder of each backend in ``--backends``
(default ``torch``) at each batch size, all in alternating rounds, and reports the captions/s of each against
batch 256 (the default before the CPU default became 64, :data:`bcls.pipeline.embed.CPU_BATCH_SIZE`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import coco_test5k  # bench/coco_test5k.py: where the COCO test captions come from
from bcls.pipeline.embed import load_sentence_model, sbert_encoder



def sweep_batch_sizes(texts: list[str], backends: list[str], sizes: list[int], rounds: int) -> None:
    """Captions/s of each (backend, batch size), alternating rounds; ratios to batch 256 of the same backend."""
    encoders = {(b, n): sbert_encoder(batch_size=n, backend=b) for b in backends for n in sizes}
    rates: dict[tuple[str, int], list[float]] = {key: [] for key in encoders}
    for encode in encoders.values():
        encode(texts[:256])  # warm-up
    for _ in range(rounds):
        for key, encode in encoders.items():
            start = time.perf_counter()
            encode(texts)
            rates[key].append(len(texts) / (time.perf_counter() - start))
    figures: dict[str, dict[str, float]] = {}
    for (backend, size), values in rates.items():
        rate = statistics.median(values)
        base = statistics.median(rates[(backend, 256)]) if (backend, 256) in rates else rate
        figures.setdefault(backend, {})[str(size)] = round(rate, 1)
        print(f"{backend:<10} batch {size:>4}: {rate:7.0f} captions/s ({rate / base:.2f}× batch 256)")
    print(json.dumps({"captions": len(texts), "rounds": rounds, "per_s": figures}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    coco_test5k.add_argument(parser)
    parser.add_argument("--backends", default="", help="also time these sbert_encoder backends, e.g. "
                        "torch,onnx-int8,openvino-int8")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batch-sizes", default="", help="compare these batch sizes instead (see above)")
    args = parser.parse_args()
    rows = coco_test5k.rows(args.captions)
    texts = [r["caption"] for r in rows[: args.n]]
    if args.batch_sizes:
        sweep_batch_sizes(texts, [b for b in args.backends.split(",") if b] or ["torch"],
                          [int(b) for b in args.batch_sizes.split(",")], args.rounds)
        return
    model = load_sentence_model()
    ours = sbert_encoder(batch_size=args.batch_size)
    backends = [b for b in args.backends.split(",") if b]
    encoders, export_s = {}, {}
    for backend in backends:
        start = time.perf_counter()
        encoders[backend] = sbert_encoder(batch_size=args.batch_size, backend=backend)
        export_s[backend] = round(time.perf_counter() - start, 2)
    rates: dict[str, list[float]] = {"bare": [], "pipeline": []} | {b: [] for b in backends}
    out = {}
    for _ in range(args.rounds):
        start = time.perf_counter()
        out["bare"] = model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False)
        rates["bare"].append(len(texts) / (time.perf_counter() - start))
        start = time.perf_counter()
        out["pipeline"] = ours(texts)
        rates["pipeline"].append(len(texts) / (time.perf_counter() - start))
        for backend, encode in encoders.items():
            start = time.perf_counter()
            out[backend] = encode(texts)
            rates[backend].append(len(texts) / (time.perf_counter() - start))
    diff = float(np.abs(out["bare"] - out["pipeline"]).max())
    bare, pipe = statistics.median(rates["bare"]), statistics.median(rates["pipeline"])
    print(f"{len(texts)} captions, {args.rounds} rounds each")
    print(f"bare SentenceTransformer.encode   {bare:8.0f} captions/s")
    print(f"pipeline sbert_encoder            {pipe:8.0f} captions/s   ({100 * pipe / bare:.0f} % of bare)")
    print(f"max |difference| of the embeddings {diff:.2e}")
    figures = {"captions": len(texts), "bare_per_s": round(bare, 1), "pipeline_per_s": round(pipe, 1),
               "ratio": round(pipe / bare, 3), "max_abs_diff": diff}
    for backend in backends:
        rate = statistics.median(rates[backend])
        cos = (out[backend] * out["pipeline"]).sum(1)
        figures[backend] = {"per_s": round(rate, 1), "ratio_to_torch": round(rate / pipe, 3),
                            "cos_mean": round(float(cos.mean()), 5), "cos_p01": round(float(np.quantile(cos, 0.01)), 5),
                            "cos_min": round(float(cos.min()), 5), "setup_s": export_s[backend]}
        print(f"backend {backend:<10} {rate:8.0f} captions/s ({rate / pipe:.2f}× torch), cosine to torch: mean "
              f"{cos.mean():.4f}, 1st percentile {np.quantile(cos, 0.01):.4f}, min {cos.min():.4f}; "
              f"load/export {export_s[backend]} s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
