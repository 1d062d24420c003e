"""``ensemble``: a combination of other label sources' values, fitted on human judgments or a plain rank average.

With ``path=`` it applies an :class:`~bcls.pipeline.fidelity.fitted_ensemble.EnsembleModel` written by ``bcls labels
fit`` (plain JSON; its sha256 is part of the build's identity and manifest). Without one it is the documented **rank
average** of ``members`` (default ``sbert,cider,spice``): each member's values are rank-normalised against a reference
sample drawn from the corpus itself — ``reference_images`` images (seeded), each with all its own captions
(leave-one-out, as labels are defined) and as many random captions of other images — and averaged with equal
weights, uncalibrated. Both are our addition to the paper (docs/design.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Sequence

import numpy as np

from bcls.data.infra.errors import ConfigError
from bcls.pipeline.fidelity.fitted_ensemble import EnsembleModel, Member, load_ensemble, rank_knots

from ..corpus import LabelCorpus, LabelSource
from .cache import CorpusCache
from .source_registry import LABEL_SOURCES, convert_option, make_source

_REFERENCE = CorpusCache(size=4)


def parse_spec(item: str) -> Member:
    """One source with options from ``NAME[:KEY=VALUE[:KEY=VALUE…]]`` (``spice:measure=precision``); values are
    converted to the type of the option's default."""
    name, *pairs = item.strip().split(":")
    LABEL_SOURCES.get(name)  # an unknown name lists the valid ones
    options = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not (eq and key):
            raise ConfigError(f"source {item!r}: write NAME:KEY=VALUE, e.g. spice:measure=precision")
        options[key] = convert_option(name, key, value)
    return Member(name, options)


def parse_members(text: str | Sequence[str]) -> tuple[Member, ...]:
    """Ensemble members from ``"sbert,cider,spice:measure=precision"`` (or a list of such items, each as
    :func:`parse_spec`). Duplicates and ``ensemble`` itself are refused."""
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not items:
        raise ConfigError("an ensemble needs at least one member source, e.g. sbert,cider,spice")
    members = tuple(parse_spec(item) for item in items)
    if any(m.source == "ensemble" for m in members):
        raise ConfigError("an ensemble cannot be a member of an ensemble")
    labels = [m.label for m in members]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError(f"ensemble member(s) {', '.join(dup)} given twice")
    return members


def build_member(member: Member) -> LabelSource:
    """The label source of an ensemble member."""
    return make_source(member.source, **dict(member.options))


def reference_pairs(corpus: LabelCorpus, n_images: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(image_pos, caption_pos)`` of the unfitted ensemble's reference sample (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n_all = len(corpus.refs)
    images = np.sort(rng.choice(n_all, min(n_images, n_all), replace=False))
    own = corpus.refs[images]
    own_img = np.repeat(images, (own >= 0).sum(axis=1))
    own_cap = own[own >= 0]
    other_cap = rng.integers(0, len(corpus.texts), len(own_cap))
    return np.r_[own_img, own_img], np.r_[own_cap, other_cap]


@dataclass(frozen=True, eq=False)
class EnsembleSource:
    """``ensemble``: see the module docstring.

    Attributes:
        model: a fitted model, or None for the rank average of ``members``.
        members: the rank average's members (ignored with a fitted model, whose members are its own).
        path, sha256: where the fitted model came from (``path`` is provenance only; the checksum is identity).
        reference_images, seed: the rank average's reference sample.
    """

    model: EnsembleModel | None = None
    members: str = "sbert,cider,spice"
    path: str = ""
    sha256: str = ""
    reference_images: int = 2000
    seed: int = 0
    name: str = field(default="ensemble", init=False)
    provenance_only: ClassVar[tuple[str, ...]] = ("path",)

    def __post_init__(self) -> None:
        if self.reference_images < 1:
            raise ConfigError(f"ensemble reference_images must be at least 1, got {self.reference_images}")
        self.sources  # an unknown member or option fails here, before any work

    @cached_property
    def _members(self):
        return self.model.members if self.model is not None else parse_members(self.members)

    @cached_property
    def sources(self) -> tuple[LabelSource, ...]:
        """The built member sources."""
        return tuple(build_member(m) for m in self._members)

    @property
    def needs_embeddings(self) -> bool:
        return any(s.needs_embeddings for s in self.sources)

    @property
    def sentence_model(self) -> str | None:
        """The sentence model a fitted model's embedding members were fitted with (None: any)."""
        return self.model.sentence_model if self.model is not None else None

    def settings(self) -> dict[str, Any]:
        members = [m.label for m in self._members]
        if self.model is None:
            return {"kind": "rank average (unfitted)", "members": members,
                    "member_settings": [s.settings() for s in self.sources],
                    "reference": {"images": self.reference_images, "seed": self.seed,
                                  "pairs": "each image's own captions (leave-one-out) + as many random captions"}}
        return {"kind": "fitted", "path": self.path, "sha256": self.sha256, "members": members,
                "member_settings": [s.settings() for s in self.sources],
                "weights": [float(w) for w in self.model.weights], "calibrated": self.model.calibration is not None,
                "sentence_model": self.model.sentence_model,
                "fitted_on": self.model.fit.get("judgments", {}).get("path")}

    def _model_for(self, corpus: LabelCorpus) -> EnsembleModel:
        if self.model is not None:
            return self.model

        def make() -> EnsembleModel:
            img, cap = reference_pairs(corpus, self.reference_images, self.seed)
            values = self._member_values(corpus, img, cap)
            knots = []
            for k, m in enumerate(self._members):
                finite = values[:, k][np.isfinite(values[:, k])]
                if not len(finite):
                    raise ConfigError(f"ensemble member {m.label} scored none of the reference pairs")
                knots.append(rank_knots(finite))
            return EnsembleModel(self._members, tuple(knots), np.full(len(knots), 1.0 / len(knots)))

        return _REFERENCE.get(corpus, (self.members, self.reference_images, self.seed), make)

    def _member_values(self, corpus: LabelCorpus, image_pos: np.ndarray, caption_pos: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(s.score(corpus, image_pos, caption_pos), dtype=np.float64)
                         for s in self.sources], axis=1)

    def score(self, corpus: LabelCorpus, image_pos: np.ndarray, caption_pos: np.ndarray) -> np.ndarray:
        """Ensemble labels, float32 ``(P,)``; NaN where a member cannot score the pair."""
        image_pos = np.asarray(image_pos, dtype=np.int64)
        caption_pos = np.asarray(caption_pos, dtype=np.int64)
        model = self._model_for(corpus)
        return model.predict(self._member_values(corpus, image_pos, caption_pos)).astype(np.float32)


def check_sentence_model(sources, model: str | None) -> None:
    """Refuse a fitted ensemble whose embedding members were fitted with another sentence model than ``model``
    (the embeddings the corpus will hold); ``model=None`` (a custom encoder) checks nothing."""
    from bcls.pipeline.embedding.sentence_models import full_name

    for s in sources:
        fitted = getattr(s, "sentence_model", None)
        if model is not None and fitted is not None and s.needs_embeddings and full_name(fitted) != full_name(model):
            raise ConfigError(f"the ensemble {getattr(s, 'path', '')} was fitted with sentence model {fitted!r}, "
                              f"not {model!r}; pass --model {fitted} (or refit it with this model)")


def ensemble_source(path: str | os.PathLike | None = None, members: str = "sbert,cider,spice",
                    reference_images: int = 2000, seed: int = 0) -> EnsembleSource:
    """Registry factory of the ``ensemble`` source: the fitted model at ``path``, else the rank average of
    ``members``."""
    if path is None or str(path) == "":
        return EnsembleSource(None, members, reference_images=reference_images, seed=seed)
    model, sha = load_ensemble(path)
    return EnsembleSource(model, members, str(path), sha, reference_images, seed)
