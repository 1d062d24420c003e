"""Shared fixtures: tiny, deterministic data for every stage."""

from __future__ import annotations

import atexit
import csv
import functools
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

# Tests never write to the user's embedding cache (~/.cache/bcls/embeddings); theirs goes when the session ends.
os.environ["BCLS_CACHE_DIR"] = tempfile.mkdtemp(prefix="bcls-test-cache-")
atexit.register(shutil.rmtree, os.environ["BCLS_CACHE_DIR"], ignore_errors=True)


def hash_encoder(dim: int = 64):
    """A deterministic bag-of-words encoder (no model download): word → fixed random vector, summed, normalised."""

    def vec(word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
        return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)

    def encode(texts):
        out = np.stack([sum((vec(w) for w in re.findall(r"\w+", t.lower())), np.zeros(dim, np.float32))
                        for t in texts])
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    return encode


def write_caption_csv(path, n_images=9, cpi=5, seed=0, *, first_image=1000, first_caption=50_000,
                      words=("dog", "cat", "man", "woman", "beach", "street", "red", "blue", "small", "large",
                             "runs", "sits", "car", "ball"), n_words=5):
    """A CSV caption table of ``n_images`` images × ``cpi`` captions of random words (ids from ``first_image`` and
    ``first_caption``); returns ``path``."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(seed)
    rows = {"image_id": [], "caption_id": [], "text": []}
    for i in range(n_images):
        for j in range(cpi):
            rows["image_id"].append(first_image + i)
            rows["caption_id"].append(first_caption + i * cpi + j)
            rows["text"].append("a " + " ".join(rng.choice(list(words), n_words)))
    pcsv.write_csv(pa.table(rows), path)
    return path


def label_files(folder) -> dict[str, str]:
    """sha256 of the shards and the manifest of a label folder: equal dicts mean byte-equal builds."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir())
            if p.name.startswith("shard-") or p.name == "_manifest.json"}


class _Thing:
    pass


def drop_a_ctrl_c() -> None:
    """A SIGINT handled while a weakref callback runs, as when Ctrl-C lands in importlib's module-lock clean-up:
    Python prints its ``KeyboardInterrupt`` as "Exception ignored" and drops it
    (:mod:`bcls.data.infra.interrupts`)."""
    import gc
    import signal
    import weakref

    thing = _Thing()
    ref = weakref.ref(thing, lambda _: signal.raise_signal(signal.SIGINT))
    del thing
    gc.collect()
    assert ref() is None


def brute_candidate_pairs(emb, image_index, k, caption_k):
    """Brute-force candidates (positions): each image's top-``k`` captions ∪ each caption's top-``caption_k``
    images (finite scores only) ∪, with ``caption_k``, every positive; score(i, c) = max over refs(i) \\ {c} of
    <e_c, e_r>, ties to the lower position."""
    sims = emb @ emb.T
    n_images = image_index.max() + 1
    score = np.full((n_images, len(emb)), -np.inf)
    for i in range(n_images):
        refs = np.flatnonzero(image_index == i)
        for c in range(len(emb)):
            others = refs[refs != c]
            if len(others):
                score[i, c] = sims[c, others].max()
    pairs = {(int(image_index[c]), c) for c in range(len(emb))} if caption_k else set()
    for i in range(n_images):
        pairs |= {(i, int(c)) for c in np.lexsort((np.arange(len(emb)), -score[i]))[:k]}
    for c in range(len(emb)):
        pairs |= {(int(i), c) for i in np.lexsort((np.arange(n_images), -score[:, c]))[:caption_k]
                  if np.isfinite(score[i, c])}
    return pairs


@pytest.fixture
def encoder():
    return hash_encoder()


@functools.lru_cache(maxsize=1)
def _jar_annotations() -> tuple[tuple[int, str], ...] | None:
    """(image_id, caption) of ``captions_val2014.json`` inside pycocoevalcap's ``spice-1.0.jar`` (a test
    dependency, so real captions are there even without ``../shared``), sorted by image and annotation id; read
    once per session."""
    import importlib.util
    import io
    import json
    import zipfile

    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        return None
    jar = Path(list(spec.submodule_search_locations)[0]) / "spice" / "spice-1.0.jar"
    if not jar.is_file():
        return None
    with zipfile.ZipFile(jar) as zf:
        data = json.load(io.TextIOWrapper(zf.open("coco/annotations/captions_val2014.json"), encoding="utf-8"))
    anns = sorted(data["annotations"], key=lambda a: (a["image_id"], a["id"]))
    return tuple((a["image_id"], a["caption"]) for a in anns)


def _coco_from_jar(n_images: int) -> tuple[list[str], list[int]] | None:
    """The captions of the first ``n_images`` images of :func:`_jar_annotations`."""
    anns = _jar_annotations()
    if anns is None:
        return None
    seen: dict[int, int] = {}
    texts, index = [], []
    for image_id, caption in anns:
        if image_id not in seen:
            if len(seen) == n_images:
                break
            seen[image_id] = len(seen)
        texts.append(caption)
        index.append(seen[image_id])
    return texts, index


@pytest.fixture
def coco_corpus():
    """``coco_corpus(n)``: a label corpus of the first ``n`` images of the real COCO Karpathy test captions
    (``../shared``), else of COCO val2014 captions from pycocoevalcap's jar, or a skip where neither is there."""
    from bcls.pipeline.corpus import LabelCorpus

    tsv = SHARED / "data" / "coco_karpathy" / "test5k_captions.tsv"

    def make(n_images: int) -> LabelCorpus:
        if not tsv.is_file():
            found = _coco_from_jar(n_images)
            if found is None:
                pytest.skip(f"{tsv} not available, nor pycocoevalcap's spice-1.0.jar")
            return LabelCorpus.from_groups(tuple(found[0]), np.asarray(found[1]))
        seen: dict[str, int] = {}
        texts, index = [], []
        with open(tsv, newline="") as fh:
            reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            next(reader)
            for _row, _ann, image, caption in reader:
                if image not in seen:
                    if len(seen) == n_images:
                        break
                    seen[image] = len(seen)
                texts.append(caption)
                index.append(seen[image])
        return LabelCorpus.from_groups(tuple(texts), np.asarray(index))

    return make
