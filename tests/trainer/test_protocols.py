"""Tests of bcls.trainer.protocols against a naive per-fold loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from bcls.trainer.metrics import recall_metrics
from bcls.trainer.protocols import (
    PROTOCOLS,
    choose_protocol,
    coco_5fold_1k,
    evaluate_protocols,
)


def _data(n_images: int, per_image: int, seed: int, tied: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sims = torch.rand(n_images, n_images * per_image, generator=g)
    if tied:
        sims = (sims * 4).round() / 4
    c2i = torch.arange(n_images).repeat_interleave(per_image)
    perm = torch.randperm(c2i.numel(), generator=g)  # captions not grouped by image
    return sims[:, perm], c2i[perm]


def _naive_5fold(sims: torch.Tensor, c2i: torch.Tensor, n_folds: int, ks=(1, 5, 10)) -> dict[str, float]:
    """Python loops: per fold, ranks = number of in-fold candidates strictly above the ground truth."""
    s, c = sims.tolist(), c2i.tolist()
    size = len(s) // n_folds
    folds = []
    for f in range(n_folds):
        imgs = list(range(f * size, (f + 1) * size))
        caps = [j for j in range(len(c)) if f * size <= c[j] < (f + 1) * size]
        i2t = []
        for i in imgs:
            best = max(s[i][j] for j in caps if c[j] == i)
            i2t.append(sum(1 for j in caps if s[i][j] > best))
        t2i = [sum(1 for i in imgs if s[i][j] > s[c[j]][j]) for j in caps]
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


@pytest.mark.parametrize(
    "n, hint, want",
    [
        (5000, "coco", ("coco_1k", "coco_5k")),
        (5000, "COCO-Karpathy", ("coco_1k", "coco_5k")),
        (1000, "flickr30k", ("flickr_1k",)),
        (1000, "f30k", ("flickr_1k",)),
        (4000, "coco", ("full",)),
        (1014, "flickr", ("full",)),
        (1000, None, ("full",)),
        (5000, "demo", ("full",)),
    ],
)
def test_choose_protocol(n: int, hint: str | None, want: tuple[str, ...]) -> None:
    assert choose_protocol(n, hint) == want
    assert set(want) <= set(PROTOCOLS)


def test_evaluate_protocols() -> None:
    sims, c2i = _data(n_images=20, per_image=5, seed=7)
    out = evaluate_protocols(sims, c2i, ("coco_1k", "coco_5k"), ks=(1, 5))
    assert out["coco_5k"] == recall_metrics(sims, c2i, ks=(1, 5))
    assert out["coco_1k"] == coco_5fold_1k(sims, c2i, ks=(1, 5))
    fn_out = evaluate_protocols(lambda i, c: sims[i][:, c], c2i, ("full",))
    assert fn_out["full"] == recall_metrics(sims, c2i)
    with pytest.raises(ValueError, match="valid: coco_1k"):
        evaluate_protocols(sims, c2i, ("coco_2k",))
