"""Shared fixtures: tiny, deterministic data for every stage."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

# Tests never write to the user's embedding cache (~/.cache/bcls/embeddings).
os.environ["BCLS_CACHE_DIR"] = tempfile.mkdtemp(prefix="bcls-test-cache-")


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


@pytest.fixture
def encoder():
    return hash_encoder()


@pytest.fixture
def coco_corpus():
    """``coco_corpus(n)``: a label corpus of the first ``n`` images of the real COCO Karpathy test captions
    (``../shared``), or a skip where that data is absent."""
    from bcls.pipeline.sources import LabelCorpus

    tsv = SHARED / "data" / "coco_karpathy" / "test5k_captions.tsv"

    def make(n_images: int) -> LabelCorpus:
        if not tsv.is_file():
            pytest.skip(f"{tsv} not available")
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
