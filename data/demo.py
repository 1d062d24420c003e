"""A deterministic synthetic "scenes" dataset with known ground truth (the embedded demo).

There are no real images offline, so the demo trains a retrieval model on generated data whose relevance is
known exactly.

* **Scenes.** Each image is a scene: one context (beach, street, kitchen, …; skewed frequencies), 2–5 distinct
  object kinds drawn with context-dependent weights (a surfboard is likely on a beach, a couch in a living room),
  one plausible attribute per object (a *wooden* table, a *brown* dog, an *old* man) and 0–3 plausible relations
  between objects (a man *riding* a horse, a cup *on* a table, a dog *next to* a bench).
* **Region features.** ``(n_regions, feature_dim)`` per image, built from fixed random unit prototypes
  (:func:`demo_prototypes`): one region per object (``object + attribute_weight · attribute``), one or two context
  regions, one region per sampled relation (``relation + relation_weight · (subject + object)``), padded with
  distractor regions (pure noise, or a random object prototype at ``distractor_weight``); every region gets
  gaussian noise of norm ≈ ``feature_noise``; the region order is shuffled per image.
* **Captions.** ``captions_per_image`` captions per image, in varied English (synonyms, several templates),
  each mentioning a random subset of the scene (some objects, with or without attributes, relations, context).
* **Ground truth.** Every caption asserts a set of canonical *facts*: ``context:c``, ``object:o``,
  ``attribute:o:a``, ``relation:s:r:o``. The facts of a scene are the ones true of it (relations include their
  implied forms: ``next_to`` is symmetric, ``behind`` ⇔ ``in_front_of``). The relevance of (image i, caption c)
  is the fraction of c's facts true of scene i (:func:`demo_relevance`); captions of an image have relevance 1.

Files written by :func:`generate_demo` into ``out_dir`` for each split ``S`` of train/dev/test:

* ``S_caps.txt``, ``S_ids.txt``, ``S_ims.npy`` — the precomp layout (:mod:`bcls.data.precomp`); image ids are
  unique across splits (train first, then dev, then test);
* ``S_facts.json`` — the ground truth (read with :func:`read_demo_facts`): the fact vocabulary, the fact ids true
  of each image and the fact ids asserted by each caption;
* ``S_relevance.npy`` — float16 ``(n_images, n_captions)`` relevance, dev and test only;
* ``demo.json`` — config, seed, bcls version, counts, summary statistics and the sha256 of every file above.

Same config → byte-identical files (every random draw comes from ``np.random.default_rng`` seeded from the
config; nothing depends on ``hash()`` or set order).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import ConfigError, DataFormatError
from .atomic import atomic_write_bytes
from .precomp import write_precomp_split

logger = logging.getLogger(__name__)

DEMO_SPLITS: tuple[str, ...] = ("train", "dev", "test")
"""The splits :func:`generate_demo` writes, in image-id order."""

FACTS_FORMAT = "bcls-demo-facts"
FACTS_VERSION = 1

# --------------------------------------------------------------------------------------------------------------
# The world: contexts, attributes, objects, relations
# --------------------------------------------------------------------------------------------------------------

# name, frequency weight, prepositional phrases, noun phrases (for "A sandy beach with ...")
_CONTEXTS: tuple[tuple[str, float, tuple[str, ...], tuple[str, ...]], ...] = (
    ("beach", 0.12, ("on the beach", "on a sandy beach", "at the beach", "on the seashore", "by the shore"),
     ("beach", "sandy beach", "seashore")),
    ("street", 0.18, ("on the street", "on a city street", "on a busy street", "along the road", "downtown"),
     ("city street", "street", "busy road")),
    ("kitchen", 0.12, ("in the kitchen", "in a kitchen", "in a home kitchen"), ("kitchen", "home kitchen")),
    ("park", 0.16, ("in the park", "in a park", "in a grassy park", "at the park"), ("park", "grassy park")),
    ("living_room", 0.10, ("in the living room", "in a living room", "in a cozy lounge"),
     ("living room", "cozy lounge")),
    ("office", 0.08, ("in an office", "in the office", "at the workplace"), ("office", "office space")),
    ("forest", 0.06, ("in the forest", "in the woods", "in a wooded area"), ("forest", "wooded area")),
    ("snowy_field", 0.05, ("in a snowy field", "in the snow", "on a snow-covered field", "in a field of snow"),
     ("snowy field", "snow-covered field")),
    ("farm", 0.07, ("on a farm", "on the farm", "in a farmyard"), ("farm", "farmyard")),
    ("bedroom", 0.06, ("in a bedroom", "in the bedroom"), ("bedroom",)),
)

# name, surface forms (a person's "old" is sometimes "elderly"; see _attr_surface)
_ATTRIBUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("red", ("red",)), ("blue", ("blue",)), ("white", ("white",)), ("black", ("black",)),
    ("brown", ("brown",)), ("green", ("green",)), ("yellow", ("yellow",)), ("small", ("small", "little")),
    ("large", ("large", "big")), ("young", ("young",)), ("old", ("old",)), ("wooden", ("wooden",)),
    ("smiling", ("smiling",)),
)

# name, category, frequency weight, synonyms, plausible attributes, context affinities, capability flags
_OBJECTS: tuple[tuple[str, str, float, tuple[str, ...], tuple[str, ...], dict[str, float], frozenset[str]], ...] = (
    ("man", "person", 1.0, ("man", "guy", "gentleman"), ("young", "old", "smiling"),
     {"street": 3, "park": 2, "beach": 2, "office": 2.5, "kitchen": 1, "living_room": 1, "farm": 1.5,
      "forest": 1, "snowy_field": 1, "bedroom": 0.5}, frozenset({"sits", "eats"})),
    ("woman", "person", 1.0, ("woman", "lady"), ("young", "old", "smiling"),
     {"street": 3, "park": 2, "beach": 2, "office": 2.5, "kitchen": 1.5, "living_room": 1.5, "farm": 1,
      "forest": 1, "snowy_field": 1, "bedroom": 0.5}, frozenset({"sits", "eats"})),
    ("child", "person", 0.7, ("child", "kid", "youngster"), ("small", "young", "smiling"),
     {"park": 3, "beach": 2, "snowy_field": 3, "living_room": 2, "bedroom": 1.5, "kitchen": 1, "street": 1,
      "farm": 1}, frozenset({"sits", "eats"})),
    ("dog", "animal", 0.9, ("dog", "puppy", "pooch"), ("brown", "black", "white", "small", "large", "young", "old"),
     {"park": 3, "beach": 2, "street": 2, "living_room": 2, "snowy_field": 2, "forest": 1.5, "farm": 1.5,
      "bedroom": 1}, frozenset({"sits", "plays", "walked", "pet", "under_ok"})),
    ("cat", "animal", 0.6, ("cat", "kitten", "kitty"), ("black", "white", "brown", "small", "young", "old"),
     {"living_room": 3, "bedroom": 3, "kitchen": 2, "office": 0.5, "street": 0.5, "farm": 1},
     frozenset({"sits", "plays", "pet", "under_ok"})),
    ("horse", "animal", 0.4, ("horse", "pony"), ("brown", "black", "white", "large", "young", "old"),
     {"farm": 4, "forest": 1.5, "park": 1, "beach": 1, "snowy_field": 0.5},
     frozenset({"ride", "walked", "under_ok"})),
    ("bird", "animal", 0.4, ("bird", "songbird"), ("small", "black", "white", "blue", "yellow", "red"),
     {"park": 2, "forest": 3, "beach": 1.5, "street": 1, "farm": 1}, frozenset({"sits"})),
    ("cow", "animal", 0.35, ("cow", "dairy cow"), ("brown", "black", "white", "large", "young"),
     {"farm": 5, "forest": 0.3}, frozenset({"under_ok"})),
    ("bicycle", "vehicle", 0.6, ("bicycle", "bike"), ("red", "blue", "black", "green", "yellow", "old"),
     {"street": 4, "park": 3, "beach": 1, "forest": 0.5}, frozenset({"ride", "under_ok"})),
    ("car", "vehicle", 0.7, ("car", "automobile"), ("red", "blue", "white", "black", "green", "yellow", "small",
                                                     "old"),
     {"street": 6, "farm": 0.5, "snowy_field": 0.3}, frozenset({"under_ok"})),
    ("motorcycle", "vehicle", 0.35, ("motorcycle", "motorbike"), ("red", "black", "blue", "old", "large"),
     {"street": 5}, frozenset({"ride"})),
    ("bus", "vehicle", 0.3, ("bus", "city bus"), ("red", "blue", "white", "yellow", "large", "old"),
     {"street": 5}, frozenset()),
    ("boat", "vehicle", 0.3, ("boat", "rowboat"), ("white", "red", "small", "large", "wooden", "old"),
     {"beach": 5, "forest": 0.3}, frozenset({"ride"})),
    ("skateboard", "thing", 0.3, ("skateboard",), ("red", "black", "blue", "wooden"),
     {"street": 3, "park": 3}, frozenset({"ride", "hold"})),
    ("ball", "thing", 0.5, ("ball",), ("red", "blue", "white", "yellow", "green", "small", "large"),
     {"park": 4, "beach": 3, "living_room": 1, "snowy_field": 0.5}, frozenset({"hold", "toy", "on"})),
    ("umbrella", "thing", 0.5, ("umbrella", "parasol"), ("red", "blue", "black", "yellow", "green", "large"),
     {"beach": 4, "street": 3, "park": 1}, frozenset({"hold", "cover"})),
    ("surfboard", "thing", 0.45, ("surfboard", "surf board"), ("white", "yellow", "red", "blue", "large"),
     {"beach": 7}, frozenset({"hold", "ride"})),
    ("kite", "thing", 0.35, ("kite",), ("red", "blue", "yellow", "green", "large"),
     {"beach": 3, "park": 3, "snowy_field": 0.5}, frozenset({"hold", "toy"})),
    ("laptop", "thing", 0.5, ("laptop", "laptop computer"), ("black", "white", "small", "old"),
     {"office": 6, "living_room": 2, "kitchen": 1, "bedroom": 2}, frozenset({"hold", "on"})),
    ("frisbee", "thing", 0.3, ("frisbee", "flying disc"), ("red", "blue", "white", "yellow", "green"),
     {"park": 4, "beach": 3}, frozenset({"hold", "toy"})),
    ("book", "thing", 0.4, ("book", "novel"), ("red", "blue", "green", "old", "large", "small"),
     {"living_room": 3, "bedroom": 3, "office": 2, "park": 1}, frozenset({"hold", "on"})),
    ("backpack", "thing", 0.3, ("backpack", "rucksack"), ("red", "blue", "black", "green", "large"),
     {"street": 2, "forest": 2, "park": 1, "office": 1}, frozenset({"hold", "on"})),
    ("cup", "thing", 0.45, ("cup", "mug", "coffee cup"), ("white", "red", "blue", "small", "large"),
     {"kitchen": 4, "office": 3, "living_room": 2}, frozenset({"hold", "on"})),
    ("pizza", "food", 0.4, ("pizza",), ("large", "small"),
     {"kitchen": 4, "living_room": 1.5, "office": 0.5}, frozenset({"food", "hold", "on", "dog_food"})),
    ("sandwich", "food", 0.35, ("sandwich",), ("large", "small"),
     {"kitchen": 3, "office": 1, "park": 1, "beach": 0.5}, frozenset({"food", "hold", "on", "dog_food"})),
    ("cake", "food", 0.3, ("cake",), ("white", "brown", "small", "large"),
     {"kitchen": 4, "living_room": 1}, frozenset({"food", "on"})),
    ("apple", "food", 0.3, ("apple",), ("red", "green", "yellow", "small"),
     {"kitchen": 3, "farm": 1.5, "office": 1}, frozenset({"food", "hold", "on", "horse_food"})),
    ("table", "furniture", 0.8, ("table",), ("wooden", "white", "black", "small", "large", "old"),
     {"kitchen": 5, "living_room": 3, "office": 3, "park": 0.5, "bedroom": 0.5},
     frozenset({"surface", "cover"})),
    ("chair", "furniture", 0.6, ("chair",), ("wooden", "red", "white", "black", "old"),
     {"kitchen": 3, "office": 4, "living_room": 2, "bedroom": 1}, frozenset({"seat", "cover"})),
    ("bench", "furniture", 0.45, ("bench", "park bench"), ("wooden", "green", "white", "old"),
     {"park": 5, "street": 1.5, "beach": 0.5}, frozenset({"seat", "surface", "cover"})),
    ("couch", "furniture", 0.45, ("couch", "sofa"), ("red", "blue", "brown", "green", "black", "large", "old"),
     {"living_room": 6}, frozenset({"seat", "surface"})),
    ("bed", "furniture", 0.35, ("bed",), ("white", "large", "small", "wooden"),
     {"bedroom": 7}, frozenset({"seat", "surface"})),
    ("tree", "plant", 0.6, ("tree",), ("large", "small", "old", "green"),
     {"park": 3, "forest": 6, "farm": 1, "street": 1, "snowy_field": 1.5, "beach": 0.5}, frozenset({"cover"})),
    ("sled", "thing", 0.25, ("sled", "sledge", "toboggan"), ("red", "wooden", "blue", "small"),
     {"snowy_field": 6}, frozenset({"ride"})),
    ("snowman", "thing", 0.25, ("snowman",), ("small", "large"), {"snowy_field": 6}, frozenset()),
    ("snowboard", "thing", 0.2, ("snowboard",), ("red", "blue", "black", "yellow"),
     {"snowy_field": 5}, frozenset({"ride", "hold"})),
)

_RELATIONS: tuple[str, ...] = ("on", "next_to", "holding", "behind", "in_front_of", "under", "riding",
                               "sitting_on", "eating", "playing_with", "walking")
# weight of a plausible candidate when the relations of a scene are drawn (in_front_of is drawn as behind's inverse)
_RELATION_WEIGHT: dict[str, float] = {"on": 3.0, "next_to": 1.0, "holding": 3.0, "behind": 0.7, "in_front_of": 0.0,
                                      "under": 1.5, "riding": 4.0, "sitting_on": 3.0, "eating": 3.0,
                                      "playing_with": 3.0, "walking": 3.0}
# relations that fix where the subject is: a subject takes at most one of them
_PLACING = frozenset({"on", "under", "riding", "sitting_on"})
_YOUNG_NOUNS = frozenset({"puppy", "kitten", "pony", "kitty"})

_CONTEXT_NAMES = tuple(c[0] for c in _CONTEXTS)
_ATTR_NAMES = tuple(a[0] for a in _ATTRIBUTES)
_OBJ_NAMES = tuple(o[0] for o in _OBJECTS)
_CTX_INDEX = {n: i for i, n in enumerate(_CONTEXT_NAMES)}
_ATTR_INDEX = {n: i for i, n in enumerate(_ATTR_NAMES)}
_OBJ_INDEX = {n: i for i, n in enumerate(_OBJ_NAMES)}
_REL_INDEX = {n: i for i, n in enumerate(_RELATIONS)}


def _plausible(rel: str, s: int, o: int) -> bool:
    """Whether ``subject rel object`` is a plausible relation between object kinds ``s`` and ``o``."""
    if s == o:
        return False
    s_name, s_cat, _, _, _, _, s_flags = _OBJECTS[s]
    o_name, o_cat, _, _, _, _, o_flags = _OBJECTS[o]
    if rel in ("next_to", "behind", "in_front_of"):
        return True
    if rel == "holding":
        return s_cat == "person" and "hold" in o_flags
    if rel == "riding":
        return s_cat == "person" and "ride" in o_flags
    if rel == "walking":
        return s_cat == "person" and "walked" in o_flags
    if rel == "eating":
        return "food" in o_flags and (s_cat == "person" or (s_name == "dog" and "dog_food" in o_flags)
                                      or (s_name == "horse" and "horse_food" in o_flags))
    if rel == "playing_with":
        return (s_cat == "person" and ("toy" in o_flags or "pet" in o_flags)) or \
            ("plays" in s_flags and "toy" in o_flags)
    if rel == "sitting_on":
        return "sits" in s_flags and "seat" in o_flags
    if rel == "on":
        return "on" in s_flags and "surface" in o_flags
    if rel == "under":
        if "cover" not in o_flags:
            return False
        if s_cat == "person":
            return o_name in ("umbrella", "tree")
        if s_cat in ("animal", "vehicle"):
            return "under_ok" in s_flags and (s_cat == "animal" or o_name == "tree")
        return False
    raise AssertionError(rel)


def _implied(s: int, r: int, o: int) -> list[tuple[int, int, int]]:
    """The relation triples true when ``(s, r, o)`` holds (itself, plus symmetric / inverse forms)."""
    out = [(s, r, o)]
    name = _RELATIONS[r]
    if name == "next_to":
        out.append((o, r, s))
    elif name == "behind":
        out.append((o, _REL_INDEX["in_front_of"], s))
    elif name == "in_front_of":
        out.append((o, _REL_INDEX["behind"], s))
    return out


class _FactVocab:
    """Canonical fact ids: contexts, objects, plausible (object, attribute), plausible relation triples."""

    def __init__(self) -> None:
        names: list[str] = []
        self.context: list[int] = []
        for c in _CONTEXT_NAMES:
            self.context.append(len(names))
            names.append(f"context:{c}")
        self.object: list[int] = []
        for o in _OBJ_NAMES:
            self.object.append(len(names))
            names.append(f"object:{o}")
        self.attribute: dict[tuple[int, int], int] = {}
        for o, spec in enumerate(_OBJECTS):
            for a in spec[4]:
                self.attribute[(o, _ATTR_INDEX[a])] = len(names)
                names.append(f"attribute:{spec[0]}:{a}")
        self.relation: dict[tuple[int, int, int], int] = {}
        for s in range(len(_OBJECTS)):
            for r, rel in enumerate(_RELATIONS):
                for o in range(len(_OBJECTS)):
                    if _plausible(rel, s, o):
                        self.relation[(s, r, o)] = len(names)
                        names.append(f"relation:{_OBJ_NAMES[s]}:{rel}:{_OBJ_NAMES[o]}")
        self.names: tuple[str, ...] = tuple(names)


_VOCAB = _FactVocab()

# --------------------------------------------------------------------------------------------------------------
# Config and public data types
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the synthetic scenes dataset (saved in ``demo.json``).

    Attributes:
        seed: seeds every random draw (prototypes, scenes, captions, features).
        n_train, n_dev, n_test: images per split.
        captions_per_image: captions written per image.
        n_regions: regions per image ``R`` (objects + context + relation regions, padded with distractors).
        feature_dim: region feature dimension ``D``.
        feature_noise: expected norm of the gaussian noise added to each region (prototypes have norm 1).
        attribute_weight: weight of the attribute prototype in an object region.
        relation_weight: weight of the subject and object prototypes in a relation region.
        distractor_weight: weight of the random object prototype in a non-pure-noise distractor region.
        distractor_noise_only: probability that a distractor region is pure noise.
        relation_regions: whether sampled relations get a region of their own.
        min_objects, max_objects: object kinds per scene.
        max_relations: sampled relations per scene (implied inverse / symmetric forms come on top).
    """

    seed: int = 0
    n_train: int = 3000
    n_dev: int = 500
    n_test: int = 1000
    captions_per_image: int = 5
    n_regions: int = 12
    feature_dim: int = 128
    feature_noise: float = 3.0
    attribute_weight: float = 0.5
    relation_weight: float = 0.5
    distractor_weight: float = 0.3
    distractor_noise_only: float = 0.5
    relation_regions: bool = True
    min_objects: int = 2
    max_objects: int = 5
    max_relations: int = 3

    def __post_init__(self) -> None:
        for name in ("n_train", "n_dev", "n_test", "captions_per_image", "feature_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"DemoConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.min_objects <= self.max_objects <= len(_OBJECTS):
            raise ConfigError(f"DemoConfig needs 1 <= min_objects <= max_objects <= {len(_OBJECTS)}, "
                              f"got {self.min_objects}, {self.max_objects}")
        if self.max_relations < 0:
            raise ConfigError(f"DemoConfig.max_relations must be >= 0, got {self.max_relations}")
        needed = 2 + self.max_objects + (self.max_relations if self.relation_regions else 0)
        if self.n_regions < needed:
            raise ConfigError(f"DemoConfig.n_regions={self.n_regions} is too small: up to {needed} regions "
                              "(2 context + max_objects + max_relations) must fit")
        for name in ("feature_noise", "attribute_weight", "relation_weight", "distractor_weight"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"DemoConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.distractor_noise_only <= 1.0:
            raise ConfigError(f"DemoConfig.distractor_noise_only must be in [0, 1], got {self.distractor_noise_only}")

    def split_sizes(self) -> dict[str, int]:
        """Images per split, in :data:`DEMO_SPLITS` order."""
        return {"train": self.n_train, "dev": self.n_dev, "test": self.n_test}


@dataclass(frozen=True)
class DemoPrototypes:
    """The fixed unit-norm prototypes region features are made of (rows follow the name tuples)."""

    contexts: np.ndarray  # (n_contexts, D) float32
    objects: np.ndarray  # (n_objects, D) float32
    attributes: np.ndarray  # (n_attributes, D) float32
    relations: np.ndarray  # (n_relations, D) float32
    context_names: tuple[str, ...] = _CONTEXT_NAMES
    object_names: tuple[str, ...] = _OBJ_NAMES
    attribute_names: tuple[str, ...] = _ATTR_NAMES
    relation_names: tuple[str, ...] = _RELATIONS


@dataclass(frozen=True, eq=False)
class DemoFacts:
    """Ground truth of one split: the facts true of each image and asserted by each caption.

    Fact ids index ``fact_names`` (``context:c``, ``object:o``, ``attribute:o:a``, ``relation:s:r:o``), shared by
    all splits of a demo. Facts are stored CSR-style: image ``i``'s facts are
    ``image_fact_ids[image_fact_ptr[i]:image_fact_ptr[i + 1]]`` (sorted, unique); likewise for captions.
    Caption ``c`` belongs to image ``c // captions_per_image``.
    """

    split: str
    image_ids: np.ndarray  # (n_images,) int64
    captions_per_image: int
    image_fact_ptr: np.ndarray  # (n_images + 1,) int64
    image_fact_ids: np.ndarray  # (nnz_images,) int64
    caption_fact_ptr: np.ndarray  # (n_captions + 1,) int64
    caption_fact_ids: np.ndarray  # (nnz_captions,) int64
    fact_names: tuple[str, ...]

    @property
    def n_images(self) -> int:
        """Number of images."""
        return int(self.image_ids.shape[0])

    @property
    def n_captions(self) -> int:
        """Number of captions (``n_images * captions_per_image``)."""
        return int(self.caption_fact_ptr.shape[0] - 1)

    @property
    def caption_image(self) -> np.ndarray:
        """``(n_captions,)`` int64: the image row each caption belongs to."""
        return np.arange(self.n_captions, dtype=np.int64) // self.captions_per_image

    def image_facts(self, i: int) -> np.ndarray:
        """Sorted fact ids true of image row ``i``."""
        return self.image_fact_ids[self.image_fact_ptr[i]:self.image_fact_ptr[i + 1]]

    def caption_facts(self, c: int) -> np.ndarray:
        """Sorted fact ids asserted by caption row ``c``."""
        return self.caption_fact_ids[self.caption_fact_ptr[c]:self.caption_fact_ptr[c + 1]]


def demo_prototypes(config: DemoConfig = DemoConfig()) -> DemoPrototypes:
    """The prototypes of ``config.seed`` / ``config.feature_dim`` (independent of everything else)."""
    rng = np.random.default_rng([config.seed, 0])
    n = (len(_CONTEXTS), len(_OBJECTS), len(_ATTRIBUTES), len(_RELATIONS))
    table = rng.standard_normal((sum(n), config.feature_dim)).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    parts = np.split(table, np.cumsum(n)[:-1])
    return DemoPrototypes(contexts=parts[0], objects=parts[1], attributes=parts[2], relations=parts[3])


# --------------------------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scene:
    context: int
    objects: tuple[int, ...]  # distinct object kinds, in draw order
    attributes: tuple[int, ...]  # one attribute per object
    relations: tuple[tuple[int, int, int], ...]  # sampled (subject, relation, object) object kinds
    all_relations: tuple[tuple[int, int, int], ...]  # sampled + implied, sorted

    def facts(self) -> list[int]:
        """Sorted fact ids true of the scene."""
        ids = [_VOCAB.context[self.context]]
        ids += [_VOCAB.object[o] for o in self.objects]
        ids += [_VOCAB.attribute[(o, a)] for o, a in zip(self.objects, self.attributes)]
        ids += [_VOCAB.relation[t] for t in self.all_relations]
        return sorted(set(ids))


_OFF_CONTEXT = 0.02  # affinity of an object for a context it is not listed under
_CTX_P = np.array([c[1] for c in _CONTEXTS], dtype=np.float64)
_CTX_P /= _CTX_P.sum()
_OBJ_WEIGHT_BY_CTX = np.array([[o[2] * o[5].get(c, _OFF_CONTEXT) for o in _OBJECTS] for c in _CONTEXT_NAMES])
_ATTR_CHOICES = [np.array([_ATTR_INDEX[a] for a in o[4]]) for o in _OBJECTS]
_ATTR_P = [1.0 / (1.0 + 0.4 * np.arange(len(o[4]))) for o in _OBJECTS]
_ATTR_P = [p / p.sum() for p in _ATTR_P]
_N_REL_P = np.array([0.15, 0.45, 0.3, 0.1])


def _sample_scene(rng: np.random.Generator, config: DemoConfig) -> _Scene:
    context = int(rng.choice(len(_CONTEXTS), p=_CTX_P))
    ks = np.arange(config.min_objects, config.max_objects + 1)
    k_p = 1.0 / (1.0 + 0.6 * (ks - config.min_objects)) ** 1.5
    k = int(rng.choice(ks, p=k_p / k_p.sum()))
    w = _OBJ_WEIGHT_BY_CTX[context]
    objects = tuple(int(o) for o in rng.choice(len(_OBJECTS), size=k, replace=False, p=w / w.sum()))
    attributes = tuple(int(rng.choice(_ATTR_CHOICES[o], p=_ATTR_P[o])) for o in objects)

    candidates: list[tuple[int, int, int]] = []
    weights: list[float] = []
    for s in objects:
        for r, rel in enumerate(_RELATIONS):
            if _RELATION_WEIGHT[rel] <= 0:
                continue
            for o in objects:
                if _plausible(rel, s, o):
                    candidates.append((s, r, o))
                    weights.append(_RELATION_WEIGHT[rel])
    n_rel_p = _N_REL_P[: config.max_relations + 1]
    n_rel = int(rng.choice(len(n_rel_p), p=n_rel_p / n_rel_p.sum())) if config.max_relations else 0
    chosen: list[tuple[int, int, int]] = []
    pairs: set[tuple[int, int]] = set()
    placed: set[int] = set()
    w_arr = np.array(weights, dtype=np.float64)
    while len(chosen) < n_rel and w_arr.size and w_arr.sum() > 0:
        j = int(rng.choice(len(candidates), p=w_arr / w_arr.sum()))
        s, r, o = candidates[j]
        w_arr[j] = 0.0
        pair = (min(s, o), max(s, o))
        rel = _RELATIONS[r]
        # at most one relation per pair of objects; a subject is on / under / riding / sitting on one thing
        if pair in pairs or (rel in _PLACING and s in placed):
            continue
        pairs.add(pair)
        if rel in _PLACING:
            placed.add(s)
        chosen.append((s, r, o))
    all_rel = sorted({t for triple in chosen for t in _implied(*triple)})
    return _Scene(context, objects, attributes, tuple(chosen), tuple(all_rel))


# --------------------------------------------------------------------------------------------------------------
# Captions
# --------------------------------------------------------------------------------------------------------------

_POSTURE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # category -> (participles, finite forms)
    "person": (("standing", "sitting", ""), ("stands", "sits", "is")),
    "animal": (("sitting", "standing", "lying", ""), ("sits", "stands", "lies", "is")),
    "vehicle": (("parked", ""), ("is parked", "is")),
}
_PREPOSITIONS: dict[str, tuple[str, ...]] = {
    "next_to": ("next to", "beside", "by"),
    "behind": ("behind",),
    "in_front_of": ("in front of",),
    "under": ("under", "underneath", "beneath"),
}
_VERBS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "holding": (("holding", "carrying"), ("holds", "carries", "is holding")),
    "riding": (("riding",), ("rides", "is riding")),
    "eating": (("eating", "munching on"), ("eats", "is eating")),
    "playing_with": (("playing with",), ("plays with", "is playing with")),
    "walking": (("walking",), ("walks", "is walking")),
}


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _attr_surface(rng: np.random.Generator, obj: int, attr: int) -> str:
    name = _ATTR_NAMES[attr]
    if name == "old" and _OBJECTS[obj][1] == "person":
        return _pick(rng, ("old", "elderly"))
    return _pick(rng, _ATTRIBUTES[attr][1])


def _noun_phrase(rng: np.random.Generator, obj: int, attr: int | None) -> str:
    nouns = _OBJECTS[obj][3]
    if attr is not None and _ATTR_NAMES[attr] in ("old", "large"):
        nouns = tuple(n for n in nouns if n not in _YOUNG_NOUNS) or nouns
    noun = _pick(rng, nouns)
    return _article(f"{_attr_surface(rng, obj, attr)} {noun}" if attr is not None else noun)


def _join(phrases: Sequence[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _relation_phrase(rng: np.random.Generator, subj: int, rel: str, finite: bool) -> str:
    cat = _OBJECTS[subj][1]
    if rel in _VERBS:
        return _pick(rng, _VERBS[rel][1 if finite else 0])
    if rel == "sitting_on":
        if _OBJ_NAMES[subj] == "bird":
            return _pick(rng, ("sits on", "is perched on") if finite else ("perched on", "sitting on"))
        if cat == "animal":
            return _pick(rng, ("sits on", "lies on", "is lying on") if finite else ("sitting on", "lying on"))
        return _pick(rng, ("sits on", "is sitting on") if finite else ("sitting on", "seated on"))
    if rel == "on":
        return _pick(rng, ("is on", "sits on", "rests on") if finite else ("on", "sitting on", "resting on"))
    part, fin = _POSTURE.get(cat, (("",), ("is",)))
    posture = _pick(rng, fin if finite else part)
    prep = _pick(rng, _PREPOSITIONS[rel])
    return f"{posture} {prep}".strip()


def _finish(text: str) -> str:
    text = " ".join(text.split())
    return text[:1].upper() + text[1:] + "."


def _caption_once(rng: np.random.Generator, scene: _Scene) -> tuple[str, list[int]]:
    """One caption of ``scene`` and the fact ids it asserts."""
    facts: list[int] = []
    attr_of = dict(zip(scene.objects, scene.attributes))

    def np_of(obj: int) -> str:
        facts.append(_VOCAB.object[obj])
        if rng.random() < 0.5:
            facts.append(_VOCAB.attribute[(obj, attr_of[obj])])
            return _noun_phrase(rng, obj, attr_of[obj])
        return _noun_phrase(rng, obj, None)

    with_ctx = rng.random() < 0.65
    ctx_prep = _pick(rng, _CONTEXTS[scene.context][2])
    ctx_noun = _pick(rng, _CONTEXTS[scene.context][3])
    if with_ctx:
        facts.append(_VOCAB.context[scene.context])
    tail = f" {ctx_prep}" if with_ctx else ""

    if scene.all_relations and rng.random() < 0.6:
        s, r, o = scene.all_relations[int(rng.integers(len(scene.all_relations)))]
        facts.append(_VOCAB.relation[(s, r, o)])
        rel = _RELATIONS[r]
        second = [t for t in scene.all_relations if t[0] == s and t[2] not in (s, o)]
        chain = second[int(rng.integers(len(second)))] if second and rng.random() < 0.35 else None
        used = {s, o} | ({chain[2]} if chain else set())
        others = [x for x in scene.objects if x not in used]
        extra = others[int(rng.integers(len(others)))] if others and chain is None and rng.random() < 0.25 else None
        subj, obj = np_of(s), np_of(o)
        template = int(rng.integers(6)) if chain is None else int(rng.integers(2))
        finite = template in (1, 2)
        verb = _relation_phrase(rng, s, rel, finite)
        core = f"{subj} {verb} {obj}"
        if chain is not None:
            facts.append(_VOCAB.relation[chain])
            core += f" and {_relation_phrase(rng, s, _RELATIONS[chain[1]], finite)} {np_of(chain[2])}"
        if extra is not None:
            x = np_of(extra)
            more = _pick(rng, (f", with {x} nearby", f", with {x} in the background"))
        else:
            more = ""
        if template == 2 and with_ctx:
            return _finish(f"{ctx_prep}, {core}{more}"), facts
        if template == 3:
            return _finish(f"there is {core}{tail}{more}"), facts
        if template == 4:
            return _finish(f"{_pick(rng, ('a picture of', 'a photo of', 'a close up of'))} {core}{tail}{more}"), facts
        if template == 5 and with_ctx:
            return _finish(f"{_article(ctx_noun)} with {core}{more}"), facts
        return _finish(f"{core}{tail}{more}"), facts

    m_max = min(3, len(scene.objects))
    m_p = np.array([0.45, 0.4, 0.15][:m_max])
    m = 1 + int(rng.choice(m_max, p=m_p / m_p.sum()))
    chosen = [scene.objects[int(j)] for j in rng.permutation(len(scene.objects))[:m]]
    nps = _join([np_of(x) for x in chosen])
    template = int(rng.integers(7))
    verb_be = "is" if m == 1 else "are"
    if template == 1:
        return _finish(f"there is {nps}{tail}"), facts
    if template == 2 and with_ctx:
        return _finish(f"{ctx_prep} there is {nps}"), facts
    if template == 3 and with_ctx:
        return _finish(f"{_article(ctx_noun)} with {nps}"), facts
    if template == 4:
        return _finish(f"{nps} can be seen{tail}"), facts
    if template == 5 and with_ctx:
        return _finish(f"{ctx_prep}, {nps} {verb_be} visible"), facts
    if template == 6:
        return _finish(f"{_pick(rng, ('a picture of', 'a photo of', 'a view of'))} {nps}{tail}"), facts
    if m == 1 and _OBJECTS[chosen[0]][1] in ("person", "animal"):
        posture = _pick(rng, _POSTURE[_OBJECTS[chosen[0]][1]][0][:-1])
        return _finish(f"{nps} {posture}{tail}"), facts
    return _finish(f"{nps}{tail}"), facts


def _captions(rng: np.random.Generator, scene: _Scene, n: int) -> list[tuple[str, list[int]]]:
    """``n`` distinct captions of 6–20 words, each with its sorted unique fact ids."""
    out: list[tuple[str, list[int]]] = []
    seen: set[str] = set()
    for _ in range(n):
        text, facts = "", []
        for attempt in range(30):
            text, facts = _caption_once(rng, scene)
            if 6 <= len(text.split()) <= 20 and (text not in seen or attempt >= 20):
                break
        else:  # always 6-20 words: "There is a dog in this picture."
            facts = [_VOCAB.object[scene.objects[0]]]
            text = _finish(f"there is {_noun_phrase(rng, scene.objects[0], None)} in this picture")
        seen.add(text)
        out.append((text, sorted(set(facts))))
    return out


# --------------------------------------------------------------------------------------------------------------
# Region features
# --------------------------------------------------------------------------------------------------------------


def _features(rng: np.random.Generator, scenes: Sequence[_Scene], config: DemoConfig,
              protos: DemoPrototypes) -> tuple[np.ndarray, float]:
    """``(N, R, D)`` float32 region features of ``scenes`` and the nearest-object-prototype accuracy of their
    object regions (a learnability probe)."""
    n_c, n_o, n_a = len(_CONTEXTS), len(_OBJECTS), len(_ATTRIBUTES)
    table = np.concatenate([protos.contexts, protos.objects, protos.attributes, protos.relations,
                            np.zeros((1, config.feature_dim), np.float32)])
    zero = table.shape[0] - 1
    n, r_max = len(scenes), config.n_regions
    idx = np.full((n, r_max, 3), zero, dtype=np.int64)
    wts = np.zeros((n, r_max, 3), dtype=np.float32)
    obj_of_region = np.full((n, r_max), -1, dtype=np.int64)
    for i, sc in enumerate(scenes):
        rows: list[tuple[tuple[int, ...], tuple[float, ...], int]] = []
        for _ in range(1 + int(rng.random() < 0.5)):
            rows.append(((sc.context,), (1.0,), -1))
        for o, a in zip(sc.objects, sc.attributes):
            rows.append(((n_c + o, n_c + n_o + a), (1.0, config.attribute_weight), o))
        if config.relation_regions:
            for s, rel, o in sc.relations:
                rows.append(((n_c + n_o + n_a + rel, n_c + s, n_c + o),
                             (1.0, config.relation_weight, config.relation_weight), -1))
        absent = [o for o in range(n_o) if o not in sc.objects]
        while len(rows) < r_max:
            if rng.random() < config.distractor_noise_only:
                rows.append(((), (), -1))
            else:
                rows.append(((n_c + absent[int(rng.integers(len(absent)))],), (config.distractor_weight,), -1))
        for slot, j in enumerate(rng.permutation(r_max)):
            terms, weights, obj = rows[int(j)]
            idx[i, slot, : len(terms)] = terms
            wts[i, slot, : len(weights)] = weights
            obj_of_region[i, slot] = obj
    feats = np.zeros((n, r_max, config.feature_dim), dtype=np.float32)
    for t in range(3):
        feats += wts[:, :, t, None] * table[idx[:, :, t]]
    noise = rng.standard_normal((n, r_max, config.feature_dim), dtype=np.float32)
    feats += noise * np.float32(config.feature_noise / np.sqrt(config.feature_dim))
    mask = obj_of_region >= 0
    nearest = np.argmax(feats[mask] @ protos.objects.T, axis=1)
    probe = float(np.mean(nearest == obj_of_region[mask])) if mask.any() else float("nan")
    return feats, probe


# --------------------------------------------------------------------------------------------------------------
# Relevance
# --------------------------------------------------------------------------------------------------------------


def _rows(rows: Sequence[int] | np.ndarray | None, n: int, what: str) -> np.ndarray:
    if rows is None:
        return np.arange(n, dtype=np.int64)
    out = np.asarray(rows, dtype=np.int64).reshape(-1)
    if out.size and (out.min() < -n or out.max() >= n):
        raise IndexError(f"{what} rows out of range for {n} {what}s")
    return np.where(out < 0, out + n, out)


def _gather_csr(ptr: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(local row, fact id) pairs of ``rows`` of a CSR fact table."""
    starts, counts = ptr[rows], ptr[rows + 1] - ptr[rows]
    local = np.repeat(np.arange(rows.size, dtype=np.int64), counts)
    offsets = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
    return local, ids[offsets]


def demo_relevance(facts: DemoFacts, image_rows: Sequence[int] | np.ndarray | None = None,
                   caption_rows: Sequence[int] | np.ndarray | None = None,
                   max_block_elements: int = 1 << 24) -> np.ndarray:
    """Ground-truth relevance: the fraction of each caption's facts that are true of each image.

    Vectorised with an inverted index (image rows sorted by fact id, ``np.searchsorted`` per caption fact,
    ``np.bincount`` of hits), in caption blocks of at most ``max_block_elements`` output cells.

    Args:
        facts: the split's ground truth (:func:`read_demo_facts`).
        image_rows: image rows to score (default all), shape ``(I,)``.
        caption_rows: caption rows to score (default all), shape ``(C,)``.

    Returns:
        ``(I, C)`` float32 in [0, 1]; an image's own captions score 1.
    """
    img = _rows(image_rows, facts.n_images, "image")
    cap = _rows(caption_rows, facts.n_captions, "caption")
    out = np.zeros((img.size, cap.size), dtype=np.float32)
    if img.size == 0 or cap.size == 0:
        return out
    img_local, img_fact = _gather_csr(facts.image_fact_ptr, facts.image_fact_ids, img)
    order = np.argsort(img_fact, kind="stable")
    img_fact, img_local = img_fact[order], img_local[order]
    n_facts = (facts.caption_fact_ptr[cap + 1] - facts.caption_fact_ptr[cap]).astype(np.float32)
    block = max(1, max_block_elements // img.size)
    for start in range(0, cap.size, block):
        sub = cap[start:start + block]
        cap_local, cap_fact = _gather_csr(facts.caption_fact_ptr, facts.caption_fact_ids, sub)
        lo = np.searchsorted(img_fact, cap_fact, side="left")
        hits = np.searchsorted(img_fact, cap_fact, side="right") - lo
        total = int(hits.sum())
        pos = np.repeat(lo - np.cumsum(hits) + hits, hits) + np.arange(total)
        flat = img_local[pos] * sub.size + np.repeat(cap_local, hits)
        counts = np.bincount(flat, minlength=img.size * sub.size).reshape(img.size, sub.size)
        out[:, start:start + sub.size] = counts
    with np.errstate(divide="ignore", invalid="ignore"):
        out /= np.where(n_facts > 0, n_facts, np.float32(np.inf))[None, :]
    return out


# --------------------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------------------


def _facts_path(folder: str | os.PathLike, split: str) -> Path:
    return Path(folder) / f"{split}_facts.json"


def _vocabulary() -> dict[str, Any]:
    return {"contexts": list(_CONTEXT_NAMES), "objects": list(_OBJ_NAMES), "attributes": list(_ATTR_NAMES),
            "relations": list(_RELATIONS)}


def _csr(lists: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    ptr = np.zeros(len(lists) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(x) for x in lists])
    ids = np.fromiter((f for x in lists for f in x), dtype=np.int64, count=int(ptr[-1]))
    return ptr, ids


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def read_demo_facts(folder: str | os.PathLike, split: str) -> DemoFacts:
    """Read ``{split}_facts.json`` written by :func:`generate_demo`.

    Raises:
        DataFormatError: the file is missing, not a demo facts file, or inconsistent.
    """
    path = _facts_path(folder, split)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFormatError(f"{path}: demo facts file not found; generate the demo first") from None
    except (OSError, ValueError) as err:
        raise DataFormatError(f"{path}: unreadable demo facts file ({err})") from None
    if not isinstance(raw, dict) or raw.get("format") != FACTS_FORMAT:
        raise DataFormatError(f"{path}: not a {FACTS_FORMAT} file (field 'format')")
    if raw.get("version") != FACTS_VERSION:
        raise DataFormatError(f"{path}: facts version {raw.get('version')!r}, this bcls reads {FACTS_VERSION}; "
                              "regenerate the demo")
    try:
        names = tuple(str(x) for x in raw["fact_names"])
        cpi = int(raw["captions_per_image"])
        image_ids = np.asarray(raw["image_ids"], dtype=np.int64).reshape(-1)
        img_ptr, img_ids = _csr(raw["image_facts"])
        cap_ptr, cap_ids = _csr(raw["caption_facts"])
    except (KeyError, TypeError, ValueError) as err:
        raise DataFormatError(f"{path}: malformed demo facts file ({type(err).__name__}: {err})") from None
    n_img = len(raw["image_facts"])
    if image_ids.shape[0] != n_img or cpi < 1 or len(raw["caption_facts"]) != n_img * cpi:
        raise DataFormatError(f"{path}: {n_img} images, {image_ids.shape[0]} ids and {len(raw['caption_facts'])} "
                              f"captions do not match captions_per_image={cpi}")
    for what, ids in (("image_facts", img_ids), ("caption_facts", cap_ids)):
        if ids.size and (ids.min() < 0 or ids.max() >= len(names)):
            raise DataFormatError(f"{path}: field '{what}' has fact ids outside the {len(names)}-fact vocabulary")
    return DemoFacts(split=split, image_ids=image_ids, captions_per_image=cpi, image_fact_ptr=img_ptr,
                     image_fact_ids=img_ids, caption_fact_ptr=cap_ptr, caption_fact_ids=cap_ids, fact_names=names)


def _off_diagonal_stats(rel: np.ndarray, cpi: int) -> dict[str, float]:
    own = np.zeros(rel.shape, dtype=bool)
    own[np.arange(rel.shape[1]) // cpi, np.arange(rel.shape[1])] = True
    off = rel[~own]
    return {"zero": round(float(np.mean(off == 0)), 6),
            "partial": round(float(np.mean((off > 0) & (off < 1))), 6),
            "one": round(float(np.mean(off == 1)), 6),
            "mean": round(float(off.mean()), 6)}


def _image_probe(feats: np.ndarray, facts: DemoFacts, protos: DemoPrototypes) -> float:
    """Precision of "the k objects whose prototype best matches some region" (k = true object count)."""
    n_c = len(_CONTEXTS)
    scores = np.einsum("nrd,od->nor", feats, protos.objects).max(axis=2)
    hits, total = 0, 0
    for i in range(facts.n_images):
        f = facts.image_facts(i)
        objs = f[(f >= n_c) & (f < n_c + len(_OBJECTS))] - n_c
        top = np.argsort(-scores[i], kind="stable")[: objs.size]
        hits += int(np.isin(top, objs).sum())
        total += objs.size
    return round(hits / max(total, 1), 6)


def generate_demo(out_dir: str | os.PathLike, config: DemoConfig = DemoConfig()) -> dict[str, Any]:
    """Generate the synthetic scenes dataset into ``out_dir`` (see the module docstring for the files).

    Returns:
        The content of ``demo.json``: config, seed, bcls version, counts, statistics and file checksums.
    """
    from bcls import __version__

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    protos = demo_prototypes(config)
    vocab = _vocabulary()
    summary: dict[str, Any] = {
        "format": "bcls-demo", "bcls_version": __version__, "seed": config.seed,
        "config": dataclasses.asdict(config), "n_facts": len(_VOCAB.names), "vocabulary": vocab, "splits": {},
    }
    files: dict[str, str] = {}
    next_id = 0
    for k, (split, n) in enumerate(config.split_sizes().items()):
        rng = np.random.default_rng([config.seed, 1, k])
        scenes = [_sample_scene(rng, config) for _ in range(n)]
        captions: list[str] = []
        cap_facts: list[list[int]] = []
        for sc in scenes:
            for text, f in _captions(rng, sc, config.captions_per_image):
                captions.append(text)
                cap_facts.append(f)
        img_facts = [sc.facts() for sc in scenes]
        feats, region_probe = _features(rng, scenes, config, protos)
        image_ids = np.arange(next_id, next_id + n, dtype=np.int64)
        next_id += n
        paths = write_precomp_split(out, split, captions, feats, image_ids=image_ids)
        payload = {"format": FACTS_FORMAT, "version": FACTS_VERSION, "split": split,
                   "captions_per_image": config.captions_per_image, "image_ids": image_ids.tolist(),
                   "fact_names": list(_VOCAB.names), "vocabulary": vocab,
                   "image_facts": img_facts, "caption_facts": cap_facts}
        atomic_write_bytes(_facts_path(out, split),
                            json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8"))
        facts = read_demo_facts(out, split)
        n_cap_facts = np.diff(facts.caption_fact_ptr)
        stats: dict[str, Any] = {
            "n_images": n, "n_captions": len(captions), "first_image_id": int(image_ids[0]),
            "mean_objects_per_image": round(float(np.mean([len(s.objects) for s in scenes])), 6),
            "mean_relations_per_image": round(float(np.mean([len(s.relations) for s in scenes])), 6),
            "mean_facts_per_image": round(float(np.mean(np.diff(facts.image_fact_ptr))), 6),
            "mean_facts_per_caption": round(float(n_cap_facts.mean()), 6),
            "mean_words_per_caption": round(float(np.mean([len(c.split()) for c in captions])), 6),
            "distinct_captions": len(set(captions)),
            "context_counts": {c: int(sum(s.context == i for s in scenes)) for i, c in enumerate(_CONTEXT_NAMES)},
            "object_counts": {o: int(sum(i in s.objects for s in scenes)) for i, o in enumerate(_OBJ_NAMES)},
            "object_region_probe_accuracy": round(region_probe, 6),
            "object_image_probe_precision": _image_probe(feats, facts, protos),
        }
        if split != "train":
            rel = demo_relevance(facts)
            stats["off_diagonal_relevance"] = _off_diagonal_stats(rel, config.captions_per_image)
            rel_path = out / f"{split}_relevance.npy"
            atomic_write_bytes(rel_path, _npy_bytes(rel.astype(np.float16)))
            paths = {**paths, "relevance": rel_path}
        for p in (*paths.values(), _facts_path(out, split)):
            files[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
        summary["splits"][split] = stats
        logger.info("demo %s: %d images, %d captions, %.2f facts/caption", split, n, len(captions),
                    stats["mean_facts_per_caption"])
    summary["files"] = dict(sorted(files.items()))
    atomic_write_bytes(out / "demo.json", (json.dumps(summary, sort_keys=True, indent=2) + "\n").encode("utf-8"))
    logger.info("demo written to %s in %.2fs", out, time.perf_counter() - t0)
    return summary
