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


def _coco_from_jar(n_images: int) -> tuple[list[str], list[int]] | None:
    """The captions of the first ``n_images`` images of ``captions_val2014.json`` inside pycocoevalcap's
    ``spice-1.0.jar`` (a test dependency, so real captions are there even without ``../shared``)."""
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
    seen: dict[int, int] = {}
    texts, index = [], []
    for ann in sorted(data["annotations"], key=lambda a: (a["image_id"], a["id"])):
        if ann["image_id"] not in seen:
            if len(seen) == n_images:
                break
            seen[ann["image_id"]] = len(seen)
        texts.append(ann["caption"])
        index.append(seen[ann["image_id"]])
    return texts, index


@pytest.fixture
def coco_corpus():
    """``coco_corpus(n)``: a label corpus of the first ``n`` images of the real COCO Karpathy test captions
    (``../shared``), else of COCO val2014 captions from pycocoevalcap's jar, or a skip where neither is there."""
    from bcls.pipeline.sources import LabelCorpus

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
