"""Tests of the ``file`` label source: the pair-score reader, id lookup, registry, and LabelCorpus ids."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bcls.data.infra.errors import ConfigError, DataFormatError
from bcls.pipeline.sources.file import FileSource, file_source, read_pair_scores
from bcls.pipeline.corpus import LabelCorpus
from bcls.pipeline.sources import LABEL_SOURCES, make_source


def _write(path, rows, header="image_id,caption_id,score", sep=","):
    path.write_text("\n".join([header.replace(",", sep)] + [sep.join(map(str, r)) for r in rows]) + "\n")
    return path


def _corpus() -> LabelCorpus:
    # images 10 (captions 100, 101), 20 (200, 201), 30 (300)
    return LabelCorpus.from_groups(tuple("abcde"), np.array([0, 0, 1, 1, 2]),
                                   image_ids=np.array([10, 20, 30]),
                                   caption_ids=np.array([100, 101, 200, 201, 300]))


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_read_formats_and_extra_columns(tmp_path, suffix):
    rows = [(10, 200, 0.25), (20, 100, 0.5), (30, 101, -1.5)]
    path = tmp_path / f"scores{suffix}"
    if suffix == ".parquet":
        pq.write_table(pa.table({"note": ["x", "y", "z"], "image_id": [r[0] for r in rows],
                                 "caption_id": [r[1] for r in rows], "score": [r[2] for r in rows]}), path)
    else:
        sep = "\t" if suffix == ".tsv" else ","
        path.write_text(sep.join(["note", "image_id", "caption_id", "score"]) + "\n"
                        + "".join(sep.join(["n", str(a), f" {b} ", str(c)]) + "\n" for a, b, c in rows))
    img, cap, score = read_pair_scores(path)
    assert img.dtype == np.int64 and cap.dtype == np.int64 and score.dtype == np.float32
    assert img.tolist() == [10, 20, 30] and cap.tolist() == [200, 100, 101]
    np.testing.assert_array_equal(score, np.array([0.25, 0.5, -1.5], np.float32))


@pytest.mark.parametrize("rows, header, match", [
    ([(1, 2, 0.5)], "image_id,caption,score", r"missing column\(s\) caption_id \(header has: image_id, caption"),
    ([(1, 2, 0.5), ("x", 3, 0.5)], None, r"line 3: column 'image_id' is 'x', not an integer id"),
    ([(1, 2.5, 0.5)], None, r"line 2: column 'caption_id' is '2.5', not an integer id"),
    ([(1, 2, 0.5), (1, 3, "")], None, r"line 3: score is empty"),
    ([(1, 2, "inf")], None, r"line 2: score inf is not finite"),
    ([(1, 2, "nan")], None, r"line 2: score nan is not finite"),
    ([(1, 2, "1e60")], None, r"line 2: score 1e\+60 is beyond the float32 range"),
    ([(1, 2, "abc")], None, r"line 2: score is 'abc', not a number"),
    ([(1, 2, 0.5), (3, 4, 0.1), (1, 2, 0.7)], None,
     r"pair \(image_id 1, caption_id 2\) appears at line 2 and again at line 4"),
    ([], None, r"no rows"),
    ([(1, 2, 0.5, 9)], None, r"line 2: expected 3 fields, got 4"),
])
def test_reader_errors_name_file_and_row(tmp_path, rows, header, match):
    path = _write(tmp_path / "s.csv", rows, header or "image_id,caption_id,score")
    with pytest.raises(DataFormatError, match=match) as err:
        read_pair_scores(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_reader_file_errors(tmp_path):
    with pytest.raises(DataFormatError, match="no such file"):
        read_pair_scores(tmp_path / "none.csv")
    (tmp_path / "s.json").write_text("{}")
    with pytest.raises(DataFormatError, match=r"use one of \.csv, \.tsv"):
        read_pair_scores(tmp_path / "s.json")
    pq.write_table(pa.table({"image_id": [1], "caption_id": [2]}), tmp_path / "s.parquet")
    with pytest.raises(DataFormatError, match=r"s\.parquet: missing column\(s\) score"):
        read_pair_scores(tmp_path / "s.parquet")
    pq.write_table(pa.table({"image_id": [1, None], "caption_id": [2, 3], "score": [0.1, 0.2]}),
                   tmp_path / "n.parquet")
    with pytest.raises(DataFormatError, match=r"row 2: column 'image_id' is empty"):
        read_pair_scores(tmp_path / "n.parquet")


def test_score_looks_pairs_up_by_id_and_absent_is_nan():
    src = FileSource(np.array([10, 20, 30, 10]), np.array([200, 100, 300, 101]),
                     np.array([0.25, 0.5, 1.0, 2.0], np.float32), "mem")
    corpus = _corpus()
    # pairs (image pos, caption pos): (0, 2) = (10, 200); (1, 0) = (20, 100); (2, 4) = (30, 300); (0, 1) = (10, 101)
    # (1, 4) = (20, 300) absent; (2, 0) = (30, 100) absent
    got = src.score(corpus, np.array([0, 1, 2, 0, 1, 2]), np.array([2, 0, 4, 1, 4, 0]))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.array([0.25, 0.5, 1.0, 2.0, np.nan, np.nan], np.float32))
    assert src.score(corpus, np.zeros(0, np.int64), np.zeros(0, np.int64)).shape == (0,)
    # ids beyond both ends of the file's ids
    wide = LabelCorpus.from_groups(tuple("ab"), np.array([0, 1]), image_ids=np.array([-5, 99]),
                                   caption_ids=np.array([1000, -1]))
    assert np.isnan(src.score(wide, np.array([0, 1]), np.array([0, 1]))).all()
    empty = FileSource(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    assert np.isnan(empty.score(corpus, np.array([0]), np.array([0]))).all()


def test_lookup_matches_a_dict_on_random_pairs():
    rng = np.random.default_rng(0)
    n_img, n_cap = 40, 200
    image_ids = rng.choice(10**12, n_img, replace=False)
    caption_ids = rng.choice(10**12, n_cap, replace=False) - 5 * 10**11
    image_index = rng.integers(0, n_img, n_cap)
    image_index[:n_img] = np.arange(n_img)
    corpus = LabelCorpus.from_groups(tuple("x" * n_cap), image_index, image_ids=image_ids, caption_ids=caption_ids)
    flat = rng.choice(n_img * n_cap, 1500, replace=False)
    fi, fc = flat // n_cap, flat % n_cap
    scores = rng.standard_normal(len(flat)).astype(np.float32)
    src = FileSource(image_ids[fi], caption_ids[fc], scores)
    table = {(int(image_ids[i]), int(caption_ids[c])): s for i, c, s in zip(fi, fc, scores)}
    qi, qc = rng.integers(0, n_img, 5000), rng.integers(0, n_cap, 5000)
    expect = np.array([table.get((int(image_ids[i]), int(caption_ids[c])), np.nan) for i, c in zip(qi, qc)],
                      np.float32)
    np.testing.assert_array_equal(src.score(corpus, qi, qc), expect)


def test_registry_factory_settings_and_validation(tmp_path):
    assert "file" in LABEL_SOURCES
    path = _write(tmp_path / "s.csv", [(10, 200, 0.25), (30, 300, 1)])
    src = make_source("file", path=str(path))
    assert isinstance(src, FileSource) and src.name == "file" and not src.needs_embeddings
    settings = json.loads(json.dumps(src.settings()))
    assert settings["path"] == str(path) and settings["pairs"] == 2 and len(settings["fingerprint"]) == 64
    assert file_source(path).settings()["fingerprint"] == settings["fingerprint"]
    np.testing.assert_array_equal(src.score(_corpus(), np.array([0, 2]), np.array([2, 4])), [0.25, 1.0])
    with pytest.raises(ConfigError, match="needs its path option"):
        make_source("file")
    with pytest.raises(ConfigError, match="valid: .*file"):
        make_source("files")
    with pytest.raises(ConfigError, match="no image_ids/caption_ids"):
        src.score(LabelCorpus.from_groups(tuple("ab"), np.array([0, 0])), np.array([0]), np.array([0]))
    with pytest.raises(ConfigError, match="must be finite"):
        FileSource(np.array([1]), np.array([2]), np.array([np.nan]))
    with pytest.raises(ConfigError, match="1-D of one length"):
        FileSource(np.array([1, 2]), np.array([2]), np.array([0.5]))


def test_label_corpus_ids_are_optional_and_checked():
    plain = LabelCorpus.from_groups(tuple("abc"), np.array([0, 1, 0]))
    assert plain.image_ids is None and plain.caption_ids is None
    assert plain.refs.tolist() == [[0, 2], [1, -1]]
    withids = LabelCorpus.from_groups(tuple("abc"), np.array([0, 1, 0]), image_ids=[7, 8], caption_ids=[1, 2, 3])
    assert withids.image_ids.dtype == np.int64 and withids.caption_ids.tolist() == [1, 2, 3]
    with pytest.raises(ConfigError, match=r"image_ids must have shape \(2,\)"):
        LabelCorpus.from_groups(tuple("abc"), np.array([0, 1, 0]), image_ids=[7, 8, 9])
    with pytest.raises(ConfigError, match=r"caption_ids must have shape \(3,\)"):
        LabelCorpus.from_groups(tuple("abc"), np.array([0, 1, 0]), caption_ids=[1, 2])
