"""Two speed-ups of the spaCy parse behind the ``spice`` source, each proved equal to the plain pipeline by a test:
numpy's matmul in the thinc layers (:func:`use_matmul_ops`) and a memoised attribute ruler
(:class:`MemoAttributeRuler`). :func:`bcls.pipeline.sources.spice_graph.load_spacy` applies both."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc, Token


class MemoAttributeRuler:
    """spaCy's ``attribute_ruler`` with its single-token rules answered from a memo: the same token attributes, the
    ruler's time a tenth (``bench/bench_spice.py --memo``; docs/benchmarks.md).

    ``en_core_web_sm``'s ruler holds 179 patterns, all but 8 of one token: they map a token's (tag, lower-case
    form, dependency, is-space) to its POS, morphology and sometimes lemma (and, for whitespace tokens, tag or
    dependency), and spaCy runs a Matcher of them all over every doc (31 % of the parse of COCO captions, one
    core). Here the outcome for each distinct
    (tag, lower, dep, is-space) is computed once by the real ruler on a one-token doc with the same attributes
    (which starts from the same unset POS, morphology and lemma as a freshly parsed token) and then copied in
    bulk. A doc that one of the 8 multi-token patterns (``there is``, ``gon na``, ``let 's`` …) may match, by a
    word or dependency of one of its positions, is checked by a Matcher of those patterns alone, and goes through
    the real ruler whole when one matches. Our choice; a test holds every token attribute and scene graph equal
    to the plain pipeline on real captions.
    """

    FACTORY = "bcls_memo_attribute_ruler"
    KEYED = frozenset(["TAG", "LOWER", "DEP", "IS_SPACE"])  # the token attributes of the memo key

    def __init__(self, ruler: Any) -> None:
        from spacy.matcher import Matcher

        self.ruler = ruler
        strings = ruler.vocab.strings
        self.memo: dict[tuple[int, ...], tuple[int, ...]] = {}
        self.multi = Matcher(ruler.vocab)  # the multi-token patterns alone
        self.gate: tuple[set[int], set[int]] = (set(), set())  # (lower forms, dependencies) that open the check
        self.always_whole = False
        for k, entry in enumerate(ruler.patterns):
            for pattern in entry["patterns"]:
                if any(set(spec) - self.KEYED for spec in pattern):  # OP, or an attribute the memo key lacks
                    self.always_whole = True
                if len(pattern) == 1:
                    continue
                self.multi.add(f"multi-{k}", [pattern])
                gates = [(col, spec[attr]) for spec in pattern for col, attr in ((1, "DEP"), (0, "LOWER"))
                         if isinstance(spec.get(attr), str) or isinstance(spec.get(attr), dict) and "IN" in spec[attr]]
                if not gates:
                    self.always_whole = True
                    continue
                col, value = gates[0]  # a dependency first (rarer than a word), else the first named word
                self.gate[col].update(strings.add(v) for v in ([value] if isinstance(value, str) else value["IN"]))

    def _outcome(self, token: "Token") -> tuple[int, ...]:
        """(POS, morphology, lemma, tag, dependency) the ruler leaves; the tag and dependency 0 when unchanged."""
        from spacy.tokens import Doc

        one = Doc(token.vocab, words=[token.text], spaces=[False], tags=[token.tag_], deps=[token.dep_],
                  heads=[0])
        self.ruler(one)
        new = one[0]
        morph = new.morph.key  # type: ignore[attr-defined]  # MorphAnalysis.key has no stub
        return (new.pos, morph, new.lemma, new.tag if new.tag != token.tag else 0,
                new.dep if new.dep != token.dep else 0)

    def __call__(self, doc: "Doc") -> "Doc":
        from spacy.attrs import DEP, IS_SPACE, LEMMA, LOWER, MORPH, POS, TAG

        if self.always_whole or not len(doc):
            return self.ruler(doc)
        keys = doc.to_array([TAG, LOWER, DEP, IS_SPACE]).tolist()
        words, deps = self.gate
        if any(key[1] in words or key[2] in deps for key in keys) and self.multi(doc, allow_missing=True):
            return self.ruler(doc)
        out = doc.to_array([POS, MORPH, LEMMA])
        changed = []
        for i, key in enumerate(map(tuple, keys)):
            hit = self.memo.get(key)
            if hit is None:
                hit = self.memo[key] = self._outcome(doc[i])
            pos, morph, lemma, tag, dep = hit
            out[i, 0] = pos
            if morph:
                out[i, 1] = morph
            if lemma:
                out[i, 2] = lemma
            if tag or dep:  # a few rules retag or relabel whitespace tokens
                changed.append((i, tag, dep))
        doc.from_array([POS, MORPH, LEMMA], out)  # type: ignore[arg-type]  # uint64 ids, as spaCy's to_array
        for i, tag, dep in changed:
            if tag:
                doc[i].tag = tag
            if dep:
                doc[i].dep = dep
        return doc


def use_matmul_ops(nlp: "Language") -> "Language":
    """Make every thinc layer of ``nlp`` multiply matrices with numpy's ``matmul`` (numpy's BLAS, OpenBLAS in the
    PyPI wheels) instead of thinc's bundled BLIS, which is much slower on the tok2vec layers' shapes on the CPUs
    measured (``bench/bench_spice.py --ops``; docs/benchmarks.md); a test holds the parses equal. The parser's own state
    transitions call BLIS directly and are unchanged."""
    ops = _matmul_ops()
    for _, pipe in nlp.pipeline:
        model = getattr(pipe, "model", None)
        if model is not None and hasattr(model, "walk"):
            for node in model.walk():
                node.ops = ops
    return nlp


@functools.lru_cache(maxsize=1)
def _matmul_ops() -> Any:
    """A thinc ``NumpyOps`` whose ``gemm`` is ``numpy.matmul`` (same arguments: ``out``, ``trans1``, ``trans2``)."""
    from thinc.api import NumpyOps

    class MatmulOps(NumpyOps):
        name = "numpy-matmul"

        def gemm(self, x: np.ndarray, y: np.ndarray, *, out: np.ndarray | None = None, trans1: bool = False,
                 trans2: bool = False) -> np.ndarray:
            a, b = (x.T if trans1 else x), (y.T if trans2 else y)
            if out is None:
                return np.matmul(a, b)
            np.matmul(a, b, out=out)
            return out

    return MatmulOps()
