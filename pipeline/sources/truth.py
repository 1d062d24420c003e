"""``truth``: the demo's ground-truth relevance as a label source, for ceiling experiments.

The relevance of (image i, caption c) is the fraction of c's facts that are true of i's scene
(:func:`bcls.data.demo.demo_pair_relevance`), read from a demo data folder's ``{split}_facts.json``. It lets a
label build write perfect labels for its candidates beside the real pseudo labels, and ``bcls train --source
truth --label-mode dense`` train with perfect labels for every in-batch pair: what the continuous loss can reach
when the teacher is right. It exists for the demo only (real data has no such ground truth).

Pairs are looked up by id: corpus image ids are the demo's image ids, corpus caption ids the demo split's
caption rows (the precomp layout's line numbers), so the corpus must be a caption table of that split.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from bcls.data.demo import DemoFacts, demo_pair_relevance, read_demo_facts
from bcls.data.infra.errors import ConfigError

from ..corpus import LabelCorpus


@dataclass(frozen=True, eq=False)
class TruthSource:
    """``truth``: the demo's ground-truth relevance of each (image, caption) pair; values in [0, 1].

    Attributes:
        facts: the ground truth of the split the corpus was read from.
        path: the demo data folder the facts came from (recorded in :meth:`settings`; never opened here).
    """

    facts: DemoFacts
    path: str = ""
    name: str = field(default="truth", init=False)
    needs_embeddings: bool = field(default=False, init=False)
    provenance_only: ClassVar[tuple[str, ...]] = ("path",)

    @cached_property
    def _fingerprint(self) -> str:
        h = hashlib.sha256(b"bcls-demo-truth-v1\0")
        for a in (self.facts.image_ids, self.facts.image_fact_ptr, self.facts.image_fact_ids,
                  self.facts.caption_fact_ptr, self.facts.caption_fact_ids):
            h.update(np.ascontiguousarray(a, dtype="<i8").tobytes())
        return h.hexdigest()

    def settings(self) -> dict[str, Any]:
        return {"path": self.path, "split": self.facts.split, "fingerprint": self._fingerprint,
                "definition": "fraction of the caption's facts true of the image (demo ground truth)"}

    def score(self, corpus: LabelCorpus, image_pos: np.ndarray, caption_pos: np.ndarray) -> np.ndarray:
        """Ground-truth relevance, float32 ``(P,)``, of pairs (image_pos[p], caption_pos[p])."""
        img_ids, cap_rows = corpus.ids_of(image_pos, caption_pos, "truth")
        order = np.argsort(self.facts.image_ids)
        at = np.minimum(np.searchsorted(self.facts.image_ids, img_ids, sorter=order), len(order) - 1)
        img_rows = order[at]
        bad = (self.facts.image_ids[img_rows] != img_ids) | (cap_rows < 0) | (cap_rows >= self.facts.n_captions)
        if bad.any():
            raise ConfigError(f"truth source: {int(bad.sum())} pair(s) name images or captions that the demo's "
                              f"{self.facts.split!r} split does not have (first: image id {int(img_ids[bad][0])}, "
                              f"caption id {int(cap_rows[bad][0])}); build the labels from that split's captions")
        return demo_pair_relevance(self.facts, img_rows, cap_rows)


def truth_source(path: str | os.PathLike | None = None, split: str = "train") -> TruthSource:
    """Registry factory of the ``truth`` source: the ground truth of ``split`` in the demo data folder ``path``."""
    if path is None or str(path) == "":
        raise ConfigError("the truth label source needs its path option (-o truth.path=DEMO_DATA_FOLDER): a folder "
                          "written by `bcls demo` or generate_demo")
    return TruthSource(read_demo_facts(path, split), str(path))
