"""Candidates and the sbert source against brute-force loops."""

import numpy as np
import pytest

from bcls.data.errors import ConfigError
from bcls.pipeline.neighbours import exact_knn, image_candidates
from bcls.pipeline.sources import LABEL_SOURCES, LabelCorpus, SbertSource, make_source


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


def _naive_sbert(emb, image_index, pairs, aggregate):
    out = []
    for i, c in pairs:
        refs = [r for r in np.flatnonzero(image_index == i) if r != c]
        vals = [min(max(float(emb[c] @ emb[r]), 0.0), 1.0) for r in refs]
        out.append(np.nan if not vals else (max(vals) if aggregate == "max" else sum(vals) / len(vals)))
    return np.array(out)


@pytest.mark.parametrize("aggregate", ["max", "mean"])
def test_sbert_source_equals_naive_loop(aggregate):
    emb, image_index = _random_corpus()
    image_index = np.r_[image_index, 12]  # an image with a single caption: no reference left for it
    emb = np.vstack([emb, emb[:1]])
    corpus = LabelCorpus.from_groups(tuple("x" * len(emb)), image_index, emb)
    rng = np.random.default_rng(1)
    pairs = np.c_[rng.integers(0, 12, 40), rng.integers(0, len(emb), 40)]
    pairs = np.vstack([pairs, [[12, len(emb) - 1], [3, np.flatnonzero(image_index == 3)[0]]]])
    got = SbertSource(aggregate=aggregate, chunk=7).score(corpus, pairs[:, 0], pairs[:, 1])
    np.testing.assert_allclose(got, _naive_sbert(emb, image_index, pairs, aggregate), atol=1e-5, equal_nan=True)
    assert np.isnan(got[-2])


def test_registry_lists_sources_and_rejects_unknown():
    assert "sbert" in LABEL_SOURCES
    with pytest.raises(ConfigError, match="valid: .*sbert"):
        make_source("nope")
    with pytest.raises(ConfigError):
        SbertSource(aggregate="median")
