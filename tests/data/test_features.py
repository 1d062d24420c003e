"""Tests of bcls.data.features and bcls.data.precomp.read_precomp_split."""

from __future__ import annotations

import numpy as np
import pytest

from bcls.data.infra.errors import DataFormatError
from bcls.data.features import ImageFeatures, load_features
from bcls.data.precomp import precomp_paths, read_precomp_split, write_precomp_split


def test_regions_float16_memory_mapped(tmp_path):
    arr = np.arange(4 * 3 * 2, dtype=np.float16).reshape(4, 3, 2)
    np.save(tmp_path / "f.npy", arr)
    f = load_features(tmp_path / "f.npy")
    assert isinstance(f, ImageFeatures)
    assert isinstance(f.array, np.memmap) and f.array.dtype == np.float16
    assert (f.kind, f.n_images, f.n_regions, f.dim) == ("regions", 4, 3, 2)
    b = f.batch(np.array([3, 1]))
    assert b.dtype == np.float32 and b.shape == (2, 3, 2)
    np.testing.assert_array_equal(b, arr[[3, 1]].astype(np.float32))
    b[:] = -1  # a copy: the features are unchanged
    np.testing.assert_array_equal(f.array[3], arr[3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_features(tmp_path, dtype):
    arr = np.random.default_rng(0).standard_normal((5, 8)).astype(dtype)
    np.save(tmp_path / "g.npy", arr)
    f = load_features(tmp_path / "g.npy", chunk=2)
    assert (f.kind, f.n_images, f.n_regions, f.dim) == ("global", 5, 1, 8)
    assert f.array.dtype == dtype
    np.testing.assert_allclose(f.batch(np.arange(5)), arr.astype(np.float32))
    assert f.batch(np.array([], dtype=np.int64)).shape == (0, 8)


def test_nan_reports_first_index_and_count(tmp_path):
    arr = np.zeros((10, 2, 3), np.float32)
    arr[7, 1, 2] = np.nan
    arr[3, 0, 0] = np.inf
    arr[8] = np.nan
    np.save(tmp_path / "n.npy", arr)
    with pytest.raises(DataFormatError) as err:
        load_features(tmp_path / "n.npy", chunk=4)
    msg = str(err.value)
    assert "n.npy" in msg and "3 image(s)" in msg and "image index 3" in msg and "check_finite=False" in msg
    assert load_features(tmp_path / "n.npy", check_finite=False).n_images == 10


def test_wrong_rank_int_dtype_and_empty(tmp_path):
    np.save(tmp_path / "r1.npy", np.zeros(4, np.float32))
    with pytest.raises(DataFormatError, match=r"r1\.npy: features have shape \(4,\) \(rank 1\)"):
        load_features(tmp_path / "r1.npy")
    np.save(tmp_path / "r4.npy", np.zeros((1, 2, 3, 4), np.float32))
    with pytest.raises(DataFormatError, match=r"r4\.npy: .*rank 4"):
        load_features(tmp_path / "r4.npy")
    np.save(tmp_path / "i.npy", np.zeros((3, 4), np.int32))
    with pytest.raises(DataFormatError, match=r"i\.npy: features have dtype int32; expected float"):
        load_features(tmp_path / "i.npy")
    np.save(tmp_path / "z.npy", np.zeros((0, 4), np.float32))
    with pytest.raises(DataFormatError, match=r"z\.npy: features have zero images"):
        load_features(tmp_path / "z.npy")


def test_missing_and_not_npy(tmp_path):
    with pytest.raises(DataFormatError, match=r"absent\.npy: no such file"):
        load_features(tmp_path / "absent.npy")
    (tmp_path / "t.npy").write_text("not numpy at all")
    with pytest.raises(DataFormatError, match=r"t\.npy: not a readable \.npy file"):
        load_features(tmp_path / "t.npy")
    np.save(tmp_path / "trunc.npy", np.zeros((100, 4), np.float32))
    data = (tmp_path / "trunc.npy").read_bytes()
    (tmp_path / "trunc.npy").write_bytes(data[:200])
    with pytest.raises(DataFormatError, match=r"trunc\.npy: not a readable \.npy file"):
        load_features(tmp_path / "trunc.npy")
    np.savez(tmp_path / "a.npz", x=np.zeros((2, 2)))
    with pytest.raises(DataFormatError, match=r"a\.npz: is an \.npz archive"):
        load_features(tmp_path / "a.npz")


def test_read_precomp_split(tmp_path):
    caps = [f"caption {i}" for i in range(6)]
    feats = np.random.default_rng(1).standard_normal((3, 2, 4)).astype(np.float32)
    write_precomp_split(tmp_path, "train", caps, feats, image_ids=[11, 12, 13])
    table, f = read_precomp_split(tmp_path, "train")
    assert len(table) == 6 and f.n_images == 3
    assert table.unique_images().tolist() == [11, 12, 13]
    np.testing.assert_array_equal(f.batch(table.image_index()[[0, 5]]), feats[[0, 2]])


def test_read_precomp_split_mismatch_and_nan(tmp_path):
    write_precomp_split(tmp_path, "val", [f"c{i}" for i in range(6)], np.zeros((3, 4), np.float32))
    paths = precomp_paths(tmp_path, "val")
    np.save(paths["ims"], np.zeros((4, 4), np.float32))
    with pytest.raises(DataFormatError) as err:
        read_precomp_split(tmp_path, "val")
    msg = str(err.value)
    assert "val_caps.txt" in msg and "val_ims.npy" in msg and "6 captions" in msg and "4 images" in msg
    bad = np.zeros((3, 4), np.float32)
    bad[1, 0] = np.nan
    np.save(paths["ims"], bad)
    with pytest.raises(DataFormatError, match=r"val_ims\.npy: 1 image\(s\) have NaN/Inf features, first at image index 1"):
        read_precomp_split(tmp_path, "val")
    table, f = read_precomp_split(tmp_path, "val", check_finite=False)
    assert len(table) == 6 and f.n_images == 3
    paths["ims"].unlink()
    with pytest.raises(DataFormatError, match=r"val_ims\.npy: no such file"):
        read_precomp_split(tmp_path, "val")


def test_feature_folder_joins_captions_by_image_id(tmp_path):
    from bcls.data.captions import CaptionTable
    from bcls.data.datasets import read_split
    from bcls.data.feature_folder import features_for_images, read_feature_folder, write_feature_folder

    ids = np.array([30, 10, 20, 40])
    feats = np.arange(4 * 3, dtype=np.float32).reshape(4, 3) + ids[:, None] * 100
    write_feature_folder(tmp_path / "f", ids, feats.astype(np.float16), provenance={"model": "hand"})
    table = CaptionTable.from_lists([20, 20, 40, 10], [1, 2, 3, 4], ["a", "b", "c", "d"], path="caps")
    joined, view = features_for_images(tmp_path / "f", table)
    assert view.n_images == 3 and list(joined.unique_images()) == [20, 40, 10]
    # caption k's features are the row of its image id, whatever the order of either file
    np.testing.assert_allclose(view.batch(joined.image_index()), feats[[2, 2, 3, 1]], rtol=1e-3)
    np.testing.assert_allclose(view.take(np.array([2, 0])).batch(np.array([0, 1])), feats[[1, 2]], rtol=1e-3)
    other = CaptionTable.from_lists([20, 50, 50, 60], [1, 2, 3, 4], ["a", "b", "c", "d"], path="caps2")
    with pytest.raises(DataFormatError, match=r"2 image\(s\) of caps2 \(3 captions\) have no features \(first image "
                                              r"id 50\).*--skip-missing"):
        features_for_images(tmp_path / "f", other)
    kept, view = features_for_images(tmp_path / "f", other, skip_missing=True)
    assert list(kept.caption_ids) == [1] and view.n_images == 1
    with pytest.raises(DataFormatError, match="no features.json|did not finish"):
        read_feature_folder(tmp_path)
    (tmp_path / "f" / "image_ids.npy").write_bytes((tmp_path / "f" / "image_ids.npy").read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(DataFormatError, match="image_ids.npy: checksum differs"):
        read_feature_folder(tmp_path / "f")
    with pytest.raises(Exception, match="give either --data .* or --captions with --features, not both"):
        read_split("train", data=tmp_path, captions="c", features="f")
    with pytest.raises(Exception, match="missing --features"):
        read_split("train", captions="c")
