"""Benchmark: the sbert source's reference cosines, numba kernel against the numpy gather + einsum it replaced.

Run ``python bench/bench_sbert.py`` (defaults: full COCO's shape, 616,767 captions of 5 each per image, 384
dimensions, 171 candidate captions per image, sorted by image as a label build's shard is; 2,000,000 pairs
timed). Embeddings are random unit vectors (the cost does not depend on their values). Both paths run on the
same pairs in alternating rounds (medians reported); the kernel's cosines are compared with the einsum's. Then
the whole source (``SbertSource().score``: references, cosines, the max aggregate) is timed the same way with
each cosine function. The last line printed is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from bcls.pipeline.corpus import LabelCorpus, reference_matrix
from bcls.pipeline.sources import sbert
from bcls.pipeline.sources.sbert import SbertSource, reference_cosines


def einsum_cosines(emb: np.ndarray, caption_pos: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """The code the kernel replaced: gather every reference's embedding, then one einsum."""
    return np.einsum("pd,pmd->pm", emb[caption_pos], emb[np.maximum(refs, 0)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--captions", type=int, default=616_767)
    parser.add_argument("--per-image", type=int, default=5)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--pairs-per-image", type=int, default=171)
    parser.add_argument("--pairs", type=int, default=2_000_000, help="pairs timed per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((args.captions, args.dim), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    image_index = np.arange(args.captions, dtype=np.int64) // args.per_image
    corpus = LabelCorpus.from_groups(tuple([""] * args.captions), image_index, emb)
    n_images = len(corpus.refs)
    images = np.minimum(np.arange(args.pairs) // args.pairs_per_image, n_images - 1)
    captions = rng.integers(0, args.captions, args.pairs)
    captions[::args.pairs_per_image] = corpus.refs[images[::args.pairs_per_image], 0]  # some positives
    refs = reference_matrix(corpus, images, captions)
    reference_cosines(emb, captions[:10], refs[:10])  # compile (or load numba's cache)

    chunk = SbertSource().chunk
    times: dict[str, list[float]] = {"einsum": [], "kernel": []}
    worst = 0.0
    for _ in range(args.rounds):
        for name, fn in (("einsum", einsum_cosines), ("kernel", reference_cosines)):
            t0 = time.perf_counter()
            parts = [fn(emb, captions[lo:lo + chunk], refs[lo:lo + chunk]) for lo in range(0, args.pairs, chunk)]
            times[name].append(time.perf_counter() - t0)
            if name == "einsum":
                ref = parts
            else:
                worst = max(worst, max(float(np.abs(np.where(r >= 0, a - b, 0)).max())
                                       for a, b, r in zip(parts, ref, [refs[lo:lo + chunk] for lo in
                                                                        range(0, args.pairs, chunk)])))
    source: dict[str, list[float]] = {"einsum": [], "kernel": []}
    labels = {}
    for _ in range(args.rounds):
        for name, fn in (("einsum", einsum_cosines), ("kernel", reference_cosines)):
            sbert.reference_cosines = fn  # what SbertSource.score calls
            t0 = time.perf_counter()
            labels[name] = SbertSource().score(corpus, images, captions)
            source[name].append(time.perf_counter() - t0)
    sbert.reference_cosines = reference_cosines
    label_diff = float(np.nanmax(np.abs(labels["einsum"] - labels["kernel"])))
    einsum, kernel = statistics.median(times["einsum"]), statistics.median(times["kernel"])
    s_einsum, s_kernel = statistics.median(source["einsum"]), statistics.median(source["kernel"])
    print(f"{args.pairs:,} pairs, {refs.shape[1]} reference slots, d = {args.dim}, one thread")
    print(f"einsum : {einsum:.2f} s  ({args.pairs / einsum / 1e6:.2f} M pairs/s)")
    print(f"kernel : {kernel:.2f} s  ({args.pairs / kernel / 1e6:.2f} M pairs/s)  {einsum / kernel:.2f}x")
    print(f"max |difference| of the cosines: {worst:.2e}")
    print(f"whole source, einsum cosines: {s_einsum:.2f} s; kernel: {s_kernel:.2f} s  {s_einsum / s_kernel:.2f}x; "
          f"max |difference| of the labels {label_diff:.2e}")
    print(json.dumps({"pairs": args.pairs, "einsum_s": times["einsum"], "kernel_s": times["kernel"],
                      "speedup": einsum / kernel, "max_abs_diff": worst, "source_einsum_s": source["einsum"],
                      "source_kernel_s": source["kernel"], "source_speedup": s_einsum / s_kernel,
                      "source_max_label_diff": label_diff}))


if __name__ == "__main__":
    main()
