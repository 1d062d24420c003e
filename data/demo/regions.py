"""Region features built from fixed random unit prototypes of contexts, objects, attributes and relations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .demo_config import DemoConfig
from .scenes import Scene
from .world import ATTR_NAMES, ATTRIBUTES, CONTEXT_NAMES, CONTEXTS, OBJ_NAMES, OBJECTS, RELATIONS


@dataclass(frozen=True)
class DemoPrototypes:
    """The fixed unit-norm prototypes region features are made of (rows follow the name tuples)."""

    contexts: np.ndarray  # (n_contexts, D) float32
    objects: np.ndarray  # (n_objects, D) float32
    attributes: np.ndarray  # (n_attributes, D) float32
    relations: np.ndarray  # (n_relations, D) float32
    context_names: tuple[str, ...] = CONTEXT_NAMES
    object_names: tuple[str, ...] = OBJ_NAMES
    attribute_names: tuple[str, ...] = ATTR_NAMES
    relation_names: tuple[str, ...] = RELATIONS


def demo_prototypes(config: DemoConfig = DemoConfig()) -> DemoPrototypes:
    """The prototypes of ``config.seed`` / ``config.feature_dim`` (independent of everything else)."""
    rng = np.random.default_rng([config.seed, 0])
    n = (len(CONTEXTS), len(OBJECTS), len(ATTRIBUTES), len(RELATIONS))
    table = rng.standard_normal((sum(n), config.feature_dim)).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    parts = np.split(table, np.cumsum(n)[:-1])
    return DemoPrototypes(contexts=parts[0], objects=parts[1], attributes=parts[2], relations=parts[3])



def region_features(rng: np.random.Generator, scenes: Sequence[Scene], config: DemoConfig,
              protos: DemoPrototypes) -> tuple[np.ndarray, float]:
    """``(N, R, D)`` float32 region features of ``scenes`` and the nearest-object-prototype accuracy of their
    object regions (a learnability probe)."""
    n_c, n_o, n_a = len(CONTEXTS), len(OBJECTS), len(ATTRIBUTES)
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

