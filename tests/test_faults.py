"""Bad input through the command line: one line naming the file, the row or field, and what to do; exit code 2;
no traceback unless --debug; no partial output left behind.

The captions' embeddings are put into a private cache folder (``--cache``) beforehand with the deterministic hash
encoder, so no command here loads the sentence model (and no other test sees those fake embeddings).
"""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from bcls.cli import app
from bcls.data.captions import read_captions
from bcls.data.demo import DemoConfig, generate_demo
from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
from bcls.pipeline.embedding.embed import DEFAULT_MODEL, EmbeddingCache, cached_encoder, model_cache_id
from tests.conftest import hash_encoder

runner = CliRunner()
SMALL = {"batch_size": 16, "embed_dim": 16, "word_dim": 8, "epochs": 1}


def _prefill_cache(texts, cache):
    """Embed ``texts`` with the hash encoder into ``cache`` under the default model's id (so no model is loaded)."""
    cached_encoder(EmbeddingCache(cache, model_cache_id(DEFAULT_MODEL)), lambda: hash_encoder())(list(texts))
    return cache


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    generate_demo(root / "data", DemoConfig(n_train=24, n_dev=8, n_test=8, seed=4))
    build_labels(LabelBuildConfig(captions=str(root / "data"), split="train", out=str(root / "labels"), k=4),
                 encoder=hash_encoder())
    (root / "small.json").write_text(json.dumps(SMALL))
    return root


def _invoke(args):
    return runner.invoke(app, [str(a) for a in args])


def _refused(args, *fragments, code=2):
    """Run the CLI; assert it failed with one `error:` line holding every fragment, and no traceback."""
    result = _invoke(args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def _write(path, content):
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


HEADER = "image_id,caption_id,text\n"
# (file name, content, fragments of the message); the row is named as "line L" (header = line 1)
BAD_CAPTIONS = [
    ("empty.csv", "", ["empty.csv: empty file"]),
    ("blank.csv", "\n\n  \n", ["blank.csv: empty file"]),
    ("header-only.csv", HEADER, ["header-only.csv: no captions"]),
    ("nocols.csv", "img,cap\n1,2\n", ["nocols.csv: missing column(s) image_id, caption_id, text",
                                      "header has: img, cap"]),
    ("notext.tsv", "image_id\tcaption_id\n1\t2\n", ["notext.tsv: missing column(s) text"]),
    ("dup.csv", HEADER + "1,10,a dog\n2,11,a cat\n2,10,a car\n",
     ["dup.csv: duplicate caption_id 10 at line 2 and line 4", "caption ids must be unique"]),
    ("ids.csv", HEADER + "1,10,a dog\nseven,11,a cat\n", ["ids.csv: line 3: column 'image_id' is 'seven'"]),
    ("ragged.csv", HEADER + "1,10,a dog\n1,11\n", ["ragged.csv: line 3: expected 3 fields, got 2"]),
    ("empty-caption.csv", HEADER + "1,10,a dog\n1,11,   \n2,12,\"\"\n",
     ["empty-caption.csv: 2 empty caption(s), first at line 3", "--skip-empty"]),
    ("latin1.csv", HEADER.encode() + b"1,10,a dog\n1,11,caf\xe9 au lait\n",
     ["latin1.csv: line 3: not valid UTF-8", "re-save as UTF-8"]),
    ("broken.json", '{"annotations": [{"image_id": 1, "id": 1, "caption": "a"}', ["broken.json: malformed JSON"]),
    ("nokeys.json", '{"annotations": [{"image_id": 1, "caption": "a dog"}]}',
     ["nokeys.json: annotations[0] has no 'id'"]),
    ("neither.json", '{"info": 1}', ["neither.json", "neither COCO captions"]),
    ("coco-unknown.json", json.dumps({"images": [{"id": 1}], "annotations": [
        {"image_id": 1, "id": 1, "caption": "a dog"}, {"image_id": 5, "id": 2, "caption": "a cat"}]}),
     ["coco-unknown.json: 1 annotation(s) refer to image ids not listed in 'images'",
      "annotations[1], image_id 5", "--allow-unknown-images"]),
    ("captions.xlsx", "whatever", ["captions.xlsx: cannot tell the caption format"]),
]


@pytest.mark.parametrize("name, content, fragments", BAD_CAPTIONS, ids=[c[0] for c in BAD_CAPTIONS])
def test_bad_caption_files_are_one_line_errors(tmp_path, name, content, fragments):
    path = _write(tmp_path / name, content)
    _refused(["labels", "build", "--captions", path, "--out", tmp_path / "out"], *fragments)
    assert not (tmp_path / "out").exists()


def test_missing_caption_file_and_folder(tmp_path):
    _refused(["labels", "build", "--captions", tmp_path / "nope.csv", "--out", tmp_path / "out"],
             "nope.csv: no such file or folder")
    (tmp_path / "folder").mkdir()
    _refused(["labels", "build", "--captions", tmp_path / "folder", "--out", tmp_path / "out"],
             "folder: folder has no {split}_caps.txt")
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(tmp_path):
    path = _write(tmp_path / "dup.csv", HEADER + "1,10,a\n1,10,b\n")
    result = _invoke(["--debug", "labels", "build", "--captions", path, "--out", tmp_path / "out"])
    assert result.exit_code == 2 and "Traceback" in result.output and "duplicate caption_id 10" in result.output


def test_skip_empty_and_allow_unknown_images_build_with_a_count(tmp_path):
    rows = [(i // 3, i, f"a {w} dog near a {w} tree") for i, w in enumerate("red blue green tall old new".split())]
    body = "".join(f"{a},{b},{c}\n" for a, b, c in rows) + "1,99,  \n"
    path = _write(tmp_path / "caps.csv", HEADER + body)
    cache = _prefill_cache((t for _, _, t in rows), tmp_path / "cache")
    result = _invoke(["labels", "build", "--captions", path, "--out", tmp_path / "out", "--k", "2",
                      "--skip-empty", "--cache", cache])
    assert result.exit_code == 0, result.output
    assert "skipped 1 empty caption(s) (first at line 8)" in result.output
    assert json.loads((tmp_path / "out" / "_manifest.json").read_text())["provenance"]["input"]["captions"] == 6

    coco = {"images": [{"id": 0}, {"id": 7}], "annotations": [
        {"image_id": a, "id": b, "caption": c} for a, b, c in rows]}
    path = _write(tmp_path / "coco.json", json.dumps(coco))
    _refused(["labels", "build", "--captions", path, "--out", tmp_path / "coco"], "image_id 1")
    result = _invoke(["labels", "build", "--captions", path, "--out", tmp_path / "coco", "--k", "2",
                      "--allow-unknown-images", "--cache", cache])
    assert result.exit_code == 0, result.output
    assert "3 annotation(s) refer to image ids not listed in 'images'" in result.output
    assert "1 image(s) listed in 'images' have no caption (first: images[1], id 7)" in result.output


# ---------------------------------------------------------------- precomp data for `bcls train`

def _data_copy(tiny, tmp_path):
    return Path(shutil.copytree(tiny / "data", tmp_path / "data"))


def _train(tiny, data, out, *extra, labels=False):
    args = ["train", "--data", data, "--out", out, "--config", tiny / "small.json"]
    args += ["--labels", tiny / "labels", "--lambda", "0.5"] if labels else ["--lambda", "0"]
    return args + list(extra)


def _ims(data):
    return np.load(data / "train_ims.npy")


FEATURE_FAULTS = {
    "nan": (lambda a: (a.__setitem__((3, 0), np.nan), a)[1], ["1 image(s) have NaN/Inf features",
                                                              "first at image index 3"]),
    "inf": (lambda a: (a.__setitem__((5, 1), np.inf), a)[1], ["NaN/Inf", "image index 5"]),
    "rank1": (lambda a: a.reshape(-1), ["(rank 1); expected (N, R, D) regions or (N, D)"]),
    "rank4": (lambda a: a[:, None], ["(rank 4)"]),
    "ints": (lambda a: a.astype(np.int32), ["dtype int32; expected float16, float32 or float64"]),
    "count": (lambda a: a[:-1], ["captions are not a multiple of the 23 images"]),
}


@pytest.mark.parametrize("fault", FEATURE_FAULTS)
def test_bad_features_are_refused_by_train(tiny, tmp_path, fault):
    data = _data_copy(tiny, tmp_path)
    change, fragments = FEATURE_FAULTS[fault]
    np.save(data / "train_ims.npy", change(_ims(data)))
    _refused(_train(tiny, data, tmp_path / "run"), "train_ims.npy" if fault != "count" else "train_caps.txt",
             *fragments)
    assert not (tmp_path / "run").exists()


def test_unreadable_features_and_captions_are_refused_by_train(tiny, tmp_path):
    data = _data_copy(tiny, tmp_path)
    raw = (data / "train_ims.npy").read_bytes()
    (data / "train_ims.npy").write_bytes(raw[: len(raw) // 2])
    _refused(_train(tiny, data, tmp_path / "run"), "train_ims.npy: not a readable .npy file")
    (data / "train_ims.npy").write_bytes(b"\x80\x04pickle, not numpy")
    _refused(_train(tiny, data, tmp_path / "run"), "train_ims.npy: not a readable .npy file")
    (data / "train_ims.npy").write_bytes(raw)
    lines = (data / "train_caps.txt").read_text().splitlines()
    (data / "train_caps.txt").write_text("\n".join(lines[:-3]) + "\n")  # 3 captions short
    _refused(_train(tiny, data, tmp_path / "run"), "train_caps.txt", "not a multiple of the 24 images")
    (data / "train_caps.txt").write_text("\n".join(lines[:4] + [" "] + lines[5:]) + "\n")
    _refused(_train(tiny, data, tmp_path / "run"), "train_caps.txt: 1 empty caption(s), first at line 5")
    (data / "train_caps.txt").unlink()
    _refused(_train(tiny, data, tmp_path / "run"), "train_caps.txt: no split 'train' in", "splits present: dev, test")
    _refused(_train(tiny, tmp_path / "nowhere", tmp_path / "run"), "nowhere/train_ims.npy: no such file")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- label folders

def _labels_copy(tiny, tmp_path):
    return Path(shutil.copytree(tiny / "labels", tmp_path / "labels"))


def _train_on(tiny, labels, tmp_path):
    return ["train", "--data", tiny / "data", "--out", tmp_path / "run", "--config", tiny / "small.json",
            "--labels", labels, "--lambda", "0.5"]


def test_truncated_or_foreign_shard_is_refused_by_train(tiny, tmp_path):
    labels = _labels_copy(tiny, tmp_path)
    shard = labels / "shard-00000.parquet"
    good = shard.read_bytes()
    shard.write_bytes(good[: len(good) // 2])
    _refused(_train_on(tiny, labels, tmp_path), "shard-00000.parquet: checksum differs from the manifest")
    # a foreign Parquet file in its place, its checksum even written into the manifest
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), shard)
    _refused(_train_on(tiny, labels, tmp_path), "shard-00000.parquet: checksum differs")
    manifest = json.loads((labels / "_manifest.json").read_text())
    from bcls.data.shards import sha256_file

    manifest["shards"][0]["sha256"] = sha256_file(shard)
    (labels / "_manifest.json").write_text(json.dumps(manifest))
    _refused(_train_on(tiny, labels, tmp_path), "shard-00000.parquet: columns ['a', 'b'] differ from the manifest")
    # a truncated Parquet whose checksum was "fixed" too
    shard.write_bytes(good[:-100])
    manifest["shards"][0]["sha256"] = sha256_file(shard)
    (labels / "_manifest.json").write_text(json.dumps(manifest))
    _refused(_train_on(tiny, labels, tmp_path), "shard-00000.parquet: not a readable Parquet shard")
    # a missing shard, and an unfinished build (no manifest)
    shard.unlink()
    _refused(_train_on(tiny, labels, tmp_path), "shard-00000.parquet: listed in the manifest but missing")
    (labels / "_manifest.json").unlink()
    _refused(_train_on(tiny, labels, tmp_path), "manifest.json: no manifest, so the label build did not finish")
    assert not (tmp_path / "run").exists()


def test_shard_of_another_build_is_refused(tiny, tmp_path):
    """A shard copied from a build with other settings (schema and checksum look right) is refused."""
    other = tmp_path / "other"
    build_labels(LabelBuildConfig(captions=str(tiny / "data"), split="train", out=str(other), k=3),
                 encoder=hash_encoder())
    labels = _labels_copy(tiny, tmp_path)
    from bcls.data.shards import sha256_file

    shutil.copy(other / "shard-00000.parquet", labels / "shard-00000.parquet")
    manifest = json.loads((labels / "_manifest.json").read_text())
    manifest["shards"][0] |= {"sha256": sha256_file(labels / "shard-00000.parquet"),
                              "rows": pq.read_metadata(labels / "shard-00000.parquet").num_rows}
    manifest["rows"] = sum(s["rows"] for s in manifest["shards"])
    (labels / "_manifest.json").write_text(json.dumps(manifest))
    _refused(_train_on(tiny, labels, tmp_path), "shard-00000.parquet: written by another label build")


MANIFEST_EDITS = {
    "not json": (lambda m: "{not json", "manifest.json: not valid JSON"),
    "foreign": (lambda m: json.dumps({"hello": 1}), "not a bcls label manifest"),
    "version": (lambda m: json.dumps(m | {"format_version": 99}), "manifest format_version 99 is not 1"),
    "shards type": (lambda m: json.dumps(m | {"shards": {"a": 1}}), "field 'shards' is not a list"),
    "shard entry": (lambda m: json.dumps(m | {"shards": ["shard-00000.parquet"]}), "field 'shards[0]'"),
    "columns": (lambda m: json.dumps(m | {"columns": ["sbert"]}), "field 'columns' must list image_id"),
    "rows": (lambda m: json.dumps(m | {"rows": m["rows"] + 1}), "field 'rows' does not equal"),
    "escape": (lambda m: json.dumps(m | {"shards": [m["shards"][0] | {"file": "../../etc/passwd"}]}),
               "'../../etc/passwd' is not a plain file name inside the folder"),
    "source": (lambda m: json.dumps(m | {"columns": ["image_id", "caption_id", "cider"]}),
               "label source(s) ['sbert'] not in this build; it has ['cider']"),
}


@pytest.mark.parametrize("edit", MANIFEST_EDITS)
def test_edited_manifest_is_refused_by_train(tiny, tmp_path, edit):
    labels = _labels_copy(tiny, tmp_path)
    change, fragment = MANIFEST_EDITS[edit]
    manifest = json.loads((labels / "_manifest.json").read_text())
    (labels / "_manifest.json").write_text(change(manifest))
    _refused(_train_on(tiny, labels, tmp_path), fragment)
    assert not (tmp_path / "run").exists()


def test_labels_of_other_captions_are_refused_by_train(tiny, tmp_path):
    data = _data_copy(tiny, tmp_path)
    ids = (data / "train_ids.txt").read_text().split()
    (data / "train_ids.txt").write_text("\n".join(str(int(i) + 10_000) for i in ids) + "\n")
    _refused(["train", "--data", data, "--out", tmp_path / "run", "--config", tiny / "small.json",
              "--labels", tiny / "labels", "--lambda", "0.5"], "label pairs name ids absent from",
             "build the labels from the training captions")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- names and settings

@pytest.mark.parametrize("args, fragments", [
    (["labels", "build", "--captions", "x.csv", "--out", "OUT", "--sources", "sbert,bleu"],
     ["unknown label source 'bleu'; valid: ", "cider", "sbert"]),
    (["labels", "build", "--captions", "x.csv", "--out", "OUT", "--index", "lsh"],
     ["unknown --index 'lsh'; valid: exact, ivf, hnsw"]),
    (["labels", "build", "--captions", "x.csv", "--out", "OUT", "--k", "0"], ["k must be at least 1, got 0"]),
    (["labels", "build", "--captions", "x.csv", "--out", "OUT", "--images-per-shard", "0"],
     ["--images-per-shard must be at least 1"]),
    (["labels", "build", "--captions", "x.csv", "--out", "OUT", "--batch-size", "0"],
     ["--batch-size must be at least 1, got 0"]),
    (["labels", "build", "--captions", "x.csv", "--out", "OUT", "--format", "xml"],
     ["unknown caption format 'xml'; valid: auto, table, coco"]),
    (["train", "--data", "DATA", "--out", "OUT", "--lambda", "0", "--model", "resnet"],
     ["unknown --model 'resnet'; valid: vse-gru, vse-gpo, vse-global"]),
    (["train", "--data", "DATA", "--out", "OUT", "--lambda", "0", "--binary-loss", "hinge"],
     ["unknown binary loss 'hinge'; valid: triplet-hardest"]),
    (["train", "--data", "DATA", "--out", "OUT", "--lambda", "0", "--sampler", "greedy"],
     ["unknown --sampler 'greedy'; valid: "]),
    (["train", "--data", "DATA", "--out", "OUT", "--lambda", "0", "--surrogate", "relu"],
     ["unknown --surrogate 'relu'; valid: sigmoid, tanh, hinge"]),
    (["train", "--data", "DATA", "--out", "OUT", "--lambda", "0", "--batch-size", "1", "--lr", "-1"],
     ["out-of-range training setting(s): --batch-size 1, --lr -1.0"]),
    (["train", "--data", "DATA", "--out", "OUT", "--lambda", "nan"], ["--lambda nan"]),
    (["train", "--data", "DATA", "--out", "OUT", "--lambda", "0", "--epochs", "0"], ["--epochs 0"]),
    (["train", "--data", "DATA", "--out", "OUT", "--lambda", "0", "--neighbour-fraction", "1.5"],
     ["--neighbour-fraction 1.5"]),
    (["train", "--data", "DATA", "--out", "OUT", "--lambda", "0", "--temperature", "0"],
     ["error: --temperature must be a finite number > 0, got 0.0"]),
    (["train", "--data", "DATA", "--out", "OUT", "--lambda", "0", "--window", "0"],
     ["error: --window must be an integer >= 1, got 0"]),
    (["train", "--data", "DATA", "--out", "OUT", "--lambda", "0", "--device", "tpu"], ["unknown --device 'tpu'"]),
    (["eval", "--checkpoint", "missing.pt", "--data", "DATA", "--protocol", "coco"],
     ["missing.pt: checkpoint not found"]),
])
def test_unknown_names_and_out_of_range_settings(tmp_path, monkeypatch, tiny, args, fragments):
    monkeypatch.chdir(tmp_path)
    args = [str(tiny / "data") if a == "DATA" else a for a in args]
    _refused(args, *fragments)
    assert not (tmp_path / "OUT").exists()


def test_bad_config_file(tmp_path, tiny):
    base = ["train", "--data", tiny / "data", "--out", tmp_path / "run", "--lambda", "0", "--config"]
    _refused(base + [tmp_path / "none.json"], "none.json: config file not found")
    _write(tmp_path / "bad.json", "{epochs: 3}")
    _refused(base + [tmp_path / "bad.json"], "bad.json: cannot parse")
    _write(tmp_path / "typo.json", json.dumps({"epoch": 3}))
    _refused(base + [tmp_path / "typo.json"], "typo.json: unknown training setting(s) ['epoch']; valid: ")
    _write(tmp_path / "type.json", json.dumps({"epochs": "two"}))
    _refused(base + [tmp_path / "type.json"], "type.json: training setting epochs must be an integer, got 'two' (str)")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- output folders

def test_output_folder_holding_something_else_is_refused(tiny, tmp_path):
    # training into a label folder, a data folder, or a folder with a finished run
    labels = _labels_copy(tiny, tmp_path)
    _refused(_train(tiny, tiny / "data", labels), "is not empty and holds no training run", "--overwrite")
    _refused(_train(tiny, tiny / "data", tiny / "data"), "is not empty and holds no training run")
    run = tmp_path / "run"
    assert _invoke(_train(tiny, tiny / "data", run)).exit_code == 0
    before = (run / "last.pt").read_bytes()
    _refused(_train(tiny, tiny / "data", run, "--epochs", "2"), "holds a training run already", "--resume")
    _refused(_train(tiny, tiny / "data", run, "--resume", "--lr", "0.5"),
             "last.pt: the run was started with different settings (lr: 0.001 then, 0.5 now)")
    assert (run / "last.pt").read_bytes() == before
    # a label build into a folder holding another build, or other files
    captions = _write(tmp_path / "caps.csv", HEADER + "1,1,a dog\n1,2,a cat\n")
    _refused(["labels", "build", "--captions", captions, "--out", labels], "holds a label build with different",
             "--force")
    _refused(["labels", "build", "--captions", captions, "--out", run], "is not empty and holds no label build")
    assert (run / "last.pt").read_bytes() == before


# ---------------------------------------------------------------- disk space

def _tiny_disk(monkeypatch, free):
    import shutil as shutil_module

    real = shutil_module.disk_usage

    def fake(path):
        usage = real(path)
        return type(usage)(usage.total, usage.total - free, free)

    monkeypatch.setattr(shutil_module, "disk_usage", fake)


def test_not_enough_disk_space_is_refused_before_writing(tiny, tmp_path, monkeypatch):
    table = read_captions(tiny / "data", split="train")
    cache = _prefill_cache(table.texts, tmp_path / "cache")
    _tiny_disk(monkeypatch, free=1000)
    line = _refused(["labels", "build", "--captions", tiny / "data", "--split", "train", "--k", "4",
                     "--out", tmp_path / "labels", "--cache", cache], "labels: not enough disk space for",
                    "labelled pairs in shards", "free some space or choose another folder")
    assert re.search(r"about [\d.]+ MiB needed, 1000 B free", line), line
    assert not (tmp_path / "labels").exists()  # the folder this build created is gone again
    _refused(_train(tiny, tiny / "data", tmp_path / "run"), "run: not enough disk space for the checkpoints")
    assert not (tmp_path / "run").exists()


def test_ensure_free_space_checks_the_nearest_existing_folder(tmp_path, monkeypatch):
    from bcls.data.infra.atomic import ensure_free_space
    from bcls.data.infra.errors import DiskSpaceError

    ensure_free_space(tmp_path / "a" / "b" / "c.pt", 1, "a file")  # plenty of space
    _tiny_disk(monkeypatch, free=10 * 2**20)
    ensure_free_space(tmp_path / "a" / "b", 2**20, "a file")
    with pytest.raises(DiskSpaceError, match=r"b: not enough disk space for a file: about 20.0 MiB needed, "
                                             r"10.0 MiB free on .*; free some space"):
        ensure_free_space(tmp_path / "a" / "b", 20 * 2**20, "a file")
    assert not (tmp_path / "a").exists()


def test_embedding_cache_of_another_dimension_is_a_clear_error(tmp_path):
    from bcls.data.infra.errors import ConfigError

    cache = _prefill_cache(["a dog"], tmp_path / "cache")  # 64-dim
    encode = cached_encoder(EmbeddingCache(cache, model_cache_id(DEFAULT_MODEL)), lambda: hash_encoder(32))
    with pytest.raises(ConfigError, match=r"holds 64-dim embeddings but the model gives 32-dim ones; delete that "
                                          r"folder or pass --no-cache"):
        encode(["a dog", "a cat"])
