"""Models by name: each entry builds a model from the keyword settings of its frozen config dataclass."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

from bcls.data.infra.plugins import Registry

from .vse import (
    RetrievalModel,
    VSEConfig,
    VSEGlobalConfig,
    VSEGlobalModel,
    VSEGPOConfig,
    VSEGPOModel,
    VSEModel,
    VSETransformerConfig,
    VSETransformerModel,
)


def _builder(config_cls: type, model_cls: Callable[[Any], RetrievalModel]) -> Callable[..., RetrievalModel]:
    def build(**settings: Any) -> RetrievalModel:
        return model_cls(config_cls(**settings))
    build.__signature__ = inspect.signature(config_cls)  # type: ignore[attr-defined]  # what create() checks
    return build


MODELS: Registry[RetrievalModel] = Registry("model", setting="model")
"""Models by name (listed in registration order; ``vse-gru`` is the default); an entry's options are the fields
of its config dataclass, which a checkpoint stores as ``model_settings``."""
for _model, _config, _what in (
        (VSEModel, VSEConfig, "linear region projection + max/mean pooling; bi-GRU + mean"),
        (VSEGPOModel, VSEGPOConfig, "VSE∞: region MLP + GPO; bi-GRU + GPO"),
        (VSEGlobalModel, VSEGlobalConfig, "global (N, D) features (e.g. CLIP) + MLP; bi-GRU"),
        (VSETransformerModel, VSETransformerConfig, "region MLP + GPO; a pretrained transformer text tower")):
    MODELS.register(_model.name, _builder(_config, _model), _what,
                    options=tuple(f.name for f in dataclasses.fields(_config)))


def model_setting_names(name: str) -> tuple[str, ...]:
    """The keyword settings accepted by model ``name`` (``ConfigError`` if unknown)."""
    return MODELS.options(name)


def feature_kind(name: str) -> str:
    """Which arrays of a feature folder model ``name`` reads: the global vectors for ``vse-global``, else regions
    when the folder has them (:func:`bcls.data.datasets.read_split`)."""
    return "global" if name == "vse-global" else "auto"


def make_model(name: str, **settings: Any) -> RetrievalModel:
    """Build a registered model; an unknown name lists the valid ones, an unknown or missing setting is a
    ``ConfigError`` that names the accepted settings."""
    return MODELS.create(name, **settings)
