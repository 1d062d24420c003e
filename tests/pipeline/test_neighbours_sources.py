"""Candidates and the sbert source against brute-force loops."""

import math
import sys

import numpy as np
import pytest

from bcls.data.infra.errors import ConfigError
from bcls.pipeline.search.neighbours import exact_knn, image_candidates
from bcls.pipeline.corpus import LabelCorpus
from bcls.pipeline.sources import LABEL_SOURCES, SbertSource, make_source
from bcls.pipeline.sources.hashing import sorted_unique
from bcls.pipeline.sources.sbert import reference_cosines
from tests.conftest import brute_candidate_pairs


def _random_corpus(n_images=12, cpi=5, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    image_index = np.repeat(np.arange(n_images), cpi)
    rng.shuffle(image_index)  # captions of an image need not be consecutive
    emb = rng.standard_normal((len(image_index), dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb, image_index


def test_exact_knn_matches_numpy():
    emb, _ = _random_corpus()
    scores, ids = exact_knn(emb[:7], emb, 4, block=3)
    full = emb[:7] @ emb.T
    np.testing.assert_array_equal(ids, np.argsort(-full, axis=1, kind="stable")[:, :4])
    np.testing.assert_allclose(scores, np.sort(full, axis=1)[:, ::-1][:, :4], atol=1e-5)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_image_candidates_equal_brute_force(k):
    emb, image_index = _random_corpus()
    img, cap, score = image_candidates(emb, image_index, k)
    sims = emb @ emb.T
    for i in range(image_index.max() + 1):
        refs = np.flatnonzero(image_index == i)
        best = {}
        for c in range(len(emb)):
            others = refs[refs != c]
            best[c] = sims[c, others].max()
        expected = sorted(best, key=lambda c: (-best[c], c))[:k]
        got = cap[img == i]
        assert list(got) == expected
        np.testing.assert_allclose(score[img == i], [best[c] for c in expected], atol=1e-5)


def _naive_aggregate(emb, c, refs, aggregate, k=2, temperature=0.1):
    """One pair's sbert label, written out reference by reference."""
    if not refs:
        return np.nan
    vals = [min(max(float(emb[c] @ emb[r]), 0.0), 1.0) for r in refs]
    if aggregate == "max":
        return max(vals)
    if aggregate == "mean":
        return sum(vals) / len(vals)
    if aggregate == "topk":
        top = sorted(vals, reverse=True)[:k]
        return sum(top) / len(top)
    if aggregate == "softmax":
        w = [math.exp(v / temperature) for v in vals]
        return sum(wi * v for wi, v in zip(w, vals)) / sum(w)
    centre = np.sum([emb[r] for r in refs], axis=0)
    return min(max(float(emb[c] @ centre / np.linalg.norm(centre)), 0.0), 1.0)


def _naive_sbert(emb, image_index, pairs, aggregate, **options):
    return np.array([_naive_aggregate(emb, c, [r for r in np.flatnonzero(image_index == i) if r != c], aggregate,
                                      **options) for i, c in pairs])


def test_reference_cosines_equal_gathered_einsum():
    emb, image_index = _random_corpus(n_images=30, dim=384)
    rng = np.random.default_rng(2)
    caps = rng.integers(0, len(emb), 500)
    refs = rng.integers(-1, len(emb), (500, 6))  # -1: padding or the caption itself
    got = reference_cosines(emb, caps, refs)
    expected = np.einsum("pd,pmd->pm", emb[caps], emb[np.maximum(refs, 0)])  # the code the kernel replaced
    np.testing.assert_allclose(got[refs >= 0], expected[refs >= 0], atol=1e-6)
    assert (got[refs < 0] == 0).all() and got.dtype == np.float32
    naive = np.array([[float(emb[c].astype(np.float64) @ emb[r]) if r >= 0 else 0.0 for r in row]
                      for c, row in zip(caps[:20], refs[:20])])
    np.testing.assert_allclose(got[:20], naive, atol=1e-6)
    np.testing.assert_array_equal(reference_cosines(emb.astype(np.float64), caps, refs), got)  # cast once
    assert reference_cosines(emb, caps[:0], refs[:0]).shape == (0, 6)


@pytest.mark.parametrize("aggregate,options", [("max", {}), ("mean", {}), ("topk", {"k": 2}), ("topk", {"k": 9}),
                                               ("softmax", {"temperature": 0.1}), ("softmax", {"temperature": 2.0}),
                                               ("centroid", {})])
def test_sbert_source_equals_naive_loop(aggregate, options):
    emb, image_index = _random_corpus()
    image_index = np.r_[image_index, 12]  # an image with a single caption: no reference left for it
    emb = np.vstack([emb, emb[:1]])
    corpus = LabelCorpus.from_groups(tuple("x" * len(emb)), image_index, emb)
    rng = np.random.default_rng(1)
    pairs = np.c_[rng.integers(0, 12, 40), rng.integers(0, len(emb), 40)]
    pairs = np.vstack([pairs, [[12, len(emb) - 1], [3, np.flatnonzero(image_index == 3)[0]]]])
    got = SbertSource(aggregate=aggregate, chunk=7, **options).score(corpus, pairs[:, 0], pairs[:, 1])
    np.testing.assert_allclose(got, _naive_sbert(emb, image_index, pairs, aggregate, **options), atol=1e-5,
                               equal_nan=True)
    assert np.isnan(got[-2])
    # Rows no pair needs may be NaN (labels evaluate embeds only the captions it scores; padding reads row 0).
    pairs = np.vstack([pairs, [[12, 3]]])  # image 12's padded reference slots read row 0
    got = SbertSource(aggregate=aggregate, chunk=7, **options).score(corpus, pairs[:, 0], pairs[:, 1])
    keep = (pairs[:, 1] != 0) & (pairs[:, 0] != image_index[0])  # pairs that do not need caption 0
    needed = np.r_[pairs[keep, 1], corpus.refs[pairs[keep, 0]].ravel()]
    holey = np.full_like(emb, np.nan)
    holey[needed[needed > 0]] = emb[needed[needed > 0]]
    holey_corpus = LabelCorpus.from_groups(corpus.texts, image_index, holey)
    again = SbertSource(aggregate=aggregate, chunk=7, **options).score(holey_corpus, pairs[keep, 0], pairs[keep, 1])
    np.testing.assert_allclose(again, got[keep], atol=1e-5, equal_nan=True)
    assert np.isfinite(again[-1])


def test_sbert_aggregates_order_between_mean_and_max():
    """softmax runs from mean (high temperature) to max (low); top-1 is max; top-M is mean."""
    emb, image_index = _random_corpus()
    corpus = LabelCorpus.from_groups(tuple("x" * len(emb)), image_index, emb)
    img, cap = np.repeat(np.arange(12), len(emb)), np.tile(np.arange(len(emb)), 12)
    score = {name: SbertSource(**opts).score(corpus, img, cap) for name, opts in
             {"max": {"aggregate": "max"}, "mean": {"aggregate": "mean"}, "top1": {"aggregate": "topk", "k": 1},
              "top_all": {"aggregate": "topk", "k": 99}, "hot": {"aggregate": "softmax", "temperature": 1e3},
              "cold": {"aggregate": "softmax", "temperature": 1e-3}}.items()}
    np.testing.assert_allclose(score["top1"], score["max"], equal_nan=True)
    np.testing.assert_allclose(score["top_all"], score["mean"], atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(score["hot"], score["mean"], atol=1e-3, equal_nan=True)
    np.testing.assert_allclose(score["cold"], score["max"], atol=1e-3, equal_nan=True)
    with pytest.raises(ConfigError, match="one of max, mean, topk, softmax, centroid"):
        SbertSource(aggregate="median")
    with pytest.raises(ConfigError, match="k must be at least 1"):
        SbertSource(aggregate="topk", k=0)


def test_registry_lists_sources_and_rejects_unknown():
    assert "sbert" in LABEL_SOURCES
    with pytest.raises(ConfigError, match="valid: .*sbert"):
        make_source("nope")
    with pytest.raises(ConfigError):
        SbertSource(aggregate="median")


@pytest.mark.parametrize("k,caption_k", [(2, 0), (3, 2), (1, 6)])
def test_candidate_pairs_equal_the_brute_force_union(k, caption_k):
    from bcls.pipeline.search.neighbours import candidate_pairs

    emb, image_index = _random_corpus(n_images=15)
    # uneven caption counts: images with 1, 2 and 9 captions (the deeper re-search must kick in)
    image_index = np.r_[image_index, 15, 16, 16] + 0
    image_index[:4] = 17
    emb = np.vstack([emb, emb[:3] * -1.0])
    got = candidate_pairs(emb, image_index, k, caption_k)
    pairs = set(zip(got.image_pos.tolist(), got.caption_pos.tolist()))
    assert len(pairs) == len(got.image_pos)
    key = got.image_pos * len(emb) + got.caption_pos
    assert (np.diff(key) > 0).all()  # sorted by image, then caption
    assert pairs == brute_candidate_pairs(emb, image_index, k, caption_k)
    assert got.info["recall"] == {"exact": True}


def test_threaded_merging_equals_one_thread(monkeypatch):
    """The image side reduced in image ranges on several threads, and caption sides merged block by block beside
    the search, give exactly the single-threaded candidates (captions not grouped by image)."""
    from bcls.pipeline.search import neighbours

    rng = np.random.default_rng(4)
    emb, image_index = _random_corpus(n_images=40)
    image_index = rng.permutation(image_index)
    scores, ids = neighbours.exact_knn(emb, emb, 9)
    one = neighbours._image_side(scores, ids, image_index, 8, threads=1)
    monkeypatch.setattr(neighbours, "MIN_ROWS_PER_THREAD", 10)
    for threads in (2, 3, 7):
        got = neighbours._image_side(scores, ids, image_index, 8, threads=threads)
        for a, b in zip(got, one):
            np.testing.assert_array_equal(a, b)
    whole = neighbours.candidate_pairs(emb, image_index, 3, 2)
    blocks = neighbours.candidate_pairs(emb, image_index, 3, 2, block=7)
    np.testing.assert_array_equal(blocks.image_pos, whole.image_pos)
    np.testing.assert_array_equal(blocks.caption_pos, whole.caption_pos)
    assert blocks.image_pos.size and whole.info["pairs"] == blocks.info["pairs"]


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_find_most_exact_neighbours(kind):
    from bcls.pipeline.search.indexes import IndexSpec, build_index, knn, measure_recall, recall_at_k

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 24)).astype(np.float32)
    emb = centres[rng.integers(0, 20, 2000)] + 0.3 * rng.standard_normal((2000, 24)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    index, info = build_index(emb, IndexSpec(kind, nlist=16, nprobe=4), use_gpu=False)
    assert info["device"] == "cpu"
    result = measure_recall(index, emb, [1, 10], queries=200, use_gpu=False)
    assert result["queries"] == 200 and result["recall"]["10"] > 0.8
    sample = np.sort(np.random.default_rng(0).choice(2000, size=200, replace=False))  # measure_recall's sample
    expected = recall_at_k(knn(index, emb[sample], 10)[1], exact_knn(emb[sample], emb, 10, use_gpu=False)[1])
    assert result["recall"]["10"] == round(expected, 5)
    _, got = knn(index, emb[:50], 10)
    _, truth = exact_knn(emb[:50], emb, 10)
    assert recall_at_k(got, truth) == pytest.approx(
        np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)]))
    assert recall_at_k(truth, truth) == 1.0


def test_ivf_float16_codes_find_the_float32_neighbours():
    """The float16-coded IVF index (the default) visits the same lists as the float32 one and returns the same
    neighbours with scores within float16 rounding; probing every list, it is exact search."""
    import faiss

    from bcls.pipeline.search.indexes import IndexSpec, build_index, knn

    rng = np.random.default_rng(4)
    emb = rng.standard_normal((3000, 32)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    half, info = build_index(emb, IndexSpec("ivf", nlist=20, nprobe=5), use_gpu=False)
    full, _ = build_index(emb, IndexSpec("ivf", nlist=20, nprobe=5, codes="float32"), use_gpu=False)
    assert isinstance(half, faiss.IndexIVFScalarQuantizer) and isinstance(full, faiss.IndexIVFFlat)
    assert half.code_size == 2 * 32 and full.code_size == 4 * 32 and "float16" in info["description"]
    s16, i16 = knn(half, emb[:300], 10)
    s32, i32 = knn(full, emb[:300], 10)
    assert np.mean(i16 == i32) > 0.98  # only near-ties may swap
    assert np.abs(s16 - s32).max() < 2e-3 and np.abs(s16 - s32).max() > 0  # really float16 scores
    half.nprobe = 20
    _, truth = exact_knn(emb[:300], emb, 10, use_gpu=False)
    assert np.mean(knn(half, emb[:300], 10)[1] == truth) > 0.98
    assert IndexSpec("ivf").settings()["codes"] == "float16"
    with pytest.raises(ConfigError, match="unknown ivf_codes 'int8'; valid: float16, float32"):
        IndexSpec("ivf", codes="int8")


@pytest.mark.parametrize("max_scores", [1 << 28, 700])  # one block; sub-blocks of 1 query (700 // 600)
def test_torch_exact_index_matches_faiss_flat(max_scores):
    """The torch search used on CUDA machines without faiss-gpu returns faiss's exact neighbours (run on CPU)."""
    from bcls.pipeline.search.indexes import TorchExactIndex, knn

    rng = np.random.default_rng(3)
    emb = rng.standard_normal((600, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    index = TorchExactIndex(emb, device="cpu", max_scores=max_scores)
    assert index.ntotal == 600
    scores, ids = knn(index, emb[:40], 7, block=16)
    truth_scores, truth_ids = exact_knn(emb[:40], emb, 7, use_gpu=False)
    np.testing.assert_array_equal(ids, truth_ids)  # random floats: no ties
    np.testing.assert_allclose(scores, truth_scores, atol=1e-5)
    assert index.search(emb[:2], 10_000)[1].shape == (2, 600)  # k clipped to the base


@pytest.mark.parametrize("max_scores", [1 << 28, 700])
def test_low_precision_search_with_float32_rescoring_equals_exact(max_scores):
    """The GPU path (low-precision scores, then float32 re-scoring of the top k + margin) run on the CPU with
    bfloat16 (coarser than the GPU's float16): the same neighbours and scores as float32 exact search, though the
    bfloat16 ranking alone differs."""
    import torch

    from bcls.pipeline.search.indexes import TorchExactIndex, knn

    rng = np.random.default_rng(5)
    emb = rng.standard_normal((900, 32)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    index = TorchExactIndex(emb, device="cpu", max_scores=max_scores, low_precision=torch.bfloat16)
    scores, ids = knn(index, emb[:60], 9, block=16)
    truth_scores, truth_ids = exact_knn(emb[:60], emb, 9, use_gpu=False)
    np.testing.assert_array_equal(ids, truth_ids)
    np.testing.assert_allclose(scores, truth_scores, atol=1e-6)
    rough = torch.topk(torch.from_numpy(emb[:60]).bfloat16() @ torch.from_numpy(emb).bfloat16().T, 9).indices
    assert (rough.numpy() != truth_ids).any()  # the re-scoring did real work


def test_exact_search_uses_torch_only_when_faiss_has_no_gpu_and_torch_has_cuda(monkeypatch):
    from bcls.pipeline.search import indexes

    emb = np.eye(4, dtype=np.float32)
    monkeypatch.setattr(indexes, "torch_cuda_available", lambda: True)
    monkeypatch.setattr(indexes, "TorchExactIndex", lambda base, device: ("torch", device))
    index, info = indexes.build_index(emb, indexes.IndexSpec("exact"))
    assert index == ("torch", "cuda") and info["device"] == "1 GPU (torch)"
    index, info = indexes.build_index(emb, indexes.IndexSpec("exact"), use_gpu=False)
    assert info["device"] == "cpu" and index.ntotal == 4
    _, info = indexes.build_index(emb, indexes.IndexSpec("hnsw"))
    assert info["device"] == "cpu"


@pytest.mark.parametrize("values", [np.zeros(0, dtype=np.int64), np.array([7]), np.array([3, 3, 3]),
                                    np.array([[5, -1], [5, 2]]), np.array([2.5, -0.0, 0.0, 2.5, 1e9]),
                                    np.array([b"b", b"a", b"b"], dtype="S32")])
def test_sorted_unique_is_numpy_unique(values):
    """The sort-and-mask unique that replaces numpy 2.4's hash-table ``np.unique`` on large arrays gives the same
    values and dtype, on edge cases and on a large array of spread-out keys with many repeats."""
    got = sorted_unique(values)
    assert got.dtype == np.unique(values).dtype and np.array_equal(got, np.unique(values))
    big = np.random.default_rng(0).integers(-10**12, 10**12, 5000).repeat(3)
    assert np.array_equal(sorted_unique(big), np.unique(big))


def test_ivf_queries_searched_list_by_list_give_the_same_candidates(monkeypatch):
    """An IVF index's own vectors are searched in inverted-list order (cache locality); the candidates, including
    the captions searched again deeper, equal those of a search in caption order."""
    from bcls.pipeline.search import neighbours

    emb, image_index = _random_corpus(n_images=60, dim=8)
    image_index = np.r_[image_index, 60, 61, 61]
    image_index[:14] = 62  # an image of 14 near-identical captions: searched deeper
    emb[:14] = emb[0] + 1e-3 * np.random.default_rng(1).standard_normal((14, 8)).astype(np.float32)
    emb = np.vstack([emb, -emb[20:23]])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    spec = neighbours.IndexSpec("ivf", nlist=6, nprobe=2)
    index, _ = neighbours.build_index(emb, spec, use_gpu=False)
    assert index.cp.max_points_per_centroid == 64 and spec.settings()["train_per_list"] == 64
    with pytest.raises(ConfigError, match="train_per_list must be at least 1"):
        neighbours.IndexSpec("ivf", train_per_list=0)
    order = neighbours.ivf_base_order(index)
    assert np.array_equal(np.sort(order), np.arange(len(emb))) and not np.array_equal(order, np.arange(len(emb)))
    assert neighbours.ivf_base_order(neighbours.build_index(emb, neighbours.IndexSpec("exact"))[0]) is None
    by_list = neighbours.candidate_pairs(emb, image_index, 3, 2, spec=spec, use_gpu=False, block=16)
    assert by_list.info["captions_searched_deeper"] > 0
    monkeypatch.setattr(neighbours, "ivf_base_order", lambda index: None)
    in_order = neighbours.candidate_pairs(emb, image_index, 3, 2, spec=spec, use_gpu=False, block=16)
    np.testing.assert_array_equal(by_list.image_pos, in_order.image_pos)
    np.testing.assert_array_equal(by_list.caption_pos, in_order.caption_pos)
    assert by_list.info == in_order.info


def test_candidates_on_a_cuda_machine_without_faiss(monkeypatch):
    """The GPU image has torch with CUDA but no faiss at all: the exact search (torch) and everything around it must
    not import faiss. Simulated on the CPU: ``import faiss`` fails, and the torch index that CUDA would get runs on
    the CPU in float32; the candidates equal faiss's exact ones (computed before faiss is hidden)."""
    from bcls.pipeline.search import indexes, neighbours
    from bcls.pipeline.search.torch_search import TorchExactIndex

    emb, image_index = _random_corpus(n_images=30)
    expected = neighbours.candidate_pairs(emb, image_index, 3, 2, use_gpu=False)
    monkeypatch.setitem(sys.modules, "faiss", None)  # any `import faiss` now raises ImportError
    monkeypatch.setattr(indexes, "torch_cuda_available", lambda: True)
    made = []
    monkeypatch.setattr(indexes, "TorchExactIndex",
                        lambda base, device: made.append(TorchExactIndex(base, "cpu")) or made[-1])
    original, unique_calls = TorchExactIndex.sorted_unique, []

    def spy(self, values):
        unique_calls.append(len(values))
        return original(self, values)

    monkeypatch.setattr(TorchExactIndex, "sorted_unique", spy)
    got = neighbours.candidate_pairs(emb, image_index, 3, 2)
    np.testing.assert_array_equal(got.image_pos, expected.image_pos)
    np.testing.assert_array_equal(got.caption_pos, expected.caption_pos)
    assert indexes.faiss_gpu_count() == 0
    assert len(made) == 1 and len(unique_calls) == 1  # the keys were merged on the search's device


def test_torch_index_sorted_unique_equals_numpy():
    from bcls.pipeline.search.torch_search import TorchExactIndex

    rng = np.random.default_rng(4)
    keys = rng.integers(0, 1 << 40, 5000)
    keys = np.concatenate([keys, keys[:1200], [0, 1 << 40]])
    index = TorchExactIndex(np.eye(3, dtype=np.float32), "cpu")
    np.testing.assert_array_equal(index.sorted_unique(keys), np.unique(keys))
    np.testing.assert_array_equal(index.sorted_unique(keys[:1]), keys[:1])
    assert index.sorted_unique(keys[:0]).shape == (0,)


@pytest.mark.parametrize("rows,n,k,size", [(7, 1000, 5, 64), (3, 1024, 40, 128), (4, 300, 70, 64),
                                           (2, 130, 3, 64), (6, 5000, 235, 256), (3, 500, 64, 64)])
def test_chunked_and_threshold_topk_equal_one_topk(rows, n, k, size):
    """The GPU search's two exact top-k variants (best of each chunk, then best of those; entries above the
    k-th best group maximum, then best of those) return exactly ``torch.topk``'s indices, best first, also
    with a padded last chunk or group and when they fall back to one call."""
    import torch

    from bcls.pipeline.search.torch_search import select_topk, threshold_topk

    scores = torch.from_numpy(np.random.default_rng(n + k).standard_normal((rows, n)).astype(np.float32))
    expected = torch.topk(scores, k, dim=1).indices
    for spec in (f"chunk:{size}", f"threshold:{size}", f"threshold:{4 * size}", "torch"):
        assert torch.equal(select_topk(scores, k, spec), expected), spec
    assert torch.equal(threshold_topk(scores, k, max(k - 1, 1)), expected)  # fewer groups than k: one call


def test_threshold_topk_with_ties_and_fallback(monkeypatch):
    """Many equal scores (the threshold keeps every entry equal to it): the same top-k values as
    ``torch.topk``, indices of equal entries in any order; past the candidate limit it falls back to one call."""
    import torch

    from bcls.data.infra.errors import ConfigError
    from bcls.pipeline.search import torch_search

    scores = torch.from_numpy(np.random.default_rng(3).integers(0, 6, (5, 2000)).astype(np.float32))
    expected = torch.topk(scores, 50, dim=1)
    got = torch_search.threshold_topk(scores, 50, 400)
    assert torch.equal(scores.gather(1, got), expected.values)
    assert all(len(set(row.tolist())) == 50 for row in got)  # distinct columns
    monkeypatch.setattr(torch_search, "THRESHOLD_MAX_CANDIDATES", 10)
    assert torch.equal(torch_search.threshold_topk(scores, 50, 400), expected.indices)
    for bad in ("chunk", "chunk:0", "threshold:x", "radix", "torch:5"):
        with pytest.raises(ConfigError, match="unknown top-k"):
            torch_search.parse_topk(bad)


@pytest.mark.parametrize("topk", ["chunk:64", "threshold:64"])
def test_torch_index_with_other_topk_equals_exact(topk):
    """The whole low-precision path with each top-k variant (64 chunks or groups of 900 columns, the last one
    padded)."""
    import torch

    from bcls.pipeline.search.indexes import TorchExactIndex, knn

    rng = np.random.default_rng(8)
    emb = rng.standard_normal((900, 32)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    index = TorchExactIndex(emb, device="cpu", low_precision=torch.bfloat16, topk=topk)
    scores, ids = knn(index, emb[:60], 9, block=16)
    truth_scores, truth_ids = exact_knn(emb[:60], emb, 9, use_gpu=False)
    np.testing.assert_array_equal(ids, truth_ids)
    np.testing.assert_allclose(scores, truth_scores, atol=1e-6)


def _caption_side_lexsort(ids, rows, image_index, n_images, k):
    """The numpy code the caption-side kernel replaced (two lexsorts over every (row, image, rank))."""
    b, m = ids.shape
    img = np.where(ids >= 0, image_index[np.maximum(ids, 0)], -1)
    img[ids == rows[:, None]] = -1
    row = np.repeat(np.arange(b, dtype=np.int64), m)
    rank = np.tile(np.arange(m, dtype=np.int64), b)
    img = img.ravel()
    valid = img >= 0
    row, rank, img = row[valid], rank[valid], img[valid]
    key = row * n_images + img
    order = np.lexsort((rank, key))
    key, rank = key[order], rank[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    key, rank = key[first], rank[first]
    row, img = key // n_images, key % n_images
    order = np.lexsort((rank, row))
    row, img = row[order], img[order]
    starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]]) if len(row) else np.zeros(0, dtype=np.int64)
    pos = np.arange(len(row)) - np.repeat(starts, np.diff(np.r_[starts, len(row)]))
    keep = pos < k
    found = np.minimum(np.bincount(row, minlength=b), k)
    return img[keep], rows[row[keep]], found


@pytest.mark.parametrize("m,k", [(40, 5), (12, 30), (60, 60), (7, 1)])
def test_caption_side_kernel_equals_the_lexsort_code(m, k):
    """The caption side's first k distinct images of each neighbour list (without -1 and the caption itself), in
    order of first appearance, exactly as the numpy code it replaced; also with lists shorter than k."""
    from bcls.pipeline.search.neighbours import _caption_side

    rng = np.random.default_rng(m + k)
    n, n_images, b = 600, 90, 50
    image_index = rng.integers(0, n_images, n)
    rows = rng.choice(n, b, replace=False)
    ids = rng.integers(-1, n, (b, m))
    ids[:, 0] = rows  # each list starts with the caption itself, as an exact search returns it
    ids[3] = -1  # a list with nothing
    got = _caption_side(ids, rows, image_index, n_images, k)
    expected = _caption_side_lexsort(ids, rows, image_index, n_images, k)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)
    assert got[2][3] == 0 and (got[2] <= k).all()
