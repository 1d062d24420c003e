"""EncoderSpec: the sentence encoder's settings as one value; its cache key carries the backend, so a backend's
embeddings are never served for another's (labels evaluate and fit once dropped the backend)."""

import numpy as np
import pytest

from bcls.data.infra.errors import ConfigError
from bcls.pipeline.embedding import embed
from bcls.pipeline.embedding.embed import DEFAULT_MODEL, EmbeddingCache, EncoderSpec, model_cache_id, text_keys


def _refuse(*args, **kwargs):
    raise AssertionError("the sentence model was loaded")


def test_cached_embeddings_are_found_under_the_backend_they_were_made_with(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    texts = ["a dog on a beach", "a cat on a mat"]
    vectors = np.eye(2, 4, dtype=np.float32)
    EmbeddingCache(tmp_path, model_cache_id(DEFAULT_MODEL, "onnx-int8")).add(text_keys(texts), vectors)
    monkeypatch.setattr(embed, "sbert_encoder", _refuse)
    spec = EncoderSpec(backend="onnx-int8", cache=str(tmp_path))
    assert spec.cache_id == model_cache_id(DEFAULT_MODEL, "onnx-int8") != EncoderSpec().cache_id
    np.testing.assert_array_equal(spec.cached()(texts), vectors)
    with pytest.raises(AssertionError, match="was loaded"):  # the torch backend's key holds nothing yet
        EncoderSpec(cache=str(tmp_path)).cached()(texts)
    with pytest.raises(AssertionError, match="was loaded"):  # no cache: always the model
        spec.cached(use_cache=False)


@pytest.mark.parametrize("bad, match", [({"backend": "int4"}, "unknown sentence-model backend 'int4'"),
                                        ({"batch_size": 0}, "batch_size must be at least 1"),
                                        ({"device": 3}, "device must be a string or null")])
def test_bad_settings_are_refused_when_the_spec_is_made(bad, match):
    with pytest.raises(ConfigError, match=match):
        EncoderSpec(**bad)


def test_the_spec_travels_as_plain_json_values():
    spec = EncoderSpec(model="mpnet", backend="torch", device="cpu", batch_size=8, cache="/tmp/c")
    assert EncoderSpec(**spec.to_dict()) == spec
