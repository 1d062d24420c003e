"""The label sources bcls ships, registered by name; ``bcls labels sources`` lists them.

A new source is one module with a class (or factory) following :class:`~bcls.pipeline.corpus.LabelSource`, whose
keyword arguments are its options, plus one ``LABEL_SOURCES.register(...)`` line: ``bcls labels build --sources
NAME --option NAME.KEY=VALUE`` then builds it, with no other edit.
"""

from __future__ import annotations

from typing import Any

from bcls.data.registry import Registry

from ..corpus import LabelSource
from .cider import CiderSource
from .file import file_source
from .sbert import SbertSource
from .spice import SpiceSource
from .truth import truth_source

LABEL_SOURCES: Registry[LabelSource] = Registry("label source")
"""Label sources by name; an entry's options are the keyword arguments of its factory."""

LABEL_SOURCES.register("sbert", SbertSource, "cosine of sentence embeddings (sentence-transformers) between the "
                       "caption and the image's other captions, clipped to [0, 1], max over references",
                       options=("aggregate", "chunk"))
LABEL_SOURCES.register("cider", CiderSource, "CIDEr-D (coco-caption formula, df over the corpus's images, sigma 6, "
                       "x10, raw) of the caption against the image's other captions")
LABEL_SOURCES.register("spice", SpiceSource, "SPICE-like scene-graph F1 (spaCy objects/attributes/relations, lemma "
                       "+ WordNet-synonym matching) of the caption against the union of the image's other captions' "
                       "tuples")
LABEL_SOURCES.register("file", file_source, "user-supplied scores read from a CSV/TSV/Parquet file of (image_id, "
                       "caption_id, score), looked up by id (path=); pairs absent from it are NaN")


def make_source(name: str, **options: Any) -> LabelSource:
    """Build the registered label source ``name`` with its keyword ``options`` (an unknown name or option is a
    ``ConfigError`` that lists the valid ones)."""
    return LABEL_SOURCES.create(name, **options)
LABEL_SOURCES.register("truth", truth_source, "the demo's ground-truth relevance (fraction of the caption's facts "
                       "true of the image) from a demo data folder (path=, split=); for ceiling experiments")
