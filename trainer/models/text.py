"""Text side: word tokenisation and vocabulary, the bidirectional-GRU encoder and a pretrained transformer
encoder, and the helpers that turn captions into padded id batches."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from bcls.data.infra.errors import ConfigError

from .gpo import GPO

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


class TransformerTextEncoder(nn.Module):
    """A pretrained transformer fine-tuned end to end: token embeddings mean-pooled over the attention mask (as
    sentence-transformers pools MiniLM), a linear projection to the joint space, L2 normalisation.

    ``(B, T)`` word-piece ids (0-padded) and ``(B,)`` lengths → ``(B, E)``.
    """

    def __init__(self, name: str, embed_dim: int, max_tokens: int = 64):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        from bcls.pipeline.embedding.embed import resolve_model

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


def tokenize_texts(model: nn.Module, vocab: Vocabulary, texts: Sequence[str]) -> list[Any]:
    """Token ids of each text for ``model``: its own tokenizer when it has one, else the word vocabulary."""
    tokenize = getattr(model, "tokenize", None)
    return tokenize(texts) if tokenize is not None else vocab.token_ids(texts)


def pad_batch(seqs: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """0-padded ids ``(B, T)`` and lengths ``(B,)`` of token-id sequences."""
    lengths = torch.tensor([len(q) for q in seqs], dtype=torch.int64)
    return torch.nn.utils.rnn.pad_sequence(list(seqs), batch_first=True), lengths
