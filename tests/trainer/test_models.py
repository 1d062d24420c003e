"""Tests of bcls.trainer.models: GPO pooling, VSE∞-style encoders, the model registry."""

from __future__ import annotations

import pytest
import torch

from bcls.data.infra.errors import ConfigError
from bcls.trainer.losses import make_binary_loss
from bcls.trainer.models import (
    GPO,
    MODELS,
    GlobalImageAdapter,
    GRUTextEncoder,
    RegionGPOImageEncoder,
    gpo_pool,
    make_model,
    model_setting_names,
    positional_encoding,
)

SMALL = {"image_dim": 6, "vocab_size": 20, "embed_dim": 8, "word_dim": 5}


def _images(name: str, B: int, g: torch.Generator) -> torch.Tensor:
    return torch.randn(B, 6, generator=g) if name == "vse-global" else torch.randn(B, 4, 6, generator=g)


def _texts(B: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.randint(1, 6, (B,), generator=g)
    ids = torch.randint(2, 20, (B, int(lengths.max())), generator=g)
    ids[torch.arange(ids.shape[1])[None, :] >= lengths[:, None]] = 0
    return ids, lengths


# ----------------------------------------------------------------------------------------------- GPO
def test_gpo_pool_is_max_mean_and_kth_largest() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    lengths = torch.tensor([5, 2, 3])
    valid = torch.arange(5)[None, :] < lengths[:, None]
    garbage = x.masked_fill(~valid[..., None], 100.0)  # padded values must not count
    one_hot = torch.zeros(3, 5, dtype=torch.float64)
    one_hot[:, 0] = 1.0
    for b, n in enumerate(lengths.tolist()):
        assert gpo_pool(garbage, one_hot, lengths)[b].tolist() == x[b, :n].amax(0).tolist()
    uniform = valid.double() / lengths[:, None]
    expected = torch.stack([x[b, :n].mean(0) for b, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(gpo_pool(garbage, uniform, lengths), expected)
    second = torch.zeros(3, 5, dtype=torch.float64)
    second[:, 1] = 1.0
    second[1, 4] = 7.0  # weight at a padded position of row 1 (length 2): ignored
    expected = torch.stack([x[b, :n].sort(0, descending=True).values[1] for b, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(gpo_pool(garbage, second, lengths), expected)
    # no lengths: every position is valid
    torch.testing.assert_close(gpo_pool(x, one_hot), x.amax(1))


def test_gpo_pool_gradient_reaches_the_selected_values_only() -> None:
    x = torch.tensor([[[1.0], [3.0], [2.0], [9.0]]], requires_grad=True)  # position 3 is padding
    w = torch.tensor([[0.0, 1.0, 0.0, 0.0]])  # the second largest real value: 2.0 at position 2
    gpo_pool(x, w, torch.tensor([3])).sum().backward()
    assert x.grad is not None and x.grad.flatten().tolist() == [0.0, 0.0, 1.0, 0.0]


def test_gpo_weights_are_a_softmax_over_real_positions() -> None:
    torch.manual_seed(0)
    gpo = GPO(pe_dim=8, hidden_dim=6)
    lengths = torch.tensor([3, 5, 3, 1])
    w = gpo.weights(lengths, 6)
    assert w.shape == (4, 6)
    torch.testing.assert_close(w.sum(1), torch.ones(4))
    assert (w[torch.arange(6)[None, :] >= lengths[:, None]] == 0).all()
    torch.testing.assert_close(w[0], w[2])
    assert w[3, 0] == 1.0
    torch.testing.assert_close(gpo.weights(torch.tensor([3]), 3)[0], w[0, :3])  # independent of padded size
    pe = positional_encoding(4, 6)
    assert pe.shape == (4, 6) and pe[0].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    assert positional_encoding(3, 5).shape == (3, 5)


def test_gpo_module_pools_with_its_weights() -> None:
    torch.manual_seed(1)
    gpo = GPO()
    x, lengths = torch.randn(4, 7, 3), torch.tensor([7, 2, 5, 7])
    torch.testing.assert_close(gpo(x, lengths), gpo_pool(x, gpo.weights(lengths, 7), lengths))
    torch.testing.assert_close(gpo(x), gpo(x, torch.full((4,), 7)))
    with pytest.raises(ValueError, match="lengths"):
        gpo(x, torch.tensor([7, 0, 1, 1]))


# ----------------------------------------------------------------------------------------------- encoders
@pytest.mark.parametrize("pooling", ["mean", "gpo"])
def test_text_encoder_ignores_padding(pooling: str) -> None:
    torch.manual_seed(0)
    enc = GRUTextEncoder(20, 5, 8, pooling=pooling).eval()
    ids = torch.tensor([[2, 3, 4, 0, 0], [5, 6, 0, 0, 0]])
    lengths = torch.tensor([3, 2])
    batch = enc(ids, lengths)
    torch.testing.assert_close(batch[0], enc(ids[:1, :3], lengths[:1])[0])
    torch.testing.assert_close(batch[1], enc(ids[1:, :2], lengths[1:])[0])
    garbage = ids.clone()
    garbage[0, 3:], garbage[1, 2:] = 7, 9
    torch.testing.assert_close(enc(garbage, lengths), batch)


def test_region_encoder_ignores_padding_in_train_and_eval_mode() -> None:
    torch.manual_seed(0)
    enc = RegionGPOImageEncoder(6, 8)
    feats, lengths = torch.randn(3, 5, 6), torch.tensor([5, 2, 4])
    other = feats.clone()
    other[1, 2:], other[2, 4:] = 50.0, -3.0
    for train in (True, False):
        enc.train(train)
        torch.testing.assert_close(enc(other, lengths), enc(feats, lengths))
    enc.eval()
    torch.testing.assert_close(enc(feats[1:2, :2]), enc(feats, lengths)[1:2])


def test_global_adapter_shapes_and_refusal() -> None:
    enc = GlobalImageAdapter(6, 8)
    out = enc(torch.randn(4, 6))
    assert out.shape == (4, 8)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4))
    with pytest.raises(ValueError, match="global"):
        enc(torch.randn(4, 3, 6))


# models with a word-vocabulary GRU text tower; vse-transformer (a pretrained text tower) is tested in test_train.py
GRU_MODELS = [name for name in MODELS if name != "vse-transformer"]


# ----------------------------------------------------------------------------------------------- models
@pytest.mark.parametrize("name", GRU_MODELS)
def test_models_shapes_norms_and_backward(name: str) -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = make_model(name, **SMALL)
    assert model.name == name
    ids, lengths = _texts(5, g)
    img, txt = model.encode_images(_images(name, 5, g)), model.encode_texts(ids, lengths)
    assert img.shape == txt.shape == (5, 8)
    torch.testing.assert_close(img.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(txt.norm(dim=1), torch.ones(5))
    loss = make_binary_loss("triplet-mean")(img @ txt.T)
    loss.backward()
    for pname, p in model.named_parameters():
        if pname == "text.embed.weight":
            continue  # only the rows of the words used get a gradient
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname
    # settings rebuild the same architecture (what checkpoints rely on)
    clone = make_model(name, **model.settings())
    clone.load_state_dict(model.state_dict())
    model.eval(), clone.eval()
    torch.testing.assert_close(clone.encode_texts(ids, lengths), model.encode_texts(ids, lengths))


def test_vse_gru_parameter_names_are_unchanged() -> None:
    model = make_model("vse-gru", **SMALL)
    assert sorted(model.state_dict()) == sorted([
        "image.proj.weight", "image.proj.bias", "text.embed.weight",
        *(f"text.gru.{k}_l0{s}" for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") for s in ("", "_reverse")),
    ])


def test_model_specific_settings() -> None:
    gpo = make_model("vse-gpo", **SMALL, mlp_hidden=3, text_pooling="mean")
    assert gpo.image.proj.mlp[0].out_features == 3 and not hasattr(gpo.text, "gpo")
    assert make_model("vse-gpo", **SMALL).image.proj.mlp[0].out_features == 4  # embed_dim // 2
    glob = make_model("vse-global", **SMALL, text_pooling="gpo")
    assert hasattr(glob.text, "gpo")
    assert model_setting_names("vse-gru") == ("image_dim", "vocab_size", "embed_dim", "word_dim", "pooling",
                                              "gru_layers")
    assert "text_pooling" in model_setting_names("vse-gpo") and "pooling" not in model_setting_names("vse-gpo")


def test_model_registry_errors() -> None:
    with pytest.raises(ConfigError, match="unknown model 'clip'; valid: vse-gru, vse-gpo, vse-global"):
        make_model("clip")
    with pytest.raises(ConfigError, match="unknown model"):
        model_setting_names("clip")
    with pytest.raises(ConfigError, match="'vse-gpo'.*pooling.*takes: image_dim"):
        make_model("vse-gpo", **SMALL, pooling="max")  # image pooling is GPO there
    with pytest.raises(ConfigError, match="vse-global"):
        make_model("vse-global", vocab_size=3)  # image_dim missing
    with pytest.raises(ConfigError, match="text_pooling"):
        make_model("vse-gpo", **SMALL, text_pooling="max")
    with pytest.raises(ConfigError, match="embed_dim=0"):
        make_model("vse-global", **{**SMALL, "embed_dim": 0})
    with pytest.raises(ConfigError, match="mlp_hidden"):
        make_model("vse-gpo", **SMALL, mlp_hidden=True)
