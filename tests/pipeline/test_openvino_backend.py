"""The OpenVINO backends of the sentence model: fp32 equal to torch, static int8 close to it and independent of the
batch, calibrated on COCO captions outside the test split, exported once and never half-written."""

import importlib.util
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bcls.data.infra.errors import ConfigError
from bcls.pipeline.embedding.embed import model_cache_id, sbert_encoder
from bcls.pipeline.embedding.onnx_backend import BACKENDS, check_backend, onnx_dir

pytest.importorskip("openvino")
pytest.importorskip("onnx")
pytestmark = pytest.mark.skipif(importlib.util.find_spec("nncf") is None, reason="nncf is not installed")


def test_missing_packages_and_gpu_are_refused(monkeypatch):
    with pytest.raises(ConfigError, match="runs on the CPU"):
        sbert_encoder(backend="openvino-int8", device="cuda")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nncf" else real(name, *a))
    check_backend("openvino")  # fp32 needs no nncf
    with pytest.raises(ConfigError, match=r"'openvino-int8' needs nncf: pip install 'bcls\[openvino\]'"):
        check_backend("openvino-int8")
    assert {"openvino", "openvino-int8"} <= set(BACKENDS)


def test_calibration_captions_avoid_the_test_split():
    """1,024 distinct val2014 annotations, evenly spread, none of an image of the Karpathy 5K test split (checked
    against eccv-caption's ids and the jar's annotations, read here independently)."""
    from bcls.pipeline.embedding.openvino_backend import calibration_set

    rows = calibration_set()
    assert len(rows) == 1024 and len({r["id"] for r in rows}) == 1024
    assert rows == calibration_set()  # deterministic
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids)
    jar = Path(importlib.util.find_spec("pycocoevalcap").submodule_search_locations[0]) / "spice" / "spice-1.0.jar"
    with zipfile.ZipFile(jar) as zf:
        anns = json.load(io.TextIOWrapper(zf.open("coco/annotations/captions_val2014.json")))["annotations"]
    eccv = Path(importlib.util.find_spec("eccv_caption").submodule_search_locations[0])
    test_ann = set(np.load(eccv / "data" / "coco_test_ids.npy").tolist())
    image_of = {a["id"]: a["image_id"] for a in anns}
    test_images = {image_of[a] for a in test_ann}
    assert len(test_images) == 5000
    assert not {r["image_id"] for r in rows} & test_images
    assert all(image_of[r["id"]] == r["image_id"] for r in rows)
    spread = np.diff(ids)
    assert spread.min() > 0 and ids[-1] - ids[0] > 0.9 * (max(image_of) - min(image_of))


def test_openvino_embeddings_match_torch_on_real_captions(coco_corpus, monkeypatch, tmp_path):
    """fp32 equals torch to rounding; int8 stays close to it (the bounds below) and, its ranges being static, gives
    a caption the same embedding alone as in a batch; the quantised model is written once, with its provenance."""
    monkeypatch.setenv("BCLS_CACHE_DIR", str(tmp_path))
    texts = list(coco_corpus(80).texts)
    reference = sbert_encoder()(texts)
    fp32 = sbert_encoder(backend="openvino")(texts)
    int8 = sbert_encoder(backend="openvino-int8")(texts)
    assert fp32.shape == int8.shape == reference.shape and int8.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    assert (fp32 * reference).sum(1).min() > 0.9999
    cos = (int8 * reference).sum(1)
    # these 400 captions: mean 0.996, 1st percentile 0.992, min 0.992 (Karpathy test, ../shared) or 0.990 (the jar's
    # val2014 captions, used without ../shared); the worst is a single caption, so the bound on it is looser
    assert cos.mean() > 0.995 and np.quantile(cos, 0.01) > 0.99 and cos.min() > 0.985
    assert cos.mean() < 0.99999  # quantised for real: not the fp32 graph under another name
    encode = sbert_encoder(backend="openvino-int8")
    alone = np.concatenate([encode([t]) for t in texts[:6]])
    assert (alone * int8[:6]).sum(1).min() > 0.9999
    folder = onnx_dir(tmp_path, model_cache_id("all-MiniLM-L6-v2"))
    files = {p.name for p in folder.iterdir()}
    assert {"model.onnx", "model-ov-int8.xml", "model-ov-int8.bin", "openvino.json"} <= files
    assert not any(name.startswith(".") for name in files)  # nothing half-written left
    meta = json.loads((folder / "openvino.json").read_text())
    assert meta["int8"]["calibration"]["captions"] == 1024 and meta["openvino"]
    stamp = (folder / "model-ov-int8.xml").stat().st_mtime_ns
    np.testing.assert_array_equal(sbert_encoder(backend="openvino-int8")(texts), int8)
    assert (folder / "model-ov-int8.xml").stat().st_mtime_ns == stamp


def test_a_failed_quantisation_leaves_no_model(monkeypatch, tmp_path):
    """A quantisation whose process dies after writing part of the model leaves neither its files nor the
    temporary folder, and says what failed; the next call quantises again (in a child process, so this process
    never imports NNCF)."""
    import sys

    from bcls.pipeline.embedding import openvino_backend
    from bcls.pipeline.embedding.embed import load_sentence_model
    from bcls.pipeline.embedding.onnx_backend import export_onnx

    model = load_sentence_model()
    onnx_path = export_onnx(model, tmp_path, "test-model", int8=False)

    def dies(onnx, batches, out):
        code = f"open({str(out)!r}, 'w').write('<half'); import sys; sys.exit('disk full')"
        return [sys.executable, "-c", code]

    monkeypatch.setattr(openvino_backend, "_quantise_command", dies)
    with pytest.raises(RuntimeError, match=r"quantising .*model.onnx failed \(exit 1\): disk full"):
        openvino_backend.export_openvino(model, onnx_path, int8=True, calibration=64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.json", "model.onnx"]
    monkeypatch.undo()
    path = openvino_backend.export_openvino(model, onnx_path, int8=True, calibration=64)
    assert path.name == "model-ov-int8.xml" and (tmp_path / "model-ov-int8.bin").stat().st_size > 1 << 20
    assert json.loads((tmp_path / "openvino.json").read_text())["int8"]["calibration"]["captions"] == 64
    assert "nncf" not in sys.modules


def test_a_build_records_the_openvino_backend(coco_corpus, monkeypatch, tmp_path):
    from bcls.data.captions import CaptionTable
    from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
    from bcls.pipeline.embedding.embed import EncoderSpec

    corpus = coco_corpus(12)
    table = CaptionTable.from_lists(corpus.image_index.tolist(), list(range(len(corpus.texts))), list(corpus.texts))
    built = build_labels(LabelBuildConfig(captions="x", out=str(tmp_path / "labels"), k=3,
                                          encoder=EncoderSpec(backend="openvino", cache=str(tmp_path / "cache"))),
                         table=table)
    assert built.provenance["sentence_backend"] == "openvino"
    assert {"openvino", "onnx"} <= set(built.provenance["versions"])
