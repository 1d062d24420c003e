"""The ``truth`` label source: the demo's ground truth for a label build's candidates."""

import numpy as np
import pytest

from bcls.data.captions import read_captions
from bcls.data.demo import DemoConfig, demo_relevance, generate_demo, read_demo_facts
from bcls.data.infra.errors import ConfigError
from bcls.data.shards import read_labels
from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
from bcls.pipeline.corpus import LabelCorpus
from bcls.pipeline.sources import make_source


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("truth")
    generate_demo(root / "data", DemoConfig(seed=2, n_train=40, n_dev=10, n_test=20))
    return root


def test_truth_column_is_the_ground_truth(demo, encoder):
    labels = build_labels(LabelBuildConfig(captions=str(demo / "data"), split="dev", out=str(demo / "labels"), k=4,
                                           sources=("sbert", "truth"),
                                           source_options={"truth": {"path": str(demo / "data"), "split": "dev"}}),
                          encoder=encoder)
    data = read_labels(labels)
    facts = read_demo_facts(demo / "data", "dev")
    rel = demo_relevance(facts)
    img_row = {int(i): r for r, i in enumerate(facts.image_ids)}
    rows = np.array([img_row[int(i)] for i in data.column("image_id").to_numpy()])
    np.testing.assert_array_equal(data.column("truth").to_numpy(), rel[rows, data.column("caption_id").to_numpy()])
    assert labels.provenance["sources"]["truth"]["split"] == "dev"


def test_truth_refuses_pairs_of_another_split_and_a_missing_path(demo):
    with pytest.raises(ConfigError, match="needs its path option"):
        make_source("truth")
    table = read_captions(demo / "data", split="test")  # test image ids are not dev's
    corpus = LabelCorpus.from_groups(table.texts, table.image_index(), image_ids=table.unique_images(),
                                     caption_ids=table.caption_ids)
    source = make_source("truth", path=str(demo / "data"), split="dev")
    with pytest.raises(ConfigError, match="the demo's 'dev' split does not have"):
        source.score(corpus, np.array([0]), np.array([0]))
