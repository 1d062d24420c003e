"""The demo's world: contexts, objects with their attributes and affinities, relations, and the canonical fact
vocabulary (``context:c``, ``object:o``, ``attribute:o:a``, ``relation:s:r:o``) every split shares."""

from __future__ import annotations

# name, frequency weight, prepositional phrases, noun phrases (for "A sandy beach with ...")
CONTEXTS: tuple[tuple[str, float, tuple[str, ...], tuple[str, ...]], ...] = (
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
ATTRIBUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("red", ("red",)), ("blue", ("blue",)), ("white", ("white",)), ("black", ("black",)),
    ("brown", ("brown",)), ("green", ("green",)), ("yellow", ("yellow",)), ("small", ("small", "little")),
    ("large", ("large", "big")), ("young", ("young",)), ("old", ("old",)), ("wooden", ("wooden",)),
    ("smiling", ("smiling",)),
)

# name, category, frequency weight, synonyms, plausible attributes, context affinities, capability flags
OBJECTS: tuple[tuple[str, str, float, tuple[str, ...], tuple[str, ...], dict[str, float], frozenset[str]], ...] = (
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

RELATIONS: tuple[str, ...] = ("on", "next_to", "holding", "behind", "in_front_of", "under", "riding",
                               "sitting_on", "eating", "playing_with", "walking")
# weight of a plausible candidate when the relations of a scene are drawn (in_front_of is drawn as behind's inverse)
RELATION_WEIGHT: dict[str, float] = {"on": 3.0, "next_to": 1.0, "holding": 3.0, "behind": 0.7, "in_front_of": 0.0,
                                      "under": 1.5, "riding": 4.0, "sitting_on": 3.0, "eating": 3.0,
                                      "playing_with": 3.0, "walking": 3.0}
# relations that fix where the subject is: a subject takes at most one of them
PLACING = frozenset({"on", "under", "riding", "sitting_on"})
YOUNG_NOUNS = frozenset({"puppy", "kitten", "pony", "kitty"})

CONTEXT_NAMES = tuple(c[0] for c in CONTEXTS)
ATTR_NAMES = tuple(a[0] for a in ATTRIBUTES)
OBJ_NAMES = tuple(o[0] for o in OBJECTS)
CTX_INDEX = {n: i for i, n in enumerate(CONTEXT_NAMES)}
ATTR_INDEX = {n: i for i, n in enumerate(ATTR_NAMES)}
OBJ_INDEX = {n: i for i, n in enumerate(OBJ_NAMES)}
REL_INDEX = {n: i for i, n in enumerate(RELATIONS)}


def plausible(rel: str, s: int, o: int) -> bool:
    """Whether ``subject rel object`` is a plausible relation between object kinds ``s`` and ``o``."""
    if s == o:
        return False
    s_name, s_cat, _, _, _, _, s_flags = OBJECTS[s]
    o_name, o_cat, _, _, _, _, o_flags = OBJECTS[o]
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


def implied(s: int, r: int, o: int) -> list[tuple[int, int, int]]:
    """The relation triples true when ``(s, r, o)`` holds (itself, plus symmetric / inverse forms)."""
    out = [(s, r, o)]
    name = RELATIONS[r]
    if name == "next_to":
        out.append((o, r, s))
    elif name == "behind":
        out.append((o, REL_INDEX["in_front_of"], s))
    elif name == "in_front_of":
        out.append((o, REL_INDEX["behind"], s))
    return out


class FactVocab:
    """Canonical fact ids: contexts, objects, plausible (object, attribute), plausible relation triples."""

    def __init__(self) -> None:
        names: list[str] = []
        self.context: list[int] = []
        for c in CONTEXT_NAMES:
            self.context.append(len(names))
            names.append(f"context:{c}")
        self.object: list[int] = []
        for obj in OBJ_NAMES:
            self.object.append(len(names))
            names.append(f"object:{obj}")
        self.attribute: dict[tuple[int, int], int] = {}
        for o, spec in enumerate(OBJECTS):
            for a in spec[4]:
                self.attribute[(o, ATTR_INDEX[a])] = len(names)
                names.append(f"attribute:{spec[0]}:{a}")
        self.relation: dict[tuple[int, int, int], int] = {}
        for s in range(len(OBJECTS)):
            for r, rel in enumerate(RELATIONS):
                for o in range(len(OBJECTS)):
                    if plausible(rel, s, o):
                        self.relation[(s, r, o)] = len(names)
                        names.append(f"relation:{OBJ_NAMES[s]}:{rel}:{OBJ_NAMES[o]}")
        self.names: tuple[str, ...] = tuple(names)


VOCAB = FactVocab()
