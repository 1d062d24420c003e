"""The ``image`` label source: cosine of the image features of a pair's image and of the caption's own image."""

from __future__ import annotations

import numpy as np
import pytest

from bcls.data.infra.errors import ConfigError
from bcls.data.feature_folder import write_feature_folder
from bcls.pipeline.corpus import LabelCorpus
from bcls.pipeline.sources import LABEL_SOURCES, make_source


def _corpus() -> LabelCorpus:
    # images 10 (captions 100, 101), 20 (200, 201), 30 (300), 40 (400; no features)
    return LabelCorpus.from_groups(tuple("abcdef"), np.array([0, 0, 1, 1, 2, 3]),
                                   image_ids=np.array([10, 20, 30, 40]),
                                   caption_ids=np.array([100, 101, 200, 201, 300, 400]))


def test_image_source_is_the_cosine_of_the_two_images_features(tmp_path):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(4, 6)).astype(np.float32)
    write_feature_folder(tmp_path / "f", np.array([30, 10, 20, 99]), feats)  # any row order; 40 absent
    source = make_source("image", features=str(tmp_path / "f"))
    assert "image" in LABEL_SOURCES.names() and source.name == "image" and not source.needs_embeddings
    corpus = _corpus()
    image_pos = np.array([0, 0, 1, 2, 1, 3, 0])
    caption_pos = np.array([0, 2, 4, 1, 2, 0, 5])
    got = source.score(corpus, image_pos, caption_pos)
    row = {30: 0, 10: 1, 20: 2, 99: 3}
    want = []
    for i, c in zip(image_pos, caption_pos):  # the naive definition, pair by pair
        a = corpus.image_ids[i]
        b = corpus.image_ids[corpus.image_index[c]]
        if a not in row or b not in row:
            want.append(np.nan)
            continue
        u, v = feats[row[a]], feats[row[b]]
        want.append(float(u @ v / np.linalg.norm(u) / np.linalg.norm(v)))
    np.testing.assert_allclose(got, np.array(want, dtype=np.float32), atol=1e-6)
    assert got.dtype == np.float32 and got[0] == pytest.approx(1.0) and np.isnan(got[5]) and np.isnan(got[6])
    settings = source.settings()
    assert settings["features"] == str(tmp_path / "f") and len(settings["fingerprint"]) == 64 and settings["dim"] == 6


def test_image_source_needs_its_features_and_ids():
    with pytest.raises(ConfigError, match=r"needs its features option \(-o image.features=DIR\)"):
        make_source("image")


def test_image_source_refuses_a_corpus_without_ids(tmp_path):
    write_feature_folder(tmp_path / "f", np.array([0, 1]), np.eye(2, dtype=np.float32))
    corpus = LabelCorpus.from_groups(("a", "b"), np.array([0, 1]))
    with pytest.raises(ConfigError, match="image label source looks pairs up by id"):
        make_source("image", features=str(tmp_path / "f")).score(corpus, np.array([0]), np.array([1]))
