"""Tests of bcls.data.captions: every caption format, detection, split filtering and error messages."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bcls.data.captions import CAPTION_FORMATS, CaptionTable, detect_format, read_captions
from bcls.data.infra.errors import ConfigError, DataFormatError
from bcls.data.precomp import write_precomp_split
from tests.conftest import SHARED


ROWS = [
    # image_id, caption_id, text, split
    (10, 100, "a dog on grass", "train"),
    (10, 101, 'a "quoted" dog, with comma', "train"),
    (20, 200, "two cats\tin a tab", "test"),
    (30, 300, "a bus", "val"),
    (20, 201, "a cat sleeping", "test"),
    (30, 301, "  a red bus  ", "val"),
]


def _expected() -> CaptionTable:
    return CaptionTable(
        image_ids=np.array([r[0] for r in ROWS], dtype=np.int64),
        caption_ids=np.array([r[1] for r in ROWS], dtype=np.int64),
        texts=tuple(r[2].strip() for r in ROWS),
        splits=np.array([r[3] for r in ROWS], dtype=object),
        path="expected",
        format="table",
    )


def write_delimited(path: Path, rows, header=("image_id", "caption_id", "text", "split"), delimiter=None) -> Path:
    delimiter = delimiter or ("\t" if path.suffix == ".tsv" else ",")
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_parquet(path: Path, rows, with_split: bool = True) -> Path:
    cols = {
        "image_id": pa.array([r[0] for r in rows], pa.int64()),
        "caption_id": pa.array([r[1] for r in rows], pa.int64()),
        "text": pa.array([r[2] for r in rows], pa.string()),
    }
    if with_split:
        cols["split"] = pa.array([r[3] for r in rows], pa.string())
    pq.write_table(pa.table(cols), path)
    return path


def write_coco(path: Path, anns, images=None) -> Path:
    images = images if images is not None else [{"id": i, "file_name": f"{i}.jpg"} for i in {a["image_id"] for a in anns}]
    path.write_text(json.dumps({"info": {}, "images": images, "licenses": [], "annotations": anns}))
    return path


def karpathy_images():
    return [
        {"split": "train", "imgid": 0, "cocoid": 500, "filename": "a.jpg",
         "sentences": [{"raw": " A dog. ", "tokens": ["a", "dog"], "sentid": 0},
                       {"raw": "A puppy.", "tokens": ["a", "puppy"], "sentid": 1}]},
        {"split": "restval", "imgid": 1, "cocoid": 501, "filename": "b.jpg",
         "sentences": [{"raw": "A cat.", "tokens": ["a", "cat"], "sentid": 2}]},
        {"split": "val", "imgid": 2, "cocoid": 502, "filename": "c.jpg",
         "sentences": [{"raw": "A bus.", "tokens": ["a", "bus"], "sentid": 3}]},
        {"split": "test", "imgid": 3, "cocoid": 503, "filename": "d.jpg",
         "sentences": [{"raw": "A car.", "tokens": ["a", "car"], "sentid": 4},
                       {"raw": "A truck.", "tokens": ["a", "truck"], "sentid": 5}]},
    ]


def write_karpathy(path: Path, images) -> Path:
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return path


def assert_same_rows(table: CaptionTable, expected: CaptionTable, splits: bool = True) -> None:
    np.testing.assert_array_equal(table.image_ids, expected.image_ids)
    np.testing.assert_array_equal(table.caption_ids, expected.caption_ids)
    assert table.texts == expected.texts
    assert table.image_ids.dtype == np.int64 and table.caption_ids.dtype == np.int64
    if splits:
        assert table.splits is not None and table.splits.tolist() == expected.splits.tolist()
    assert table.fingerprint() == expected.fingerprint()


# ------------------------------------------------------------------------------------------------ CaptionTable


def test_groups_unique_images_and_image_index():
    t = _expected()
    assert len(t) == 6
    np.testing.assert_array_equal(t.unique_images(), [10, 20, 30])
    np.testing.assert_array_equal(t.image_index(), [0, 0, 1, 2, 1, 2])
    uniq, offsets, order = t.groups()
    np.testing.assert_array_equal(uniq, [10, 20, 30])
    assert offsets.dtype == np.int64 and order.dtype == np.int64
    np.testing.assert_array_equal(offsets, [0, 2, 4, 6])
    groups = [order[offsets[k] : offsets[k + 1]].tolist() for k in range(3)]
    assert groups == [[0, 1], [2, 4], [3, 5]]
    # naive check
    for k, img in enumerate(uniq):
        assert groups[k] == [i for i in range(len(t)) if t.image_ids[i] == img]


def test_select_mask_and_indices():
    t = _expected()
    by_mask = t.select(t.splits == "test")
    assert by_mask.caption_ids.tolist() == [200, 201]
    assert by_mask.texts == ("two cats\tin a tab", "a cat sleeping")
    by_idx = t.select(np.array([5, 0]))
    assert by_idx.caption_ids.tolist() == [301, 100] and by_idx.splits.tolist() == ["val", "train"]
    assert by_idx.path == t.path and by_idx.format == t.format
    with pytest.raises(ValueError):
        t.select(np.array([True, False]))


def test_fingerprint_is_stable_and_order_sensitive():
    t = _expected()
    fp = t.fingerprint()
    assert len(fp) == 64 and fp == _expected().fingerprint()
    assert t.select(np.arange(len(t))[::-1]).fingerprint() != fp
    other = CaptionTable(t.image_ids, t.caption_ids, t.texts[:-1] + ("a red bus!",), t.splits, "x", "table")
    assert other.fingerprint() != fp
    # ("ab", "c") and ("a", "bc") must differ
    a = CaptionTable(np.zeros(2, np.int64), np.arange(2), ("ab", "c"), None, "x", "table")
    b = CaptionTable(np.zeros(2, np.int64), np.arange(2), ("a", "bc"), None, "x", "table")
    assert a.fingerprint() != b.fingerprint()
    # splits, path and format do not matter
    assert CaptionTable(t.image_ids, t.caption_ids, t.texts, None, "y", "coco").fingerprint() == fp


# ------------------------------------------------------------------------------------------------ table format


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_table_round_trip(tmp_path, suffix):
    path = tmp_path / f"caps{suffix}"
    if suffix == ".parquet":
        write_parquet(path, ROWS)
    else:
        write_delimited(path, ROWS)
    assert detect_format(path) == "table"
    t = read_captions(path)
    assert t.format == "table" and t.path == str(path)
    assert_same_rows(t, _expected())
    assert t.groups()[1].tolist() == [0, 2, 4, 6]


def test_tsv_quoted_fields_written_by_csv_module(tmp_path):
    rows = [(1, 1, 'he said "hi"', "train"), (1, 2, '"', "train"), (2, 3, "plain", "train")]
    t = read_captions(write_delimited(tmp_path / "q.tsv", rows))
    assert t.texts == ('he said "hi"', '"', "plain")


def test_table_without_split_column_and_extra_columns(tmp_path):
    path = tmp_path / "caps.csv"
    write_delimited(path, [(r[2], r[0], r[1], "x") for r in ROWS], header=("text", "image_id", "caption_id", "extra"))
    t = read_captions(path)
    assert t.splits is None
    assert_same_rows(t, _expected(), splits=False)
    with pytest.raises(DataFormatError, match=r"caps\.csv.*no split column"):
        read_captions(path, split="train")


def test_table_split_filter(tmp_path):
    path = write_delimited(tmp_path / "caps.csv", ROWS)
    t = read_captions(path, split="val")
    assert t.caption_ids.tolist() == [300, 301] and set(t.splits.tolist()) == {"val"}
    with pytest.raises(DataFormatError, match=r"caps\.csv.*'restval'.*splits present: test, train, val"):
        read_captions(path, split="restval")


def test_table_missing_column_lists_header(tmp_path):
    path = write_delimited(tmp_path / "caps.csv", [(1, 2, "x")], header=("image", "caption_id", "text"))
    with pytest.raises(DataFormatError) as err:
        read_captions(path)
    msg = str(err.value)
    assert "caps.csv" in msg and "image_id" in msg and "image, caption_id, text" in msg and "\n" not in msg


def test_parquet_missing_column(tmp_path):
    path = tmp_path / "caps.parquet"
    pq.write_table(pa.table({"image_id": [1], "text": ["a"]}), path)
    with pytest.raises(DataFormatError, match=r"caps\.parquet.*caption_id.*columns: image_id, text"):
        read_captions(path)


def test_non_integer_id_names_file_line_and_column(tmp_path):
    rows = [(1, 1, "a", "train"), (1, 2, "b", "train"), ("x7", 3, "c", "train")]
    with pytest.raises(DataFormatError, match=r"caps\.csv: line 4: column 'image_id' is 'x7', not an integer"):
        read_captions(write_delimited(tmp_path / "caps.csv", rows))
    rows = [(1, 1, "a", "train"), (1, 2.5, "b", "train")]
    with pytest.raises(DataFormatError, match=r"caps\.tsv: line 3: column 'caption_id' is '2\.5'"):
        read_captions(write_delimited(tmp_path / "caps.tsv", rows))


def test_parquet_float_and_null_ids(tmp_path):
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"image_id": [1.0, 2.5], "caption_id": [1, 2], "text": ["a", "b"]}), path)
    with pytest.raises(DataFormatError, match=r"f\.parquet: row 2: column 'image_id' is 2\.5"):
        read_captions(path)
    pq.write_table(pa.table({"image_id": [1.0, 2.0], "caption_id": [1, None], "text": ["a", "b"]}), path)
    with pytest.raises(DataFormatError, match=r"f\.parquet: row 2: column 'caption_id' is empty"):
        read_captions(path)
    pq.write_table(pa.table({"image_id": [1.0, 2.0], "caption_id": [1, 2], "text": ["a", "b"]}), path)
    assert read_captions(path).image_ids.tolist() == [1, 2]


def test_ragged_csv_row(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("image_id,caption_id,text\n1,1,a\n1,2,b,extra\n")
    with pytest.raises(DataFormatError, match=r"r\.csv: line 3: expected 3 fields, got 4"):
        read_captions(path)


def test_empty_and_header_only_files(tmp_path):
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(DataFormatError, match=r"e\.csv: empty file"):
        read_captions(empty)
    header = tmp_path / "h.tsv"
    header.write_text("image_id\tcaption_id\ttext\n")
    with pytest.raises(DataFormatError, match=r"h\.tsv: no captions"):
        read_captions(header)


def test_missing_file(tmp_path):
    with pytest.raises(DataFormatError, match=r"nope\.csv: no such file"):
        read_captions(tmp_path / "nope.csv")


def test_undecodable_utf8_names_line(tmp_path):
    path = tmp_path / "u.csv"
    path.write_bytes(b"image_id,caption_id,text\n1,1,fine\n1,2,caf\xe9\n")
    with pytest.raises(DataFormatError, match=r"u\.csv: line 3: not valid UTF-8"):
        read_captions(path)


def test_utf8_bom_and_crlf(tmp_path):
    path = tmp_path / "b.csv"
    path.write_bytes("image_id,caption_id,text\r\n1,1,caf\u00e9\r\n".encode("utf-8-sig"))
    t = read_captions(path)
    assert t.texts == ("caf\u00e9",) and t.image_ids.tolist() == [1]


def test_duplicate_caption_id_names_id_and_both_rows(tmp_path):
    rows = [(1, 7, "a", "train"), (1, 8, "b", "train"), (2, 9, "c", "train"), (2, 8, "d", "train")]
    with pytest.raises(DataFormatError) as err:
        read_captions(write_delimited(tmp_path / "d.csv", rows))
    msg = str(err.value)
    assert "d.csv" in msg and "duplicate caption_id 8" in msg and "line 3" in msg and "line 5" in msg


def test_empty_captions_error_or_skip(tmp_path, caplog):
    rows = [(1, 1, "a", "train"), (1, 2, "   ", "train"), (2, 3, "", "train"), (2, 4, "d", "train")]
    path = write_delimited(tmp_path / "e.csv", rows)
    with pytest.raises(DataFormatError, match=r"e\.csv: 2 empty caption\(s\), first at line 3.*skip_empty=True"):
        read_captions(path)
    with caplog.at_level(logging.WARNING, logger="bcls.data.captions"):
        t = read_captions(path, skip_empty=True)
    assert t.caption_ids.tolist() == [1, 4] and t.texts == ("a", "d")
    assert "skipped 2 empty" in caplog.text


# ------------------------------------------------------------------------------------------------ coco format


def test_coco_round_trip(tmp_path):
    anns = [{"image_id": r[0], "id": r[1], "caption": r[2]} for r in ROWS]
    path = write_coco(tmp_path / "captions_train2014.json", anns)
    assert detect_format(path) == "coco"
    t = read_captions(path)
    assert t.format == "coco" and t.splits is None
    assert_same_rows(t, _expected(), splits=False)
    with pytest.raises(DataFormatError, match="no split column"):
        read_captions(path, split="train")


def test_coco_missing_key_names_annotation(tmp_path):
    anns = [{"image_id": 1, "id": 1, "caption": "a"}, {"image_id": 1, "caption": "b"}]
    with pytest.raises(DataFormatError, match=r"c\.json: annotations\[1\] has no 'id' \(keys: image_id, caption\)"):
        read_captions(write_coco(tmp_path / "c.json", anns))


def test_coco_non_integer_and_duplicate_ids(tmp_path):
    anns = [{"image_id": 1, "id": 1, "caption": "a"}, {"image_id": "1", "id": 2, "caption": "b"}]
    with pytest.raises(DataFormatError, match=r"c\.json: annotations\[1\]: 'image_id' is '1', not an integer"):
        read_captions(write_coco(tmp_path / "c.json", anns), format="coco")
    anns = [{"image_id": 1, "id": 5, "caption": "a"}, {"image_id": 2, "id": 5, "caption": "b"}]
    with pytest.raises(DataFormatError, match=r"duplicate annotation id 5 at annotations\[0\] and annotations\[1\]"):
        read_captions(write_coco(tmp_path / "c.json", anns))


def test_malformed_json_gives_position(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"annotations": [\n {"image_id": 1, "id": 1, "caption": "a"},\n]}')
    with pytest.raises(DataFormatError, match=r"m\.json: malformed JSON at line 3 column 1"):
        read_captions(path, format="coco")


def test_coco_without_annotations(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"images": [{"id": 1}], "info": {}}))
    with pytest.raises(DataFormatError, match=r"x\.json: no 'annotations' key \(top level: images, info\)"):
        read_captions(path, format="coco")


# ------------------------------------------------------------------------------------------------ karpathy format


def test_karpathy_round_trip_and_restval(tmp_path):
    path = write_karpathy(tmp_path / "dataset_coco.json", karpathy_images())
    assert detect_format(path) == "karpathy"
    t = read_captions(path)
    assert t.format == "karpathy"
    assert t.image_ids.tolist() == [500, 500, 501, 502, 503, 503]
    assert t.caption_ids.tolist() == [0, 1, 2, 3, 4, 5]
    assert t.texts == ("A dog.", "A puppy.", "A cat.", "A bus.", "A car.", "A truck.")
    assert t.splits.tolist() == ["train", "train", "restval", "val", "test", "test"]
    uniq, offsets, order = t.groups()
    assert uniq.tolist() == [500, 501, 502, 503] and offsets.tolist() == [0, 2, 3, 4, 6]

    train = read_captions(path, split="train")
    assert train.caption_ids.tolist() == [0, 1, 2]
    assert train.splits.tolist() == ["train", "train", "restval"]
    assert read_captions(path, split="restval").caption_ids.tolist() == [2]
    assert read_captions(path, split="test").image_ids.tolist() == [503, 503]
    with pytest.raises(DataFormatError, match=r"no rows with split 'dev'; splits present: restval, test, train, val"):
        read_captions(path, split="dev")


def test_karpathy_imgid_when_no_cocoid(tmp_path):
    images = karpathy_images()
    for im in images:
        del im["cocoid"]
    t = read_captions(write_karpathy(tmp_path / "dataset_flickr30k.json", images))
    assert t.image_ids.tolist() == [0, 0, 1, 2, 3, 3]


def test_karpathy_bad_sentence_names_field(tmp_path):
    images = karpathy_images()
    del images[3]["sentences"][1]["sentid"]
    with pytest.raises(DataFormatError, match=r"k\.json: images\[3\]\.sentences\[1\] has no 'sentid'"):
        read_captions(write_karpathy(tmp_path / "k.json", images))
    images = karpathy_images()
    del images[2]["split"]
    with pytest.raises(DataFormatError, match=r"k\.json: images\[2\] has no 'split'"):
        read_captions(write_karpathy(tmp_path / "k.json", images), format="karpathy")


def test_karpathy_duplicate_sentid_and_empty_raw(tmp_path):
    images = karpathy_images()
    images[3]["sentences"][0]["sentid"] = 1
    with pytest.raises(DataFormatError, match=r"duplicate sentid 1 at images\[0\]\.sentences\[1\] and images\[3\]\.sentences\[0\]"):
        read_captions(write_karpathy(tmp_path / "k.json", images))
    images = karpathy_images()
    images[2]["sentences"][0]["raw"] = " "
    path = write_karpathy(tmp_path / "k.json", images)
    with pytest.raises(DataFormatError, match=r"1 empty caption\(s\), first at images\[2\]\.sentences\[0\]"):
        read_captions(path)
    assert len(read_captions(path, skip_empty=True)) == 5


# ------------------------------------------------------------------------------------------------ precomp format


def test_precomp_round_trip_with_npy_and_ids(tmp_path):
    caps = ["a dog", "a puppy", "a cat ", "a kitten", "a bus", "a coach"]
    write_precomp_split(tmp_path, "dev", caps, np.zeros((3, 4, 2), np.float32), image_ids=[7, 8, 9])
    assert detect_format(tmp_path) == "precomp"
    t = read_captions(tmp_path, split="dev")
    assert t.format == "precomp"
    assert t.caption_ids.tolist() == list(range(6))
    assert t.image_ids.tolist() == [7, 7, 8, 8, 9, 9]
    assert t.texts == ("a dog", "a puppy", "a cat", "a kitten", "a bus", "a coach")
    assert t.splits.tolist() == ["dev"] * 6
    np.testing.assert_array_equal(t.image_index(), np.arange(6) // 2)
    # the caps file itself also works, and its name gives the split
    t2 = read_captions(tmp_path / "dev_caps.txt")
    assert t2.fingerprint() == t.fingerprint()
    with pytest.raises(DataFormatError, match=r"train_caps\.txt: no such file; splits present .*: dev"):
        read_captions(tmp_path)  # default split is train


def test_precomp_ids_per_image_and_no_ids(tmp_path):
    caps = [f"c{i}" for i in range(6)]
    write_precomp_split(tmp_path, "test", caps, np.zeros((2, 3), np.float16))
    t = read_captions(tmp_path, format="precomp", split="test")
    assert t.image_ids.tolist() == [0, 0, 0, 1, 1, 1]
    (tmp_path / "test_ids.txt").write_text("41\n42\n")
    assert read_captions(tmp_path, split="test").image_ids.tolist() == [41, 41, 41, 42, 42, 42]
    (tmp_path / "test_ids.txt").write_text("41\n42\n43\n")
    with pytest.raises(DataFormatError, match=r"test_ids\.txt: 3 ids match neither the 6 captions nor the 2 images"):
        read_captions(tmp_path, split="test")
    (tmp_path / "test_ids.txt").write_text("41\n4x\n")
    with pytest.raises(DataFormatError, match=r"test_ids\.txt: line 2: '4x' is not an integer"):
        read_captions(tmp_path, split="test")
    (tmp_path / "test_ids.txt").write_text("41\n41\n")
    with pytest.raises(DataFormatError, match=r"test_ids\.txt: image id 41 names images 0 and 1"):
        read_captions(tmp_path, split="test")
    (tmp_path / "test_ids.txt").write_text("41\n41\n41\n42\n43\n42\n")
    with pytest.raises(DataFormatError, match=r"test_ids\.txt: line 5: id 43 differs from id 42 on line 4"):
        read_captions(tmp_path, split="test")


def test_precomp_without_npy_assumes_five(tmp_path):
    (tmp_path / "train_caps.txt").write_text("".join(f"caption {i}\n" for i in range(10)))
    t = read_captions(tmp_path)
    assert t.image_ids.tolist() == [0] * 5 + [1] * 5
    (tmp_path / "train_caps.txt").write_text("".join(f"caption {i}\n" for i in range(7)))
    with pytest.raises(DataFormatError, match=r"train_caps\.txt: 7 captions are not a multiple of 5"):
        read_captions(tmp_path)


def test_precomp_count_not_multiple_of_images(tmp_path):
    write_precomp_split(tmp_path, "train", [f"c{i}" for i in range(6)], np.zeros((3, 2), np.float32))
    np.save(tmp_path / "train_ims.npy", np.zeros((4, 2), np.float32))
    with pytest.raises(DataFormatError) as err:
        read_captions(tmp_path)
    msg = str(err.value)
    assert "train_caps.txt" in msg and "train_ims.npy" in msg and "6 captions" in msg and "4 images" in msg


def test_precomp_empty_line_and_bad_utf8(tmp_path):
    (tmp_path / "train_caps.txt").write_text("a\nb\n \nd\ne\n")
    with pytest.raises(DataFormatError, match=r"train_caps\.txt: 1 empty caption\(s\), first at line 3"):
        read_captions(tmp_path)
    t = read_captions(tmp_path, skip_empty=True)
    assert t.caption_ids.tolist() == [0, 1, 3, 4] and t.image_ids.tolist() == [0] * 4
    (tmp_path / "train_caps.txt").write_bytes(b"a\nb\nc\nd\n\xff\xfe\n")
    with pytest.raises(DataFormatError, match=r"train_caps\.txt: line 5: not valid UTF-8"):
        read_captions(tmp_path)


@pytest.mark.skipif(not (SHARED / "data" / "coco_karpathy").is_dir(), reason="../shared data not present")
def test_real_precomp_laps_testall(tmp_path):
    src = SHARED / "data" / "coco_karpathy"
    shutil.copy(src / "laps_testall_caps.txt", tmp_path / "test_caps.txt")
    shutil.copy(src / "laps_testall_ids.txt", tmp_path / "test_ids.txt")
    t = read_captions(tmp_path, split="test")
    assert len(t) == 25_000
    assert len(t.unique_images()) == 5_000
    assert int(t.unique_images()[0]) == 391895
    assert t.image_ids[:5].tolist() == [391895] * 5
    _, offsets, _ = t.groups()
    assert np.all(np.diff(offsets) == 5)
    assert t.texts[0] == "A man with a red helmet on a small moped on a dirt road ."
    assert t.fingerprint() == read_captions(tmp_path / "test_caps.txt").fingerprint()


# ------------------------------------------------------------------------------------------------ detection / override


def test_detection_and_override(tmp_path):
    assert CAPTION_FORMATS.names() == ("table", "coco", "karpathy", "precomp", "flickr8k")
    kpath = write_karpathy(tmp_path / "something.json", karpathy_images())
    assert detect_format(kpath) == "karpathy"
    # format override: a Karpathy file read as COCO fails on the missing annotations
    with pytest.raises(DataFormatError, match="no 'annotations' key"):
        read_captions(kpath, format="coco")
    # a table with an unusual suffix needs format= ... and is refused without it
    odd = write_delimited(tmp_path / "caps.txt", ROWS, delimiter=",")
    with pytest.raises(DataFormatError, match=r"caps\.txt: cannot tell the caption format"):
        read_captions(odd)
    with pytest.raises(ConfigError, match=r"unknown caption format 'csv'; valid: auto, table, coco, karpathy, precomp"):
        read_captions(odd, format="csv")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(DataFormatError, match="not a precomp folder"):
        detect_format(empty_dir)


def test_coco_detected_when_annotations_come_late(tmp_path):
    anns = [{"image_id": 1, "id": 1, "caption": "a"}]
    path = tmp_path / "late.json"
    path.write_text(json.dumps({"images": [{"id": 1}], "annotations": anns}))
    assert detect_format(path) == "coco"
    assert read_captions(path).texts == ("a",)
