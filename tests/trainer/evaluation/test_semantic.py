"""Tests of bcls.trainer.evaluation.semantic: NCS@K against a transcription of its definition, rank correlation against scipy,
the ECCV Caption wrapper against the official ``eccv_caption.Metrics``."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from bcls.data.infra.errors import DataFormatError
from bcls.trainer.evaluation.metrics import recall_metrics
from bcls.trainer.evaluation.protocols import coco_5fold_1k
from bcls.trainer.evaluation.eccv import (eccv_metrics, eccv_metrics_from_sims, eccv_required_length,
                                          load_coco_test_ids, rankings_from_sims)
from bcls.trainer.evaluation.semantic import ncs_at_k, rank_correlation
from tests.conftest import SHARED

ECCV_DIR = SHARED / "data" / "eccv_caption"

stats = pytest.importorskip("scipy.stats")


# ---------------------------------------------------------------------------------------------------- NCS@K


def _naive_ncs(sims, rel, ks, gt=None, exclude_gt=True):
    """Direct transcription of the definition with Python loops; ties in sims broken by lower index."""
    s, r = sims.tolist(), rel.tolist()
    g = gt.tolist() if gt is not None else [[False] * len(s[0]) for _ in s]
    out, used = {k: [] for k in ks}, 0
    for q in range(len(s)):
        cands = [j for j in range(len(s[q])) if not (exclude_gt and g[q][j])]
        if not cands or max(r[q][j] for j in cands) == 0:
            continue
        used += 1
        for k in ks:
            retrieved = sorted(cands, key=lambda j: (-s[q][j], j))[:k]
            ideal = sorted(cands, key=lambda j: -r[q][j])[:k]
            mean_ret = sum(r[q][j] for j in retrieved) / len(retrieved)
            mean_ideal = sum(r[q][j] for j in ideal) / len(ideal)
            out[k].append(mean_ret / mean_ideal)
    return {k: 100.0 * sum(v) / len(v) if v else math.nan for k, v in out.items()}, used


def test_ncs_hand_computed() -> None:
    sims = torch.tensor([[0.9, 0.8, 0.7, 0.6], [0.5, 0.5, 0.1, 0.0], [0.3, 0.2, 0.1, 0.0]])
    rel = torch.tensor([[1.0, 0.2, 0.5, 0.4], [0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    gt = torch.tensor([[True, False, False, False], [False, False, False, False], [True, False, False, False]])
    # Row 0, GT excluded: @1 0.2/0.5 = 40 %, @2 (0.2+0.5)/(0.5+0.4) = 77.78 %.
    # Row 1 (tie 0.5/0.5 broken by index: item 0 first): @1 0/1 = 0 %, @2 1/1 = 100 %.
    # Row 2: only the GT is relevant → skipped when it is excluded.
    scores, counts = ncs_at_k(sims, rel, ks=(1, 2), gt_mask=gt, return_counts=True, empty_queries="skip")
    assert counts == {"queries": 2, "skipped": 1, "empty": 1}
    assert scores[1] == pytest.approx((40.0 + 0.0) / 2)
    assert scores[2] == pytest.approx((100 * 0.7 / 0.9 + 100.0) / 2)
    # the official convention (default): a query without a relevant candidate scores 0
    zero, counts = ncs_at_k(sims, rel, ks=(1, 2), gt_mask=gt, return_counts=True)
    assert counts == {"queries": 3, "skipped": 0, "empty": 1}
    assert zero[1] == pytest.approx((40.0 + 0.0 + 0.0) / 3)
    assert zero[2] == pytest.approx((100 * 0.7 / 0.9 + 100.0 + 0.0) / 3)
    # GT included: row 0 @1 = 1.0/1.0, row 2 @1 = 1.0/1.0.
    inc = ncs_at_k(sims, rel, ks=(1,), gt_mask=gt, exclude_gt=False)
    assert inc[1] == pytest.approx((100.0 + 0.0 + 100.0) / 3)


@pytest.mark.parametrize("exclude_gt", [True, False])
@pytest.mark.parametrize("levels", [0, 3])  # 0 = continuous sims, 3 = many ties
def test_ncs_matches_definition(exclude_gt: bool, levels: int) -> None:
    g = torch.Generator().manual_seed(11 + levels)
    q, n = 23, 17
    sims = torch.rand(q, n, generator=g)
    if levels:
        sims = (sims * levels).round()
    rel = (torch.rand(q, n, generator=g) * 4).round() / 4  # ties in relevance, zeros
    rel[3] = 0.0  # a query with no relevant candidate
    gt = torch.rand(q, n, generator=g) < 0.15
    gt[5] = True  # a query whose candidates are all ground truth
    rel[7] = torch.where(gt[7], rel[7], torch.zeros(()))  # relevant only through its ground truth
    ks = (1, 2, 5, 16, 30)  # 16 and 30 exceed some candidate counts
    want, used = _naive_ncs(sims, rel, ks, gt, exclude_gt)
    for chunk in (1, 4, 100):
        got, counts = ncs_at_k(sims, rel, ks, gt_mask=gt, exclude_gt=exclude_gt, chunk=chunk, return_counts=True,
                               empty_queries="skip")
        assert counts["queries"] == used and counts["skipped"] == q - used
        for k in ks:
            assert got[k] == pytest.approx(want[k], rel=1e-12), (k, chunk)


def test_ncs_without_gt_and_errors() -> None:
    g = torch.Generator().manual_seed(2)
    sims, rel = torch.rand(6, 9, generator=g), torch.rand(6, 9, generator=g)
    want, _ = _naive_ncs(sims, rel, (1, 3))
    got = ncs_at_k(sims, rel, (1, 3), empty_queries="skip")
    assert got == pytest.approx(want)
    assert ncs_at_k(sims, rel, (9,))[9] == pytest.approx(100.0)  # K = N: same set retrieved and ideal
    with pytest.raises(ValueError, match="non-negative"):
        ncs_at_k(sims, rel - 0.5)
    with pytest.raises(ValueError, match="shape"):
        ncs_at_k(sims, rel[:, :-1])
    with pytest.raises(ValueError, match="ks"):
        ncs_at_k(sims, rel, ks=(0,))
    assert math.isnan(ncs_at_k(sims, torch.zeros_like(rel), (1,), empty_queries="skip")[1])
    assert ncs_at_k(sims, torch.zeros_like(rel), (1,))[1] == 0.0
    with pytest.raises(ValueError, match="empty_queries"):
        ncs_at_k(sims, rel, empty_queries="ignore")


# ---------------------------------------------------------------------------------------------- rank correlation


def test_rank_correlation_hand_computed_tau_b() -> None:
    # x = 1..4, y = (1, 1, 2, 3): 5 concordant pairs, 0 discordant, one tie in y -> 5 / sqrt(6 * 5)
    got = rank_correlation(torch.tensor([[1.0, 2, 3, 4]]), torch.tensor([[1.0, 1, 2, 3]]))
    assert got["kendall"] == pytest.approx(5 / math.sqrt(30))


def _scipy_rows(sims, labels, mask):
    taus, rhos, skipped = [], [], 0
    for i in range(sims.shape[0]):
        m = mask[i].numpy() if mask is not None else np.ones(sims.shape[1], bool)
        a, b = sims[i].numpy()[m].astype(np.float64), labels[i].numpy()[m].astype(np.float64)
        if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
            skipped += 1
            continue
        taus.append(stats.kendalltau(a, b).statistic)  # variant "b" is the default
        rhos.append(stats.spearmanr(a, b).statistic)
    return taus, rhos, skipped


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_rank_correlation_matches_scipy(tied: bool, masked: bool) -> None:
    g = torch.Generator().manual_seed(8 + tied + 2 * masked)
    q, n = 30, 45
    sims = torch.rand(q, n, generator=g)
    labels = 0.5 * sims + torch.rand(q, n, generator=g)  # positively correlated
    if tied:
        sims, labels = (sims * 5).round(), (labels * 3).round()
    mask = torch.rand(q, n, generator=g) < 0.6 if masked else None
    labels[2] = 1.0  # constant labels → skipped
    sims[4] = 0.25  # constant sims → skipped
    if masked:
        mask[6] = False
        mask[6, 3] = True  # one valid entry → skipped
        mask[8] = False  # none → skipped
    taus, rhos, skipped = _scipy_rows(sims, labels, mask)
    got = rank_correlation(sims, labels, mask)
    assert got["queries"] == len(taus) and got["skipped"] == skipped == (4 if masked else 2)
    assert got["kendall"] == pytest.approx(float(np.mean(taus)), abs=1e-12)
    assert got["spearman"] == pytest.approx(float(np.mean(rhos)), abs=1e-12)
    # Row by row (one query per call): every coefficient, not only their mean.
    for i in (0, 1, 3, 5):
        one = rank_correlation(sims[i : i + 1], labels[i : i + 1], None if mask is None else mask[i : i + 1])
        t, r, _ = _scipy_rows(sims[i : i + 1], labels[i : i + 1], None if mask is None else mask[i : i + 1])
        assert one["kendall"] == pytest.approx(t[0], abs=1e-12)
        assert one["spearman"] == pytest.approx(r[0], abs=1e-12)


def test_rank_correlation_long_rows_and_extremes() -> None:
    g = torch.Generator().manual_seed(21)
    sims = torch.rand(3, 1500, generator=g)  # not a power of two: exercises the padding
    labels = (sims + 0.3 * torch.rand(3, 1500, generator=g)) * 10
    labels = labels.round()
    taus, rhos, _ = _scipy_rows(sims, labels, None)
    got = rank_correlation(sims, labels)
    assert got["kendall"] == pytest.approx(np.mean(taus), abs=1e-12)
    assert got["spearman"] == pytest.approx(np.mean(rhos), abs=1e-12)
    x = torch.arange(10.0)[None]
    same = rank_correlation(x, x * 2)
    assert same["kendall"] == pytest.approx(1.0) and same["spearman"] == pytest.approx(1.0) and same["queries"] == 1
    rev = rank_correlation(x, -x)
    assert rev["kendall"] == pytest.approx(-1.0) and rev["spearman"] == pytest.approx(-1.0)
    nan = rank_correlation(x, torch.ones_like(x))
    assert math.isnan(nan["kendall"]) and nan["skipped"] == 1
    with pytest.raises(ValueError, match="finite"):
        rank_correlation(x, x.masked_fill(x > 5, math.nan))


def test_rank_correlation_masked_long_rows_match_scipy() -> None:
    """Long rows (the numba path) of different valid lengths, with ties, against scipy row by row."""
    g = torch.Generator().manual_seed(5)
    sims = (torch.rand(12, 700, generator=g) * 40).round()
    labels = ((sims + 30 * torch.rand(12, 700, generator=g)) / 7).round()
    mask = torch.rand(12, 700, generator=g) < torch.linspace(0.15, 1.0, 12)[:, None]
    labels[3] = 2.0  # constant → skipped
    taus, rhos, skipped = _scipy_rows(sims, labels, mask)
    got = rank_correlation(sims, labels, mask)
    assert (mask.sum(1) > 64).all() and skipped == got["skipped"] == 1
    assert got["kendall"] == pytest.approx(float(np.mean(taus)), abs=1e-12)
    assert got["spearman"] == pytest.approx(float(np.mean(rhos)), abs=1e-12)
    from bcls.trainer.evaluation.rankstats import rank_correlation_rows

    x, y = sims[0, mask[0]].double().numpy(), labels[0, mask[0]].double().numpy()
    tau, rho = rank_correlation_rows(np.r_[x, 1.0, 2.0, 3.0], np.r_[y, 5.0, 5.0, 5.0], np.array([0, len(x), len(x) + 1,
                                                                                               len(x) + 3]))
    assert tau[0] == pytest.approx(taus[0], abs=1e-12) and rho[0] == pytest.approx(rhos[0], abs=1e-12)
    assert np.isnan(tau[1]) and np.isnan(rho[1]) and np.isnan(tau[2])  # one entry; constant y


# ----------------------------------------------------------------------------------------------- ECCV Caption

eccv_caption = pytest.importorskip("eccv_caption")


def _official_metrics():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return eccv_caption.Metrics()


def test_rankings_from_sims_stable_and_truncated() -> None:
    g = torch.Generator().manual_seed(3)
    sims = (torch.rand(9, 40, generator=g) * 3).round()  # many ties
    i2t, t2i = rankings_from_sims(sims, chunk=4)
    assert i2t.dtype == torch.int32 and i2t.shape == (9, 40) and t2i.shape == (40, 9)
    s = sims.numpy()
    for i in range(9):
        assert i2t[i].tolist() == sorted(range(40), key=lambda j: (-s[i, j], j))
    for j in range(40):
        assert t2i[j].tolist() == sorted(range(9), key=lambda i: (-s[i, j], i))
    for top in (1, 5, 8, 9, 39, 100):
        a, b = rankings_from_sims(sims, topk=top, chunk=3)
        assert torch.equal(a, i2t[:, :top]) and torch.equal(b, t2i[:, :top])


needs_shared = pytest.mark.skipif(not ECCV_DIR.is_dir(), reason="../shared/data/eccv_caption not present")


@needs_shared
def test_load_coco_test_ids_matches_package_data() -> None:
    img, cap, c2i = load_coco_test_ids(ECCV_DIR)
    img2, cap2, c2i2 = load_coco_test_ids()  # the package's copy of the same files
    assert np.array_equal(img, img2) and np.array_equal(cap, cap2) and torch.equal(c2i, c2i2)
    assert img.shape == (5000,) and cap.shape == (25000,)
    assert torch.equal(c2i, torch.arange(5000).repeat_interleave(5))  # Karpathy order: 5 consecutive captions
    m = _official_metrics()
    assert all(m.coco_gts["t2i"][int(c)] == [int(img[i])] for c, i in zip(cap[::997], c2i[::997].tolist()))


def _structured_sims(c2i: torch.Tensor, seed: int, dim: int = 24, noise: float = 1.2) -> torch.Tensor:
    """Images and captions near their image's embedding: recalls well between 0 and 100 %."""
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(int(c2i.max()) + 1, dim, generator=g)
    cap = img[c2i] + noise * torch.randn(c2i.numel(), dim, generator=g)
    return torch.nn.functional.normalize(img, dim=1) @ torch.nn.functional.normalize(cap, dim=1).T


def _rename(d):
    out = {}
    for key, per_dir in d.items():
        for name in ("coco_1k", "coco_5k", "cxc", "eccv"):
            if key.startswith(name + "_"):
                for direction, v in per_dir.items():
                    out[f"{name}_{direction}_{key[len(name) + 1:]}"] = 100.0 * v
    return out


@needs_shared
def test_eccv_metrics_equal_official_random_rankings() -> None:
    """Fast: random truncated index rankings (ground truth first for half the queries) → same numbers as the
    official code called directly on id-keyed dicts of Python lists."""
    img, cap, c2i = load_coco_test_ids(ECCV_DIR)
    ks = (1, 5, 10)
    length = max(eccv_required_length(ks).values())
    g = torch.Generator().manual_seed(5)
    i2t = torch.randint(0, 25000, (5000, length), generator=g, dtype=torch.int32)
    t2i = torch.randint(0, 5000, (25000, length), generator=g, dtype=torch.int32)
    hit_i = torch.rand(5000, generator=g) < 0.5
    hit_t = torch.rand(25000, generator=g) < 0.5
    i2t[hit_i, 0] = (torch.arange(5000)[hit_i] * 5 + 2).int()  # one of the image's captions
    t2i[hit_t, 1] = c2i[hit_t].int()  # the caption's image second: R@1 miss, R@5 hit
    ours = eccv_metrics(i2t, t2i, img, cap, ks=ks)
    i2t_ids = {int(img[i]): [int(cap[j]) for j in row] for i, row in enumerate(i2t.tolist())}
    t2i_ids = {int(cap[j]): [int(img[i]) for i in row] for j, row in enumerate(t2i.tolist())}
    official = _official_metrics().compute_all_metrics(
        i2t_ids, t2i_ids,
        target_metrics=["eccv_r1", "eccv_map_at_r", "eccv_rprecision", "cxc_recalls", "coco_5k_recalls"],
        Ks=list(ks), verbose=False,
    )
    want = _rename(official)
    assert set(ours) == set(want) and len(ours) == 2 * (3 + 3 + 3)
    for key in want:
        assert ours[key] == pytest.approx(want[key], abs=1e-9), key
    assert 45.0 < ours["coco_5k_i2t_r1"] < 55.0
    assert ours["coco_5k_t2i_r1"] < 1.0 and 45.0 < ours["coco_5k_t2i_r5"] < 55.0


@pytest.mark.slow
@needs_shared
def test_eccv_metrics_equal_official_truncated() -> None:
    """Slow (5-10 s): truncated rankings from structured sims (enough for everything but COCO 1K), official code
    called directly on lists, and our recall_metrics agrees with the package's COCO 5K R@K."""
    img, cap, c2i = load_coco_test_ids(ECCV_DIR)
    sims = _structured_sims(c2i, seed=0)
    ks = (1, 5, 10)
    need = eccv_required_length(ks)
    assert need["i2t"] >= 10 and need["t2i"] >= 10
    i2t, t2i = rankings_from_sims(sims, topk=max(need.values()))
    ours = eccv_metrics(i2t, t2i, img, cap, ks=ks)
    i2t_ids = {int(img[i]): [int(cap[j]) for j in row] for i, row in enumerate(i2t.tolist())}
    t2i_ids = {int(cap[j]): [int(img[i]) for i in row] for j, row in enumerate(t2i.tolist())}
    official = _official_metrics().compute_all_metrics(
        i2t_ids, t2i_ids,
        target_metrics=["eccv_r1", "eccv_map_at_r", "eccv_rprecision", "cxc_recalls", "coco_5k_recalls"],
        Ks=list(ks), verbose=False,
    )
    want = _rename(official)
    assert set(ours) == set(want) and len(ours) == 2 * (3 + 3 + 3)
    for key in want:
        assert ours[key] == pytest.approx(want[key], abs=1e-9), key
    assert 1.0 < ours["coco_5k_i2t_r1"] < 99.0 and 1.0 < ours["eccv_t2i_map_at_r"] < 99.0
    # Our recall_metrics defines the same COCO 5K R@K (continuous sims: no ties).
    rm = recall_metrics(sims, c2i, ks=ks)
    for d in ("i2t", "t2i"):
        for k in ks:
            assert rm[f"{d}_r{k}"] == pytest.approx(ours[f"coco_5k_{d}_r{k}"], abs=1e-9), (d, k)


@needs_shared
def test_eccv_metrics_input_errors() -> None:
    img, cap, _ = load_coco_test_ids(ECCV_DIR)
    short_i2t = torch.zeros(5000, 5, dtype=torch.int32)
    short_t2i = torch.zeros(25000, 5, dtype=torch.int32)
    with pytest.raises(ValueError, match="need"):
        eccv_metrics(short_i2t, short_t2i, img, cap)
    with pytest.raises(ValueError, match="full rankings"):
        eccv_metrics(short_i2t, short_t2i, img, cap, coco_1k=True)
    with pytest.raises(ValueError, match="rankings must be"):
        eccv_metrics(short_i2t[:10], short_t2i, img, cap)
    with pytest.raises(DataFormatError, match="image ids"):
        eccv_metrics(short_i2t[:10], short_t2i, img[:10], cap)


@pytest.mark.slow
@needs_shared
def test_eccv_metrics_equal_official_full_with_coco_1k() -> None:
    """Slow (~4 min on 2 busy cores): full rankings from an independent numpy argsort, COCO 1K included."""
    img, cap, c2i = load_coco_test_ids(ECCV_DIR)
    sims = _structured_sims(c2i, seed=1, noise=1.5)
    ks = (1, 5, 10)
    ours = eccv_metrics_from_sims(sims, img, cap, ks=ks, coco_1k=True)
    i2t, t2i = rankings_from_sims(sims)
    s = sims.numpy()
    i2t_np = np.argsort(-s, axis=1, kind="stable")
    t2i_np = np.argsort(-s.T, axis=1, kind="stable")
    assert np.array_equal(i2t_np, i2t.numpy()) and np.array_equal(t2i_np, t2i.numpy())
    i2t_ids = {int(img[i]): cap[row] for i, row in enumerate(i2t_np)}
    t2i_ids = {int(cap[j]): img[row] for j, row in enumerate(t2i_np)}
    official = _official_metrics().compute_all_metrics(
        i2t_ids, t2i_ids,
        target_metrics=["eccv_r1", "eccv_map_at_r", "eccv_rprecision", "cxc_recalls", "coco_5k_recalls",
                        "coco_1k_recalls"],
        Ks=list(ks), verbose=False,
    )
    want = _rename(official)
    assert set(ours) == set(want)
    for key in want:
        assert ours[key] == pytest.approx(want[key], abs=1e-9), key
    five_k = recall_metrics(sims, c2i, ks=ks)
    one_k = coco_5fold_1k(sims, c2i, ks=ks)
    for d in ("i2t", "t2i"):
        for k in ks:
            assert five_k[f"{d}_r{k}"] == pytest.approx(ours[f"coco_5k_{d}_r{k}"], abs=1e-9)
            assert one_k[f"{d}_r{k}"] == pytest.approx(ours[f"coco_1k_{d}_r{k}"], abs=1e-9)


@pytest.mark.parametrize("tied", [False, True])
def test_rank_correlation_pairwise_and_scipy_paths_agree(tied: bool) -> None:
    g = torch.Generator().manual_seed(31 + tied)
    sims = torch.rand(12, 40, generator=g)
    labels = 0.3 * sims + torch.rand(12, 40, generator=g)
    if tied:
        sims, labels = (sims * 4).round(), (labels * 3).round()
    mask = torch.rand(12, 40, generator=g) < 0.7
    fast = rank_correlation(sims, labels, mask)  # every row short: pairwise path
    slow = rank_correlation(sims, labels, mask, max_pairwise=0)  # every row through scipy
    taus, rhos, skipped = _scipy_rows(sims, labels, mask)
    assert fast["queries"] == slow["queries"] == len(taus) and fast["skipped"] == skipped
    assert fast["kendall"] == pytest.approx(slow["kendall"], abs=1e-12)
    assert fast["spearman"] == pytest.approx(slow["spearman"], abs=1e-12)


def test_extended_precision_at_r_equals_the_official_eccv_code():
    """mAP@R and R-Precision with positives = relevance >= 1, against eccv_caption's own per-query loop."""
    from eccv_caption._metrics import compute_eccv_metrics

    from bcls.trainer.evaluation.semantic import extended_precision_at_r

    g = torch.Generator().manual_seed(0)
    sims = torch.round(torch.randn(40, 60, generator=g), decimals=1)  # ties, broken by lower index
    rel = torch.randint(0, 3, (40, 60), generator=g).float() / 2
    rel[torch.arange(40), torch.arange(40)] = 1.0  # every query has a positive
    rel[3] = 0.25
    rel[3, 7] = 1.0  # a query with a single positive
    order = torch.sort(sims, dim=1, descending=True, stable=True).indices
    ours = extended_precision_at_r(sims, rel, threshold=1.0, chunk=7)
    official = compute_eccv_metrics({q: order[q].tolist() for q in range(40)},
                                    {q: torch.nonzero(rel[q] >= 1.0).flatten().tolist() for q in range(40)})
    assert ours["queries"] == 40
    assert ours["map_at_r"] == pytest.approx(100 * official["eccv_map_at_r"], abs=1e-9)
    assert ours["rprecision"] == pytest.approx(100 * official["eccv_rprecision"], abs=1e-9)
    # a perfect ranking scores 100; a query without positives is skipped
    perfect = extended_precision_at_r(rel + 1e-3 * torch.rand(40, 60, generator=g), rel)
    assert perfect["map_at_r"] == pytest.approx(100.0) and perfect["rprecision"] == pytest.approx(100.0)
    none = extended_precision_at_r(sims[:2], torch.zeros(2, 60))
    assert none["queries"] == 0 and math.isnan(none["map_at_r"])
