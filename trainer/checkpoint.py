"""Checkpoints: plain dicts of tensors, strings and numbers, written atomically, loaded with ``weights_only=True``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

import bcls
from bcls.data.atomic import atomic_path
from bcls.data.errors import CheckpointError

from .model import Vocabulary, make_model

FORMAT = "bcls-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Save ``payload`` (plus format fields) to ``path`` through a temporary file and a rename."""
    path = Path(path)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "bcls_version": bcls.__version__, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (no pickled code) and check it is a bcls checkpoint of a known format."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError … for foreign/truncated files
        raise CheckpointError(f"{path}: not a loadable bcls checkpoint ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a bcls checkpoint (no format field {FORMAT!r})")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format_version {ckpt.get('format_version')} was written by bcls "
                              f"{ckpt.get('bcls_version')}; this bcls {bcls.__version__} reads version {FORMAT_VERSION}")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], device: str | torch.device = "cpu"):
    """Rebuild ``(model, vocabulary)`` from a loaded checkpoint dict."""
    model = make_model(ckpt["model_name"], **ckpt["model_settings"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint weights do not fit model {ckpt['model_name']!r}: "
                              f"{str(err).splitlines()[0]}") from None
    return model.to(device).eval(), Vocabulary(ckpt["vocab"])
