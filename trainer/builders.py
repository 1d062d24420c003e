"""The parts a training run is built from, one builder each, called in this order by
:class:`~bcls.trainer.train.Trainer`: :func:`build_data` (the splits, vocabulary and tokens), :func:`build_model`,
:func:`build_labels` (the in-batch label lookup and its normalisation), :func:`build_losses` and
:func:`build_optimizer`. The order matters: the model's initial weights come from the torch random state after
the data, so a run is reproduced only if the builders run in the same order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bcls.data.captions import CaptionTable
from bcls.data.datasets import has_split, read_split
from bcls.data.features import ImageFeatures
from bcls.data.infra.errors import ConfigError
from bcls.data.shards import LabelSet, open_labels

from .batches import InBatchLabels, LabelNormalizer, PairLabels, dense_labels
from .config import TrainConfig
from .losses import BCLSLoss, KendallLoss, make_binary_loss
from .models import RetrievalModel, Vocabulary, feature_kind, make_model, model_setting_names, tokenize_texts

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    """The training split (and the dev split, when the data has one) with the vocabulary built on it.

    Attributes:
        table, feats: the training captions and their image features.
        dev: ``(table, feats)`` of the dev split, or None.
        vocab: the word vocabulary of the training captions.
    """

    table: CaptionTable
    feats: ImageFeatures
    dev: tuple[CaptionTable, ImageFeatures] | None
    vocab: Vocabulary


def build_data(config: TrainConfig) -> TrainData:
    """Read the training (and dev) split of the configured data: a precomp folder, or captions with features."""
    where: dict[str, Any] = {"data": config.data, "captions": config.captions, "features": config.features,
             "caption_format": config.caption_format, "skip_missing": config.skip_missing,
             "kind": feature_kind(config.model)}
    table, feats = read_split(config.train_split, **where)
    has_dev = has_split(config.dev_split, config.data, config.captions, caption_format=config.caption_format)
    dev = read_split(config.dev_split, **where) if has_dev else None
    return TrainData(table, feats, dev, Vocabulary.build(table.texts))


def build_model(config: TrainConfig, data: TrainData, device: torch.device) -> tuple[RetrievalModel, dict[str, Any]]:
    """The configured model on ``device`` and the settings it was made with (saved in checkpoints)."""
    wanted = {"image_dim": data.feats.dim, "vocab_size": len(data.vocab), "embed_dim": config.embed_dim,
              "word_dim": config.word_dim, "pooling": config.pooling, "text_pooling": config.text_pooling,
              "text_model": config.text_model}
    accepted = model_setting_names(config.model)
    if config.text_pooling is not None and "text_pooling" not in accepted:
        raise ConfigError(f"model {config.model!r} has no text_pooling setting; it takes {', '.join(accepted)}")
    settings = {k: v for k, v in wanted.items() if k in accepted and v is not None}
    if config.model == "vse-global" and data.feats.kind != "global":
        raise ConfigError(f"{data.feats.path}: model vse-global needs global (N, D) features, these are "
                          f"{data.feats.kind} {data.feats.array.shape}; use vse-gru or vse-gpo")
    return make_model(config.model, **settings).to(device), settings


@dataclass
class TrainLabels:
    """The continuous labels of a run.

    Attributes:
        label_set: the label folder (also with λ = 0: the neighbours sampler and the labelled-pair counts use it).
        pairs: the stored pairs in memory (the neighbours / groups samplers draw from them); None when streamed.
        in_batch: the lookup the training step asks (:class:`~bcls.trainer.batches.InBatchLabels`): the stored
            pairs, or a dense lookup; None with the stream sampler, whose batches bring their own labels.
        norm: the normalisation of the source's values, fitted on the training labels.
    """

    label_set: LabelSet
    pairs: PairLabels | None
    in_batch: InBatchLabels | None
    norm: LabelNormalizer


def build_labels(config: TrainConfig, table: CaptionTable,
                 device: str | torch.device = "cpu") -> TrainLabels | None:
    """The run's labels from ``config.labels`` (None without a label folder); dense ``sbert`` labels are computed
    on ``device``, the training device."""
    if not config.labels:
        return None
    label_set = open_labels(config.labels)
    pairs: PairLabels | None = None
    in_batch: InBatchLabels | None = None
    if config.sampler == "stream":  # labels come with the streamed pairs: nothing held in memory
        norm = LabelNormalizer("none", np.array([0.0, 1.0], dtype=np.float32))
    else:
        pairs = in_batch = PairLabels.from_labels(label_set, config.source, table)
        norm = LabelNormalizer(config.label_norm, pairs.values.numpy())
    if config.resolved_label_mode == "dense":
        in_batch = dense_labels(label_set, config.source, table, device)
    log.info("continuous labels: source %r from %s (%s), %s in-batch labels, normalisation %s, λ = %g",
             config.source, config.labels, f"{len(pairs)} pairs in memory" if pairs else "streamed",
             config.resolved_label_mode, norm.describe(), config.lam)
    return TrainLabels(label_set, pairs, in_batch, norm)


@dataclass
class TrainLosses:
    """The loss of the training epochs and the loss of the warm-up epochs (see ``TrainConfig.warmup_loss``)."""

    main: BCLSLoss
    warmup: BCLSLoss


def build_losses(config: TrainConfig) -> TrainLosses:
    """``binary_loss`` + λ·Kendall, and the warm-up's ``warmup_loss`` alone (λ = 0)."""
    kendall = KendallLoss(config.kendall)
    binary = make_binary_loss(config.binary_loss, **config.binary_params())
    warmup = make_binary_loss(config.warmup_loss, **config.binary_params(config.warmup_loss))
    return TrainLosses(BCLSLoss(binary, kendall, config.lam), BCLSLoss(warmup, kendall, 0.0))


def build_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Adam or AdamW; a pretrained text tower gets its own group at ``lr × text_lr_mult``. Each group keeps its
    ``base_lr``, which the schedule scales."""
    opt = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    pretrained = getattr(getattr(model.text, "transformer", None), "parameters", None)
    pretrained_ids = {id(p) for p in pretrained()} if pretrained else set()
    groups = [{"params": [p for p in model.parameters() if id(p) not in pretrained_ids], "base_lr": config.lr}]
    if pretrained_ids:
        groups.append({"params": [p for p in model.parameters() if id(p) in pretrained_ids],
                       "base_lr": config.lr * config.text_lr_mult})
    return opt([g for g in groups if g["params"]], lr=config.lr, weight_decay=config.weight_decay)


def tokens_and_images(model: torch.nn.Module, data: TrainData) -> tuple[list[Any], torch.Tensor]:
    """The token ids of every training caption (by the model's tokenizer) and each caption's image position."""
    return (tokenize_texts(model, data.vocab, data.table.texts),
            torch.from_numpy(data.table.image_index().copy()))
