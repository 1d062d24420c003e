"""Property-based tests: whatever bytes, CSV-like text or JSON a reader is given, it returns a result or raises a
:class:`~bcls.data.infra.errors.BclsError` (one-line message naming the file) — never another exception.

Examples are small and few so that the module runs in seconds (set BCLS_HYPOTHESIS_EXAMPLES for a deeper search).
"""

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from bcls.data.captions import CaptionTable, read_captions  # noqa: E402
from bcls.data.infra.errors import BclsError  # noqa: E402
from bcls.data.features import ImageFeatures, load_features  # noqa: E402
from bcls.data.judgments import Judgments, read_judgments  # noqa: E402
from bcls.data.shards import LabelSet, open_labels, read_labels, sha256_file, write_shard  # noqa: E402

# BCLS_HYPOTHESIS_EXAMPLES=2000 searches harder with random seeds (the default run is small and reproducible)
_DEEP = int(os.environ.get("BCLS_HYPOTHESIS_EXAMPLES", "0"))
FEW = settings(max_examples=_DEEP or 40, deadline=None, suppress_health_check=list(HealthCheck),
               derandomize=not _DEEP, database=None)

CAPTION_NAMES = ["caps.csv", "caps.tsv", "caps.json", "caps.parquet", "train_caps.txt", "Flickr8k.token.txt"]
JUDGMENT_NAMES = ["CrowdFlowerAnnotations.txt", "ExpertAnnotations.txt", "sits_val.csv", "sts_val.csv",
                  "judgments.txt"]

# JSON values, kept small; ints near the int64 limits and odd floats included
SCALARS = (st.none() | st.booleans() | st.integers(-2**64, 2**64) | st.integers(-3, 30)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                          max_size=4), max_leaves=12)
# caption-file-like JSON: the right keys with random values
ANNOTATION = st.fixed_dictionaries({}, optional={"image_id": JSON, "id": JSON, "caption": JSON})
COCO = st.fixed_dictionaries({"annotations": st.lists(ANNOTATION, max_size=5) | JSON},
                             optional={"images": st.lists(st.fixed_dictionaries({}, optional={"id": JSON}),
                                                          max_size=4) | JSON})
SENTENCE = st.fixed_dictionaries({}, optional={"raw": JSON, "sentid": JSON})
KARPATHY = st.fixed_dictionaries({"images": st.lists(st.fixed_dictionaries(
    {}, optional={"split": JSON, "imgid": JSON, "cocoid": JSON,
                  "sentences": st.lists(SENTENCE, max_size=3) | JSON}), max_size=4) | JSON})

FIELD = st.text(alphabet=st.sampled_from(list("0123456789-+. ae,\"\t\r\n\\é\x00")), max_size=6)
HEADERS = st.sampled_from(["image_id,caption_id,text", "image_id,caption_id,text,split", "caption_id,text",
                           "text,image_id,caption_id", "image_id\tcaption_id\ttext", ""]) | FIELD


@st.composite
def csv_like(draw):
    """A header (often the right one) and rows of random fields joined by a random delimiter."""
    header = draw(HEADERS)
    sep = draw(st.sampled_from([",", "\t", ";"]))
    rows = draw(st.lists(st.lists(FIELD, min_size=0, max_size=5), max_size=6))
    return "\n".join([header] + [sep.join(r) for r in rows]) + draw(st.sampled_from(["", "\n", "\r\n"]))


def _allowed(call):
    """Run ``call``; any exception other than a BclsError fails the test (with the original traceback)."""
    try:
        return call()
    except BclsError as err:
        message = str(err)
        assert message and "\n" not in message, repr(message)
        return None


def _in_tmp(name, payload, call):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(payload)
        return _allowed(lambda: call(path))


@FEW
@given(name=st.sampled_from(CAPTION_NAMES), payload=st.binary(max_size=200))
def test_read_captions_on_random_bytes(name, payload):
    result = _in_tmp(name, payload, read_captions)
    assert result is None or isinstance(result, CaptionTable)


@FEW
@given(name=st.sampled_from(["caps.csv", "caps.tsv", "train_caps.txt", "x.token.txt"]), text=csv_like(),
       skip_empty=st.booleans())
def test_read_captions_on_csv_like_text(name, text, skip_empty):
    result = _in_tmp(name, text.encode("utf-8"), lambda p: read_captions(p, skip_empty=skip_empty))
    if result is not None:
        assert len(result) > 0 and len(set(result.caption_ids.tolist())) == len(result)
        assert skip_empty is False or all(result.texts)


@FEW
@given(data=JSON | COCO | KARPATHY, fmt=st.sampled_from(["auto", "coco", "karpathy"]),
       allow_unknown=st.booleans())
def test_read_captions_on_random_json(data, fmt, allow_unknown):
    payload = json.dumps(data).encode("utf-8")
    result = _in_tmp("caps.json", payload,
                     lambda p: read_captions(p, format=fmt, allow_unknown_images=allow_unknown))
    if result is not None:
        assert result.image_ids.dtype == np.int64 and len(result) > 0


@FEW
@given(columns=st.dictionaries(st.sampled_from(["image_id", "caption_id", "text", "split", "other"]),
                               st.lists(st.integers(-5, 5) | st.none(), min_size=3, max_size=3)
                               | st.lists(st.text(max_size=4) | st.none(), min_size=3, max_size=3)
                               | st.lists(st.floats(), min_size=3, max_size=3), max_size=5),
       cut=st.integers(0, 3))
def test_read_captions_on_random_parquet(columns, cut):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "caps.parquet"
        pq.write_table(pa.table(columns) if columns else pa.table({"x": [1]}), path)
        if cut:  # truncated files too
            raw = path.read_bytes()
            path.write_bytes(raw[: len(raw) * cut // 4])
        result = _allowed(lambda: read_captions(path))
        assert result is None or isinstance(result, CaptionTable)


@FEW
@given(name=st.sampled_from(JUDGMENT_NAMES), payload=st.binary(max_size=200) | csv_like().map(str.encode),
       fmt=st.sampled_from(["auto", "cxc-sits", "cxc-sts", "flickr8k-crowdflower", "flickr8k-expert"]))
def test_read_judgments_on_random_input(name, payload, fmt):
    result = _in_tmp(name, payload, lambda p: read_judgments(p, format=fmt))
    assert result is None or isinstance(result, Judgments)


@FEW
@given(payload=st.binary(max_size=300))
def test_load_features_on_random_bytes(payload):
    assert _in_tmp("f.npy", b"\x93NUMPY" + payload if payload[:1] == b"\x01" else payload, load_features) is None


FEATURE_DTYPES = st.sampled_from([np.float16, np.float32, np.float64, np.int8, np.int64, np.bool_, np.complex64,
                                  "U3", "M8[s]"])


@FEW
@given(array=hnp.arrays(FEATURE_DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3)),
       cut=st.integers(0, 4))
def test_load_features_on_random_arrays(array, cut):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.npy"
        np.save(path, array)
        if cut:
            raw = path.read_bytes()
            path.write_bytes(raw[: len(raw) * cut // 5])
        result = _allowed(lambda: load_features(path))
        if result is not None:
            assert isinstance(result, ImageFeatures) and result.array.ndim in (2, 3)
            assert np.isfinite(result.batch(np.arange(result.n_images))).all()


def _label_folder(tmp):
    folder = Path(tmp) / "labels"
    folder.mkdir()
    entry = write_shard(folder, 0, np.array([1, 2]), np.array([10, 20]), {"sbert": np.array([0.5, 0.25])},
                        {"config_hash": "abc"})
    return folder, entry


def _open_and_read(folder):
    labels = open_labels(folder)
    assert isinstance(labels, LabelSet)
    return read_labels(labels)


MANIFEST_FIELDS = {"format": st.just("bcls-labels") | JSON, "format_version": st.just(1) | JSON,
                   "columns": st.just(["image_id", "caption_id", "sbert"]) | JSON,
                   "rows": st.just(2) | JSON, "shards": JSON, "provenance": st.just({"config_hash": "abc"}) | JSON}


@FEW
@given(manifest=st.fixed_dictionaries({}, optional=MANIFEST_FIELDS) | JSON, real_shard=st.booleans())
def test_open_labels_on_random_manifests(manifest, real_shard):
    with tempfile.TemporaryDirectory() as tmp:
        folder, entry = _label_folder(tmp)
        if real_shard and isinstance(manifest, dict):
            manifest["shards"] = [entry]
        (folder / "_manifest.json").write_text(json.dumps(manifest))
        _allowed(lambda: _open_and_read(folder))


@FEW
@given(payload=st.binary(max_size=300), where=st.sampled_from(["manifest", "shard", "shard-truncated"]))
def test_open_labels_on_random_bytes(payload, where):
    with tempfile.TemporaryDirectory() as tmp:
        folder, entry = _label_folder(tmp)
        manifest = {"format": "bcls-labels", "format_version": 1, "columns": ["image_id", "caption_id", "sbert"],
                    "rows": 2, "shards": [entry], "provenance": {"config_hash": "abc"}}
        shard = folder / entry["file"]
        if where == "manifest":
            (folder / "_manifest.json").write_bytes(payload)
        else:
            raw = shard.read_bytes()
            shard.write_bytes(raw[: len(payload) % len(raw)] if where == "shard-truncated" else payload)
            entry["sha256"] = sha256_file(shard)  # the checksum matches: the reader must still refuse the data
            (folder / "_manifest.json").write_text(json.dumps(manifest))
        _allowed(lambda: _open_and_read(folder))
