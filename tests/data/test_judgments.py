"""Tests of the flickr8k caption format and of bcls.data.judgments (CxC SITS/STS, Flickr8k CrowdFlower/expert)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bcls.data.captions import detect_format, flickr8k_ids, flickr8k_image_name, read_captions
from bcls.data.infra.errors import ConfigError, DataFormatError
from bcls.data.judgments import (JUDGMENT_FORMATS, Judgments, cxc_caption_id, cxc_image_id, detect_judgment_format,
                                 read_judgments)
from tests.conftest import SHARED

F8K = SHARED / "data" / "flickr8k"
CXC = SHARED / "data" / "cxc"

TOKEN_LINES = [
    "1000268201_693b08cb0e.jpg#0\tA child in a pink dress .",
    "1000268201_693b08cb0e.jpg#1\tA girl going into a wooden building .",
    "2258277193_586949ec62.jpg.1#0\tpeople waiting for the subway",  # the upstream quirk
    "2258277193_586949ec62.jpg#1\tSome people looking out windows .",
    "",
    "3385593926_d3e9c21170.jpg#4\tA dog runs .",
]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ flickr8k captions


def test_flickr8k_captions_ids_quirk_and_detection(tmp_path):
    path = _write(tmp_path / "Flickr8k.token.txt", TOKEN_LINES)
    assert detect_format(path) == "flickr8k"
    t = read_captions(path)
    assert t.format == "flickr8k" and len(t) == 5 and t.splits is None
    assert t.caption_ids.tolist() == [10002682010, 10002682011, 22582771930, 22582771931, 33855939264]
    assert t.image_ids.tolist() == [1000268201, 1000268201, 2258277193, 2258277193, 3385593926]
    assert t.texts[2] == "people waiting for the subway"
    assert t.unique_images().tolist() == [1000268201, 2258277193, 3385593926]
    # the judgment files' names join through the same helper
    assert flickr8k_ids(["2258277193_586949ec62.jpg", "2258277193_586949ec62.jpg#1"]).tolist() == [
        2258277193, 22582771931]
    assert flickr8k_image_name("2258277193_586949ec62.jpg.1#0") == "2258277193_586949ec62.jpg"


def test_flickr8k_splits_come_from_the_official_lists_beside_the_token_file(tmp_path, caplog):
    import logging

    path = _write(tmp_path / "Flickr8k.token.txt", TOKEN_LINES)
    _write(tmp_path / "Flickr_8k.trainImages.txt", ["1000268201_693b08cb0e.jpg", "3385593926_d3e9c21170.jpg"])
    _write(tmp_path / "Flickr_8k.devImages.txt", ["9999999999_abcdef0123.jpg"])  # listed, but has no caption
    with caplog.at_level(logging.INFO):
        t = read_captions(path)  # no test list: a warning, and no test rows
    # the quirk image is in no list, as upstream: its split says so, and the quirk key is counted
    assert t.splits.tolist() == ["train", "train", "unlisted", "unlisted", "train"]
    assert "1 caption key(s) of the form X.jpg.<n>#k" in caplog.text and "1 image(s) are in none" in caplog.text
    assert "no Flickr_8k.testImages.txt beside the token file" in caplog.text
    train = read_captions(path, split="train")
    assert train.image_ids.tolist() == [1000268201, 1000268201, 3385593926]
    with pytest.raises(DataFormatError, match=r"no rows with split 'test'; splits present: train, unlisted"):
        read_captions(path, split="test")
    # one image in two lists is refused, naming the file and both splits
    _write(tmp_path / "Flickr_8k.devImages.txt", ["3385593926_d3e9c21170.jpg"])
    with pytest.raises(DataFormatError, match=r"Flickr_8k\.(train|dev)Images\.txt: image id 3385593926 is also in "
                                              r"the (train|dev) list"):
        read_captions(path)


def test_flickr8k_without_split_lists_has_no_split_and_says_where_they_go(tmp_path):
    path = _write(tmp_path / "Flickr8k.token.txt", TOKEN_LINES)
    assert read_captions(path).splits is None
    with pytest.raises(DataFormatError, match=r"no split column.*Flickr_8k\.\{train,dev,test\}Images\.txt beside"):
        read_captions(path, split="train")


@pytest.mark.skipif(not F8K.is_dir(), reason="shared Flickr8k data not available")
def test_real_flickr8k_official_splits():
    t = read_captions(F8K / "Flickr8k.token.txt")
    per_split = {s: len(np.unique(t.image_ids[t.splits == s])) for s in ("train", "dev", "test", "unlisted")}
    assert per_split == {"train": 6000, "dev": 1000, "test": 1000, "unlisted": 92}
    assert len(read_captions(F8K / "Flickr8k.token.txt", split="test")) == 5000


@pytest.mark.parametrize("line, match", [
    ("1000268201_693b08cb0e.jpg#0 no tab here", r"line 2: no tab"),
    ("1000268201_693b08cb0e.jpg\tno number", r"line 2: caption key .* has no #<n>"),
    ("not-a-name.png#0\tx", r"line 2: 'not-a-name.png#0' is not a Flickr8k image name"),
    ("1000268201_693b08cb0e.jpg#12\tx", r"line 2: .* caption number above 9"),
    ("1000268201_693b08cb0e.jpg#0\tagain", r"duplicate caption id .* at line 1 and line 2"),
    ("1000268201_ffffffffff.jpg#3\tother secret", r"line 2: image 1000268201_ffffffffff.jpg has the photo id"),
])
def test_flickr8k_caption_errors_name_file_and_line(tmp_path, line, match):
    path = _write(tmp_path / "x.token.txt", [TOKEN_LINES[0], line])
    with pytest.raises(DataFormatError, match=match) as err:
        read_captions(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------ CxC


def test_cxc_sits_and_sts(tmp_path):
    sits = _write(tmp_path / "sits_val.csv", [
        "caption,image,agg_score,sampling_method",
        "COCO_val2014:sentid:648388,COCO_val2014_000000431431.jpg,1.8,c2i_intrasim",
        "COCO_val2014:sentid:346617,COCO_val2014_000000302572.jpg,4.99,c2i_original",
    ])
    j = read_judgments(sits)
    assert j.format == "cxc-sits" and j.kind == "caption-image" and len(j) == 2
    assert j.query_ids.tolist() == [648388, 346617] and j.candidate_ids.tolist() == [431431, 302572]
    assert j.scores.tolist() == [1.8, 4.99] and j.methods.tolist() == ["c2i_intrasim", "c2i_original"]
    caps, ims = j.caption_image_pairs()
    assert caps.tolist() == [648388, 346617] and ims.tolist() == [431431, 302572]
    sts = _write(tmp_path / "anything.csv", [
        "caption1,caption2,agg_score,sampling_method",
        "COCO_val2014:sentid:190268,COCO_val2014:sentid:315773,1.24,c2c_isim",
    ])
    s = read_judgments(sts)
    assert s.format == "cxc-sts" and s.kind == "caption-caption"
    assert (s.query_ids[0], s.candidate_ids[0]) == (190268, 315773)
    with pytest.raises(ConfigError, match="no image side"):
        s.caption_image_pairs()
    assert cxc_caption_id("COCO_val2014:sentid:7") == 7 and cxc_image_id("COCO_val2014_000000365325.jpg") == 365325
    assert cxc_caption_id("sentid:7") is None


@pytest.mark.parametrize("row, match", [
    ("COCO_val2014:sentid:1,COCO_val2014_000000000002.jpg,1.0", r"line 3: expected 4 comma-separated fields"),
    ("sentid-1,COCO_val2014_000000000002.jpg,1.0,m", r"line 3: caption 'sentid-1' is not a CxC caption id"),
    ("COCO_val2014:sentid:1,image2.jpg,1.0,m", r"line 3: image 'image2.jpg' is not a CxC image name"),
    ("COCO_val2014:sentid:1,COCO_val2014_000000000002.jpg,nan,m", r"line 3: agg_score nan is outside \[0, 5\]"),
    ("COCO_val2014:sentid:1,COCO_val2014_000000000002.jpg,5.5,m", r"line 3: agg_score 5.5 is outside"),
    ("COCO_val2014:sentid:1,COCO_val2014_000000000002.jpg,x,m", r"line 3: agg_score 'x' is not a number"),
    ("COCO_val2014:sentid:1,COCO_val2014_000000000002.jpg,2,m", r"line 3: the pair of line 2 is listed again"),
])
def test_cxc_errors(tmp_path, row, match):
    path = _write(tmp_path / "sits.csv", ["caption,image,agg_score,sampling_method",
                                         "COCO_val2014:sentid:1,COCO_val2014_000000000002.jpg,1.0,m", row])
    with pytest.raises(DataFormatError, match=match) as err:
        read_judgments(path)
    assert str(err.value).startswith(str(path))


def test_detection_and_format_errors(tmp_path):
    sis = _write(tmp_path / "sis_val.csv", ["image1,image2,agg_score,sampling_method"])
    with pytest.raises(DataFormatError, match="CxC SIS"):
        read_judgments(sis)
    other = _write(tmp_path / "ratings.txt", ["a\tb"])
    with pytest.raises(DataFormatError, match="pass format="):
        detect_judgment_format(other)
    with pytest.raises(ConfigError, match="valid: auto, cxc-sits"):
        read_judgments(other, format="nope")
    with pytest.raises(DataFormatError, match="expected 'caption,image,agg_score,sampling_method'"):
        read_judgments(_write(tmp_path / "s.csv", ["caption1,caption2,agg_score,sampling_method"]),
                       format="cxc-sits")
    with pytest.raises(DataFormatError, match="no such file"):
        read_judgments(tmp_path / "missing.csv", format="cxc-sts")
    assert set(JUDGMENT_FORMATS) == {"cxc-sits", "cxc-sts", "flickr8k-crowdflower", "flickr8k-expert", "demo-truth"}
    with pytest.raises(ConfigError, match="unknown judgment kind"):
        Judgments("image-image", np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, object), "x", "x")


# ------------------------------------------------------------------------------------------------ Flickr8k judgments


def test_crowdflower_and_expert(tmp_path):
    cf = _write(tmp_path / "CrowdFlowerAnnotations.txt", [
        "1000268201_693b08cb0e.jpg\t1000268201_693b08cb0e.jpg#2\t1\t3\t0",
        "1000268201_693b08cb0e.jpg\t2258277193_586949ec62.jpg#1\t0.333333333333333\t1\t2",
    ])
    j = read_judgments(cf)
    assert j.format == "flickr8k-crowdflower" and j.kind == "image-caption"
    assert j.query_ids.tolist() == [1000268201, 1000268201]
    assert j.candidate_ids.tolist() == [10002682012, 22582771931]
    np.testing.assert_allclose(j.scores, [1.0, 1 / 3], atol=1e-9)
    assert j.methods.tolist() == ["same_image", "other_image"]
    ex = _write(tmp_path / "ExpertAnnotations.txt", [
        "1000268201_693b08cb0e.jpg\t1000268201_693b08cb0e.jpg#2\t4\t4\t3",
        "1000268201_693b08cb0e.jpg\t2258277193_586949ec62.jpg#1\t1\t2\t1",
    ])
    e = read_judgments(ex)
    assert e.format == "flickr8k-expert" and e.kind == "image-caption"
    np.testing.assert_allclose(e.scores, [11 / 3, 4 / 3])
    caps, ims = e.caption_image_pairs()
    assert caps.tolist() == [10002682012, 22582771931] and ims.tolist() == [1000268201, 1000268201]


@pytest.mark.parametrize("fmt, row, match", [
    ("flickr8k-crowdflower", "1000268201_693b08cb0e.jpg\t1000268201_693b08cb0e.jpg#2\t1\t3",
     r"line 2: expected 5 tab-separated fields"),
    ("flickr8k-crowdflower", "1000268201_693b08cb0e.jpg\t1000268201_693b08cb0e.jpg#2\t0.5\t3\t0",
     r"line 2: fraction_yes 0.5 does not match n_yes 3 and n_no 0"),
    ("flickr8k-crowdflower", "1000268201_693b08cb0e.jpg\t1000268201_693b08cb0e.jpg\t1\t3\t0",
     r"line 2: the second field .* is not a caption key"),
    ("flickr8k-crowdflower", "1000268201_693b08cb0e.jpg#1\t1000268201_693b08cb0e.jpg#2\t1\t3\t0",
     r"line 2: the first field .* is a caption key"),
    ("flickr8k-crowdflower", "1000268201_693b08cb0e.jpg\t1000268201_693b08cb0e.jpg#1\t1\t3\t0",
     r"line 2: the pair of line 1 is listed again"),
    ("flickr8k-expert", "1000268201_693b08cb0e.jpg\t1000268201_693b08cb0e.jpg#2\t4\t5\t3",
     r"line 2: expert score 2 5.0 is outside \[1, 4\]"),
])
def test_flickr8k_judgment_errors(tmp_path, fmt, row, match):
    first = ("1000268201_693b08cb0e.jpg\t1000268201_693b08cb0e.jpg#1\t1\t3\t0" if fmt.endswith("crowdflower")
             else "1000268201_693b08cb0e.jpg\t1000268201_693b08cb0e.jpg#1\t1\t1\t1")
    path = _write(tmp_path / "judgments.txt", [first, row])
    with pytest.raises(DataFormatError, match=match) as err:
        read_judgments(path, format=fmt)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------ the shared data


@pytest.mark.skipif(not F8K.is_dir(), reason="shared Flickr8k data not available")
def test_real_flickr8k_join():
    captions = read_captions(F8K / "Flickr8k.token.txt")
    assert len(captions) == 40460 and len(captions.unique_images()) == 8092
    j = read_judgments(F8K / "CrowdFlowerAnnotations.txt")
    assert len(j) == 47830
    assert np.isin(j.candidate_ids, captions.caption_ids).all()
    assert np.isin(j.query_ids, captions.unique_images()).all()
    test_names = (F8K / "Flickr_8k.testImages.txt").read_text().split()
    assert np.isin(j.query_ids, flickr8k_ids(test_names)).all()


@pytest.mark.skipif(not CXC.is_dir(), reason="shared CxC data not available")
def test_real_cxc_counts():
    sits = read_judgments(CXC / "sits_val.csv")
    sts = read_judgments(CXC / "sts_val.csv")
    assert len(sits) == 44722 and len(sts) == 44009
    assert (sits.methods == "c2i_original").sum() == 25000 and (sts.methods == "c2c_cocaption").sum() == 25000
    assert len(np.unique(sits.query_ids)) == 25000 and len(np.unique(sits.candidate_ids)) == 5000
    assert sits.scores.min() >= 0 and sits.scores.max() <= 5


def test_flickr8k_files_are_told_apart_by_their_rows_not_their_names(tmp_path):
    from bcls.data.captions import detect_format
    from bcls.data.judgments import detect_judgment_format

    (tmp_path / "ratings_a.txt").write_text("1_a.jpg\t2_b.jpg#1\t0.333333\t1\t2\n1_a.jpg\t1_a.jpg#0\t1\t3\t0\n")
    (tmp_path / "ratings_b.txt").write_text("1_a.jpg\t2_b.jpg#1\t1\t2\t1\n1_a.jpg\t1_a.jpg#0\t4\t4\t3\n")
    (tmp_path / "captions.txt").write_text("1_a.jpg#0\tA dog on a beach.\n1_a.jpg#1\tA brown dog.\n")
    assert detect_judgment_format(tmp_path / "ratings_a.txt") == "flickr8k-crowdflower"
    assert detect_judgment_format(tmp_path / "ratings_b.txt") == "flickr8k-expert"
    assert detect_format(tmp_path / "captions.txt") == "flickr8k"
    (tmp_path / "notes.txt").write_text("just some notes\n")
    with pytest.raises(DataFormatError, match="cannot tell the caption format"):
        detect_format(tmp_path / "notes.txt")


def test_demo_truth_judgments_are_the_demo_relevance(tmp_path):
    from bcls.data.captions import read_captions
    from bcls.data.demo import DemoConfig, generate_demo
    from bcls.data.judgments import read_demo_truth

    data = tmp_path / "demo"
    generate_demo(data, DemoConfig(n_train=20, n_dev=30, n_test=10, seed=2))
    judged = read_judgments(data / "dev_relevance.npy")
    assert judged.format == "demo-truth" and judged.kind == "image-caption"
    relevance = np.load(data / "dev_relevance.npy").astype(np.float64)
    table = read_captions(data, split="dev")
    rows = np.searchsorted(table.unique_images(), judged.query_ids)
    np.testing.assert_allclose(judged.scores, relevance[rows, judged.candidate_ids], atol=1e-3)  # float16 file
    own = table.image_ids[judged.candidate_ids] == judged.query_ids
    assert np.array_equal(own, judged.methods == "same_image")
    assert own.sum() == len(table)  # every caption with its own image
    related = judged.methods == "other_related"
    assert np.all(judged.scores[related] > 0) and np.all(judged.scores[judged.methods == "other_unrelated"] == 0)
    per_image = np.bincount(rows[related], minlength=30)
    available = ((relevance > 0) & ~(table.image_index()[None, :] == np.arange(30)[:, None])).sum(axis=1)
    np.testing.assert_array_equal(per_image, np.minimum(available, 25))
    again = read_demo_truth(data / "dev_facts.json")  # the facts file names the same split; same seed, same sample
    np.testing.assert_array_equal(again.candidate_ids, judged.candidate_ids)
    assert len(read_demo_truth(data / "dev_facts.json", related=2, unrelated=1)) == len(table) + 30 * 3
    (tmp_path / "train_relevance.npy").write_bytes(b"")
    with pytest.raises(DataFormatError, match="train_relevance.npy: is not a demo split's facts or relevance file"):
        read_demo_truth(tmp_path / "train_relevance.npy")
