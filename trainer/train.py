"""``bcls train``: BCLS training of a retrieval model on a precomp folder (or a caption file with a feature
folder) with continuous labels from shards.

The loop in parts: :class:`Trainer` holds what the builders of :mod:`~bcls.trainer.builders` made and takes one
step at a time; :class:`~bcls.trainer.run_folder.RunFolder` owns the folder (checkpoints, resume, what was kept);
:class:`~bcls.trainer.run_folder.TrainLog` the per-step log; the dev evaluation is
:func:`~bcls.trainer.evaluation.evaluate_model`, the evaluator ``bcls eval`` uses too (best epoch by
:data:`~bcls.trainer.evaluation.PRIMARY_METRIC`). :func:`train` runs them in order.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from typing import Any

import torch

from bcls.data.infra.errors import ConfigError, setting, setting_is
from bcls.data.infra.interrupts import interrupt_point, interrupts_deferred, remembered_interrupts
from bcls.data.infra.locks import writer_lock
from bcls.data.infra.progress import Progress
from bcls.data.infra.version import __version__

from .batches import Batch, make_batches
from .batches.inputs import image_batch
from .builders import build_data, build_labels, build_losses, build_model, build_optimizer, tokens_and_images
from .config import TrainConfig
from .distributed import (
    DistInfo,
    barrier,
    from_main,
    gather_with_local_grad,
    init_distributed,
    local_rows,
    shutdown,
    sum_gradients,
)
from .evaluation import PRIMARY_METRIC, evaluate_model
from .models import pad_batch
from .run_folder import LOG_COLUMNS, RUN_FILES, RunFolder, TrainLog

log = logging.getLogger(__name__)

__all__ = ["LOG_COLUMNS", "RUN_FILES", "Trainer", "train"]


def _device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but torch sees no CUDA device; use "
                          f"{setting_is('device', 'cpu')}")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown {setting('device')} {name!r}; use cpu, cuda or cuda:N") from None


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


class Trainer:
    """What a training run holds — data, model, labels, losses, optimizer, sampler state — made by the builders
    (:mod:`~bcls.trainer.builders`) in a fixed order, and one optimisation step at a time (:meth:`step`)."""

    def __init__(self, config: TrainConfig, dist_info: DistInfo = DistInfo()):
        self.config = config
        self.dist = dist_info
        self.device = _device(config.device)
        if self.device.type == "cuda" and dist_info.world > 1:
            self.device = torch.device("cuda", dist_info.local_rank)
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.data = build_data(config)
        self.vocab = self.data.vocab
        self.model, self.settings = build_model(config, self.data, self.device)
        self.labels = build_labels(config, self.data.table, self.device)
        self.losses = build_losses(config)
        self.optimizer = build_optimizer(config, self.model)
        self.token_ids, self.image_index = tokens_and_images(self.model, self.data)
        n = len(self.data.table)
        self.steps_per_epoch = n // config.batch_size + (n % config.batch_size >= 2)  # every sampler gives this
        self.amp = config.amp and self.device.type == "cuda"

    def batches(self, epoch: int) -> Any:
        """The batches of one epoch from the configured sampler (:func:`~bcls.trainer.batches.make_batches`)."""
        config, labels = self.config, self.labels
        return make_batches(config.sampler, n=len(self.data.table), batch_size=config.batch_size,
                            generator=self.generator, image_index=self.image_index,
                            labels=labels.pairs if labels else None, fraction=config.neighbour_fraction,
                            group_size=config.group_size, label_set=labels.label_set if labels else None,
                            source=config.source, buffer_size=config.stream_buffer,
                            seed=config.seed * 100003 + epoch, table=self.data.table, n_batches=self.steps_per_epoch)

    def targets(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """The Kendall term's inputs for a batch: ``(labels, known, positive, labelled)``, each ``(B, B)`` over
        (image of caption i, caption j), and the count of labelled pairs of different images. Ground-truth pairs
        carry the normaliser's top label; ``kendall_pairs`` decides whether the term ranks them."""
        rows, streamed = batch
        images = self.image_index[rows]
        positive = images[:, None] == images[None, :]
        lookup = streamed if self.labels is not None and self.labels.in_batch is None else \
            self.labels.in_batch if self.labels is not None else None
        if lookup is None:
            return positive.float(), positive, positive, 0
        assert self.labels is not None  # no labels, no lookup
        values, known = lookup.lookup(images, rows)  # on the training device for dense sbert labels
        positive = positive.to(values.device)
        labelled = int((known & ~positive).sum())
        norm = self.labels.norm
        values = torch.where(positive, norm.top, norm(values))
        known = known & ~positive if self.config.kendall_pairs == "negatives" else known | positive
        return values, known, positive, labelled

    def loss_at(self, epoch: int, step: int) -> Any:
        """The loss of (1-based epoch, 0-based step): the warm-up's, or the main one with λ on its ramp."""
        config = self.config
        if epoch <= config.warmup_epochs:
            return self.losses.warmup
        loss_fn = self.losses.main
        if config.lam_ramp_epochs:
            loss_fn.lam = config.lam * _ramp(config, epoch, step, self.steps_per_epoch)
        return loss_fn

    def step(self, batch: Batch, epoch: int, step: int) -> dict[str, float]:
        """One optimisation step on the captions ``batch.rows`` (with the stream sampler, ``batch.labels`` holds
        the batch's labels); returns the loss terms and labelled-pair count."""
        rows = batch[0]
        config, device = self.config, self.device
        factor = _lr_factor(config, epoch, step, self.steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        mine = local_rows(rows, self.dist)  # this process's slice of the global batch (all of it on one process)
        feats = image_batch(self.data.feats, self.image_index[mine].numpy(), device)
        ids, lengths = pad_batch([self.token_ids[r] for r in mine.tolist()])
        ids = ids.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.amp):
            img = gather_with_local_grad(self.model.encode_images(feats).float(), len(rows), self.dist)
            txt = gather_with_local_grad(self.model.encode_texts(ids, lengths).float(), len(rows), self.dist)
        sims = (img @ txt.T).float()
        values, known, positive, labelled = self.targets(batch)
        terms = self.loss_at(epoch, step)(sims, values.to(device), known.to(device), positive.to(device))
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        sum_gradients(self.model, self.dist)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        record = {k: float(terms[k].detach()) for k in ("loss", "binary", "continuous")}
        compared = float(terms["valid_pairs"]) / (2 * len(rows))
        return record | {"labelled_pairs": labelled, "compared": compared, "lr": self.optimizer.param_groups[0]["lr"]}

    def evaluate_dev(self) -> dict[str, float] | None:
        """The dev split's metrics by the one evaluator (None without a dev split)."""
        if self.data.dev is None:
            return None
        return evaluate_model(self.model, self.vocab, self.data.dev[0], self.data.dev[1], self.device)

    def checkpoint_bytes(self) -> int:
        """The size of one checkpoint: the weights and Adam's two moments, plus a margin."""
        return 3 * sum(t.numel() * t.element_size() for t in self.model.state_dict().values()) + (1 << 20)

    def payload(self, epoch: int, history: list[dict[str, Any]], best: tuple[float, int]) -> dict[str, Any]:
        """The checkpoint of the state after ``epoch``: enough to evaluate, and to resume exactly."""
        return {"model_name": self.config.model, "model_settings": self.settings,
                "state_dict": self.model.state_dict(), "vocab": self.vocab.words,
                "train_config": self.config.to_dict(), "epoch": epoch,
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


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train and return a summary (best dev rsum, checkpoint paths, per-epoch history).

    Args:
        resume: continue the run in ``config.out`` from its ``last.pt`` (same settings; ``epochs`` may grow).
            On CPU the result equals an uninterrupted run.
        overwrite: start afresh in a folder that already holds a run (otherwise refused).

    Under ``torchrun --max-restarts N``, a restarted attempt resumes from ``last.pt`` whatever ``resume`` and
    ``overwrite`` say, so a rank that dies costs the epoch it was in, not the run.
    """
    restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if restarts > 0:
        # torchrun restarted every rank after one failed (--max-restarts): continue from last.pt; a first attempt
        # that died before last.pt existed starts again
        resume, overwrite = True, False
        log.info("restarted by torchrun (restart %d): resuming from %s if it exists", restarts,
                 os.path.join(config.out, "last.pt"))
    main = os.environ.get("RANK", "0") == "0"  # torchrun's rank 0 writes (and holds the folder's writer lock)
    lock = writer_lock(config.out, "bcls train") if main else contextlib.nullcontext()
    with remembered_interrupts(), lock:
        folder = RunFolder(config, resume, overwrite)
        dist_info = init_distributed(config.device)
        folder.main = dist_info.main
        barrier(dist_info)  # every process has checked the folder before rank 0 writes into it
        try:
            result = _train_run(config, folder, dist_info)
            # no rank tears the process group down while another still works in it (rank 0 saves last): a gloo
            # rank that did once aborted at exit ("terminate called without an active exception")
            barrier(dist_info)
            return result
        except KeyboardInterrupt:
            raise KeyboardInterrupt(folder.state.kept(folder.out)) from None
        finally:
            shutdown(dist_info)


def _train_run(config: TrainConfig, folder: RunFolder, dist_info: DistInfo) -> dict[str, Any]:
    """The body of :func:`train`: build, resume or start, then the epochs; ``folder.state`` follows what is on
    disk, for the message of an interruption."""
    run = Trainer(config, dist_info)
    main = dist_info.main
    folder.prepare(run.checkpoint_bytes())
    first_epoch, best = 1, (-1.0, 0)
    history: list[dict[str, Any]] = []
    ckpt = folder.load_resume()
    if ckpt is not None:
        done, history, best = run.restore(ckpt)
        first_epoch = done + 1
    else:
        folder.save_init(run.payload(0, [], best))
    folder.write_config()
    train_log = TrainLog(folder.out, first_epoch, main)
    start = time.perf_counter()
    total = (config.epochs - first_epoch + 1) * run.steps_per_epoch
    progress = Progress(total, "training", "steps", log, enabled=main)
    if run.data.dev is None and main:
        log.info("no %r split in %s: best.pt will be the last epoch", config.dev_split, config.data or config.captions)
    try:
        # Ctrl-C stops the run between steps (interrupt_point), never inside torch, a TensorBoard write or a
        # checkpoint write: an exception there can leave a writer's queue or lock half-updated, and closing it hangs
        with interrupts_deferred():
            for epoch in range(first_epoch, config.epochs + 1):
                summary = _train_epoch(run, epoch, train_log, progress, main)
                # rank 0 evaluates and the others take its figures (best epoch, history): same result, one
                # evaluation's work and log lines
                dev = from_main(run.evaluate_dev() if main else None, dist_info, run.device)
                train_log.epoch(epoch, dev)
                if dev is not None:
                    summary["dev"] = dev
                # no dev split: the last epoch is the best
                score = dev[PRIMARY_METRIC] if dev is not None else float(epoch)
                history.append(summary)
                improved = score > best[0]
                if improved:
                    best = (score, epoch)
                folder.save_epoch(epoch, run.payload(epoch, history, best), improved)
                if main:
                    log.info("epoch %d done: loss %.4f%s", epoch, summary["loss"],
                             f", dev {PRIMARY_METRIC} {score:.1f}" if dev is not None else "")
    finally:
        progress.close()
        train_log.close()
    result = {"best_epoch": best[1], "best_dev_rsum": best[0] if run.data.dev is not None else None,
              "best_checkpoint": str(folder.out / "best.pt"), "last_checkpoint": str(folder.last),
              "history": history, "seconds": time.perf_counter() - start, "bcls_version": __version__}
    folder.write_summary(result)
    return result


def _train_epoch(run: Trainer, epoch: int, train_log: TrainLog, progress: Progress, main: bool) -> dict[str, Any]:
    """One epoch of steps; returns its mean loss terms."""
    run.model.train()
    if main and epoch <= run.config.warmup_epochs:
        log.info("epoch %d is a warm-up epoch: the %s loss alone (no Kendall term)", epoch, run.config.warmup_loss)
    sums = dict.fromkeys(("loss", "binary", "continuous", "labelled_pairs", "compared"), 0.0)
    for step, batch in enumerate(run.batches(epoch)):
        interrupt_point()  # a deferred Ctrl-C, or one Python dropped, stops the run here (data/infra/interrupts.py)
        record = run.step(batch, epoch, step)
        for k in sums:
            sums[k] += record[k]
        train_log.step(epoch, step, (epoch - 1) * run.steps_per_epoch + step, record)
        progress.update(1, f"epoch {epoch} step {step + 1}/{run.steps_per_epoch} loss {record['loss']:.4f} "
                           f"(bin {record['binary']:.4f} cont {record['continuous']:.4f}, "
                           f"{record['labelled_pairs']:.0f} labelled pairs)")
    return {"epoch": epoch, **{k: v / run.steps_per_epoch for k, v in sums.items()}}
