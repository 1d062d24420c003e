"""The fast tokenizer and the pipeline's torch embedding loop, against the library's own paths on real captions."""

import copy

import numpy as np
import pytest

from bcls.pipeline.embedding import embed, tokens
from bcls.pipeline.embedding.embed import load_sentence_model, sbert_encoder, torch_embed
from bcls.pipeline.embedding.onnx_backend import model_inputs
from bcls.pipeline.embedding.tokens import PROBE, fast_tokenizer


@pytest.fixture(scope="module")
def model():
    return load_sentence_model()


def _library(model, texts):
    return {k: v.numpy() for k, v in model.preprocess(list(texts)).items() if hasattr(v, "numpy")}


def test_fast_tokenizer_gives_the_models_own_arrays_on_real_captions(model, coco_corpus):
    """Real COCO captions in batches of several sizes, the probe texts (truncation, padding, other scripts) and
    an empty batch: the same keys and the same int64 arrays as the model's preprocess."""
    fast = fast_tokenizer(model)
    assert fast is not None and fast.constants == {"modality": "text"}
    texts = list(coco_corpus(100).texts)
    for size in (1, 7, 64, len(texts)):
        for lo in range(0, len(texts), size):
            ours, theirs = fast(texts[lo:lo + size]), _library(model, texts[lo:lo + size])
            assert ours.keys() == theirs.keys() == {"input_ids", "attention_mask", "token_type_ids"}
            for key in ours:
                assert ours[key].dtype == np.int64 and np.array_equal(ours[key], theirs[key]), key
    probe = fast(PROBE)
    assert probe["input_ids"].shape == (len(PROBE), 256)  # the long texts are cut at the model's maximum
    assert probe["attention_mask"].sum(1).tolist() == _library(model, PROBE)["attention_mask"].sum(1).tolist()
    assert fast([])["input_ids"].shape == (0, 0)
    # the ONNX / OpenVINO inputs come from it too, equal to the transformers tokenizer call they replaced
    reference = model.tokenizer(texts[:50], padding=True, truncation=True, max_length=256, return_tensors="np")
    inputs = model_inputs(model, texts[:50])
    assert np.array_equal(inputs["ids"], reference["input_ids"]) and np.array_equal(
        inputs["mask"], reference["attention_mask"])


def test_a_model_it_does_not_reproduce_keeps_the_library_path(model, coco_corpus, monkeypatch):
    """Left padding (a setting some models ship with) changes the model's own arrays: the probe catches it, no
    fast tokenizer is handed out, and the encoder falls back to SentenceTransformer.encode, whose result it
    returns."""
    left = copy.deepcopy(model)
    left.tokenizer.padding_side = "left"
    assert fast_tokenizer(left) is None
    assert fast_tokenizer(model) is not None  # the check is per model object
    calls = []
    monkeypatch.setattr(embed, "load_sentence_model", lambda *a: left)
    monkeypatch.setattr(type(left), "encode", lambda self, texts, **kw: calls.append(len(texts)) or
                        np.ones((len(texts), 384), dtype=np.float32))
    out = sbert_encoder()(list(coco_corpus(2).texts))
    assert calls == [10] and np.array_equal(out, np.ones((10, 384), dtype=np.float32))


def test_the_torch_loop_equals_sentence_transformers_encode(model, coco_corpus, monkeypatch):
    """torch_embed (our loop around the library's forward) against SentenceTransformer.encode on the same
    length-sorted real captions: the same embeddings up to float rounding (batches of other shapes), unit norm;
    and sbert_encoder takes this loop for the torch backend."""
    texts = sorted(coco_corpus(60).texts, key=len)
    reference = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    ours = torch_embed(model, fast_tokenizer(model), texts, 32)
    assert ours.shape == reference.shape == (len(texts), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)
    # tokenised batch by batch (the GPU's way: the tokeniser runs while the GPU works): the very same arrays
    np.testing.assert_array_equal(torch_embed(model, fast_tokenizer(model), texts, 32, per_batch=True), ours)
    used = []
    monkeypatch.setattr(embed, "torch_embed", lambda *a: used.append(len(a[2])) or torch_embed(*a))
    again = sbert_encoder(batch_size=32)(texts)
    assert used == [len(texts)]
    np.testing.assert_allclose(again, reference, atol=1e-6)


def test_the_probe_exercises_truncation_and_blank_texts(model):
    """A probe that cannot tell the paths apart would be a check that cannot fail: it holds texts longer than the
    model's maximum (so truncation is compared) and blank ones (only the special tokens)."""
    lengths = _library(model, PROBE)["attention_mask"].sum(1)
    assert lengths.max() == 256 and (lengths == 256).sum() >= 2 and lengths.min() == 2
    fast = tokens.FastTokenizer(model.tokenizer._tokenizer, 16, 0, ["input_ids", "attention_mask"], {})
    assert fast(PROBE)["input_ids"].shape[1] == 16  # a wrong maximum length would show on the probe
