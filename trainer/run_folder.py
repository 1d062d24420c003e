"""A training run's folder: its rules, its checkpoints, its log, and what is on disk when the run stops.

* :class:`RunFolder` checks ``--out`` before anything is built (a folder holding another run, or other files, is
  refused), writes ``init.pt`` / ``best.pt`` / ``last.pt`` and ``train_config.json``, and loads a run to resume
  (refusing changed settings; :func:`~bcls.trainer.checkpoint.load_checkpoint` migrates older ones);
* :class:`RunState` is what the folder holds at each moment, so Ctrl-C can say what was kept;
* :class:`TrainLog` is ``train_log.csv`` (and TensorBoard's events when the package is installed).

Only the main process (rank 0) writes files; the others keep the same state.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bcls.data.infra.atomic import atomic_write_json, ensure_free_space, remove_stale_temporaries
from bcls.data.infra.errors import CheckpointError, ConfigError
from bcls.data.infra.interrupts import interrupts_deferred

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig

log = logging.getLogger(__name__)

LOG_COLUMNS = ["epoch", "step", "loss", "binary", "continuous", "labelled_pairs", "compared", "lr"]
"""Columns of ``train_log.csv``: per step, the loss terms, the labelled off-diagonal pairs of the batch, the
Kendall anchor terms compared per query (both directions; 0 in the warm-up and with λ = 0) and the lr."""
RUN_FILES = ("init.pt", "best.pt", "last.pt", "train_config.json", "train_log.csv", "summary.json")
"""The files a training run writes in its folder (other files there mean the folder holds something else)."""
RESUME_MAY_CHANGE = ("epochs", "device")
"""The settings a resumed run may change; every other one must equal the saved run's."""


@dataclass
class RunState:
    """What the run folder holds now, kept current by :class:`RunFolder`.

    Attributes:
        epochs: the epochs the run is to train.
        previous_run: ``last.pt`` was written by an earlier run that this one resumes (and not yet by this one).
        saved_epoch: the epoch ``last.pt`` holds (0: none yet).
        best_epoch: the epoch ``best.pt`` holds (0: none yet).
        wrote_init: ``init.pt`` (the untrained model) was written.
    """

    epochs: int
    previous_run: bool = False
    saved_epoch: int = 0
    best_epoch: int = 0
    wrote_init: bool = False

    def kept(self, out: Path) -> str:
        """One line saying what an interrupted run left in ``out`` and how to go on."""
        last = out / "last.pt"
        if self.saved_epoch:
            best = f" (best so far: {out / 'best.pt'}, epoch {self.best_epoch})" if self.best_epoch else ""
            return (f"{last} holds epoch {self.saved_epoch} of {self.epochs}{best}; continue with the same command "
                    "plus --resume")
        if self.previous_run:
            return f"{last} is as the previous run left it; continue with the same command plus --resume"
        if self.wrote_init:
            return (f"no epoch finished, so the run holds only {out / 'init.pt'} (the untrained model); rerun the "
                    "command to start again")
        return "no checkpoint of this run was written; rerun the command to start"


class RunFolder:
    """The run folder ``config.out`` of one training run (see the module docstring).

    Args:
        resume: continue the run the folder holds (its ``last.pt``).
        overwrite: start afresh in a folder that holds a run or other files.
        main: whether this process writes (rank 0).
    """

    def __init__(self, config: TrainConfig, resume: bool, overwrite: bool, main: bool = True):
        self.config, self.main = config, main
        self.out = Path(config.out)
        self.last = self.out / "last.pt"
        self.resuming = resume and self.last.exists()
        self.state = RunState(config.epochs, previous_run=self.resuming)
        self._check(resume, overwrite)

    def _check(self, resume: bool, overwrite: bool) -> None:
        out = self.out
        if out.exists() and not out.is_dir():
            raise ConfigError(f"{out}: exists and is not a folder; choose another --out")
        if self.last.exists() and not (resume or overwrite):
            raise ConfigError(f"{out}: holds a training run already; pass --resume to continue it or choose "
                              "another --out")
        if out.is_dir() and not self.last.exists() and not overwrite:
            foreign = sorted(p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")
                             and p.name not in RUN_FILES)
            if foreign:
                shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
                raise ConfigError(f"{out}: is not empty and holds no training run ({shown}); choose an empty --out "
                                  "or pass --overwrite")

    def prepare(self, checkpoint_bytes: int) -> None:
        """Check the free space for the checkpoints (each ``checkpoint_bytes``), create the folder and remove
        the temporaries of an interrupted write."""
        ensure_free_space(self.out, checkpoint_bytes * (2 if self.resuming else 4),
                          f"the checkpoints of a {self.config.model} model")
        self.out.mkdir(parents=True, exist_ok=True)
        if self.main:
            remove_stale_temporaries(self.out)

    def load_resume(self) -> dict[str, Any] | None:
        """The checkpoint to resume from (None when starting afresh); settings that differ from the saved run's
        are refused, naming each value then and now."""
        if not self.resuming:
            return None
        ckpt = load_checkpoint(self.last, "cpu")
        saved = ckpt.get("train_config", {})  # load_checkpoint brought it to the current version
        now = self.config.to_dict()
        differ = sorted(k for k in now if k not in RESUME_MAY_CHANGE and saved.get(k) != now[k])
        if differ:
            shown = ", ".join(f"{k}: {saved.get(k)!r} then, {now[k]!r} now" for k in differ)
            raise CheckpointError(f"{self.last}: the run was started with different settings ({shown}); resume "
                                  "with the same settings or choose another --out")
        if "generator_state" not in ckpt:
            raise CheckpointError(f"{self.last}: checkpoint holds no training state to resume from")
        self.state.saved_epoch, self.state.best_epoch = ckpt["epoch"], ckpt["best_epoch"]
        log.info("resuming %s after epoch %d", self.out, ckpt["epoch"])
        return ckpt

    def save_init(self, payload: dict[str, Any]) -> None:
        """``init.pt``: the untrained model, for comparisons."""
        with interrupts_deferred():  # a Ctrl-C meanwhile: the message then names the file on disk
            if self.main:
                save_checkpoint(self.out / "init.pt", payload)
            self.state.wrote_init = True

    def write_config(self) -> None:
        """``train_config.json``: the settings with their ``config_version``."""
        if self.main:
            atomic_write_json(self.out / "train_config.json", self.config.to_dict())

    def save_epoch(self, epoch: int, payload: dict[str, Any], improved: bool) -> None:
        """``best.pt`` when the epoch improved, then ``last.pt`` (after best.pt: a resumed run never misses a
        best)."""
        with interrupts_deferred():  # a Ctrl-C meanwhile: the message then names the epoch on disk
            if self.main:
                if improved:
                    save_checkpoint(self.out / "best.pt", payload)
                save_checkpoint(self.last, payload)
            self.state.saved_epoch = epoch
            if improved:
                self.state.best_epoch = epoch

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.main:
            atomic_write_json(self.out / "summary.json", summary)


class TrainLog:
    """``train_log.csv`` of a run (one row per step) and TensorBoard's events when tensorboard is installed; a
    resumed run keeps the rows of the epochs before ``first_epoch`` and drops those of the interrupted one."""

    def __init__(self, out: Path, first_epoch: int, main: bool = True):
        path = out / "train_log.csv"
        kept: list[list[str]] = []
        if first_epoch > 1 and path.exists():
            with open(path, newline="") as fh:
                kept = [row for row in csv.reader(fh)][1:]
            kept = [row for row in kept if row and int(row[0]) < first_epoch]
        self.board = _tensorboard(out) if main else None
        self._file = open(path if main else os.devnull, "w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(LOG_COLUMNS)
        self._writer.writerows(kept)

    def step(self, epoch: int, step: int, global_step: int, record: dict[str, float]) -> None:
        self._writer.writerow([epoch, step] + [f"{record[k]:.6g}" for k in LOG_COLUMNS[2:]])
        if self.board is not None:
            for k in LOG_COLUMNS[2:]:
                self.board.add_scalar(f"train/{k}", record[k], global_step)

    def epoch(self, epoch: int, dev: dict[str, float] | None) -> None:
        self._file.flush()
        if self.board is not None and dev is not None:
            for k in ("rsum", "i2t_r1", "t2i_r1"):
                self.board.add_scalar(f"dev/{k}", dev[k], epoch)

    def close(self) -> None:
        self._file.close()
        if self.board is not None:
            self.board.close()


def _tensorboard(out: Path):
    """A TensorBoard writer into ``out/tensorboard`` when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.debug("tensorboard is not installed: logging to train_log.csv only")
        return None
    return SummaryWriter(log_dir=str(out / "tensorboard"))
