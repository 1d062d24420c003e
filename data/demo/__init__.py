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

Modules: :mod:`~.world` (the world's tables and fact vocabulary), :mod:`~.config` (:class:`DemoConfig`,
:class:`DemoFacts`), :mod:`~.scenes`, :mod:`~.captions` (the grammar), :mod:`~.features` (prototypes and region
features), :mod:`~.relevance` (:func:`demo_relevance`), :mod:`~.io` (:func:`generate_demo`,
:func:`read_demo_facts`). May import: :mod:`bcls.data` modules only.
"""

from .demo_config import DEMO_SPLITS, DemoConfig, DemoFacts
from .io import FACTS_FORMAT, FACTS_VERSION, generate_demo, read_demo_facts
from .regions import DemoPrototypes, demo_prototypes
from .relevance import demo_pair_relevance, demo_relevance

__all__ = ["DEMO_SPLITS", "FACTS_FORMAT", "FACTS_VERSION", "DemoConfig", "DemoFacts", "DemoPrototypes",
           "demo_pair_relevance", "demo_prototypes", "demo_relevance", "generate_demo", "read_demo_facts"]
