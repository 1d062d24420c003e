"""Checkpoints: plain dicts of tensors, strings and numbers, written atomically, loaded with ``weights_only=True``;
the training settings they hold are brought to the current config version on loading."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from bcls.data.infra.atomic import atomic_path
from bcls.data.infra.errors import CheckpointError, ConfigError
from bcls.data.infra.version import __version__

from .config import migrate_saved
from .models import MODELS, Vocabulary, make_model

FORMAT = "bcls-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Save ``payload`` (plus format fields) to ``path`` through a temporary file and a rename."""
    path = Path(path)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "bcls_version": __version__, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (no pickled code) and check it is a bcls checkpoint of a known format."""
    path = Path(path)
    if path.is_dir():
        found = [name for name in ("best.pt", "last.pt") if (path / name).is_file()]
        hint = f"pass {path / found[0]}" if found else "pass a checkpoint file (best.pt or last.pt of a run folder)"
        raise CheckpointError(f"{path}: is a folder, not a checkpoint; {hint}")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:2] != b"PK" and head[:1] != b"\x80":  # torch.save writes a zip archive (old format: a pickle)
        raise CheckpointError(f"{path}: not a checkpoint (not a file written by torch.save); pass a best.pt or "
                              "last.pt written by `bcls train`")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: not a loadable bcls checkpoint: it holds pickled objects other than tensors "
                              "and plain values, which are never loaded (weights_only=True); load only checkpoints "
                              "written by `bcls train`") from None
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError … for foreign/truncated files
        reason = " ".join(str(err).split())[:200] or "the file ends early"
        raise CheckpointError(f"{path}: not a loadable bcls checkpoint ({type(err).__name__}: {reason})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a bcls checkpoint (no format field {FORMAT!r})")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format_version {ckpt.get('format_version')!r} was written by bcls "
                              f"{ckpt.get('bcls_version')}; this bcls {__version__} reads version {FORMAT_VERSION}: "
                              f"load it with bcls {ckpt.get('bcls_version')} or retrain")
    if isinstance(ckpt.get("train_config"), dict):  # an older run's settings in today's shape
        ckpt["train_config"] = migrate_saved(ckpt["train_config"], f"{path}: train_config")
    return ckpt


_MODEL_KEYS = ("model_name", "model_settings", "state_dict", "vocab")


def model_from_checkpoint(ckpt: dict[str, Any], device: str | torch.device = "cpu",
                          path: str | os.PathLike | None = None):
    """Rebuild ``(model, vocabulary)`` from a loaded checkpoint dict (``path`` names it in messages).

    Raises:
        CheckpointError: the checkpoint holds no model, names a model this bcls does not have, or its weights do
            not fit that model (written by another model or bcls version).
    """
    where = f"{path}: " if path is not None else ""
    absent = [k for k in _MODEL_KEYS if k not in ckpt]
    if absent:
        raise CheckpointError(f"{where}checkpoint holds no model ({', '.join(absent)} missing); pass a best.pt or "
                              "last.pt written by `bcls train`")
    name, settings = ckpt["model_name"], ckpt["model_settings"]
    written_by = f"bcls {ckpt.get('bcls_version', '?')}"
    if name not in MODELS:
        raise CheckpointError(f"{where}checkpoint is of model {name!r}, which this bcls {__version__} does not "
                              f"have (written by {written_by}; models: {', '.join(MODELS)})")
    if not isinstance(settings, dict):
        raise CheckpointError(f"{where}checkpoint's model_settings is not a dict; not a bcls checkpoint")
    try:
        model = make_model(name, **settings)
    except ConfigError as err:
        raise CheckpointError(f"{where}the settings of model {name!r} in this checkpoint (written by {written_by}) "
                              f"do not fit this bcls {__version__}: {err}") from None
    state = ckpt["state_dict"]
    if isinstance(state, dict):
        missing = [k for k in model.state_dict() if k not in state]
        unexpected = [k for k in state if k not in model.state_dict()]
        if missing or unexpected:
            parts = [f"{len(v)} {what} (first: {v[0]})" for v, what in ((missing, "missing"),
                                                                         (unexpected, "unexpected")) if v]
            raise CheckpointError(f"{where}checkpoint weights (written by {written_by}) do not fit model {name!r}: "
                                  f"{', '.join(parts)}; it was trained with another model or bcls version")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{where}checkpoint weights (written by {written_by}) do not fit model {name!r}: "
                              f"{' '.join(str(err).split())[:300]}") from None
    return model.to(device).eval(), Vocabulary(ckpt["vocab"])
