"""The ``flickr8k`` caption format (``Flickr8k.token.txt``) and the integer ids of Flickr8k names, which the
Flickr8k judgment files use too."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..tables import fail, shown, text_lines
from .table import RawCaptions

logger = logging.getLogger(__name__)


# A Flickr8k image name is "<flickr photo id>_<secret>.jpg"; ".jpg.1" is an upstream typo of one caption key.
_FLICKR8K_NAME = r"(\d+)(?:_[0-9A-Za-z]+)?\.jpg(?:\.\d+)?"
_FLICKR8K_RE = re.compile(rf"({_FLICKR8K_NAME})(?:#(\d+))?\Z", re.IGNORECASE)


_TOKEN_LINE = re.compile(rf"{_FLICKR8K_NAME}#\d+\t\S", re.IGNORECASE)


def looks_like_tokens(path: Path, lines: int = 5) -> bool:
    """Whether the first non-blank lines of ``path`` read ``<name>.jpg#<n><TAB><caption>``."""
    with open(path, "rb") as fh:
        head = [raw.decode("utf-8", errors="replace").strip("\r\n") for raw in fh.readlines(1 << 14)]
    rows = [line for line in head if line.strip()][:lines]
    return bool(rows) and all(_TOKEN_LINE.match(line.strip()) for line in rows)


def flickr8k_image_name(key: str) -> str:
    """The canonical image file name of a Flickr8k image name or caption key (``X.jpg#2`` and ``X.jpg.1#0`` →
    ``X.jpg``); the text is returned unchanged when it is not a Flickr8k name."""
    m = _FLICKR8K_RE.match(key.strip())
    if m is None:
        return key
    name = m.group(1)
    return name[: name.lower().rindex(".jpg") + 4]


def flickr8k_ids(
    names: Sequence[str],
    *,
    path: str | os.PathLike | None = None,
    where: Callable[[int], str] | None = None,
) -> np.ndarray:
    """Integer ids of Flickr8k image names and caption keys, as the ``flickr8k`` caption format assigns them.

    An image name ``<photo id>_<secret>.jpg`` maps to the Flickr photo id (its leading integer: stable, unique
    among the 8,092 Flickr8k images, and the same whatever subset of files is read); a caption key
    ``<image name>#<n>`` (n = 0..9) maps to ``photo_id * 10 + n``. The upstream typo ``X.jpg.1#n`` is read as
    ``X.jpg#n``. Judgment files keyed by these names (CrowdFlower, expert) join the caption table through it.

    Args:
        names: image names and/or caption keys.
        path: the file the names come from (for messages).
        where: ``where(i)`` names the position of ``names[i]`` in that file (e.g. ``"line 3"``).

    Returns:
        int64 ``(len(names),)``.

    Raises:
        DataFormatError: a name is not of either form, or a caption number is above 9.
    """
    out = np.empty(len(names), dtype=np.int64)
    for i, name in enumerate(names):
        m = _FLICKR8K_RE.match(name.strip())
        if m is None or (m.group(3) is not None and len(m.group(3)) > 1):
            at = f"{where(i)}: " if where is not None else ""
            what = ("caption number above 9" if m is not None else
                    "not a Flickr8k image name <photo id>_<secret>.jpg or caption key <image name>#<0-9>")
            raise fail(path if path is not None else "<names>", f"{at}{shown(name)} is {what}; fix the name")
        photo = int(m.group(2))
        out[i] = photo if m.group(3) is None else photo * 10 + int(m.group(3))
    return out


SPLIT_FILES = {"train": "Flickr_8k.trainImages.txt", "dev": "Flickr_8k.devImages.txt",
               "test": "Flickr_8k.testImages.txt"}
"""The official split lists (one image name a line) that ship beside ``Flickr8k.token.txt`` in ``Flickr8k_text``."""
UNLISTED = "unlisted"
"""The split of an image that none of the split lists names (Flickr8k has 8,091 images, the lists 8,000)."""


_REPORTED: set[tuple[str, int]] = set()


def _first_read(path: Path) -> bool:
    """Whether this process reads this state of ``path`` for the first time."""
    key = (str(path.resolve()), path.stat().st_mtime_ns)
    first = key not in _REPORTED
    _REPORTED.add(key)
    return first


def read_split_lists(folder: Path) -> dict[int, str] | None:
    """Image id → split from the official lists ``Flickr_8k.{train,dev,test}Images.txt`` in ``folder``, or None
    when none of them is there. An image listed in two splits is an error naming both files."""
    found = {split: folder / name for split, name in SPLIT_FILES.items() if (folder / name).is_file()}
    if not found:
        return None
    missing = sorted(set(SPLIT_FILES) - set(found))
    if missing:
        logger.warning("%s: no %s beside the token file; those splits are empty", folder,
                       ", ".join(SPLIT_FILES[m] for m in missing))
    split_of: dict[int, str] = {}
    for split, file in found.items():
        lines = [(i + 1, line.strip()) for i, line in enumerate(text_lines(file, "image names")) if line.strip()]
        ids = flickr8k_ids([name for _, name in lines], path=file, where=lambda r: f"line {lines[r][0]}")
        for image_id in ids.tolist():
            other = split_of.setdefault(image_id, split)
            if other != split:
                raise fail(file, f"image id {image_id} is also in the {other} list ({SPLIT_FILES[other]}); an "
                                 "image belongs to one split, remove it from one list")
    return split_of


def read_flickr8k(path: Path, split: str | None = None, allow_unknown_images: bool = False) -> RawCaptions:
    """``Flickr8k.token.txt`` (``<name>.jpg#<n><TAB><caption>``): image id = the Flickr photo id of the name,
    caption id = ``photo id * 10 + n``; blank lines are skipped. The split column comes from the official lists
    beside the file (:data:`SPLIT_FILES`; an image in none of them is :data:`UNLISTED`); without them the table
    has no split column."""
    lines = text_lines(path)
    line_no: list[int] = []
    keys: list[str] = []
    texts: list[str] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        key, tab, text = line.partition("\t")
        if not tab:
            raise fail(path, f"line {i + 1}: no tab between the caption key and the caption "
                              f"({shown(line)}); lines must be <image>.jpg#<n><TAB><caption>")
        if "#" not in key:
            raise fail(path, f"line {i + 1}: caption key {shown(key)} has no #<n>; lines must be "
                              "<image>.jpg#<n><TAB><caption>")
        line_no.append(i + 1)
        keys.append(key.strip())
        texts.append(text.strip())
    if not keys:
        raise fail(path, "no captions; the file has only blank lines")

    def where(r: int) -> str:
        return f"line {line_no[r]}"

    caption_ids = flickr8k_ids(keys, path=path, where=where)
    image_ids = caption_ids // 10
    # two different file names with one photo id would merge two images: refuse
    names = np.array([flickr8k_image_name(k) for k in keys], dtype=object)
    _, first = np.unique(image_ids, return_index=True)
    clash = names != names[first[np.searchsorted(image_ids[first], image_ids)]]
    if clash.any():
        r = int(np.argmax(clash))
        other = int(first[np.searchsorted(image_ids[first], image_ids[r])])
        raise fail(path, f"{where(r)}: image {names[r]} has the photo id {int(image_ids[r])} of image "
                          f"{names[other]} ({where(other)}); Flickr8k image ids must be unique, rename one")
    n_quirk = sum(1 for k in keys if ".jpg." in k.lower())
    report = logger.info if _first_read(path) else logger.debug  # a run reads one file several times: say it once
    if n_quirk:
        report("%s: read %d caption key(s) of the form X.jpg.<n>#k (an upstream typo) as X.jpg#k", path,
                    n_quirk)
    split_of = read_split_lists(path.parent)
    splits = None
    if split_of is not None:
        splits = np.array([split_of.get(i, UNLISTED) for i in image_ids.tolist()], dtype=object)
        n_unlisted = len(np.unique(image_ids[splits == UNLISTED]))
        if n_unlisted:
            report("%s: %d image(s) are in none of the split lists (split %r)", path, n_unlisted, UNLISTED)
    return RawCaptions(path, "flickr8k", image_ids, caption_ids, texts, splits, where,
                       caption_id_name="caption id (photo id * 10 + n)")
