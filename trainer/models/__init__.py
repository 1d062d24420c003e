"""Retrieval models: VSE-style image encoders (region or global features) and text encoders (bi-GRU, or a
pretrained transformer), both into one L2-normalised joint space.

* :mod:`~.text` — tokenisation, :class:`Vocabulary`, the GRU and transformer text encoders;
* :mod:`~.image_tower` — region and global image encoders; :mod:`~.gpo` — VSE∞'s Generalized Pooling Operator;
* :mod:`~.vse` — the model configs and models; :mod:`~.model_registry` — :data:`MODELS`, :func:`make_model`.

May import: :mod:`bcls.data`, :mod:`bcls.pipeline` (the offline sentence-model folder of the transformer tower).
"""

from .gpo import GPO, gpo_pool, positional_encoding
from .image_tower import GlobalImageAdapter, RegionGPOImageEncoder, RegionImageEncoder, ResidualProjection
from .model_registry import MODELS, feature_kind, make_model, model_setting_names
from .text import PAD, UNK, GRUTextEncoder, TransformerTextEncoder, Vocabulary, pad_batch, tokenize, tokenize_texts
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

__all__ = ["GPO", "MODELS", "PAD", "UNK", "GRUTextEncoder", "GlobalImageAdapter", "RegionGPOImageEncoder",
           "RegionImageEncoder", "ResidualProjection", "RetrievalModel", "TransformerTextEncoder", "VSEConfig",
           "VSEGPOConfig", "VSEGPOModel", "VSEGlobalConfig", "VSEGlobalModel", "VSEModel", "VSETransformerConfig",
           "VSETransformerModel", "Vocabulary", "feature_kind", "gpo_pool", "make_model", "model_setting_names",
           "pad_batch", "positional_encoding", "tokenize", "tokenize_texts"]
