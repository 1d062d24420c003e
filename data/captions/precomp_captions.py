"""The ``precomp`` caption format: the captions of a SCAN / VSE∞ precomp folder split (see
:mod:`bcls.data.precomp` for the layout)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from bcls.data.infra.errors import DataFormatError

from ..tables import fail, is_int64, shown, text_lines
from .table import RawCaptions

CAPTIONS_PER_IMAGE_DEFAULT = 5
"""Captions per image assumed for a precomp split that has no ``{split}_ims.npy`` to count the images."""


def precomp_paths(folder: str | os.PathLike, split: str) -> dict[str, Path]:
    """Paths of the caption, id and feature files of ``split`` in a precomp ``folder`` (layout:
    :mod:`bcls.data.precomp`)."""
    folder = Path(folder)
    return {"caps": folder / f"{split}_caps.txt", "ids": folder / f"{split}_ids.txt",
            "ims": folder / f"{split}_ims.npy"}


def split_of_file(path: Path) -> str | None:
    """``S`` for a file named ``S_caps.txt``, else None."""
    name = path.name
    return name[: -len("_caps.txt")] if name.endswith("_caps.txt") and len(name) > len("_caps.txt") else None


def _precomp_n_images(path: Path) -> int:
    """Number of images in a precomp ``.npy`` (only its header is read)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise fail(path, f"not a readable .npy file ({str(err).splitlines()[0]}); rewrite it with np.save") from None
    if not isinstance(arr, np.ndarray) or arr.ndim not in (2, 3) or arr.shape[0] == 0:
        shape = getattr(arr, "shape", None)
        raise fail(path, f"image features must be (N, R, D) or (N, D) with N > 0, got shape {shape}")
    return int(arr.shape[0])


def read_precomp(path: Path, split: str | None = None, allow_unknown_images: bool = False) -> RawCaptions:
    """A split of a precomp folder (or one ``{split}_caps.txt`` file); ``split`` names the files (default
    ``train``). Caption id = line index; line ``n`` belongs to image ``n // captions_per_image``; image ids from
    ``{split}_ids.txt`` when present, else the image index."""
    if path.is_file():
        file_split = split_of_file(path)
        if file_split is None:
            raise fail(path, "a precomp caption file must be named {split}_caps.txt; pass the folder and split=")
        if split is not None and split != file_split:
            raise fail(path, f"is the {file_split!r} split but split={split!r} was asked for")
        folder, split = path.parent, file_split
    else:
        folder, split = path, (split if split is not None else "train")
    paths = precomp_paths(folder, split)
    caps_path, ids_path, ims_path = paths["caps"], paths["ids"], paths["ims"]
    if not caps_path.exists():
        present = sorted(p.name[: -len("_caps.txt")] for p in folder.glob("*_caps.txt"))
        raise fail(caps_path, f"no such file; splits present in {folder}: {', '.join(present) or 'none'}")
    texts = [line.strip() for line in text_lines(caps_path)]
    n_caps = len(texts)
    if n_caps == 0:
        raise fail(caps_path, "no captions; the file has no lines")

    if ims_path.exists():
        n_images = _precomp_n_images(ims_path)
        if n_caps % n_images:
            raise DataFormatError(
                f"{caps_path}: {n_caps} captions are not a multiple of the {n_images} images in {ims_path}; "
                "the captions of each image must be consecutive and equal in number"
            )
    else:
        cpi_default = CAPTIONS_PER_IMAGE_DEFAULT
        if n_caps % cpi_default:
            raise fail(
                caps_path,
                f"{n_caps} captions are not a multiple of {cpi_default} (captions per image assumed because "
                f"{ims_path.name} is missing); add the features file",
            )
        n_images = n_caps // cpi_default
    cpi = n_caps // n_images

    def where(i: int) -> str:
        return f"line {i + 1}"

    image_index = np.arange(n_caps, dtype=np.int64) // cpi
    if ids_path.exists():
        id_lines = [line.strip() for line in text_lines(ids_path)]
        ids = _parse_id_lines(ids_path, id_lines, where)
        if len(ids) == n_caps:
            per_image = ids.reshape(n_images, cpi)
            differs = per_image != per_image[:, :1]
            if differs.any():
                r = int(np.argmax(differs.reshape(-1)))
                k = r // cpi
                raise fail(
                    ids_path,
                    f"line {r + 1}: id {int(ids[r])} differs from id {int(per_image[k, 0])} on line {k * cpi + 1}, "
                    f"but both lines belong to image {k} ({cpi} captions per image)",
                )
            per_image_ids = per_image[:, 0]
        elif len(ids) == n_images:
            per_image_ids = ids
        else:
            raise fail(
                ids_path,
                f"{len(ids)} ids match neither the {n_caps} captions nor the {n_images} images of {caps_path.name}",
            )
        uniq, counts = np.unique(per_image_ids, return_counts=True)
        if (counts > 1).any():
            j = int(np.argmax(counts > 1))
            again = np.flatnonzero(per_image_ids == uniq[j])
            raise fail(
                ids_path,
                f"image id {int(uniq[j])} names images {int(again[0])} and {int(again[1])} (lines "
                f"{int(again[0]) * cpi + 1}.. and {int(again[1]) * cpi + 1}.. of {caps_path.name}); "
                "each image of a precomp split needs its own id",
            )
        image_ids = per_image_ids[image_index]
    else:
        image_ids = image_index
    return RawCaptions(
        caps_path, "precomp", image_ids, np.arange(n_caps, dtype=np.int64), texts,
        np.full(n_caps, split, dtype=object), where, caption_id_name="caption id",
        split_names=None,  # the split chose the files: every row belongs to it
    )


def _parse_id_lines(path: Path, lines: list[str], where: Callable[[int], str]) -> np.ndarray:
    try:
        return np.array([int(s) for s in lines], dtype=np.int64)
    except (ValueError, OverflowError):
        for i, s in enumerate(lines):
            if not is_int64(s):
                raise fail(path, f"{where(i)}: {shown(s)} is not an integer image id") from None
        raise

