"""Tests of the synthetic scenes demo dataset (bcls.data.demo)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import bcls
from bcls.data.demo import (
    DEMO_SPLITS,
    DemoConfig,
    DemoFacts,
    demo_pair_relevance,
    demo_prototypes,
    demo_relevance,
    generate_demo,
    read_demo_facts,
)
from bcls.data.infra.errors import ConfigError, DataFormatError
from bcls.data.precomp import precomp_paths

TINY = DemoConfig(seed=3, n_train=200, n_dev=15, n_test=120)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    return out, generate_demo(out, TINY)


def _naive_relevance(facts: DemoFacts, images: list[int], captions: list[int]) -> np.ndarray:
    out = np.zeros((len(images), len(captions)), dtype=np.float32)
    for a, i in enumerate(images):
        true = set(facts.image_facts(i).tolist())
        for b, c in enumerate(captions):
            asserted = facts.caption_facts(c).tolist()
            out[a, b] = sum(f in true for f in asserted) / len(asserted)
    return out


def test_same_config_gives_byte_identical_files(demo: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = demo
    generate_demo(tmp_path, TINY)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in tmp_path.iterdir())
    for name in names:
        assert (out / name).read_bytes() == (tmp_path / name).read_bytes(), name
    other = tmp_path / "other_seed"
    generate_demo(other, DemoConfig(seed=4, n_train=10, n_dev=2, n_test=3))
    assert (other / "test_caps.txt").read_bytes() != (out / "test_caps.txt").read_bytes()


def test_layout_shapes_and_unique_ids(demo: tuple[Path, dict]) -> None:
    out, summary = demo
    all_ids: list[int] = []
    for split, n in TINY.split_sizes().items():
        paths = precomp_paths(out, split)
        caps = paths["caps"].read_text(encoding="utf-8").splitlines()
        ids = [int(x) for x in paths["ids"].read_text().split()]
        ims = np.load(paths["ims"], allow_pickle=False)
        assert ims.shape == (n, TINY.n_regions, TINY.feature_dim) and ims.dtype == np.float32
        assert len(caps) == len(ids) == TINY.captions_per_image * n
        per_image = ids[:: TINY.captions_per_image]
        assert ids == list(np.repeat(per_image, TINY.captions_per_image))
        all_ids += per_image
        facts = read_demo_facts(out, split)
        assert facts.n_images == n and facts.n_captions == len(caps)
        assert facts.image_ids.tolist() == per_image
        rel_path = out / f"{split}_relevance.npy"
        if split == "train":
            assert not rel_path.exists()
        else:
            rel = np.load(rel_path, allow_pickle=False)
            assert rel.dtype == np.float16 and rel.shape == (n, len(caps))
            np.testing.assert_allclose(rel, demo_relevance(facts), atol=1e-3)
        assert summary["splits"][split]["n_images"] == n
    assert len(set(all_ids)) == len(all_ids)
    on_disk = json.loads((out / "demo.json").read_text())
    assert on_disk == summary
    assert on_disk["bcls_version"] == bcls.__version__ and on_disk["config"]["seed"] == TINY.seed
    assert set(on_disk["splits"]) == set(DEMO_SPLITS)


def test_captions_assert_consistent_true_facts(demo: tuple[Path, dict]) -> None:
    out, _ = demo
    facts = read_demo_facts(out, "test")
    rel = demo_relevance(facts)
    own = rel[facts.caption_image, np.arange(facts.n_captions)]
    np.testing.assert_array_equal(own, 1.0)
    index = {name: k for k, name in enumerate(facts.fact_names)}
    for c in range(facts.n_captions):
        names = [facts.fact_names[f] for f in facts.caption_facts(c)]
        assert any(n.startswith("object:") for n in names)
        for n in names:  # an attribute or relation is only asserted of an object the caption mentions
            parts = n.split(":")
            mentioned = {"attribute": parts[1:2], "relation": parts[1::2][:2]}.get(parts[0], [])
            for obj in mentioned:
                assert index[f"object:{obj}"] in facts.caption_facts(c), n


def test_vectorised_relevance_matches_naive_loop(demo: tuple[Path, dict]) -> None:
    out, _ = demo
    facts = read_demo_facts(out, "dev")
    images, captions = list(range(facts.n_images)), list(range(facts.n_captions))
    np.testing.assert_allclose(demo_relevance(facts), _naive_relevance(facts, images, captions), rtol=0, atol=1e-6)
    img_rows, cap_rows = [4, 0, 4, 11], [70, 3, 3, 0, 42, 9]
    got = demo_relevance(facts, img_rows, cap_rows, max_block_elements=5)  # several caption blocks
    np.testing.assert_allclose(got, _naive_relevance(facts, img_rows, cap_rows), rtol=0, atol=1e-6)
    assert demo_relevance(facts, [], cap_rows).shape == (0, 6)


def test_pair_relevance_equals_the_matrix(demo: tuple[Path, dict]) -> None:
    out, _ = demo
    facts = read_demo_facts(out, "dev")
    rng = np.random.default_rng(0)
    img = rng.integers(0, facts.n_images, 500)
    cap = rng.integers(0, facts.n_captions, 500)
    np.testing.assert_array_equal(demo_pair_relevance(facts, img, cap), demo_relevance(facts)[img, cap])
    assert demo_pair_relevance(facts, [], []).shape == (0,)


def test_relevance_is_graded(demo: tuple[Path, dict]) -> None:
    out, summary = demo
    facts = read_demo_facts(out, "test")
    rel = demo_relevance(facts)
    off = np.ones(rel.shape, dtype=bool)
    off[facts.caption_image, np.arange(facts.n_captions)] = False
    values = rel[off]
    assert 0.15 < np.mean((values > 0) & (values < 1)) < 0.6
    assert np.mean(values == 0) > 0.3
    assert np.mean(values == 1) > 0  # near-duplicate scenes / generic captions
    assert summary["splits"]["test"]["off_diagonal_relevance"]["partial"] == pytest.approx(
        np.mean((values > 0) & (values < 1)), abs=1e-5)


def test_features_are_learnable(demo: tuple[Path, dict]) -> None:
    out, summary = demo
    protos = demo_prototypes(TINY)
    feats = np.load(out / "train_ims.npy").mean(axis=1)  # (N, D) mean region feature
    facts = read_demo_facts(out, "train")
    has = np.zeros((facts.n_images, len(protos.object_names)), dtype=bool)
    for i in range(facts.n_images):
        for f in facts.image_facts(i):
            name = facts.fact_names[f]
            if name.startswith("object:"):
                has[i, protos.object_names.index(name.split(":")[1])] = True
    scores = feats @ protos.objects.T  # (N, n_objects)
    checked = 0
    for o in range(len(protos.object_names)):
        if has[:, o].sum() >= 10 and (~has[:, o]).sum() >= 10:
            assert scores[has[:, o], o].mean() > scores[~has[:, o], o].mean(), protos.object_names[o]
            checked += 1
    assert checked >= 5
    chance = 5 / len(protos.object_names)
    assert summary["splits"]["train"]["object_image_probe_precision"] > 4 * chance
    assert summary["splits"]["train"]["object_region_probe_accuracy"] > 0.5


def test_captions_look_like_sentences(demo: tuple[Path, dict]) -> None:
    out, _ = demo
    caps = (out / "train_caps.txt").read_text(encoding="utf-8").splitlines()
    for text in caps:
        assert 6 <= len(text.split()) <= 20, text
        assert text[0].isupper() and text.endswith(".") and not text.endswith(" ."), text
        assert "  " not in text and "_" not in text and not re.search(r"\b(a|an) (a|an|the)\b", text), text
        assert not re.search(r"\ba [aeiou]", text) and not re.search(r"\ban [^aeiou ]", text), text
    per_image = [caps[i:i + TINY.captions_per_image] for i in range(0, len(caps), TINY.captions_per_image)]
    assert np.mean([len(set(group)) == len(group) for group in per_image]) > 0.9


def test_config_and_reader_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="n_regions"):
        DemoConfig(n_regions=5)
    with pytest.raises(ConfigError):
        DemoConfig(n_test=0)
    with pytest.raises(DataFormatError, match="not found"):
        read_demo_facts(tmp_path, "test")
    (tmp_path / "test_facts.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(DataFormatError, match="format"):
        read_demo_facts(tmp_path, "test")
