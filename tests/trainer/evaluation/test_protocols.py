"""Tests of bcls.trainer.evaluation.protocols against a naive per-fold loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from bcls.data.captions import CaptionTable
from bcls.trainer.evaluation.eccv import load_coco_test_ids
from bcls.trainer.evaluation.metrics import recall_metrics
from bcls.trainer.evaluation.protocols import PROTOCOLS, coco_5fold_1k, detect_protocol


def _data(n_images: int, per_image: int, seed: int, tied: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sims = torch.rand(n_images, n_images * per_image, generator=g)
    if tied:
        sims = (sims * 4).round() / 4
    c2i = torch.arange(n_images).repeat_interleave(per_image)
    perm = torch.randperm(c2i.numel(), generator=g)  # captions not grouped by image
    return sims[:, perm], c2i[perm]


def _naive_5fold(sims: torch.Tensor, c2i: torch.Tensor, n_folds: int, ks=(1, 5, 10)) -> dict[str, float]:
    """Python loops: per fold, ranks = number of in-fold negatives at or above the ground truth (pessimistic ties)."""
    s, c = sims.tolist(), c2i.tolist()
    size = len(s) // n_folds
    folds = []
    for f in range(n_folds):
        imgs = list(range(f * size, (f + 1) * size))
        caps = [j for j in range(len(c)) if f * size <= c[j] < (f + 1) * size]
        i2t = []
        for i in imgs:
            best = max(s[i][j] for j in caps if c[j] == i)
            i2t.append(sum(1 for j in caps if c[j] != i and s[i][j] >= best))
        t2i = [sum(1 for i in imgs if i != c[j] and s[i][j] >= s[c[j]][j]) for j in caps]
        m = {}
        for name, r in (("i2t", i2t), ("t2i", t2i)):
            for k in ks:
                m[f"{name}_r{k}"] = 100.0 * sum(x < k for x in r) / len(r)
        m["rsum"] = sum(v for key, v in m.items() if "_r" in key)
        for name, r in (("i2t", i2t), ("t2i", t2i)):
            m[f"{name}_medr"] = math.floor(float(np.median(r))) + 1.0
            m[f"{name}_meanr"] = float(np.mean(r)) + 1.0
        folds.append(m)
    return {key: sum(m[key] for m in folds) / n_folds for key in folds[0]}


@pytest.mark.parametrize("tied", [False, True])
def test_coco_5fold_1k_matches_naive_loop(tied: bool) -> None:
    sims, c2i = _data(n_images=40, per_image=5, seed=3, tied=tied)
    got = coco_5fold_1k(sims, c2i, n_folds=5, chunk=3)
    want = _naive_5fold(sims, c2i, 5)
    assert got.keys() == recall_metrics(sims, c2i).keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key


def test_coco_5fold_1k_sims_fn_equals_matrix() -> None:
    sims, c2i = _data(n_images=30, per_image=3, seed=5)
    calls = []

    def sims_fn(images: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        calls.append((images.numel(), captions.numel()))
        return sims[images][:, captions]

    assert coco_5fold_1k(sims_fn, c2i) == coco_5fold_1k(sims, c2i)
    assert calls == [(6, 18)] * 5  # only fold blocks are ever requested


def test_one_fold_is_recall_metrics() -> None:
    sims, c2i = _data(n_images=12, per_image=2, seed=1)
    assert coco_5fold_1k(sims, c2i, n_folds=1) == recall_metrics(sims, c2i)


def test_coco_5fold_1k_errors() -> None:
    sims, c2i = _data(n_images=12, per_image=2, seed=1)
    with pytest.raises(ValueError, match="equal folds"):
        coco_5fold_1k(sims, c2i, n_folds=5)
    with pytest.raises(ValueError, match="sims must be"):
        coco_5fold_1k(sims[:, :-1], c2i, n_folds=3)


def _table(image_ids: np.ndarray, per_image: int = 5) -> CaptionTable:
    ids = np.repeat(image_ids, per_image)
    return CaptionTable(image_ids=ids, caption_ids=np.arange(len(ids)), texts=("a caption",) * len(ids), splits=None,
                        path="t", format="table")


def test_detect_protocol_recognises_the_test_sets(tmp_path) -> None:
    images, captions, c2i = load_coco_test_ids()
    coco = CaptionTable(image_ids=images[c2i.numpy()], caption_ids=captions, texts=("x",) * len(captions),
                        splits=None, path="t", format="table")
    protocol, ids = detect_protocol(coco, tmp_path)
    assert protocol == "coco" and np.array_equal(ids, captions)
    # a caption table with COCO annotation ids, captions in another order within each image: its own ids
    order = np.lexsort((-np.arange(len(captions)), c2i.numpy()))  # image order kept, captions reversed
    table = CaptionTable(image_ids=images[c2i.numpy()][order], caption_ids=captions[order],
                         texts=("x",) * len(captions), splits=None, path="t", format="table")
    protocol, ids = detect_protocol(table, tmp_path)
    assert protocol == "coco" and np.array_equal(ids, captions[order]) and not np.array_equal(ids, captions)
    precomp_like = CaptionTable(image_ids=images[c2i.numpy()], caption_ids=np.arange(len(captions)),
                                texts=("x",) * len(captions), splits=None, path="t", format="precomp")
    assert np.array_equal(detect_protocol(precomp_like, tmp_path)[1], captions)  # line numbers: ECCV's order
    assert detect_protocol(_table(images + 1), tmp_path) == ("full", None)  # 5,000 images, not COCO's
    assert detect_protocol(_table(np.arange(1000)), tmp_path / "f30k_precomp")[0] == "flickr"
    assert detect_protocol(_table(np.arange(1000)), tmp_path / "demo")[0] == "full"
    assert detect_protocol(_table(np.arange(1014)), tmp_path / "flickr30k")[0] == "full"
    assert PROTOCOLS == ("auto", "coco", "flickr", "full")
