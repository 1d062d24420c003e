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


def precomp_paths(folder: str | os.PathLike, split: str) -> dict[str, Path]:
    """Paths of the caption, id and feature files of ``split`` in a precomp ``folder``."""
    folder = Path(folder)
    return {
        "caps": folder / f"{split}_caps.txt",
        "ids": folder / f"{split}_ids.txt",
        "ims": folder / f"{split}_ims.npy",
    }


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_precomp_split(
    folder: str | os.PathLike,
    split: str,
    captions: Sequence[str],
    features: np.ndarray,
    image_ids: Sequence[int] | None = None,
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
    tmp_npy = paths["ims"].with_name(f".{paths['ims'].name}.tmp-{os.getpid()}.npy")
    np.save(tmp_npy, features)
    os.replace(tmp_npy, paths["ims"])
    _atomic_write_bytes(paths["caps"], ("\n".join(captions) + "\n").encode("utf-8"))
    if image_ids is not None:
        ids = np.asarray(image_ids, dtype=np.int64)
        if ids.shape != (features.shape[0],):
            raise ValueError(f"image_ids must have one id per image ({features.shape[0]}), got {ids.shape}")
        per_caption = np.repeat(ids, len(captions) // features.shape[0])
        _atomic_write_bytes(paths["ids"], ("\n".join(map(str, per_caption)) + "\n").encode("ascii"))
    return paths
