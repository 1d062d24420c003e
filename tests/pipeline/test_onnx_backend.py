"""The ONNX Runtime backends of the sentence model: exported locally, close to the torch embeddings, cached apart."""

import numpy as np
import pytest

from bcls.data.infra.errors import ConfigError
from bcls.pipeline.embedding.embed import model_cache_id, sbert_encoder
from bcls.pipeline.embedding.onnx_backend import BACKENDS, check_backend, onnx_dir

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def test_unknown_backend_and_gpu_are_refused(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="unknown sentence-model backend 'tensorrt'; valid: torch, onnx"):
        check_backend("tensorrt")
    with pytest.raises(ConfigError, match="runs on the CPU"):
        sbert_encoder(backend="onnx-int8", device="cuda")
    from bcls.pipeline.building.label_build import LabelBuildConfig
    from bcls.pipeline.embedding.embed import EncoderSpec

    with pytest.raises(ConfigError, match="unknown sentence-model backend"):
        LabelBuildConfig(captions="x", out=str(tmp_path), encoder=EncoderSpec(backend="int4"))
    assert set(BACKENDS) == {"torch", "onnx", "onnx-int8", "openvino", "openvino-int8", "torch-bf16", "torch-fp16"}


def test_cache_ids_and_build_identity_separate_the_backends(tmp_path):
    from bcls.data.captions import CaptionTable
    from bcls.pipeline.building.label_build import LabelBuildConfig, build_identity
    from bcls.pipeline.embedding.embed import EncoderSpec

    ids = {b: model_cache_id("all-MiniLM-L6-v2", b) for b in BACKENDS}
    assert len(set(ids.values())) == len(BACKENDS) and ids["onnx-int8"] == ids["torch"] + " [onnx-int8]"
    table = CaptionTable.from_lists([1, 1], [10, 11], ["a dog", "a cat"])
    torch_id = build_identity(LabelBuildConfig(captions="x", out=str(tmp_path)), [], table)
    int8_id = build_identity(LabelBuildConfig(captions="x", out=str(tmp_path), encoder=EncoderSpec(backend="onnx-int8")), [], table)
    assert "backend" not in torch_id and int8_id == torch_id | {"backend": "onnx-int8"}


def test_onnx_embeddings_match_torch_on_real_captions(coco_corpus, monkeypatch, tmp_path, caplog):
    """fp32 ONNX equals torch to rounding; int8 stays within the cosine docs/label_sources.md states (real COCO captions);
    the export is written once, with its provenance, under the embedding cache folder."""
    monkeypatch.setenv("BCLS_CACHE_DIR", str(tmp_path))
    texts = list(coco_corpus(80).texts)
    reference = sbert_encoder()(texts)
    fp32 = sbert_encoder(backend="onnx")(texts)
    with caplog.at_level("INFO"):
        int8 = sbert_encoder(backend="onnx-int8")(texts)
    assert not [r for r in caplog.records if r.name == "root"]  # the quantiser's notes stay out of the log
    assert "quantising" in caplog.text
    assert fp32.shape == int8.shape == reference.shape and fp32.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    assert (fp32 * reference).sum(1).min() > 0.9999
    cos = (int8 * reference).sum(1)
    assert cos.mean() > 0.99 and cos.min() > 0.98
    assert cos.mean() < 0.99999  # quantised for real: not the fp32 graph under another name
    folder = onnx_dir(tmp_path, model_cache_id("all-MiniLM-L6-v2"))
    files = {p.name for p in folder.iterdir()}
    assert {"model.onnx", "model-int8.onnx", "export.json"} <= files
    assert not any(name.startswith(".") or ".tmp" in name for name in files)  # nothing half-written left
    stamp = (folder / "model-int8.onnx").stat().st_mtime_ns
    again = sbert_encoder(backend="onnx-int8")(texts)
    np.testing.assert_array_equal(again, int8)  # same captions, same batches: the same embeddings
    assert (folder / "model-int8.onnx").stat().st_mtime_ns == stamp
    # activations are quantised per batch, so a caption embedded in another batch moves a little (docs/label_sources.md)
    alone = sbert_encoder(backend="onnx-int8")(texts[:5])
    assert (alone * int8[:5]).sum(1).min() > 0.98


def test_a_build_records_its_backend(coco_corpus, monkeypatch, tmp_path):
    """A label build with an ONNX backend names it and onnxruntime's version in its provenance, and a rebuild with
    the torch backend into the same folder is another build (refused without --force)."""
    from bcls.data.captions import CaptionTable
    from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
    from bcls.pipeline.embedding.embed import EncoderSpec

    monkeypatch.setenv("BCLS_CACHE_DIR", str(tmp_path / "cache"))
    corpus = coco_corpus(12)
    table = CaptionTable.from_lists(corpus.image_index.tolist(), list(range(len(corpus.texts))), list(corpus.texts))
    out = tmp_path / "labels"
    given = tmp_path / "given_cache"  # --cache: the export goes there too, not to $BCLS_CACHE_DIR
    built = build_labels(LabelBuildConfig(captions="x", out=str(out), k=3, encoder=EncoderSpec(backend="onnx-int8", cache=str(given))),
                         table=table)
    assert (onnx_dir(given, model_cache_id("all-MiniLM-L6-v2")) / "model-int8.onnx").is_file()
    assert not (tmp_path / "cache" / "onnx").exists()
    assert built.provenance["sentence_backend"] == "onnx-int8"
    assert built.provenance["config"]["backend"] == "onnx-int8" and "onnxruntime" in built.provenance["versions"]
    with pytest.raises(ConfigError):
        build_labels(LabelBuildConfig(captions="x", out=str(out), k=3, encoder=EncoderSpec(cache=str(given))), table=table)
