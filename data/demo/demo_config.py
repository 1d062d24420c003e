"""Settings of the demo generator and the ground-truth type of one split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bcls.data.infra.errors import ConfigError

from .world import OBJECTS

DEMO_SPLITS: tuple[str, ...] = ("train", "dev", "test")
"""The splits :func:`~bcls.data.demo.generate_demo` writes, in image-id order."""


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
        if not 1 <= self.min_objects <= self.max_objects <= len(OBJECTS):
            raise ConfigError(f"DemoConfig needs 1 <= min_objects <= max_objects <= {len(OBJECTS)}, "
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
