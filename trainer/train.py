"""``bcls train``: BCLS training of a retrieval model on a precomp folder with continuous labels from shards."""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

import bcls
from bcls.data.errors import ConfigError
from bcls.data.precomp import precomp_paths, read_precomp_split
from bcls.data.shards import atomic_write_bytes, open_labels

from .checkpoint import save_checkpoint
from .evaluate import evaluate_model
from .labels import PairLabels
from .losses import BCLSLoss, KendallLoss, make_binary_loss
from .model import Vocabulary, make_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (saved as ``train_config.json`` in the run folder and in checkpoints).

    Attributes:
        data: precomp folder with ``train`` (and optionally ``dev``) splits.
        labels: label folder from ``bcls labels build`` (needed when ``lam > 0``).
        out: run folder (checkpoints, logs).
        lam: weight λ of the continuous (Kendall) loss; 0 trains the binary triplet loss alone.
        source: which label column of the shards supervises the continuous loss.
        binary_loss: registered binary loss (``triplet-hardest`` = VSE++, ``triplet-mean``).
        window, gap, surrogate, temperature, n_hard: Kendall / SW-HS settings (see :mod:`bcls.trainer.losses`).
    """

    data: str
    out: str
    labels: str | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-4
    lam: float = 1.0
    seed: int = 0
    device: str = "cpu"
    source: str = "sbert"
    model: str = "vse-gru"
    embed_dim: int = 512
    word_dim: int = 300
    pooling: str = "max"
    binary_loss: str = "triplet-hardest"
    margin: float = 0.2
    window: int = 1
    gap: float = 0.0
    surrogate: str = "sigmoid"
    temperature: float = 0.1
    n_hard: int = 1
    grad_clip: float = 2.0
    train_split: str = "train"
    dev_split: str = "dev"
    log_every: int = 50

    def __post_init__(self) -> None:
        checks = {"epochs": self.epochs >= 1, "batch_size": self.batch_size >= 2, "lr": self.lr > 0,
                  "lam": self.lam >= 0 and math.isfinite(self.lam), "margin": self.margin >= 0,
                  "grad_clip": self.grad_clip > 0, "embed_dim": self.embed_dim >= 1, "word_dim": self.word_dim >= 1}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"out-of-range training setting(s): " +
                              ", ".join(f"{b}={getattr(self, b)!r}" for b in bad))
        if self.lam > 0 and not self.labels:
            raise ConfigError("lam > 0 needs --labels (a folder from `bcls labels build`); use --lambda 0 to "
                              "train the triplet loss alone")

    @classmethod
    def from_dict(cls, values: dict[str, Any], origin: str = "config") -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{origin}: unknown training setting(s) {unknown}; valid: {', '.join(sorted(known))}")
        return cls(**values)


def _device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but torch sees no CUDA device; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None


def train(config: TrainConfig) -> dict[str, Any]:
    """Train and return a summary (``best_rsum``, checkpoint paths, per-epoch history)."""
    device = _device(config.device)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)

    table, feats = read_precomp_split(config.data, config.train_split)
    has_dev = precomp_paths(config.data, config.dev_split)["caps"].is_file()
    dev = read_precomp_split(config.data, config.dev_split) if has_dev else None
    vocab = Vocabulary.build(table.texts)
    settings = {"image_dim": feats.dim, "vocab_size": len(vocab), "embed_dim": config.embed_dim,
                "word_dim": config.word_dim, "pooling": config.pooling}
    model = make_model(config.model, **settings).to(device)
    labels = None
    if config.lam > 0:
        labels = PairLabels.from_labels(open_labels(config.labels), config.source, table)
        log.info("continuous labels: %d pairs of source %r from %s", len(labels), config.source, config.labels)
    criterion = BCLSLoss(make_binary_loss(config.binary_loss, margin=config.margin),
                         KendallLoss(window=config.window, gap=config.gap, surrogate=config.surrogate,
                                     temperature=config.temperature, n_hard=config.n_hard), config.lam)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    atomic_write_bytes(out / "train_config.json", (json.dumps(asdict(config), indent=2) + "\n").encode())

    def checkpoint(epoch: int, dev_metrics: dict[str, float]) -> dict[str, Any]:
        return {"model_name": config.model, "model_settings": settings, "state_dict": model.state_dict(),
                "vocab": vocab.words, "train_config": asdict(config), "epoch": epoch, "dev_metrics": dev_metrics,
                "optimizer": optimizer.state_dict()}

    save_checkpoint(out / "init.pt", checkpoint(0, {}))  # the untrained model, for before/after comparisons
    token_ids = [vocab.encode([t])[0][0] for t in table.texts]
    image_index = torch.from_numpy(table.image_index())
    n = len(table)
    steps_per_epoch = n // config.batch_size + (n % config.batch_size >= 2)
    history: list[dict[str, Any]] = []
    best_rsum, best_epoch = -1.0, 0
    log_file = open(out / "train_log.csv", "w", newline="")
    writer = csv.writer(log_file)
    writer.writerow(["epoch", "step", "loss", "binary", "continuous", "labelled_pairs", "lr"])
    start = time.perf_counter()
    try:
        for epoch in range(1, config.epochs + 1):
            model.train()
            perm = torch.randperm(n, generator=gen)
            sums = {"loss": 0.0, "binary": 0.0, "continuous": 0.0, "labelled_pairs": 0.0}
            for step in range(steps_per_epoch):
                rows = perm[step * config.batch_size:(step + 1) * config.batch_size]
                images = image_index[rows]
                feats_b = torch.from_numpy(feats.batch(images.numpy())).to(device)
                seqs = [token_ids[r] for r in rows.tolist()]
                lengths = torch.tensor([len(s) for s in seqs])
                ids = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True).to(device)
                sims = model.encode_images(feats_b) @ model.encode_texts(ids, lengths).T
                positive = images[:, None] == images[None, :]
                if labels is not None:
                    values, known = labels.lookup(images, rows)
                    labelled = int((known & ~positive).sum())
                    values = torch.where(positive, torch.ones(()), values)
                    known = known | positive
                else:
                    values, known, labelled = torch.eye(len(rows)), positive, 0
                terms = criterion(sims, values.to(device), known.to(device), positive.to(device))
                optimizer.zero_grad(set_to_none=True)
                terms["loss"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                record = {k: float(terms[k]) for k in ("loss", "binary", "continuous")}
                record["labelled_pairs"] = labelled
                for k in sums:
                    sums[k] += record[k]
                writer.writerow([epoch, step, f"{record['loss']:.6f}", f"{record['binary']:.6f}",
                                 f"{record['continuous']:.6f}", labelled, config.lr])
                done = (epoch - 1) * steps_per_epoch + step + 1
                if done % config.log_every == 0:
                    rate = done / (time.perf_counter() - start)
                    eta = (config.epochs * steps_per_epoch - done) / rate
                    log.info("epoch %d step %d/%d loss %.4f (bin %.4f cont %.4f, %d labelled pairs) "
                             "%.1f steps/s ETA %.0fs", epoch, step + 1, steps_per_epoch, record["loss"],
                             record["binary"], record["continuous"], labelled, rate, eta)
            log_file.flush()
            epoch_summary = {"epoch": epoch, **{k: v / steps_per_epoch for k, v in sums.items()}}
            if dev is not None:
                dev_metrics = evaluate_model(model, vocab, dev[0], dev[1], device)
                epoch_summary["dev"] = dev_metrics
                rsum = dev_metrics["rsum"]
            else:
                rsum = float(epoch)  # no dev split: the last epoch is the best
            history.append(epoch_summary)
            payload = checkpoint(epoch, epoch_summary.get("dev", {}))
            save_checkpoint(out / "last.pt", payload)
            if rsum > best_rsum:
                best_rsum, best_epoch = rsum, epoch
                save_checkpoint(out / "best.pt", payload)
            log.info("epoch %d done: loss %.4f%s", epoch, epoch_summary["loss"],
                     f", dev rsum {rsum:.1f}" if dev is not None else "")
    finally:
        log_file.close()
    summary = {"best_epoch": best_epoch, "best_dev_rsum": best_rsum if dev is not None else None,
               "best_checkpoint": str(out / "best.pt"), "last_checkpoint": str(out / "last.pt"),
               "history": history, "seconds": time.perf_counter() - start, "bcls_version": bcls.__version__}
    atomic_write_bytes(out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    return summary
