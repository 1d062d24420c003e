"""The settings of one training run (:class:`TrainConfig`), saved as ``train_config.json`` and in checkpoints.

One source of truth for defaults: the Kendall settings are one :class:`~bcls.trainer.losses.KendallParams` field,
and the CLI's ``bcls train`` help shows these fields' defaults (it reads them from here). A saved config carries
``config_version``; an older one is brought up to date by :func:`migrate_saved`, one tested step per version.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from bcls.data.infra.config_checks import check_field_types
from bcls.data.infra.errors import ConfigError, setting, setting_is

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
        warmup_loss: the registered binary loss of the warm-up epochs (default ``triplet-mean``, the mean over
            negatives), with the same ``margin`` / ``triplet_eps`` / ``triplet_tau``.
        kendall: the Kendall / SW-HS settings (window, gap, surrogate, temperature, margin, n_hard), one
            :class:`~bcls.trainer.losses.KendallParams` handed to the loss as it is (``kendall.margin`` is the hinge
            surrogate's; ``margin`` is the triplet loss's). The CLI flags ``--window``, ``--gap``, …,
            ``--kendall-margin`` set its fields; a JSON / TOML config nests them under ``kendall``.
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
    warmup_loss: str = "triplet-mean"
    margin: float = 0.2
    triplet_eps: float = 0.05
    triplet_tau: float = 0.1
    kendall: KendallParams = DEFAULT_KENDALL
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
                  "neighbour_fraction": 0 <= self.neighbour_fraction < 1, "group_size": self.group_size >= 2}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError("out-of-range training setting(s): " +
                              ", ".join(setting_is(b, getattr(self, b)) for b in bad))
        if not isinstance(self.kendall, KendallParams):
            raise ConfigError(f"training setting kendall must be KendallParams, got {type(self.kendall).__name__}")
        self.binary_params(), self.binary_params(self.warmup_loss)  # an unknown loss lists the valid ones
        choices = {"sampler": SAMPLERS.names(), "label_mode": ("auto", "sparse", "dense"),
                   "kendall_pairs": ("all", "negatives"),
                   "optimizer": ("adam", "adamw"), "schedule": ("constant", "step", "cosine")}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ConfigError(f"unknown {setting(name)} {getattr(self, name)!r}; valid: {', '.join(valid)}")
        if self.sampler == "stream" and (not self.labels or self.label_norm != "none"):
            raise ConfigError(f"the stream sampler needs {setting('labels')} and {setting_is('label_norm', 'none')} "
                              "(it keeps no label index to fit a normalisation on)")
        if self.label_mode == "dense" and self.source == "file":
            raise ConfigError("dense labels need a source that can score any pair; the file source only knows its "
                              f"listed pairs: use {setting_is('label_mode', 'sparse')}")
        if self.lam > 0 and not self.labels:
            raise ConfigError(f"{setting('lam')} > 0 needs {setting('labels')} (a folder from `bcls labels build`); "
                              f"use {setting_is('lam', 0)} to train the triplet loss alone")

    @property
    def resolved_label_mode(self) -> str:
        """``sparse`` or ``dense``: ``auto`` is dense for every source that can score any pair (all but ``file``)."""
        if self.label_mode != "auto":
            return self.label_mode
        return "sparse" if self.source == "file" else "dense"

    def binary_params(self, loss: str | None = None) -> dict[str, float]:
        """The hyper-parameters (margin, eps, tau) that the binary loss ``loss`` (default :attr:`binary_loss`)
        accepts."""
        hyper = {"margin": self.margin, "eps": self.triplet_eps, "tau": self.triplet_tau}
        return {k: hyper[k] for k in binary_loss_params(loss or self.binary_loss)}

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values with their ``config_version`` (what ``train_config.json`` holds)."""
        return {"config_version": CONFIG_VERSION} | asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], origin: str | None = None) -> "TrainConfig":
        """The config of a dict of settings in :meth:`to_dict`'s shape (``kendall`` a dict of its fields); a dict
        with an older ``config_version`` is migrated first (:func:`migrate_saved`), and one without a version is
        read as a user's settings, whose older spellings are renamed (:func:`rename_v1_spellings`). A message
        about a bad setting starts with ``origin`` (the config file's name) when given."""
        values = dict(values)
        if "config_version" in values:
            values = migrate_saved(values, origin or "config")
            values.pop("config_version")
        else:
            values = rename_v1_spellings(values)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{origin + ': ' if origin else ''}unknown training setting(s) {unknown}; valid: "
                              f"{', '.join(sorted(known))}")
        kendall = values.get("kendall", {})
        try:
            if isinstance(kendall, dict):
                bad = sorted(set(kendall) - {f.name for f in fields(KendallParams)})
                if bad:
                    raise ConfigError(f"unknown kendall setting(s) {bad}; valid: "
                                      f"{', '.join(f.name for f in fields(KendallParams))}")
                values["kendall"] = replace(DEFAULT_KENDALL, **kendall)
            return cls(**values)
        except ConfigError as err:
            raise ConfigError(f"{origin}: {err.raw}" if origin else err.raw) from None


CONFIG_VERSION = 2
"""The shape of a saved ``train_config.json``: 1 (no ``config_version`` key) had the Kendall settings as flat
fields (``window``, ``gap``, ``surrogate``, ``temperature``, ``kendall_margin``, ``n_hard``) and a ``log_every``
that nothing read; 2 nests them in ``kendall``."""

KENDALL_FLAGS = {"window": "window", "gap": "gap", "surrogate": "surrogate", "temperature": "temperature",
                 "kendall_margin": "margin", "n_hard": "n_hard"}
"""The flat names of the Kendall settings — ``bcls train``'s flags, and version 1's fields — and the
:class:`~bcls.trainer.losses.KendallParams` field each sets."""


def rename_v1_spellings(values: dict[str, Any]) -> dict[str, Any]:
    """Version 1's spellings in today's shape: the flat Kendall settings go into ``kendall`` (``kendall_margin``
    as its ``margin``) and ``log_every`` goes (progress is reported every 10 s)."""
    out = {k: v for k, v in values.items() if k not in KENDALL_FLAGS and k != "log_every"}
    flat = {new: values[old] for old, new in KENDALL_FLAGS.items() if old in values}
    if flat:
        out["kendall"] = dict(out.get("kendall") or {}) | flat
    return out


def migrate_saved(values: dict[str, Any], origin: str = "saved config") -> dict[str, Any]:
    """A saved config (``train_config.json`` or a checkpoint's) in the current version's shape.

    Version 1 → 2: :func:`rename_v1_spellings`; ``kendall_pairs`` is ``all`` where it is missing (a run saved
    before the setting existed ranked every pair, so that is what resuming or reporting it must assume) and
    ``warmup_loss`` is ``triplet-mean`` (the warm-up loss of version 1, then not a setting)."""
    values = dict(values)
    version = values.pop("config_version", 1)
    if not isinstance(version, int) or not 1 <= version <= CONFIG_VERSION:
        raise ConfigError(f"{origin}: config_version {version!r} is not one this bcls reads (1 to "
                          f"{CONFIG_VERSION}); use the bcls version that wrote it")
    if version < 2:
        values = rename_v1_spellings(values)
        values.setdefault("kendall_pairs", "all")
        values.setdefault("warmup_loss", "triplet-mean")
    return values | {"config_version": CONFIG_VERSION}


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
