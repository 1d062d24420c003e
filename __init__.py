"""bcls: image-text retrieval trained with Binary and Continuous Label Supervision.

Sub-packages, bottom to top (each may import only those before it): :mod:`bcls.data` (formats, demo data),
:mod:`bcls.pipeline` (pseudo labels), :mod:`bcls.trainer` (models, losses, training, evaluation);
:mod:`bcls.cli` is the command line. Nothing inside bcls imports this root package.

The public API is importable from here (``from bcls import KendallLoss, build_labels, train``); names load
their sub-package on first use, so ``import bcls`` itself stays cheap.
"""

from __future__ import annotations

from .data.infra.lazy import lazy_exports
from .data.infra.version import __version__

_API: dict[str, str] = {
    # errors and data
    "BclsError": "bcls.data.infra.errors", "ConfigError": "bcls.data.infra.errors",
    "DataFormatError": "bcls.data.infra.errors",
    "ShardError": "bcls.data.infra.errors", "CheckpointError": "bcls.data.infra.errors",
    "CaptionTable": "bcls.data.captions", "read_captions": "bcls.data.captions",
    "open_labels": "bcls.data.shards", "read_labels": "bcls.data.shards",
    "DemoConfig": "bcls.data.demo", "generate_demo": "bcls.data.demo",
    # stage 1: labels
    "LabelCorpus": "bcls.pipeline.corpus", "LabelSource": "bcls.pipeline.corpus",
    "LABEL_SOURCES": "bcls.pipeline.sources", "make_source": "bcls.pipeline.sources",
    "LabelBuildConfig": "bcls.pipeline.building.label_build", "build_labels": "bcls.pipeline.building.label_build",
    "evaluate_agreement": "bcls.pipeline.fidelity.agreement",
    # stage 2: losses, models, training, evaluation
    "KendallParams": "bcls.trainer.losses", "KendallLoss": "bcls.trainer.losses", "BCLSLoss": "bcls.trainer.losses",
    "BINARY_LOSSES": "bcls.trainer.losses", "make_binary_loss": "bcls.trainer.losses",
    "kendall_loss": "bcls.trainer.losses", "MODELS": "bcls.trainer.models", "make_model": "bcls.trainer.models",
    "TrainConfig": "bcls.trainer.config", "train": "bcls.trainer.train",
    "evaluate": "bcls.trainer.evaluation", "recall_metrics": "bcls.trainer.evaluation",
    "ncs_at_k": "bcls.trainer.evaluation", "rank_correlation": "bcls.trainer.evaluation",
    "run_demo": "bcls.trainer.demo",
}

__all__ = ["__version__", *sorted(_API)]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _API)
