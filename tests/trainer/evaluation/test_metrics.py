"""Tests of bcls.trainer.evaluation.metrics against naive per-query loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bcls.data.infra.errors import DataFormatError
from bcls.trainer.evaluation.metrics import recall_metrics, retrieval_ranks


def _data(n_images: int, per_image: int, seed: int, tied: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n_captions = n_images * per_image
    sims = torch.rand(n_images, n_captions, generator=g)
    if tied:
        sims = (sims * 4).round() / 4  # 5 distinct values: many ties
    c2i = torch.arange(n_images).repeat_interleave(per_image)
    perm = torch.randperm(n_captions, generator=g)  # captions not grouped by image
    return sims[:, perm], c2i[perm]


def _naive_argsort(sims: torch.Tensor, c2i: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """VSE++-style: argsort each query's scores descending, rank of the (best) ground truth."""
    s, c = sims.numpy(), c2i.numpy()
    i2t = np.zeros(s.shape[0], dtype=np.int64)
    for i in range(s.shape[0]):
        order = np.argsort(-s[i])
        i2t[i] = min(int(np.where(order == j)[0][0]) for j in np.where(c == i)[0])
    t2i = np.zeros(s.shape[1], dtype=np.int64)
    for j in range(s.shape[1]):
        order = np.argsort(-s[:, j])
        t2i[j] = int(np.where(order == c[j])[0][0])
    return i2t, t2i


def _naive_pessimistic(sims: torch.Tensor, c2i: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Loop counting the negatives that score at least as high as the ground truth (the documented tie rule)."""
    s, c = sims.tolist(), c2i.tolist()
    n_i, n_c = len(s), len(c)
    i2t = [min(sum(1 for k, x in enumerate(s[i]) if c[k] != i and x >= s[i][j]) for j in range(n_c) if c[j] == i)
           for i in range(n_i)]
    t2i = [sum(1 for i in range(n_i) if i != c[j] and s[i][j] >= s[c[j]][j]) for j in range(n_c)]
    return np.array(i2t), np.array(t2i)


@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_ranks_match_argsort_loop(chunk: int) -> None:
    sims, c2i = _data(23, 5, seed=0, tied=False)
    i2t, t2i = retrieval_ranks(sims, c2i, chunk=chunk)
    ref_i2t, ref_t2i = _naive_argsort(sims, c2i)
    assert i2t.tolist() == ref_i2t.tolist() and t2i.tolist() == ref_t2i.tolist()


@pytest.mark.parametrize("chunk", [1, 4, 1024])
def test_ranks_with_ties_are_pessimistic(chunk: int) -> None:
    sims, c2i = _data(13, 5, seed=1, tied=True)
    i2t, t2i = retrieval_ranks(sims, c2i, chunk=chunk)
    ref_i2t, ref_t2i = _naive_pessimistic(sims, c2i)
    assert i2t.tolist() == ref_i2t.tolist() and t2i.tolist() == ref_t2i.tolist()


def test_ties_cannot_flatter_a_model() -> None:
    """Collapsed embeddings (every similarity equal) retrieve nothing; quantised ones no more than unquantised."""
    c2i = torch.arange(50).repeat_interleave(5)
    m = recall_metrics(torch.full((50, 250), 0.3), c2i)
    assert m["rsum"] == 0.0 and m["i2t_medr"] == 246.0 and m["t2i_medr"] == 50.0
    sims, c2i = _data(40, 5, seed=4, tied=False)
    coarse = sims.to(torch.bfloat16).float()  # 8 bits of mantissa: many ties
    fine, rough = retrieval_ranks(sims, c2i), retrieval_ranks(coarse, c2i)
    assert int((coarse[:, None, :] == coarse[:, :, None]).sum()) > coarse.numel()  # ties exist
    assert all(bool((r >= f).all()) for f, r in zip(fine, rough))


def test_recall_metrics_values() -> None:
    sims, c2i = _data(31, 5, seed=2, tied=False)
    m = recall_metrics(sims, c2i)
    ref_i2t, ref_t2i = _naive_argsort(sims, c2i)
    expected = {}
    for name, r in (("i2t", ref_i2t), ("t2i", ref_t2i)):
        for k in (1, 5, 10):
            expected[f"{name}_r{k}"] = 100.0 * float(np.mean(r < k))
        expected[f"{name}_medr"] = float(np.floor(np.median(r)) + 1)
        expected[f"{name}_meanr"] = float(np.mean(r) + 1)
    expected["rsum"] = sum(v for k, v in expected.items() if "_r" in k and "medr" not in k and "meanr" not in k)
    assert set(m) == set(expected)
    for k, v in expected.items():
        assert isinstance(m[k], float)
        assert m[k] == pytest.approx(v), k
    assert recall_metrics(sims, c2i, chunk=3) == m


def test_perfect_retrieval_and_errors() -> None:
    c2i = torch.arange(4).repeat_interleave(2)
    sims = (torch.arange(4)[:, None] == c2i[None, :]).float()
    m = recall_metrics(sims, c2i)
    assert m["rsum"] == 600.0 and m["i2t_medr"] == 1.0 and m["t2i_meanr"] == 1.0
    with pytest.raises(DataFormatError):
        retrieval_ranks(sims, torch.tensor([0, 0, 1, 1, 2, 2, 2, 9]))
    with pytest.raises(DataFormatError):  # image 3 has no caption
        retrieval_ranks(sims, torch.tensor([0, 0, 1, 1, 2, 2, 2, 2]))
    with pytest.raises(ValueError):
        retrieval_ranks(sims, c2i[:-1])
