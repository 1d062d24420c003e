"""The SCAN / VSE++ / VSE∞ "precomp" folder layout.

A split ``S`` of a precomp folder is three files side by side:

* ``S_caps.txt``: one caption per line; the captions of an image are consecutive, so caption line ``n``
  belongs to image ``n // captions_per_image``;
* ``S_ids.txt`` (optional): one integer id per caption line (or one per image) naming the image;
* ``S_ims.npy``: image features, ``(n_images, n_regions, dim)`` region features or ``(n_images, dim)``
  global features, any float dtype.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .captions import CaptionTable, read_captions
from .captions.precomp_captions import precomp_paths
from .features import ImageFeatures, load_features
from .infra.atomic import atomic_path, atomic_write_bytes
from .infra.errors import DataFormatError

__all__ = ["precomp_paths", "read_precomp_split", "write_precomp_split"]


def write_precomp_split(
    folder: str | os.PathLike,
    split: str,
    captions: Sequence[str],
    features: np.ndarray,
    image_ids: Sequence[int] | np.ndarray | None = None,
) -> dict[str, Path]:
    """Write one split in the precomp layout; each file is written to a temporary name, then renamed.

    Args:
        captions: ``n_images * captions_per_image`` captions, an image's captions consecutive.
        features: ``(n_images, n_regions, dim)`` or ``(n_images, dim)`` float array.
        image_ids: optional id per image (written one per caption line to ``{split}_ids.txt``).
    """
    features = np.asarray(features)
    if features.ndim not in (2, 3) or features.shape[0] == 0:
        raise ValueError(f"features must be (N, R, D) or (N, D) with N > 0, got shape {features.shape}")
    if len(captions) % features.shape[0]:
        raise ValueError(f"{len(captions)} captions do not divide evenly over {features.shape[0]} images")
    for n, text in enumerate(captions):
        if "\n" in text or not text.strip():
            raise ValueError(f"caption {n} is empty or contains a newline: {text!r}")
    paths = precomp_paths(folder, split)
    Path(folder).mkdir(parents=True, exist_ok=True)
    with atomic_path(paths["ims"], suffix=".npy") as tmp:
        np.save(tmp, features)
    atomic_write_bytes(paths["caps"], ("\n".join(captions) + "\n").encode("utf-8"))
    if image_ids is not None:
        ids = np.asarray(image_ids, dtype=np.int64)
        if ids.shape != (features.shape[0],):
            raise ValueError(f"image_ids must have one id per image ({features.shape[0]}), got {ids.shape}")
        per_caption = np.repeat(ids, len(captions) // features.shape[0])
        atomic_write_bytes(paths["ids"], ("\n".join(map(str, per_caption)) + "\n").encode("ascii"))
    return paths


def read_precomp_split(
    folder: str | os.PathLike, split: str, *, check_finite: bool = True
) -> tuple[CaptionTable, ImageFeatures]:
    """Read the captions and the memory-mapped image features of one precomp split.

    Caption line ``n`` belongs to feature row ``n // captions_per_image`` (``table.image_index()`` gives that
    row for every caption, since precomp image ids are unique and in feature order).

    Returns:
        ``(captions, features)``: ``n_images * captions_per_image`` captions and ``(n_images, R, D)`` or
        ``(n_images, D)`` features.

    Raises:
        DataFormatError: a file is missing or malformed (see :func:`~bcls.data.captions.read_captions` and
            :func:`~bcls.data.features.load_features`), or the caption count is not a positive multiple of the
            image count.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataFormatError(f"{folder}: is a file; pass the precomp folder that holds {split}_caps.txt and "
                              f"{split}_ims.npy")
    paths = precomp_paths(folder, split)
    if folder.is_dir() and not paths["caps"].exists():
        present = sorted(p.name[: -len("_caps.txt")] for p in folder.glob("*_caps.txt"))
        raise DataFormatError(f"{paths['caps']}: no split {split!r} in {folder}; splits present: "
                              f"{', '.join(present) or 'none'}")
    features = load_features(paths["ims"], check_finite=check_finite)
    captions = read_captions(folder, format="precomp", split=split)
    n_caps, n_images = len(captions), features.n_images
    if n_caps == 0 or n_caps % n_images or len(captions.unique_images()) != n_images:
        raise DataFormatError(
            f"{paths['caps']}: {n_caps} captions are not a positive multiple of the {n_images} images in "
            f"{paths['ims']}; the captions of each image must be consecutive and equal in number"
        )
    return captions, features
