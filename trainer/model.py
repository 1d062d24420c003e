"""Retrieval models: a VSE-style image encoder over region features and a bidirectional-GRU text encoder.

Both encoders map into a joint space of ``embed_dim`` and L2-normalise, so a dot product is a cosine.
Models are built by name from :data:`MODELS`; a checkpoint stores the name, its settings and the state dict.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass
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

    def encode(self, texts: Sequence[str], max_len: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids ``(B, T)`` int64 (0-padded) and lengths ``(B,)`` (at least 1: an empty text is ``<unk>``)."""
        seqs = [[self.index.get(t, 1) for t in tokenize(text)][:max_len] or [1] for text in texts]
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
        ids = torch.zeros(len(seqs), int(lengths.max()) if seqs else 1, dtype=torch.int64)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.int64)
        return ids, lengths


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


class GRUTextEncoder(nn.Module):
    """Word embeddings → bidirectional GRU (the two directions averaged) → mean over tokens → L2-normalised.

    ``(B, T)`` token ids and ``(B,)`` lengths → ``(B, E)``.
    """

    def __init__(self, vocab_size: int, word_dim: int, embed_dim: int, layers: int = 1):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.gru = nn.GRU(word_dim, embed_dim, num_layers=layers, batch_first=True, bidirectional=True)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.embed(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        half = out.shape[-1] // 2
        out = (out[..., :half] + out[..., half:]) / 2
        mask = (torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths.to(ids.device)[:, None])
        pooled = (out * mask.unsqueeze(-1)).sum(dim=1) / lengths.to(out.device).clamp(min=1).unsqueeze(-1)
        return F.normalize(pooled, dim=-1)


class VSEModel(nn.Module):
    """A VSE-style two-tower retrieval model; ``similarity`` is the cosine ``(B_img, B_txt)``."""

    name = "vse-gru"

    def __init__(self, config: VSEConfig):
        super().__init__()
        self.config = config
        self.image = RegionImageEncoder(config.image_dim, config.embed_dim, config.pooling)
        self.text = GRUTextEncoder(config.vocab_size, config.word_dim, config.embed_dim, config.gru_layers)

    def encode_images(self, feats: torch.Tensor) -> torch.Tensor:
        return self.image(feats)

    def encode_texts(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.text(ids, lengths)

    def settings(self) -> dict[str, Any]:
        return asdict(self.config)


MODELS: dict[str, Callable[..., nn.Module]] = {
    VSEModel.name: lambda **kw: VSEModel(VSEConfig(**kw)),
}


def make_model(name: str, **settings: Any) -> nn.Module:
    """Build a registered model; an unknown name lists the valid ones."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}")
    try:
        return MODELS[name](**settings)
    except TypeError as err:
        raise ConfigError(f"model {name!r}: {err}") from None
