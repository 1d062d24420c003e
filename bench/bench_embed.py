"""Benchmark: the label pipeline's caption embedding against a bare ``SentenceTransformer.encode``.

Run ``python bench/bench_embed.py [--n 5000]``. Both embed the same real COCO captions
(``bench/coco_test5k.py``, or ``--captions TSV``) with the packaged all-MiniLM-L6-v2, batch 256, normalised.
The pipeline encoder (:func:`bcls.pipeline.embedding.embed.sbert_encoder`, no cache) sorts captions by length so padded
batches are tight and logs progress. Rounds alternate between the two (this machine is noisy); the median
throughput of each and their ratio are reported, and the embeddings are checked to agree. The last line is one
JSON object of the figures.

With ``--backends torch,onnx,onnx-int8`` (or any of :data:`bcls.pipeline.embedding.onnx_backend.BACKENDS`, e.g.
``openvino-int8``) it also times the pipeline encoder on each backend (ONNX and OpenVINO files exported on first
use, not timed: the export is timed apart) in the same alternating rounds, and reports each backend's
throughput ratio to ``torch`` and the cosine of its embeddings to the ``torch`` ones (mean, 1st percentile,
minimum) on all ``--n`` captions.

With ``--batch-sizes 32,64,128,256`` it instead times the pipeline encoder of each backend in ``--backends``
(default ``torch``) at each batch size, all in alternating rounds, and reports the captions/s of each against
batch 256 (the default before the CPU default became 64, :data:`bcls.pipeline.embedding.embed.CPU_BATCH_SIZE`).

With ``--tokeniser`` it instead times the tokenisation alone: the model's own ``preprocess`` (what
``SentenceTransformer.encode`` calls per batch) against :class:`bcls.pipeline.embedding.tokens.FastTokenizer` (one Rust call
for all texts, then padding per batch), alternating rounds, on length-sorted batches of ``--batch-size``, and checks
that every batch's arrays are identical.

``--device cuda`` runs the torch model on the GPU (the ``bare`` library loop against the pipeline's
:func:`bcls.pipeline.embedding.embed.torch_embed`, which there tokenises batch by batch while the GPU works; also timed:
the same loop with each call's texts tokenised up front, as in GPU run 3); ``--parquet`` takes the texts from a
captions table (column ``text``, e.g. ``bench/bench_coco_full.py table``'s) instead of the COCO test captions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import coco_test5k  # bench/coco_test5k.py: where the COCO test captions come from
from bcls.pipeline.embedding.embed import DEFAULT_MODEL, load_sentence_model, sbert_encoder



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


def time_tokenisers(texts: list[str], batch_size: int, rounds: int, model_name: str) -> None:
    """Captions/s of the model's own preprocessing and of the fast tokenizer, alternating rounds; equal arrays."""
    from bcls.pipeline.embedding.tokens import fast_tokenizer

    model = load_sentence_model(model_name)
    fast = fast_tokenizer(model)
    if fast is None:
        raise SystemExit("the fast tokenizer does not reproduce this model's preprocessing")
    texts = sorted(texts, key=len)  # as the pipeline batches them
    spans = range(0, len(texts), batch_size)

    def library() -> list[dict]:
        return [{k: v.numpy() for k, v in model.preprocess(texts[lo:lo + batch_size]).items() if k in fast.keys}
                for lo in spans]

    def ours() -> list[dict]:
        encodings = fast.encode(texts)
        return [fast.pad(encodings[lo:lo + batch_size]) for lo in spans]

    rates: dict[str, list[float]] = {"library": [], "fast": []}
    out = {}
    for _ in range(rounds):
        for name, run in (("library", library), ("fast", ours)):
            start = time.perf_counter()
            out[name] = run()
            rates[name].append(len(texts) / (time.perf_counter() - start))
    same = all(a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
               for a, b in zip(out["library"], out["fast"], strict=True))
    lib, fast_rate = statistics.median(rates["library"]), statistics.median(rates["fast"])
    print(f"{len(texts)} captions, batches of {batch_size}, {rounds} rounds each; arrays identical: {same}")
    print(f"model preprocess (library) {lib:9.0f} captions/s")
    print(f"FastTokenizer              {fast_rate:9.0f} captions/s   ({fast_rate / lib:.2f}× the library)")
    print(json.dumps({"captions": len(texts), "batch": batch_size, "library_per_s": round(lib, 1),
                      "fast_per_s": round(fast_rate, 1), "ratio": round(fast_rate / lib, 3), "identical": same}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    coco_test5k.add_argument(parser)
    parser.add_argument("--backends", default="", help="also time these sbert_encoder backends, e.g. "
                        "torch,onnx-int8,openvino-int8")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batch-sizes", default="", help="compare these batch sizes instead (see above)")
    parser.add_argument("--tokeniser", action="store_true", help="time the tokenisers instead (see above)")
    parser.add_argument("--device", default=None, help="torch device of the model (default: the CPU)")
    parser.add_argument("--parquet", default=None, help="texts from this captions table (column text)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="sentence model name or folder")
    args = parser.parse_args()
    if args.parquet:
        import pyarrow.parquet as pq

        texts = pq.read_table(args.parquet, columns=["text"]).column("text").to_pylist()[: args.n]
    else:
        texts = [r["caption"] for r in coco_test5k.rows(args.captions)[: args.n]]
    if args.tokeniser:
        time_tokenisers(texts, args.batch_size, args.rounds, args.model)
        return
    if args.batch_sizes:
        sweep_batch_sizes(texts, [b for b in args.backends.split(",") if b] or ["torch"],
                          [int(b) for b in args.batch_sizes.split(",")], args.rounds)
        return
    model = load_sentence_model(args.model, args.device)
    ours = sbert_encoder(args.model, device=args.device, batch_size=args.batch_size)
    backends = [b for b in args.backends.split(",") if b]
    encoders, export_s = {}, {}
    for backend in backends:
        start = time.perf_counter()
        encoders[backend] = sbert_encoder(args.model, batch_size=args.batch_size, backend=backend)
        export_s[backend] = round(time.perf_counter() - start, 2)
    if args.device and args.device.startswith("cuda"):  # the loop of GPU run 3: tokenised up front
        import functools

        from bcls.pipeline.embedding import embed

        per_batch = embed.torch_embed

        def up_front(texts: list[str]) -> np.ndarray:
            embed.torch_embed = functools.partial(per_batch, per_batch=False)
            try:
                return ours(texts)
            finally:
                embed.torch_embed = per_batch

        encoders["up-front"] = up_front
        export_s["up-front"] = 0.0
        backends.append("up-front")
    rates: dict[str, list[float]] = {"bare": [], "pipeline": []} | {b: [] for b in backends}
    out = {}
    model.encode(texts[:2048], batch_size=args.batch_size, show_progress_bar=False)  # warm-up, not timed (on a GPU:
    ours(texts[:2048])                                                               # CUDA context, cuBLAS, kernels)
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
