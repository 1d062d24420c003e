import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bcls.data.infra.errors import ShardError
from bcls.data.shards import label_schema, open_labels, read_labels, write_manifest, write_shard


def _build(folder, n=50, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 10, n)
    cap = rng.integers(0, 100, n)
    vals = {"sbert": rng.random(n), "cider": rng.random(n) * 10}
    entry = write_shard(folder, 0, img, cap, vals, {"note": "test"})
    write_manifest(folder, [entry], ["sbert", "cider"], {"k": 3})
    return img, cap, vals


def test_round_trip_keeps_schema_and_values(tmp_path):
    img, cap, vals = _build(tmp_path)
    labels = open_labels(tmp_path)
    assert labels.sources == ["sbert", "cider"]
    table = read_labels(labels)
    assert table.schema.field("image_id").type == pa.int64()
    assert table.schema.field("sbert").type == pa.float32()
    np.testing.assert_array_equal(table.column("image_id").to_numpy(), img)
    np.testing.assert_array_equal(table.column("caption_id").to_numpy(), cap)
    np.testing.assert_allclose(table.column("cider").to_numpy(), vals["cider"].astype(np.float32))
    only = read_labels(labels, ["cider"])
    assert only.schema.names == ["image_id", "caption_id", "cider"]
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left


def test_missing_manifest_is_an_unfinished_build(tmp_path):
    write_shard(tmp_path, 0, np.arange(3), np.arange(3), {"sbert": np.ones(3)})
    with pytest.raises(ShardError, match="no manifest"):
        open_labels(tmp_path)


def test_changed_shard_fails_checksum(tmp_path):
    _build(tmp_path)
    shard = tmp_path / "shard-00000.parquet"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match="shard-00000.parquet: checksum"):
        open_labels(tmp_path)


def test_unlisted_shard_is_refused_not_ignored(tmp_path):
    _build(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _build(other, seed=1)
    (other / "shard-00000.parquet").rename(tmp_path / "shard-00001.parquet")  # a shard of another build
    with pytest.raises(ShardError, match=r"shard-00001.parquet: a shard the manifest does not list \(1 such"):
        open_labels(tmp_path)
    (tmp_path / "shard-00001.parquet").unlink()
    assert open_labels(tmp_path).sources == ["sbert", "cider"]


def test_foreign_parquet_is_refused(tmp_path):
    _build(tmp_path)
    labels = open_labels(tmp_path)
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "shard-00000.parquet")
    with pytest.raises(ShardError, match="columns"):
        read_labels(labels)


def test_manifest_paths_cannot_leave_the_folder(tmp_path):
    _build(tmp_path)
    manifest = json.loads((tmp_path / "_manifest.json").read_text())
    manifest["shards"][0]["file"] = "../outside.parquet"
    (tmp_path / "_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="not a plain file name"):
        open_labels(tmp_path)


def test_unknown_source_column_is_named(tmp_path):
    _build(tmp_path)
    with pytest.raises(ShardError, match="spice"):
        read_labels(open_labels(tmp_path), ["spice"])


def test_bad_source_name_cannot_become_a_column():
    with pytest.raises(ShardError):
        label_schema(["image_id"])
