"""Captions in varied English (synonyms, several templates), each about a random subset of its scene, with the
fact ids it asserts."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .scenes import Scene
from .world import ATTR_NAMES, ATTRIBUTES, CONTEXTS, OBJ_NAMES, OBJECTS, RELATIONS, VOCAB, YOUNG_NOUNS

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
    name = ATTR_NAMES[attr]
    if name == "old" and OBJECTS[obj][1] == "person":
        return _pick(rng, ("old", "elderly"))
    return _pick(rng, ATTRIBUTES[attr][1])


def noun_phrase(rng: np.random.Generator, obj: int, attr: int | None) -> str:
    nouns = OBJECTS[obj][3]
    if attr is not None and ATTR_NAMES[attr] in ("old", "large"):
        nouns = tuple(n for n in nouns if n not in YOUNG_NOUNS) or nouns
    noun = _pick(rng, nouns)
    return _article(f"{_attr_surface(rng, obj, attr)} {noun}" if attr is not None else noun)


def _join(phrases: Sequence[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _relation_phrase(rng: np.random.Generator, subj: int, rel: str, finite: bool) -> str:
    cat = OBJECTS[subj][1]
    if rel in _VERBS:
        return _pick(rng, _VERBS[rel][1 if finite else 0])
    if rel == "sitting_on":
        if OBJ_NAMES[subj] == "bird":
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


def finish(text: str) -> str:
    text = " ".join(text.split())
    return text[:1].upper() + text[1:] + "."


def caption_once(rng: np.random.Generator, scene: Scene) -> tuple[str, list[int]]:
    """One caption of ``scene`` and the fact ids it asserts."""
    facts: list[int] = []
    attr_of = dict(zip(scene.objects, scene.attributes))

    def np_of(obj: int) -> str:
        facts.append(VOCAB.object[obj])
        if rng.random() < 0.5:
            facts.append(VOCAB.attribute[(obj, attr_of[obj])])
            return noun_phrase(rng, obj, attr_of[obj])
        return noun_phrase(rng, obj, None)

    with_ctx = rng.random() < 0.65
    ctx_prep = _pick(rng, CONTEXTS[scene.context][2])
    ctx_noun = _pick(rng, CONTEXTS[scene.context][3])
    if with_ctx:
        facts.append(VOCAB.context[scene.context])
    tail = f" {ctx_prep}" if with_ctx else ""

    if scene.all_relations and rng.random() < 0.6:
        s, r, o = scene.all_relations[int(rng.integers(len(scene.all_relations)))]
        facts.append(VOCAB.relation[(s, r, o)])
        rel = RELATIONS[r]
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
            facts.append(VOCAB.relation[chain])
            core += f" and {_relation_phrase(rng, s, RELATIONS[chain[1]], finite)} {np_of(chain[2])}"
        if extra is not None:
            x = np_of(extra)
            more = _pick(rng, (f", with {x} nearby", f", with {x} in the background"))
        else:
            more = ""
        if template == 2 and with_ctx:
            return finish(f"{ctx_prep}, {core}{more}"), facts
        if template == 3:
            return finish(f"there is {core}{tail}{more}"), facts
        if template == 4:
            return finish(f"{_pick(rng, ('a picture of', 'a photo of', 'a close up of'))} {core}{tail}{more}"), facts
        if template == 5 and with_ctx:
            return finish(f"{_article(ctx_noun)} with {core}{more}"), facts
        return finish(f"{core}{tail}{more}"), facts

    m_max = min(3, len(scene.objects))
    m_p = np.array([0.45, 0.4, 0.15][:m_max])
    m = 1 + int(rng.choice(m_max, p=m_p / m_p.sum()))
    chosen = [scene.objects[int(j)] for j in rng.permutation(len(scene.objects))[:m]]
    nps = _join([np_of(x) for x in chosen])
    template = int(rng.integers(7))
    verb_be = "is" if m == 1 else "are"
    if template == 1:
        return finish(f"there is {nps}{tail}"), facts
    if template == 2 and with_ctx:
        return finish(f"{ctx_prep} there is {nps}"), facts
    if template == 3 and with_ctx:
        return finish(f"{_article(ctx_noun)} with {nps}"), facts
    if template == 4:
        return finish(f"{nps} can be seen{tail}"), facts
    if template == 5 and with_ctx:
        return finish(f"{ctx_prep}, {nps} {verb_be} visible"), facts
    if template == 6:
        return finish(f"{_pick(rng, ('a picture of', 'a photo of', 'a view of'))} {nps}{tail}"), facts
    if m == 1 and OBJECTS[chosen[0]][1] in ("person", "animal"):
        posture = _pick(rng, _POSTURE[OBJECTS[chosen[0]][1]][0][:-1])
        return finish(f"{nps} {posture}{tail}"), facts
    return finish(f"{nps}{tail}"), facts


def scene_captions(rng: np.random.Generator, scene: Scene, n: int) -> list[tuple[str, list[int]]]:
    """``n`` distinct captions of 6–20 words, each with its sorted unique fact ids."""
    out: list[tuple[str, list[int]]] = []
    seen: set[str] = set()
    for _ in range(n):
        text: str = ""
        facts: list[Any] = []
        for attempt in range(30):
            text, facts = caption_once(rng, scene)
            if 6 <= len(text.split()) <= 20 and (text not in seen or attempt >= 20):
                break
        else:  # always 6-20 words: "There is a dog in this picture."
            facts = [VOCAB.object[scene.objects[0]]]
            text = finish(f"there is {noun_phrase(rng, scene.objects[0], None)} in this picture")
        seen.add(text)
        out.append((text, sorted(set(facts))))
    return out

