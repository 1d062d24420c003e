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


def read_flickr8k(path: Path, split: str | None = None, allow_unknown_images: bool = False) -> RawCaptions:
    """``Flickr8k.token.txt`` (``<name>.jpg#<n><TAB><caption>``): image id = the Flickr photo id of the name,
    caption id = ``photo id * 10 + n``; blank lines are skipped; no split column."""
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
    if n_quirk:
        logger.debug("%s: read %d caption key(s) of the form X.jpg.<n>#k as X.jpg#k", path, n_quirk)
    return RawCaptions(path, "flickr8k", image_ids, caption_ids, texts, None, where,
                caption_id_name="caption id (photo id * 10 + n)")
