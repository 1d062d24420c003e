"""Scenes: a context, distinct objects with one attribute each and plausible relations, sampled per image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .demo_config import DemoConfig
from .world import (
    ATTR_INDEX,
    CONTEXT_NAMES,
    CONTEXTS,
    OBJECTS,
    PLACING,
    RELATION_WEIGHT,
    RELATIONS,
    VOCAB,
    implied,
    plausible,
)


@dataclass(frozen=True)
class Scene:
    context: int
    objects: tuple[int, ...]  # distinct object kinds, in draw order
    attributes: tuple[int, ...]  # one attribute per object
    relations: tuple[tuple[int, int, int], ...]  # sampled (subject, relation, object) object kinds
    all_relations: tuple[tuple[int, int, int], ...]  # sampled + implied, sorted

    def facts(self) -> list[int]:
        """Sorted fact ids true of the scene."""
        ids = [VOCAB.context[self.context]]
        ids += [VOCAB.object[o] for o in self.objects]
        ids += [VOCAB.attribute[(o, a)] for o, a in zip(self.objects, self.attributes)]
        ids += [VOCAB.relation[t] for t in self.all_relations]
        return sorted(set(ids))


_OFF_CONTEXT = 0.02  # affinity of an object for a context it is not listed under
_CTX_P = np.array([c[1] for c in CONTEXTS], dtype=np.float64)
_CTX_P /= _CTX_P.sum()
_OBJ_WEIGHT_BY_CTX = np.array([[o[2] * o[5].get(c, _OFF_CONTEXT) for o in OBJECTS] for c in CONTEXT_NAMES])
_ATTR_CHOICES = [np.array([ATTR_INDEX[a] for a in o[4]]) for o in OBJECTS]
_ATTR_P = [1.0 / (1.0 + 0.4 * np.arange(len(o[4]))) for o in OBJECTS]
_ATTR_P = [p / p.sum() for p in _ATTR_P]
_N_REL_P = np.array([0.15, 0.45, 0.3, 0.1])


def sample_scene(rng: np.random.Generator, config: DemoConfig) -> Scene:
    context = int(rng.choice(len(CONTEXTS), p=_CTX_P))
    ks = np.arange(config.min_objects, config.max_objects + 1)
    k_p = 1.0 / (1.0 + 0.6 * (ks - config.min_objects)) ** 1.5
    k = int(rng.choice(ks, p=k_p / k_p.sum()))
    w = _OBJ_WEIGHT_BY_CTX[context]
    objects = tuple(int(o) for o in rng.choice(len(OBJECTS), size=k, replace=False, p=w / w.sum()))
    attributes = tuple(int(rng.choice(_ATTR_CHOICES[o], p=_ATTR_P[o])) for o in objects)

    candidates: list[tuple[int, int, int]] = []
    weights: list[float] = []
    for s in objects:
        for r, rel in enumerate(RELATIONS):
            if RELATION_WEIGHT[rel] <= 0:
                continue
            for o in objects:
                if plausible(rel, s, o):
                    candidates.append((s, r, o))
                    weights.append(RELATION_WEIGHT[rel])
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
        rel = RELATIONS[r]
        # at most one relation per pair of objects; a subject is on / under / riding / sitting on one thing
        if pair in pairs or (rel in PLACING and s in placed):
            continue
        pairs.add(pair)
        if rel in PLACING:
            placed.add(s)
        chosen.append((s, r, o))
    all_rel = sorted({t for triple in chosen for t in implied(*triple)})
    return Scene(context, objects, attributes, tuple(chosen), tuple(all_rel))

