"""The half-precision torch backends of the sentence model: bf16 close to fp32, refused where slow or unsupported."""

import numpy as np
import pytest

from bcls.data.infra.errors import ConfigError
from bcls.pipeline.embedding import embed
from bcls.pipeline.embedding.embed import model_cache_id, sbert_encoder


def test_bf16_embeddings_are_close_to_fp32_on_real_captions(coco_corpus, monkeypatch):
    """torch-bf16 runs the model under autocast: on real COCO captions its embeddings stay within the cosine the
    docs/label_sources.md states, and differ from fp32 (bf16 for real, not the fp32 model under another name). The CPU-flag check
    is bypassed: without bf16 instructions the arithmetic is the same, only slower."""
    monkeypatch.setattr(embed, "cpu_flags", lambda: {"avx512_bf16"})
    texts = list(coco_corpus(60).texts)
    reference = sbert_encoder()(texts)
    half = sbert_encoder(backend="torch-bf16")(texts)
    assert half.shape == reference.shape and half.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(half, axis=1), 1.0, atol=1e-5)
    cos = (half * reference).sum(1)
    assert cos.min() > 0.999 and not np.array_equal(half, reference)


def test_half_backends_are_refused_where_slow_or_unsupported(monkeypatch):
    monkeypatch.setattr(embed, "cpu_flags", lambda: {"avx2", "fma"})
    with pytest.raises(ConfigError, match="this CPU has no bf16 instructions.*--backend onnx-int8 or torch"):
        sbert_encoder(backend="torch-bf16")
    with pytest.raises(ConfigError, match="'torch-fp16' runs on a CUDA device"):
        sbert_encoder(backend="torch-fp16", device="cpu")
    monkeypatch.setattr(embed, "cpu_flags", lambda: None)  # flags unknown (not Linux): allowed
    embed.check_half("torch-bf16", "cpu")
    assert model_cache_id("all-MiniLM-L6-v2", "torch-bf16") == model_cache_id("all-MiniLM-L6-v2") + " [torch-bf16]"


def test_cpu_flags_parses_cpuinfo(tmp_path):
    (tmp_path / "x86").write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags : fpu\n")
    (tmp_path / "arm").write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    assert embed.cpu_flags(tmp_path / "x86") == {"fpu", "avx2", "avx512_bf16"}
    assert embed.cpu_flags(tmp_path / "arm") is None and embed.cpu_flags(tmp_path / "missing") is None
