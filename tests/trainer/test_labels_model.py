"""Sparse in-batch label lookup, vocabulary, model shapes and checkpoints."""

import numpy as np
import pytest
import torch

from bcls.data.infra.errors import CheckpointError, ConfigError
from bcls.trainer.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from bcls.trainer.batches.labels import PairLabels
from bcls.trainer.models import Vocabulary, make_model, tokenize


def test_lookup_equals_a_dict():
    rng = np.random.default_rng(0)
    n_img, n_cap, p = 30, 150, 400
    img, cap = rng.integers(0, n_img, p), rng.integers(0, n_cap, p)
    keys = np.unique(img * n_cap + cap)
    img, cap = keys // n_cap, keys % n_cap
    val = rng.random(len(keys)).astype(np.float32)
    val[::17] = np.nan  # unknown
    labels = PairLabels(img, cap, val, n_cap)
    table = {(i, c): v for i, c, v in zip(img, cap, val) if not np.isnan(v)}
    qi, qc = torch.from_numpy(rng.integers(0, n_img, 25)), torch.from_numpy(rng.integers(0, n_cap, 31))
    values, known = labels.lookup(qi, qc)
    assert values.shape == known.shape == (25, 31)
    for a, i in enumerate(qi.tolist()):
        for b, c in enumerate(qc.tolist()):
            assert known[a, b] == ((i, c) in table)
            assert values[a, b] == pytest.approx(table.get((i, c), 0.0))


def test_empty_labels_know_nothing():
    labels = PairLabels(np.array([], np.int64), np.array([], np.int64), np.array([], np.float32), 10)
    values, known = labels.lookup(torch.tensor([1, 2]), torch.tensor([3]))
    assert not known.any() and values.shape == (2, 1)


def test_vocabulary_round_trip():
    vocab = Vocabulary.build(["A dog, running.", "the dog sits"])
    assert tokenize("A dog, running.") == ["a", "dog", "running"]
    ids, lengths = vocab.encode(["a dog", "unseen words here", ""])
    assert lengths.tolist() == [2, 3, 1]
    assert ids[1, :3].tolist() == [1, 1, 1]  # unknown words
    assert ids[0, 1] == vocab.index["dog"] and ids[0, 2] == 0  # padding


def test_model_shapes_and_cosine():
    model = make_model("vse-gru", image_dim=8, vocab_size=20, embed_dim=16, word_dim=6)
    img = model.encode_images(torch.randn(3, 5, 8))
    glob = model.encode_images(torch.randn(3, 8))  # global features: one region
    txt = model.encode_texts(torch.tensor([[2, 3, 0], [4, 5, 6]]), torch.tensor([2, 3]))
    assert img.shape == glob.shape == (3, 16) and txt.shape == (2, 16)
    torch.testing.assert_close(img.norm(dim=1), torch.ones(3))
    with pytest.raises(ConfigError, match="valid: vse-gru"):
        make_model("clip")


def test_text_encoder_ignores_padding():
    model = make_model("vse-gru", image_dim=4, vocab_size=20, embed_dim=8, word_dim=6).eval()
    short = model.encode_texts(torch.tensor([[2, 3]]), torch.tensor([2]))
    padded = model.encode_texts(torch.tensor([[2, 3, 0, 0]]), torch.tensor([2]))
    torch.testing.assert_close(short, padded)


def test_checkpoint_round_trip_and_refusals(tmp_path):
    model = make_model("vse-gru", image_dim=8, vocab_size=5, embed_dim=4, word_dim=3)
    vocab = Vocabulary(["<pad>", "<unk>", "a", "b", "c"])
    path = save_checkpoint(tmp_path / "m.pt", {"model_name": "vse-gru", "model_settings": {
        "image_dim": 8, "vocab_size": 5, "embed_dim": 4, "word_dim": 3}, "state_dict": model.state_dict(),
        "vocab": vocab.words, "epoch": 1})
    loaded, vocab2 = model_from_checkpoint(load_checkpoint(path))
    assert vocab2.words == vocab.words
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    # a pickle that would run code is refused by weights_only loading
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    torch.save({"format": "bcls-checkpoint", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt: not a loadable"):
        load_checkpoint(tmp_path / "evil.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a bcls checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    (tmp_path / "trunc.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="trunc.pt"):
        load_checkpoint(tmp_path / "trunc.pt")


def test_dense_sbert_labels_equal_the_shard_values(tmp_path, encoder):
    """Dense in-batch labels (on the fly from stored embeddings) agree with the stored sparse pairs."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from bcls.data.captions import read_captions
    from bcls.data.shards import open_labels
    from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
    from bcls.trainer.batches.labels import DenseSbertLabels

    rng = np.random.default_rng(0)
    words = "dog cat man woman beach street red blue small large runs sits".split()
    n_img, cpi = 8, 5
    pcsv.write_csv(pa.table({"image_id": np.repeat(np.arange(n_img), cpi), "caption_id": np.arange(n_img * cpi),
                             "text": [" ".join(rng.choice(words, 4)) for _ in range(n_img * cpi)]}),
                   tmp_path / "c.csv")
    build_labels(LabelBuildConfig(captions=str(tmp_path / "c.csv"), out=str(tmp_path / "l"), k=6),
                 encoder=encoder)
    table = read_captions(tmp_path / "c.csv")
    label_set = open_labels(tmp_path / "l")
    sparse = PairLabels.from_labels(label_set, "sbert", table)
    dense = DenseSbertLabels.from_labels(label_set, table)
    images, captions = torch.arange(n_img), torch.arange(n_img * cpi)
    d_val, d_known = dense.lookup(images, captions)
    s_val, s_known = sparse.lookup(images, captions)
    assert d_known.all() and int(s_known.sum()) == label_set.manifest["rows"]
    # stored values are float32 of float32 embeddings; dense uses the float16 copy kept beside the shards
    torch.testing.assert_close(d_val[s_known], s_val[s_known], atol=2e-3, rtol=0)


@pytest.mark.parametrize("source", ["cider", "truth", "image"])
def test_dense_source_labels_equal_the_shard_values(tmp_path, encoder, source):
    """Any source but file gives dense labels: itself, rebuilt with the build's options, on every in-batch pair."""
    from bcls.data.captions import read_captions
    from bcls.data.demo import DemoConfig, generate_demo
    from bcls.data.infra.errors import ConfigError
    from bcls.data.shards import open_labels
    from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
    from bcls.trainer.batches.labels import DenseSourceLabels, dense_labels

    from bcls.data.feature_folder import write_feature_folder

    generate_demo(tmp_path / "d", DemoConfig(seed=4, n_train=12, n_dev=5, n_test=5))
    table = read_captions(tmp_path / "d", split="train")
    write_feature_folder(tmp_path / "f", table.unique_images(),
                         np.random.default_rng(0).random((12, 8)).astype(np.float16))
    build_labels(LabelBuildConfig(captions=str(tmp_path / "d"), split="train", out=str(tmp_path / "l"), k=5,
                                  sources=("cider", "truth", "image"),
                                  source_options={"truth": {"path": str(tmp_path / "d")},
                                                  "image": {"features": str(tmp_path / "f")}}),
                 encoder=encoder)
    label_set = open_labels(tmp_path / "l")
    dense = dense_labels(label_set, source, table)
    assert isinstance(dense, DenseSourceLabels)
    images, captions = torch.arange(12), torch.arange(60)
    d_val, d_known = dense.lookup(images, captions)
    s_val, s_known = PairLabels.from_labels(label_set, source, table).lookup(images, captions)
    assert d_known.all() and int(s_known.sum()) == label_set.manifest["rows"]
    torch.testing.assert_close(d_val[s_known], s_val[s_known], atol=1e-6, rtol=0)
    with pytest.raises(ConfigError, match="file source only knows its listed pairs"):
        DenseSourceLabels.from_labels(label_set, "file", table)


def test_label_normalizer():
    from bcls.trainer.batches.labels import LabelNormalizer

    train = np.array([0.2, 0.4, 0.4, 0.6, np.nan], dtype=np.float32)
    x = torch.tensor([0.2, 0.4, 0.5, 0.6])
    torch.testing.assert_close(LabelNormalizer("minmax", train)(x), torch.tensor([0.0, 0.5, 0.75, 1.0]))
    # fraction of training labels strictly below the value
    torch.testing.assert_close(LabelNormalizer("percentile", train)(x), torch.tensor([0.0, 0.25, 0.75, 0.75]))
    torch.testing.assert_close(LabelNormalizer("none", train)(x), x)
    assert LabelNormalizer("none", np.array([0.0, 7.5], np.float32)).top == 7.5
    with pytest.raises(ConfigError, match="valid: none, minmax, percentile"):
        LabelNormalizer("zscore", train)


@pytest.mark.parametrize("aggregate", ["max", "mean", "topk", "softmax", "centroid"])
def test_dense_lookup_equals_the_source_on_every_pair(aggregate):
    from bcls.pipeline.corpus import LabelCorpus
    from bcls.pipeline.sources import SbertSource
    from bcls.trainer.batches.labels import DenseSbertLabels

    rng = np.random.default_rng(2)
    image_index = np.r_[np.repeat(np.arange(10), 4), 10]  # image 10 has a single caption: no reference left
    emb = rng.standard_normal((len(image_index), 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    corpus = LabelCorpus.from_groups(tuple("t" * len(emb)), image_index, emb)
    source = SbertSource(aggregate=aggregate)
    dense = DenseSbertLabels(corpus, source)
    images, captions = torch.tensor([0, 3, 10, 3]), torch.tensor([0, 1, 13, 40, 7])
    values, known = dense.lookup(images, captions)
    expected = source.score(corpus, np.repeat(images.numpy(), 5), np.tile(captions.numpy(), 4)).reshape(4, 5)
    assert torch.equal(known, torch.from_numpy(~np.isnan(expected)))
    torch.testing.assert_close(values, torch.from_numpy(np.nan_to_num(expected)), atol=1e-6, rtol=0)
    assert not known[2, 3] and known[2, 2]  # (image 10, its only caption 40) is undefined


@pytest.mark.parametrize("aggregate", ["max", "mean", "topk", "softmax", "centroid"])
def test_torch_aggregate_equals_the_numpy_definition(aggregate):
    """The trainer's torch aggregate (dense labels on the training device) against the numpy definition label builds
    use: padding slots holding junk (NaN included), pairs without any valid reference, and k above the slots."""
    from bcls.pipeline.sources.sbert import aggregate_similarities
    from bcls.trainer.batches.labels import aggregate_similarities_torch

    rng = np.random.default_rng(5)
    raw = rng.uniform(-0.3, 1.2, (6, 7, 5)).astype(np.float32)
    valid = rng.random((6, 7, 5)) < 0.6
    valid[2, 3] = False  # no reference: NaN
    raw[~valid] = np.where(rng.random(int((~valid).sum())) < 0.3, np.nan, 9.0)
    vecs = rng.standard_normal((6, 5, 4)).astype(np.float32)
    gram = np.einsum("imd,ind->imn", vecs, vecs)[:, None]
    gram[0, 0, 4, :] = np.nan  # junk in a padding row of the references' cosines
    valid[0, :, 4] = False
    for k in (2, 7):
        expected = aggregate_similarities(raw, valid, aggregate, k=k, temperature=0.2, gram=gram)
        got = aggregate_similarities_torch(torch.from_numpy(raw), torch.from_numpy(valid), aggregate, k=k,
                                           temperature=0.2, gram=torch.from_numpy(gram))
        assert got.dtype == torch.float32
        assert torch.equal(torch.isnan(got), torch.from_numpy(np.isnan(expected)))
        assert np.isnan(expected[2, 3])
        torch.testing.assert_close(got, torch.from_numpy(expected), atol=1e-6, rtol=0, equal_nan=True)
    with pytest.raises(ConfigError, match="unknown sbert aggregate"):
        aggregate_similarities_torch(torch.from_numpy(raw), torch.from_numpy(valid), "median")


def test_float16_features_cast_by_torch_equal_numpy_float32():
    """An accelerator receives the stored float16 bytes and casts them itself (trainer/batches/inputs.py): the IEEE
    cast is exact, so torch's float32 equals numpy's bit for bit, subnormals, infinities and ±0 included."""
    from bcls.data.features import ImageFeatures
    from bcls.trainer.batches.inputs import image_batch

    bits = np.arange(2**16, dtype=np.uint16).view(np.float16)
    bits = bits[~np.isnan(bits)].reshape(-1, 2, 5)  # every float16 but NaN: (6349, 2, 5)
    feats = ImageFeatures(bits, "mem")
    idx = np.array([5, 0, 3000, 5])
    stored = feats.batch(idx, dtype=None)
    assert stored.dtype == np.float16 and np.array_equal(stored.view(np.uint16), bits[idx].view(np.uint16))
    assert torch.equal(image_batch(feats, idx, torch.device("cpu")), torch.from_numpy(feats.batch(idx)))
    every = np.arange(feats.n_images)
    cast = torch.from_numpy(feats.batch(every, dtype=None)).float()
    assert torch.equal(cast.view(torch.int32), torch.from_numpy(feats.batch(every).view(np.int32)))
