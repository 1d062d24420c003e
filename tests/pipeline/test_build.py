"""The label build end to end on a tiny caption table (with a deterministic stand-in encoder)."""

import json

import numpy as np
import pyarrow.csv as pcsv
import pyarrow as pa
import pytest

from bcls.data.captions import read_captions
from bcls.data.errors import ConfigError
from bcls.data.shards import read_labels
from bcls.pipeline.build import LabelBuildConfig, build_labels
from bcls.pipeline.sources import LabelCorpus, SbertSource

WORDS = "dog cat man woman beach street red blue small large runs sits car ball".split()


def _table(path, n_images=9, cpi=5, seed=0):
    rng = np.random.default_rng(seed)
    rows = {"image_id": [], "caption_id": [], "text": []}
    for i in range(n_images):
        for j in range(cpi):
            rows["image_id"].append(1000 + i)
            rows["caption_id"].append(50_000 + i * cpi + j)
            rows["text"].append("a " + " ".join(rng.choice(WORDS, 5)))
    pcsv.write_csv(pa.table(rows), path)
    return path


def test_build_writes_shards_that_match_the_source(tmp_path, encoder):
    captions = _table(tmp_path / "caps.csv")
    config = LabelBuildConfig(captions=str(captions), out=str(tmp_path / "labels"), k=4, images_per_shard=4)
    labels = build_labels(config, encoder=encoder)
    assert len(labels.manifest["shards"]) == 3
    prov = labels.provenance
    assert prov["k"] == 4 and prov["sources"]["sbert"]["aggregate"] == "max"
    table = read_captions(captions)
    assert prov["input"]["fingerprint"] == table.fingerprint()
    data = read_labels(labels)
    img, cap, val = (data.column(c).to_numpy() for c in ("image_id", "caption_id", "sbert"))
    assert len(img) == 9 * 4
    assert all((img == i).sum() == 4 for i in range(1000, 1009))
    # values equal a direct evaluation of the source on the same pairs
    emb = encoder(table.texts)
    corpus = LabelCorpus.from_groups(table.texts, table.image_index(), emb)
    img_pos = np.searchsorted(table.unique_images(), img)
    cap_pos = np.searchsorted(table.caption_ids, cap)
    np.testing.assert_allclose(val, SbertSource().score(corpus, img_pos, cap_pos), atol=1e-6)
    config_file = json.loads((tmp_path / "labels" / "build_config.json").read_text())
    assert config_file["k"] == 4


def test_rebuild_is_a_no_op_and_other_settings_are_refused(tmp_path, encoder):
    captions = _table(tmp_path / "caps.csv")
    config = LabelBuildConfig(captions=str(captions), out=str(tmp_path / "labels"), k=3)
    first = build_labels(config, encoder=encoder).manifest
    again = build_labels(config, encoder=encoder).manifest
    assert first == again
    other = LabelBuildConfig(captions=str(captions), out=str(tmp_path / "labels"), k=5)
    with pytest.raises(ConfigError, match="different settings.*--force"):
        build_labels(other, encoder=encoder)
    forced = build_labels(LabelBuildConfig(captions=str(captions), out=str(tmp_path / "labels"), k=5, force=True),
                          encoder=encoder)
    assert forced.provenance["k"] == 5


def test_build_refuses_a_folder_with_foreign_files(tmp_path, encoder):
    captions = _table(tmp_path / "caps.csv")
    out = tmp_path / "labels"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        build_labels(LabelBuildConfig(captions=str(captions), out=str(out), k=3), encoder=encoder)
    assert (out / "precious.txt").read_text() == "mine"


def test_unknown_source_is_an_error_before_any_work(tmp_path, encoder):
    with pytest.raises(ConfigError, match="unknown label source"):
        build_labels(LabelBuildConfig(captions=str(tmp_path / "none.csv"), out=str(tmp_path / "o"),
                                      sources=("bleu",)), encoder=encoder)
    assert not (tmp_path / "o").exists()
