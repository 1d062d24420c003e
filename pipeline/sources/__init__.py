"""Continuous label sources: how relevant image i is to caption c, from c and i's reference captions.

One module per source — :mod:`~.sbert`, :mod:`~.cider` (CIDEr-D; its tokeniser in :mod:`~.ptb`, its table
kernels in :mod:`~.ngram_kernels`), :mod:`~.spice` (SPICE-like; its parse rules in
:mod:`~.spice_graph`, its spaCy speed-ups in :mod:`~.spacy_speed`), :mod:`~.file` (user scores), :mod:`~.truth`
(the demo's ground truth), :mod:`~.image_similarity` (cosine of image features), :mod:`~.ensemble` (a fitted
or rank-average combination of the others, :mod:`bcls.pipeline.fidelity.fitted_ensemble`) — plus what they share
(:mod:`~.hashing`, the per-corpus :mod:`~.cache`) and the registry (:mod:`~.source_registry`). May import:
:mod:`bcls.data`, :mod:`bcls.pipeline.corpus`, :mod:`bcls.pipeline.fidelity.fitted_ensemble`.
"""

from .cider import CiderSource
from .ensemble import EnsembleSource, ensemble_source
from .file import FileSource, file_source, read_pair_scores
from .image_similarity import ImageSource, image_source
from .sbert import SbertSource
from .source_registry import LABEL_SOURCES, make_source
from .spice import SpiceSource
from .truth import TruthSource, truth_source

LABEL_SOURCES.register("sbert", SbertSource, "cosine of sentence embeddings (sentence-transformers) between the "
                       "caption and the image's other captions, clipped to [0, 1], aggregated over references "
                       "(max, mean, topk with k, softmax with temperature, centroid)",
                       options=("aggregate", "k", "temperature", "chunk"))
LABEL_SOURCES.register("cider", CiderSource, "CIDEr-D (coco-caption formula, df over the corpus's images, sigma 6, "
                       "x10, raw) of the caption against the image's other captions")
LABEL_SOURCES.register("spice", SpiceSource, "SPICE-like scene-graph F1 (spaCy objects/attributes/relations, lemma "
                       "+ WordNet-synonym matching) of the caption against the union of the image's other captions' "
                       "tuples; measure=precision or recall instead of F1")
LABEL_SOURCES.register("file", file_source, "user-supplied scores read from a CSV/TSV/Parquet file of (image_id, "
                       "caption_id, score), looked up by id (path=); pairs absent from it are NaN")
LABEL_SOURCES.register("truth", truth_source, "the demo's ground-truth relevance (fraction of the caption's facts "
                       "true of the image) from a demo data folder (path=, split=); for ceiling experiments")
LABEL_SOURCES.register("image", image_source, "cosine of the global image features (a `bcls features extract` "
                       "folder, features=) of the image and of the caption's own image; from the images alone")
LABEL_SOURCES.register("ensemble", ensemble_source, "a combination of other sources: the model fitted on human "
                       "judgments by `bcls labels fit` (path=), else the rank average of members (default sbert,"
                       "cider,spice) normalised on a sample of the corpus's pairs")

__all__ = ["LABEL_SOURCES", "CiderSource", "EnsembleSource", "FileSource", "ImageSource", "SbertSource", "SpiceSource",
           "TruthSource", "ensemble_source", "file_source", "image_source", "make_source", "read_pair_scores",
           "truth_source"]
