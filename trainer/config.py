"""The settings of one training run (:class:`TrainConfig`), saved as ``train_config.json`` and in checkpoints.

One source of truth for defaults: the Kendall settings default to :class:`~bcls.trainer.losses.KendallParams`'s,
and the CLI's ``bcls train`` flags default to these fields (a test checks both).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from bcls.data.infra.config_checks import check_field_types
from bcls.data.infra.errors import ConfigError

from .batches import SAMPLERS
from .losses import DEFAULT_KENDALL, KendallParams, binary_loss_params


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (saved as ``train_config.json`` in the run folder and in checkpoints).

    Attributes:
        data: precomp folder with ``train`` (and optionally ``dev``) splits; or "" with ``captions`` and
            ``features``.
        captions, features, caption_format: instead of ``data``, a caption file of any format whose split column
            (or format) has ``train_split`` (and optionally ``dev_split``), and a feature folder keyed by image id
            (``bcls features extract``); captions meet features by image id (:func:`bcls.data.datasets.read_split`).
        skip_missing: with ``features``, leave out (and count) captions whose image has no features.
        labels: label folder from ``bcls labels build`` (needed when ``lam > 0``).
        out: run folder (checkpoints, logs).
        lam: weight λ of the continuous (Kendall) loss; 0 trains the binary triplet loss alone. The default 0.3
            (with ``kendall_pairs="negatives"``) was chosen on Flickr8k's dev split, real images: the demo's λ = 1
            cost 22 rsum there (docs/results.md, "Flickr8k"); ``bcls demo`` keeps its own λ = 1.
        lam_ramp_epochs: λ rises linearly from 0 to ``lam`` over this many epochs after the warm-up (0: at once).
        source: which label column of the shards supervises the continuous loss.
        label_mode: ``sparse`` (pairs stored in the shards; any source), ``dense`` (every in-batch pair scored
            on the fly by the source the build used — sbert from the caption embeddings it stored, cider / spice /
            truth from their per-corpus tables; not ``file``) or ``auto`` (dense for every source but ``file``);
            :attr:`resolved_label_mode` says which.
        label_norm: ``none``, ``minmax`` or ``percentile`` normalisation of the source's values
            (:class:`~bcls.trainer.batches.labels.LabelNormalizer`), fitted on the training labels.
        model: registered model (``vse-gru``, ``vse-gpo``, ``vse-global``); ``pooling`` (image, ``vse-gru``) and
            ``text_pooling`` (``vse-gpo``/``vse-global``: ``mean`` or ``gpo``) apply where the model has them.
        binary_loss: registered binary loss: ``triplet-sn`` (default; the paper's Triplet-SN, our reading: an alias
            of ``triplet-sn-switch``, which measured best), ``triplet-hardest`` (VSE++), ``triplet-mean``, the
            soft-negative ``triplet-sn-switch`` (``triplet_eps``) and ``triplet-sn-softmax`` (``triplet_tau``).
        warmup_epochs: first epochs trained with the mean-over-negatives triplet loss alone, instead of
            ``binary_loss`` + λ·Kendall: hardest-negative mining from a random start collapses all embeddings
            together (VSE∞ warms up the same way), and so does the Kendall loss, whose labelled candidates are
            the nearest caption neighbours (measured on the demo: docs/method.md).
        window, gap, surrogate, temperature, kendall_margin, n_hard: the Kendall / SW-HS settings, with the
            defaults of :class:`~bcls.trainer.losses.KendallParams` (``kendall_margin`` is its ``margin``, the hinge
            surrogate's; ``margin`` is the triplet loss's); :meth:`kendall_params` carries them to the loss.
        kendall_pairs: which in-batch pairs the Kendall term ranks: ``negatives`` (default; only pairs of
            different images: the binary loss alone puts the ground truth first, the Kendall term orders the rest)
            or ``all`` (the ground-truth pairs too, labelled
            :attr:`~bcls.trainer.batches.labels.LabelNormalizer.top`; the demo's setting). ``negatives`` is our
            addition, not the paper's; it was chosen on Flickr8k's dev split (docs/results.md, "Flickr8k").
        sampler: ``random``, ``neighbours`` (seed captions plus label candidates of their images, a
            ``neighbour_fraction`` share of each batch), ``groups`` (a seed caption with ``group_size - 1``
            labelled candidates of its image; see :mod:`bcls.trainer.batches.samplers`) or ``stream`` (labelled
            pairs streamed from the shards through a ``stream_buffer``-row shuffle buffer, no label index in
            memory; see :mod:`bcls.trainer.batches.streaming`).
        optimizer: ``adam`` or ``adamw`` (with ``weight_decay``).
        schedule: ``constant``, ``step`` (lr × 0.1 from epoch ``lr_step_epoch`` on) or ``cosine`` (per step, to 0),
            after ``lr_warmup_steps`` of linear warm-up.
        text_lr_mult: learning-rate multiplier of a pretrained text tower (``vse-transformer``), ``text_model``
            its transformers / sentence-transformers model (default all-MiniLM-L6-v2, offline).
        amp: bfloat16 autocast on CUDA (ignored on CPU).
    """

    data: str
    out: str
    labels: str | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    lam: float = 0.3
    lam_ramp_epochs: int = 0
    seed: int = 0
    device: str = "cpu"
    source: str = "sbert"
    label_mode: str = "auto"
    label_norm: str = "none"
    model: str = "vse-gru"
    embed_dim: int = 512
    word_dim: int = 300
    pooling: str = "max"
    text_pooling: str | None = None
    binary_loss: str = "triplet-sn"
    warmup_epochs: int = 1
    margin: float = 0.2
    triplet_eps: float = 0.05
    triplet_tau: float = 0.1
    window: int = DEFAULT_KENDALL.window
    gap: float = DEFAULT_KENDALL.gap
    surrogate: str = DEFAULT_KENDALL.surrogate
    temperature: float = DEFAULT_KENDALL.temperature
    kendall_margin: float = DEFAULT_KENDALL.margin
    n_hard: int = DEFAULT_KENDALL.n_hard
    kendall_pairs: str = "negatives"
    sampler: str = "random"
    neighbour_fraction: float = 0.5
    group_size: int = 4
    stream_buffer: int = 65536
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "constant"
    lr_step_epoch: int = 0
    lr_warmup_steps: int = 0
    text_lr_mult: float = 0.1
    text_model: str | None = None
    grad_clip: float = 2.0
    amp: bool = True
    train_split: str = "train"
    dev_split: str = "dev"
    log_every: int = 50  # no longer used (progress is reported every 10 s); kept so older configs still load
    captions: str | None = None
    features: str | None = None
    caption_format: str = "auto"
    skip_missing: bool = False

    def __post_init__(self) -> None:
        check_field_types(self, "training setting")
        if bool(self.data) == bool(self.captions and self.features) or bool(self.captions) != bool(self.features):
            raise ConfigError("give data (a precomp folder) or captions with features (a caption file and a feature "
                              "folder), not both and not one of the pair")
        checks = {"epochs": self.epochs >= 1, "batch_size": self.batch_size >= 2,
                  "warmup_epochs": self.warmup_epochs >= 0, "lr": self.lr > 0,
                  "lam": self.lam >= 0 and math.isfinite(self.lam), "lam_ramp_epochs": self.lam_ramp_epochs >= 0,
                  "margin": self.margin >= 0,
                  "grad_clip": self.grad_clip > 0, "embed_dim": self.embed_dim >= 1, "word_dim": self.word_dim >= 1,
                  "weight_decay": self.weight_decay >= 0, "lr_step_epoch": self.lr_step_epoch >= 0,
                  "lr_warmup_steps": self.lr_warmup_steps >= 0, "text_lr_mult": self.text_lr_mult > 0,
                  "neighbour_fraction": 0 <= self.neighbour_fraction < 1, "group_size": self.group_size >= 2,
                  "log_every": self.log_every >= 1}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError("out-of-range training setting(s): " +
                              ", ".join(f"{b}={getattr(self, b)!r}" for b in bad))
        self.kendall_params()  # validates the Kendall settings
        choices = {"sampler": SAMPLERS.names(), "label_mode": ("auto", "sparse", "dense"),
                   "kendall_pairs": ("all", "negatives"),
                   "optimizer": ("adam", "adamw"), "schedule": ("constant", "step", "cosine")}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}; valid: {', '.join(valid)}")
        if self.sampler == "stream" and (not self.labels or self.label_norm != "none"):
            raise ConfigError("the stream sampler needs --labels and label_norm=none (it keeps no label index to "
                              "fit a normalisation on)")
        if self.label_mode == "dense" and self.source == "file":
            raise ConfigError("dense labels need a source that can score any pair; the file source only knows its "
                              "listed pairs: use label_mode=sparse")
        if self.lam > 0 and not self.labels:
            raise ConfigError("lam > 0 needs --labels (a folder from `bcls labels build`); use --lambda 0 to "
                              "train the triplet loss alone")

    @property
    def resolved_label_mode(self) -> str:
        """``sparse`` or ``dense``: ``auto`` is dense for every source that can score any pair (all but ``file``)."""
        if self.label_mode != "auto":
            return self.label_mode
        return "sparse" if self.source == "file" else "dense"

    def kendall_params(self) -> KendallParams:
        """The Kendall / SW-HS settings of this run, as the loss takes them."""
        return KendallParams(window=self.window, gap=self.gap, surrogate=self.surrogate,
                             temperature=self.temperature, margin=self.kendall_margin, n_hard=self.n_hard)

    def binary_params(self) -> dict[str, float]:
        """The hyper-parameters of :attr:`binary_loss` that it accepts (margin, eps, tau)."""
        hyper = {"margin": self.margin, "eps": self.triplet_eps, "tau": self.triplet_tau}
        return {k: hyper[k] for k in binary_loss_params(self.binary_loss)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], origin: str = "config") -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{origin}: unknown training setting(s) {unknown}; valid: {', '.join(sorted(known))}")
        try:
            return cls(**values)
        except ConfigError as err:
            raise ConfigError(f"{origin}: {err}") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings of a JSON or TOML training config file (a missing or unparsable file is a ConfigError)."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib
            return tomllib.loads(text)
        return json.loads(text)
    except ValueError as err:
        raise ConfigError(f"{path}: cannot parse ({err}); write a JSON object or a .toml file") from None
