"""``bcls train``: BCLS training of a retrieval model on a precomp folder (or a caption file with a feature folder) with continuous labels from shards."""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bcls.data.infra.atomic import atomic_write_json, ensure_free_space, remove_stale_temporaries
from bcls.data.infra.errors import CheckpointError, ConfigError
from bcls.data.datasets import has_split, read_split
from bcls.data.infra.progress import Progress
from bcls.data.shards import open_labels
from bcls.data.infra.version import __version__

from .batches import Batch, LabelNormalizer, PairLabels, dense_labels, make_batches
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .distributed import (DistInfo, barrier, gather_with_local_grad, init_distributed, local_rows, shutdown,
                          sum_gradients)
from .evaluation import evaluate_model
from .losses import BCLSLoss, KendallLoss, make_binary_loss
from .models import Vocabulary, feature_kind, make_model, model_setting_names, pad_batch, tokenize_texts

log = logging.getLogger(__name__)

LOG_COLUMNS = ["epoch", "step", "loss", "binary", "continuous", "labelled_pairs", "compared", "lr"]
"""Columns of ``train_log.csv``: per step, the loss terms, the labelled off-diagonal pairs of the batch, the
Kendall anchor terms compared per query (both directions; 0 in the warm-up and with λ = 0) and the lr."""
RUN_FILES = ("init.pt", "best.pt", "last.pt", "train_config.json", "train_log.csv", "summary.json")
"""The files a training run writes in its folder (other files there mean the folder holds something else)."""


def _device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but torch sees no CUDA device; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None


def _lr_factor(config: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """Learning-rate multiplier at (1-based epoch, 0-based step)."""
    done = (epoch - 1) * steps_per_epoch + step
    factor = min(1.0, (done + 1) / config.lr_warmup_steps) if config.lr_warmup_steps else 1.0
    if config.schedule == "step" and config.lr_step_epoch and epoch >= config.lr_step_epoch:
        factor *= 0.1
    elif config.schedule == "cosine":
        factor *= 0.5 * (1 + math.cos(math.pi * done / (config.epochs * steps_per_epoch)))
    return factor


def _ramp(config: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """The share of λ at (1-based epoch, 0-based step): rising linearly from 0 over ``lam_ramp_epochs`` epochs
    after the warm-up, then 1."""
    done = (epoch - 1 - config.warmup_epochs) * steps_per_epoch + step + 1
    return min(1.0, done / (config.lam_ramp_epochs * steps_per_epoch))


class _Run:
    """Everything a training run holds: data, model, labels, losses, optimizer, sampler state."""

    def __init__(self, config: TrainConfig, dist_info: DistInfo = DistInfo()):
        self.config = config
        self.dist = dist_info
        self.device = _device(config.device)
        if self.device.type == "cuda" and dist_info.world > 1:
            self.device = torch.device("cuda", dist_info.local_rank)
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        where = {"data": config.data, "captions": config.captions, "features": config.features}
        where |= {"caption_format": config.caption_format, "skip_missing": config.skip_missing,
                  "kind": feature_kind(config.model)}
        self.table, self.feats = read_split(config.train_split, **where)
        has_dev = has_split(config.dev_split, config.data, config.captions, caption_format=config.caption_format)
        self.dev = read_split(config.dev_split, **where) if has_dev else None
        self.vocab = Vocabulary.build(self.table.texts)
        wanted = {"image_dim": self.feats.dim, "vocab_size": len(self.vocab), "embed_dim": config.embed_dim,
                  "word_dim": config.word_dim, "pooling": config.pooling, "text_pooling": config.text_pooling,
                  "text_model": config.text_model}
        accepted = model_setting_names(config.model)
        if config.text_pooling is not None and "text_pooling" not in accepted:
            raise ConfigError(f"model {config.model!r} has no text_pooling setting; it takes {', '.join(accepted)}")
        self.settings = {k: v for k, v in wanted.items() if k in accepted and v is not None}
        if config.model == "vse-global" and self.feats.kind != "global":
            raise ConfigError(f"{self.feats.path}: model vse-global needs global (N, D) features, these are "
                              f"{self.feats.kind} {self.feats.array.shape}; use vse-gru or vse-gpo")
        self.model = make_model(config.model, **self.settings).to(self.device)
        self.labels = self.batch_labels = self.norm = self.label_set = None
        if config.labels:  # also with lam = 0: the neighbours sampler and the labelled-pair counts use them
            self.label_set = open_labels(config.labels)
            if config.sampler == "stream":  # labels come with the streamed pairs: nothing held in memory
                self.norm = LabelNormalizer("none", np.array([0.0, 1.0], dtype=np.float32))
            else:
                self.labels = PairLabels.from_labels(self.label_set, config.source, self.table)
                self.batch_labels = self.labels
                self.norm = LabelNormalizer(config.label_norm, self.labels.values.numpy())
            if config.resolved_label_mode == "dense":
                self.batch_labels = dense_labels(self.label_set, config.source, self.table)
            log.info("continuous labels: source %r from %s (%s), %s in-batch labels, normalisation %s, λ = %g",
                     config.source, config.labels, f"{len(self.labels)} pairs in memory" if self.labels else
                     "streamed", config.resolved_label_mode, self.norm.describe(), config.lam)
        kendall = KendallLoss(config.kendall_params())
        binary = make_binary_loss(config.binary_loss, **config.binary_params())
        self.criterion = BCLSLoss(binary, kendall, config.lam)
        # warm-up: mean over negatives and no continuous loss (see TrainConfig.warmup_epochs)
        self.warmup = BCLSLoss(make_binary_loss("triplet-mean", margin=config.margin), kendall, 0.0)
        opt = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        pretrained = getattr(getattr(self.model.text, "transformer", None), "parameters", None)
        pretrained_ids = {id(p) for p in pretrained()} if pretrained else set()
        groups = [{"params": [p for p in self.model.parameters() if id(p) not in pretrained_ids], "base_lr": config.lr}]
        if pretrained_ids:
            groups.append({"params": [p for p in self.model.parameters() if id(p) in pretrained_ids],
                           "base_lr": config.lr * config.text_lr_mult})
        self.optimizer = opt([g for g in groups if g["params"]], lr=config.lr, weight_decay=config.weight_decay)
        self.token_ids = tokenize_texts(self.model, self.vocab, self.table.texts)
        self.image_index = torch.from_numpy(self.table.image_index().copy())
        n = len(self.table)
        self.steps_per_epoch = n // config.batch_size + (n % config.batch_size >= 2)  # every sampler gives this
        self.amp = config.amp and self.device.type == "cuda"

    def batches(self, epoch: int) -> Any:
        """The batches of one epoch from the configured sampler (:func:`~bcls.trainer.batches.make_batches`)."""
        config = self.config
        return make_batches(config.sampler, n=len(self.table), batch_size=config.batch_size,
                            generator=self.generator, image_index=self.image_index, labels=self.labels,
                            fraction=config.neighbour_fraction, group_size=config.group_size,
                            label_set=self.label_set, source=config.source,
                            buffer_size=config.stream_buffer, seed=config.seed * 100003 + epoch, table=self.table,
                            n_batches=self.steps_per_epoch)

    def step(self, batch: Batch, epoch: int, step: int) -> dict[str, float]:
        """One optimisation step on the captions ``batch.rows`` (with the stream sampler, ``batch.labels`` holds
        the batch's labels); returns the loss terms and labelled-pair count."""
        rows, streamed = batch
        config, device = self.config, self.device
        factor = _lr_factor(config, epoch, step, self.steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        images = self.image_index[rows]
        mine = local_rows(rows, self.dist)  # this process's slice of the global batch (all of it on one process)
        feats = torch.from_numpy(self.feats.batch(self.image_index[mine].numpy())).to(device)
        ids, lengths = pad_batch([self.token_ids[r] for r in mine.tolist()])
        ids = ids.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.amp):
            img = gather_with_local_grad(self.model.encode_images(feats).float(), len(rows), self.dist)
            txt = gather_with_local_grad(self.model.encode_texts(ids, lengths).float(), len(rows), self.dist)
        sims = (img @ txt.T).float()
        positive = images[:, None] == images[None, :]
        batch_labels: Any = \
            self.batch_labels if streamed is None or self.batch_labels is not None else streamed
        if batch_labels is not None:
            values, known = batch_labels.lookup(images, rows)
            labelled = int((known & ~positive).sum())
            values = torch.where(positive, torch.tensor(self.norm.top), self.norm(values))
            known = known & ~positive if config.kendall_pairs == "negatives" else known | positive
        else:
            values, known, labelled = positive.float(), positive, 0
        loss_fn = self.warmup if epoch <= config.warmup_epochs else self.criterion
        if loss_fn is self.criterion and config.lam_ramp_epochs:
            loss_fn.lam = config.lam * _ramp(config, epoch, step, self.steps_per_epoch)
        terms = loss_fn(sims, values.to(device), known.to(device), positive.to(device))
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        sum_gradients(self.model, self.dist)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        record = {k: float(terms[k].detach()) for k in ("loss", "binary", "continuous")}
        compared = float(terms["valid_pairs"]) / (2 * len(rows))
        return record | {"labelled_pairs": labelled, "compared": compared, "lr": self.optimizer.param_groups[0]["lr"]}

    def payload(self, epoch: int, history: list[dict[str, Any]], best: tuple[float, int]) -> dict[str, Any]:
        """The checkpoint of the state after ``epoch``: enough to evaluate, and to resume exactly."""
        return {"model_name": self.config.model, "model_settings": self.settings,
                "state_dict": self.model.state_dict(), "vocab": self.vocab.words,
                "train_config": asdict(self.config), "epoch": epoch,
                "dev_metrics": history[-1].get("dev", {}) if history else {},
                "optimizer": self.optimizer.state_dict(), "generator_state": self.generator.get_state(),
                "torch_rng_state": torch.get_rng_state(), "history": history,
                "best_rsum": best[0], "best_epoch": best[1]}

    def restore(self, ckpt: dict[str, Any]) -> tuple[int, list[dict[str, Any]], tuple[float, int]]:
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.generator.set_state(ckpt["generator_state"])
        torch.set_rng_state(ckpt["torch_rng_state"])
        return ckpt["epoch"], list(ckpt["history"]), (ckpt["best_rsum"], ckpt["best_epoch"])


SETTINGS_BEFORE_THEY_EXISTED: dict[str, Any] = {"kendall_pairs": "all"}
"""What a run saved before a setting existed did: an older checkpoint without the key behaved like this value."""


def _check_resumable(config: TrainConfig, ckpt: dict[str, Any], path: Path) -> None:
    saved = SETTINGS_BEFORE_THEY_EXISTED | dict(ckpt.get("train_config", {}))
    now = asdict(config)
    differ = sorted(k for k in now if k not in ("epochs", "device", "log_every") and saved.get(k) != now[k])
    if differ:
        shown = ", ".join(f"{k}: {saved.get(k)!r} then, {now[k]!r} now" for k in differ)
        raise CheckpointError(f"{path}: the run was started with different settings ({shown}); resume with the "
                              "same settings or choose another --out")
    if "generator_state" not in ckpt:
        raise CheckpointError(f"{path}: checkpoint holds no training state to resume from")


def _tensorboard(out: Path):
    """A TensorBoard writer into ``out/tensorboard`` when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.debug("tensorboard is not installed: logging to train_log.csv only")
        return None
    return SummaryWriter(log_dir=str(out / "tensorboard"))


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train and return a summary (best dev rsum, checkpoint paths, per-epoch history).

    Args:
        resume: continue the run in ``config.out`` from its ``last.pt`` (same settings; ``epochs`` may grow).
            On CPU the result equals an uninterrupted run.
        overwrite: start afresh in a folder that already holds a run (otherwise refused).
    """
    out = Path(config.out)
    last = out / "last.pt"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; choose another --out")
    if last.exists() and not (resume or overwrite):
        raise ConfigError(f"{out}: holds a training run already; pass --resume to continue it or choose "
                          "another --out")
    if out.is_dir() and not last.exists() and not overwrite:
        foreign = sorted(p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")
                         and p.name not in RUN_FILES)
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise ConfigError(f"{out}: is not empty and holds no training run ({shown}); choose an empty --out "
                              "or pass --overwrite")
    state: dict[str, Any] = {"saved": last.exists() and resume, "best": None}
    dist_info = init_distributed(config.device)
    barrier(dist_info)  # every process has checked the folder before rank 0 writes into it
    try:
        return _train_run(config, resume, out, last, state, dist_info)
    except KeyboardInterrupt:
        if state["saved"] is True:
            kept = f"{last} is as the previous run left it; continue with the same command plus --resume"
        elif state["saved"]:
            best = f" (best so far: {out / 'best.pt'}, epoch {state['best']})" if state["best"] else ""
            kept = (f"{last} holds epoch {state['saved']} of {config.epochs}{best}; continue with the same command "
                    "plus --resume")
        elif state.get("init"):
            kept = (f"no epoch finished, so the run holds only {out / 'init.pt'} (the untrained model); rerun the "
                    "command to start again")
        else:
            kept = "no checkpoint of this run was written; rerun the command to start"
        raise KeyboardInterrupt(kept) from None
    finally:
        shutdown(dist_info)


def _train_run(config: TrainConfig, resume: bool, out: Path, last: Path, state: dict[str, Any],
               dist_info: DistInfo) -> dict[str, Any]:
    """The body of :func:`train`; ``state`` tells its caller what is on disk when Ctrl-C stops it. Only the main
    process (rank 0) writes files."""
    run = _Run(config, dist_info)
    main = dist_info.main
    # a checkpoint holds the weights and Adam's two moments; init.pt, best.pt, last.pt and one temporary copy
    ckpt_bytes = 3 * sum(t.numel() * t.element_size() for t in run.model.state_dict().values()) + (1 << 20)
    ensure_free_space(out, ckpt_bytes * (2 if resume and last.exists() else 4),
                      f"the checkpoints of a {config.model} model")
    out.mkdir(parents=True, exist_ok=True)
    if main:
        remove_stale_temporaries(out)
    first_epoch, history, best = 1, [], (-1.0, 0)
    if resume and last.exists():
        ckpt = load_checkpoint(last, "cpu")
        _check_resumable(config, ckpt, last)
        done, history, best = run.restore(ckpt)
        first_epoch = done + 1
        state.update(saved=done, best=best[1])
        log.info("resuming %s after epoch %d", out, done)
    else:
        if main:
            save_checkpoint(out / "init.pt", run.payload(0, [], best))  # the untrained model, for comparisons
        state["init"] = True
    if main:
        atomic_write_json(out / "train_config.json", asdict(config))
    log_path = out / "train_log.csv"
    kept = []
    if first_epoch > 1 and log_path.exists():  # drop the rows of the epoch that was interrupted
        with open(log_path, newline="") as fh:
            kept = [row for row in csv.reader(fh)][1:]
        kept = [row for row in kept if row and int(row[0]) < first_epoch]
    board = _tensorboard(out) if main else None
    log_file = open(log_path if main else os.devnull, "w", newline="")
    writer = csv.writer(log_file)
    writer.writerow(LOG_COLUMNS)
    writer.writerows(kept)
    start = time.perf_counter()
    total = (config.epochs - first_epoch + 1) * run.steps_per_epoch
    progress = Progress(total, "training", "steps", log, enabled=main)
    if run.dev is None and main:
        log.info("no %r split in %s: best.pt will be the last epoch", config.dev_split, config.data or config.captions)
    try:
        for epoch in range(first_epoch, config.epochs + 1):
            run.model.train()
            if main and epoch <= config.warmup_epochs:
                log.info("epoch %d is a warm-up epoch: the mean-over-negatives triplet loss alone (no Kendall term)",
                         epoch)
            sums = dict.fromkeys(("loss", "binary", "continuous", "labelled_pairs", "compared"), 0.0)
            for step, batch in enumerate(run.batches(epoch)):
                record = run.step(batch, epoch, step)
                for k in sums:
                    sums[k] += record[k]
                writer.writerow([epoch, step] + [f"{record[k]:.6g}" for k in LOG_COLUMNS[2:]])
                if board is not None:
                    global_step = (epoch - 1) * run.steps_per_epoch + step
                    for k in LOG_COLUMNS[2:]:
                        board.add_scalar(f"train/{k}", record[k], global_step)
                progress.update(1, f"epoch {epoch} step {step + 1}/{run.steps_per_epoch} loss {record['loss']:.4f} "
                                   f"(bin {record['binary']:.4f} cont {record['continuous']:.4f}, "
                                   f"{record['labelled_pairs']:.0f} labelled pairs)")
            log_file.flush()
            summary = {"epoch": epoch, **{k: v / run.steps_per_epoch for k, v in sums.items()}}
            if run.dev is not None:
                summary["dev"] = evaluate_model(run.model, run.vocab, run.dev[0], run.dev[1], run.device)
                if board is not None:
                    for k in ("rsum", "i2t_r1", "t2i_r1"):
                        board.add_scalar(f"dev/{k}", summary["dev"][k], epoch)
                rsum = summary["dev"]["rsum"]
            else:
                rsum = float(epoch)  # no dev split: the last epoch is the best
            history.append(summary)
            improved = rsum > best[0]
            if improved:
                best = (rsum, epoch)
            payload = run.payload(epoch, history, best)
            if improved:
                if main:
                    save_checkpoint(out / "best.pt", payload)
            if main:
                save_checkpoint(last, payload)  # written after best.pt: a resumed run never misses a best
            state.update(saved=epoch, best=best[1])
            log.info("epoch %d done: loss %.4f%s", epoch, summary["loss"],
                     f", dev rsum {rsum:.1f}" if run.dev is not None else "")
    finally:
        progress.close()
        log_file.close()
        if board is not None:
            board.close()
    result = {"best_epoch": best[1], "best_dev_rsum": best[0] if run.dev is not None else None,
              "best_checkpoint": str(out / "best.pt"), "last_checkpoint": str(last),
              "history": history, "seconds": time.perf_counter() - start, "bcls_version": __version__}
    if main:
        atomic_write_json(out / "summary.json", result)
    return result
