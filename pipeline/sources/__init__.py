"""Continuous label sources: how relevant image i is to caption c, from c and i's reference captions.

One module per source — :mod:`~.sbert`, :mod:`~.cider` (CIDEr-D), :mod:`~.spice` (SPICE-like; its parse rules in
:mod:`~.spice_graph`), :mod:`~.file` (user scores), :mod:`~.truth` (the demo's ground truth) — plus what they
share (:mod:`~.hashing`, the per-corpus :mod:`~.cache`) and the registry (:mod:`~.registry`). May import:
:mod:`bcls.data`, :mod:`bcls.pipeline.corpus`.
"""

from .cider import CiderSource
from .file import FileSource, file_source, read_pair_scores
from .registry import LABEL_SOURCES, make_source
from .sbert import SbertSource
from .spice import SpiceSource
from .truth import TruthSource, truth_source

__all__ = ["LABEL_SOURCES", "CiderSource", "FileSource", "SbertSource", "SpiceSource", "TruthSource", "file_source",
           "make_source", "read_pair_scores", "truth_source"]
