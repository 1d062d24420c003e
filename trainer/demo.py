"""``bcls demo``: the whole job on the embedded demo data — generate → labels → train → eval."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from bcls.data.demo import DemoConfig, generate_demo
from bcls.data.infra.atomic import atomic_write_json
from bcls.data.infra.errors import ConfigError
from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels

from .config import TrainConfig
from .evaluation import evaluate
from .train import train

log = logging.getLogger(__name__)


DEMO_TRAIN_SETTINGS: dict[str, Any] = {"embed_dim": 256, "lr": 3e-3, "kendall_pairs": "all"}
"""Training settings of the demo that differ from ``bcls train``'s defaults: a 256-d joint space, where the GRU
text encoder (most of a CPU step) costs much less than at 512, and a learning rate of 3e-3 instead of 1e-3, which
reaches a better dev rsum in 6 epochs (``run_demo``'s default) than 1e-3 in 9: on the demo's labels, one thread,
seeds 0/1/2, dev rsum 358.8 / 351.0 / 359.8 against 329.1 / … at 1e-3 and 9 epochs (screen and test figures:
docs/results.md, "Demo size and speed"; cosine or step decay lost 40+ points, 5e-3 peaked lower at epoch 4).
The demo also keeps the Kendall settings it was tuned with, λ = 1 (``run_demo``'s ``lam``) over all in-batch pairs
(``kendall_pairs="all"``), where ``bcls train``'s defaults come from real images
(:class:`~bcls.trainer.config.TrainConfig`)."""

MARKER = ".bcls-demo"
"""The file that marks a folder as one ``bcls demo`` made (a rerun may replace what it holds)."""


def _claim(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty ``out`` that this command did not make, unless ``overwrite``; then mark it as ours."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; choose another --out")
    foreign = out.is_dir() and not (out / MARKER).is_file() and any(out.iterdir())
    if foreign and not overwrite:
        raise ConfigError(f"{out}: holds files that `bcls demo` did not write; choose another --out or pass "
                          "--overwrite to let the demo replace its data/, labels/, run/ and eval/ there")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / MARKER, {"made_by": "bcls demo"})


def run_demo(out: str | os.PathLike, epochs: int = 6, lam: float = 1.0, k: int = 32, seed: int = 0,
             n_train: int = 3000, encoder=None, demo: DemoConfig | None = None,
             train_settings: dict[str, Any] | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Run every stage on generated demo data, keeping each stage's output under ``out``.

    Layout: ``out/data`` (precomp splits + ground truth), ``out/labels`` (shards: the ``sbert`` pseudo labels the
    run trains with, and the demo's ground truth as column ``truth``, for ``bcls train --source truth``),
    ``out/run`` (checkpoints, logs), ``out/eval/metrics.json`` (test metrics of the best checkpoint) and
    ``out/eval/untrained.json`` (the same model before training, for comparison).

    ``demo`` replaces the generator settings (``seed``, ``n_train``), ``train_settings`` adds training settings
    over :data:`DEMO_TRAIN_SETTINGS` (e.g. a smaller model), ``encoder`` replaces the sentence model (tests). A
    non-empty ``out`` that an earlier demo did not make is refused unless ``overwrite``.

    Returns:
        ``{"untrained": metrics, "trained": metrics, "train": training summary}``.
    """
    out = Path(out)
    _claim(out, overwrite)
    data = out / "data"
    log.info("demo 1/4: generating the demo dataset in %s", data)
    generate_demo(data, demo or DemoConfig(seed=seed, n_train=n_train))
    log.info("demo 2/4: building sbert labels (and the ground truth, column truth) in %s", out / "labels")
    build_labels(LabelBuildConfig(captions=str(data), out=str(out / "labels"), split="train", k=k, force=True,
                                  sources=("sbert", "truth"), source_options={"truth": {"path": str(data)}}),
                 encoder=encoder)
    log.info("demo 3/4: training in %s", out / "run")
    summary = train(TrainConfig(data=str(data), labels=str(out / "labels"), out=str(out / "run"), epochs=epochs,
                                lam=lam, seed=seed, **(DEMO_TRAIN_SETTINGS | (train_settings or {}))),
                    overwrite=True)
    log.info("demo 4/4: evaluating on the test split")
    untrained = evaluate(out / "run" / "init.pt", data, "test")
    trained = evaluate(out / "run" / "best.pt", data, "test", out / "eval")
    atomic_write_json(out / "eval" / "untrained.json", untrained["metrics"])
    return {"untrained": untrained["metrics"], "trained": trained["metrics"], "train": summary}
