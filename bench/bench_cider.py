"""Benchmark: the ``cider`` label source (numba kernel) vs coco-caption's ``CiderScorer`` (pycocoevalcap), on CPU.

Run ``python bench/bench_cider.py`` (needs ``pip install pycocoevalcap``; reads
``bench/coco_test5k.py``, or ``--captions TSV``: 5,000 COCO images, 25,010 captions). Candidate pairs: for each
image, its own captions (scored leave-one-out) plus ``--neighbours`` captions of other images that share the most
idf-weighted words with the image's captions (what a label build's neighbour search hands the source) plus
``--random`` random captions of other images: 5,000 × (5 + 15 + 5) ≈ 125k pairs by default.

Both sides score exactly the same thing: candidate c against refs(i) without c, with document frequencies over
the corpus's 5,000 images (each full caption set once) and ``log(D)`` with D = 5,000. coco-caption gets those
through its own code: ``compute_doc_freq`` on a ``CiderScorer`` holding each image's full caption set once, its
``document_frequency`` copied into scorers that hold the pairs, padded with empty entries to D entries so that its
``ref_len = log(len(crefs))`` is log(D); ``compute_cider`` then runs unmodified. Both sides see the same
tokenised captions (``ptb_tokenize``).

Timings (wall clock, ``time.perf_counter``):

* ours, cold: :func:`prepare_cider` (tokenise, n-gram ids, df, norms, join index) + scoring every pair, the
  median of ``--cold-rounds`` rounds that each build the tables anew, after the library is loaded (numba's
  import and its cached compiled kernels, timed apart on a 3-image corpus: ``library_load_s``, once per process);
* ours, warm: scoring every pair with the per-corpus tables cached (the second shard onwards of a build);
  median of 3;
* coco-caption: its df pass + cooking the pairs (``CiderScorer.__iadd__``) + ``compute_cider``, on
  ``--ref-pairs`` pairs (all by default); when that is a subset, the pair part of the figure is extrapolated
  linearly to all pairs (the df pass is counted once) and marked as such.

The last line printed is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import coco_test5k  # bench/coco_test5k.py: where the COCO test captions come from
from bcls.pipeline.sources.cider import cider_d_scores, prepare_cider, ptb_tokenize
from bcls.pipeline.corpus import LabelCorpus



def load_corpus(path: Path | None, n_images: int) -> LabelCorpus:
    """The first ``n_images`` images of the COCO Karpathy test captions (all their captions; see
    ``bench/coco_test5k.py`` for where they come from)."""
    seen: dict[str, int] = {}
    texts, index = [], []
    for row in coco_test5k.rows(path):
        image = row["coco_image_id"]
        if image not in seen:
            if len(seen) >= n_images:
                continue
            seen[image] = len(seen)
        texts.append(row["caption"])
        index.append(seen[image])
    return LabelCorpus.from_groups(tuple(texts), np.asarray(index))


def candidate_pairs(corpus: LabelCorpus, tokens: list[list[str]], n_neighbours: int, n_random: int,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Own captions + the captions of other images with the highest idf-weighted word overlap + random ones."""
    import scipy.sparse as sp

    vocab: dict[str, int] = {}
    rows, cols = [], []
    for c, toks in enumerate(tokens):
        for w in set(toks):
            rows.append(c)
            cols.append(vocab.setdefault(w, len(vocab)))
    n_cap, n_img = len(tokens), corpus.refs.shape[0]
    words = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_cap, len(vocab)))
    idf = np.log(n_cap / np.maximum(np.asarray(words.sum(axis=0)).ravel(), 1)).astype(np.float32)
    captions = (words @ sp.diags(idf)).tocsr()
    images = sp.csr_matrix((np.ones(n_cap, np.float32), (corpus.image_index, np.arange(n_cap))),
                           shape=(n_img, n_cap)) @ words
    images.data[:] = 1.0
    images = (images @ sp.diags(idf)).tocsr()
    rng = np.random.default_rng(seed)
    img_out, cap_out = [], []
    for lo in range(0, n_img, 500):
        sims = (images[lo:lo + 500] @ captions.T).toarray()
        block = np.arange(lo, min(lo + 500, n_img))
        sims[corpus.image_index[None, :] == block[:, None]] = -np.inf
        top = np.argpartition(-sims, n_neighbours, axis=1)[:, :n_neighbours]
        for b, i in enumerate(block):
            own = corpus.refs[i][corpus.refs[i] >= 0]
            others = rng.choice(n_cap, n_random + len(own), replace=False)
            others = others[corpus.image_index[others] != i][:n_random]
            caps = np.concatenate([own, top[b], others])
            img_out.append(np.full(len(caps), i))
            cap_out.append(caps)
    return np.concatenate(img_out).astype(np.int64), np.concatenate(cap_out).astype(np.int64)


def reference_scores(tokens: list[str], refs: np.ndarray, img: np.ndarray, cap: np.ndarray,
                     n: int = 4, sigma: float = 6.0) -> tuple[np.ndarray, float, float]:
    """coco-caption's CIDEr-D of each pair with corpus document frequencies.

    Returns (scores, seconds of the df pass, seconds of cooking and scoring the pairs)."""
    from pycocoevalcap.cider.cider_scorer import CiderScorer

    t0 = time.perf_counter()
    n_docs = int((refs >= 0).any(axis=1).sum())
    df_scorer = CiderScorer(n=n, sigma=sigma)
    for row in refs:
        df_scorer += (None, [tokens[r] for r in row if r >= 0])
    df_scorer.compute_doc_freq()
    t_df = time.perf_counter() - t0
    out = []
    for lo in range(0, len(img), n_docs):
        scorer = CiderScorer(n=n, sigma=sigma)
        block = range(lo, min(lo + n_docs, len(img)))
        for p in block:
            scorer += (tokens[cap[p]], [tokens[r] for r in refs[img[p]] if r >= 0 and r != cap[p]])
        for _ in range(n_docs - len(block)):  # padding: ref_len = log(len(crefs)) must be log(D)
            scorer += ("", [""])
        scorer.document_frequency = defaultdict(float, df_scorer.document_frequency)
        out.extend(scorer.compute_cider()[:len(block)])
    return np.asarray(out, dtype=np.float64), t_df, time.perf_counter() - t0 - t_df


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--neighbours", type=int, default=15)
    ap.add_argument("--random", type=int, default=5)
    ap.add_argument("--ref-pairs", type=int, default=0, help="pairs coco-caption scores (0 = all)")
    ap.add_argument("--cold-rounds", type=int, default=3, help="cold rounds (tables built anew); the median counts")
    coco_test5k.add_argument(ap)
    args = ap.parse_args(argv)

    corpus = load_corpus(args.captions, args.images)
    tokens = [ptb_tokenize(t) for t in corpus.texts]
    img, cap = candidate_pairs(corpus, [t.split() for t in tokens], args.neighbours, args.random)
    n_pairs = len(img)

    # loading the library: numba's import and its compiled kernels (from its on-disk cache), on 3 images; a
    # once-per-process cost like importing pycocoevalcap, reported apart from the cold per-corpus figure
    t0 = time.perf_counter()
    tiny = load_corpus(args.captions, 3)
    cider_d_scores(prepare_cider(tiny.texts, tiny.image_index, tiny.refs), np.array([0]), np.array([0]))
    t_load = time.perf_counter() - t0
    cold = []  # each round from scratch: tables prepared anew, then the first scoring with them
    for _ in range(args.cold_rounds):
        t0 = time.perf_counter()
        tables = prepare_cider(corpus.texts, corpus.image_index, corpus.refs)
        t1 = time.perf_counter()
        ours = cider_d_scores(tables, img, cap)
        t2 = time.perf_counter()
        cold.append((t2 - t0, t1 - t0, t2 - t1))
    _, t_prep, t_first = sorted(cold)[len(cold) // 2]  # the median round
    warm = []
    for _ in range(3):
        t0 = time.perf_counter()
        cider_d_scores(tables, img, cap)
        warm.append(time.perf_counter() - t0)
    t_warm = statistics.median(warm)
    t_cold = t_prep + t_first

    n_ref = n_pairs if args.ref_pairs <= 0 else min(args.ref_pairs, n_pairs)
    sub = np.random.default_rng(1).permutation(n_pairs)[:n_ref] if n_ref < n_pairs else np.arange(n_pairs)
    ref, t_ref_df, t_ref_pairs = reference_scores(tokens, corpus.refs, img[sub], cap[sub])
    t_ref = t_ref_df + t_ref_pairs * n_pairs / n_ref  # the df pass is a fixed cost; the rest grows with pairs
    both = ~np.isnan(ours[sub])
    max_diff = float(np.max(np.abs(ours[sub][both] - ref[both])))

    figures = {
        "images": int(corpus.refs.shape[0]), "captions": len(corpus.texts), "pairs": int(n_pairs),
        "reference_pairs": int(n_ref), "reference_extrapolated": bool(n_ref < n_pairs),
        "max_abs_diff": max_diff, "mean_cider": float(np.nanmean(ours)), "max_cider": float(np.nanmax(ours)),
        "library_load_s": round(t_load, 4), "ours_prepare_s": round(t_prep, 4), "ours_score_cold_s": round(t_first, 4),
        "ours_cold_s": round(t_cold, 4), "ours_warm_s": round(t_warm, 4),
        "pycocoevalcap_s": round(t_ref, 3), "pycocoevalcap_df_s": round(t_ref_df, 3),
        "speedup_cold": round(t_ref / t_cold, 1), "speedup_warm": round(t_ref / t_warm, 1),
        "pairs_per_s_warm": round(n_pairs / t_warm),
    }
    ext = " (extrapolated)" if n_ref < n_pairs else ""
    print(f"{'':34s}{'seconds':>10s}{'speed-up':>10s}")
    print(f"{'pycocoevalcap CiderScorer' + ext:34s}{t_ref:10.3f}{1.0:10.1f}")
    print(f"{'bcls cider, cold (prepare+score)':34s}{t_cold:10.3f}{t_ref / t_cold:10.1f}")
    print(f"{'bcls cider, warm (score only)':34s}{t_warm:10.3f}{t_ref / t_warm:10.1f}")
    print(f"{n_pairs} pairs of {corpus.refs.shape[0]} images / {len(corpus.texts)} captions; "
          f"compared on {n_ref} pairs: max |ours - pycocoevalcap| = {max_diff:.3g}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
