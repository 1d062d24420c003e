"""Reading any caption file: the registry of caption formats, format detection and :func:`read_captions`."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

from bcls.data.infra.errors import ConfigError, setting
from bcls.data.infra.plugins import Registry

from ..tables import fail, load_json
from . import coco, flickr8k, karpathy, tabular
from . import precomp_captions as precomp
from .precomp_captions import split_of_file
from .table import CaptionTable, RawCaptions, filter_split

logger = logging.getLogger(__name__)

Reader = Callable[[Path, "str | None", bool], RawCaptions]
"""A caption format's reader: ``(path, split, allow_unknown_images) -> RawCaptions``."""

CAPTION_FORMATS: Registry[RawCaptions] = Registry("caption format")
"""Caption formats by name; each entry's factory is its :data:`Reader`."""
CAPTION_FORMATS.register("table", tabular.read_table, "CSV/TSV/Parquet with image_id, caption_id, text[, split]")
CAPTION_FORMATS.register("coco", coco.read_coco, "MS-COCO captions_*.json (images, annotations)")
CAPTION_FORMATS.register("karpathy", karpathy.read_karpathy, "Karpathy's dataset_*.json (train also takes restval)")
CAPTION_FORMATS.register("precomp", precomp.read_precomp, "a SCAN/VSE∞ precomp folder split ({split}_caps.txt)")
CAPTION_FORMATS.register("flickr8k", flickr8k.read_flickr8k, "Flickr8k.token.txt (name.jpg#n<TAB>caption)")


def detect_format(path: str | os.PathLike) -> str:
    """The caption format of ``path``: a name in :data:`CAPTION_FORMATS`.

    A folder (or a ``{split}_caps.txt`` file) is ``"precomp"``; ``.csv``/``.tsv``/``.parquet`` is ``"table"``;
    a ``.txt`` file whose lines read ``<name>.jpg#<n><TAB><caption>`` (``Flickr8k.token.txt``, whatever its name)
    is ``"flickr8k"``;
    a ``.json`` is ``"karpathy"`` when its images carry ``sentences`` and ``"coco"`` when it has
    ``annotations``.

    Raises:
        DataFormatError: the path does not exist or its format cannot be recognised.
    """
    p = Path(path)
    if not p.exists():
        raise fail(p, "no such file or folder; check the path")
    if p.is_dir():
        if any(p.glob("*_caps.txt")):
            return "precomp"
        raise fail(p, "folder has no {split}_caps.txt file, so it is not a precomp folder; pass a caption file")
    suffix = p.suffix.lower()
    if suffix in tabular.SUFFIXES:
        return "table"
    if split_of_file(p) is not None:
        return "precomp"
    if p.name.lower().endswith(".token.txt") or (suffix == ".txt" and flickr8k.looks_like_tokens(p)):
        return "flickr8k"
    if suffix == ".json":
        with open(p, "rb") as fh:
            head = fh.read(1 << 20)
        if b'"sentences"' in head:
            return "karpathy"
        if b'"annotations"' in head or b'"file_name"' in head or b'"coco_url"' in head:
            return "coco"
        data = load_json(p)
        if isinstance(data, dict):
            if "annotations" in data:
                return "coco"
            images = data.get("images")
            if isinstance(images, list) and images and isinstance(images[0], dict) and "sentences" in images[0]:
                return "karpathy"
        raise fail(p, "JSON is neither COCO captions (no 'annotations') nor Karpathy (no images[].sentences); "
                       f"pass {setting('format')} explicitly")
    raise fail(
        p,
        f"cannot tell the caption format from the suffix {suffix!r}; use .csv/.tsv/.parquet, a COCO or Karpathy "
        f".json, a precomp folder, a Flickr8k *.token.txt, or pass {setting('format')} (one of "
        f"{', '.join(CAPTION_FORMATS.names())})",
    )


def read_captions(
    path: str | os.PathLike,
    format: str = "auto",
    split: str | None = None,
    *,
    skip_empty: bool = False,
    allow_unknown_images: bool = False,
) -> CaptionTable:
    """Read a caption file or folder into a :class:`CaptionTable`.

    Args:
        path: a ``.csv``/``.tsv``/``.parquet`` table, a COCO or Karpathy ``.json``, or a precomp folder (or one of
            its ``{split}_caps.txt`` files).
        format: ``"auto"`` (detect with :func:`detect_format`) or a name in :data:`CAPTION_FORMATS`.
        split: keep only the rows of this split. For ``"table"`` it filters on the ``split`` column; for
            ``"karpathy"`` on the images' ``split`` field, where, following Karpathy's convention,
            ``split="train"`` selects ``train`` *and* ``restval`` (the rows keep their own split name);
            for ``"precomp"`` it names the split's files (default ``"train"``). ``"coco"`` files have no split.
        skip_empty: drop captions that are empty after stripping whitespace (and log how many) instead of
            raising.
        allow_unknown_images: (``coco``) keep annotations whose ``image_id`` is not listed in the file's
            ``images`` (and log how many) instead of raising. Images listed without any caption are left out
            with a warning either way.

    Formats:
        * table: required columns ``image_id``, ``caption_id`` (integers) and ``text``; optional ``split``.
        * coco: ``{"annotations": [{"image_id", "id", "caption"}, ...]}``; caption_id = ``id``.
        * karpathy: ``{"images": [{"split", "imgid", "cocoid"?, "sentences": [{"raw", "sentid"}]}]}``;
          image_id = ``cocoid`` when present else ``imgid``; caption_id = ``sentid``; text = ``raw``.
        * precomp: caption_id = 0-based line index; line ``n`` belongs to image ``n // captions_per_image``, where
          ``captions_per_image`` = captions / images, the images counted from the header of ``{split}_ims.npy``
          (5 assumed when there is none); image_id from ``{split}_ids.txt`` (one id per caption line or per
          image) when present, else the image index.
        * flickr8k: lines ``<name>.jpg#<n>\t<caption>`` (``Flickr8k.token.txt``); image_id = the Flickr photo id
          that starts the file name (``1000268201_693b08cb0e.jpg`` → 1000268201, see :func:`flickr8k_ids`),
          caption_id = ``image_id * 10 + n``. The upstream quirk ``2258277193_586949ec62.jpg.1#0`` is read as
          ``2258277193_586949ec62.jpg#0``. Blank lines are skipped. The split column comes from the official
          ``Flickr_8k.{train,dev,test}Images.txt`` beside the token file (images in none: ``unlisted``); without
          those lists there is no split column.

    Texts are stripped of leading and trailing whitespace.

    Raises:
        ConfigError: ``format`` is not ``"auto"`` or a name in :data:`CAPTION_FORMATS`.
        DataFormatError: the file is missing, empty, malformed, has non-integer or duplicate ids, empty captions
            (without ``skip_empty``), or ``split`` matches no rows.
    """
    if format != "auto" and format not in CAPTION_FORMATS:
        raise ConfigError(f"unknown caption format {format!r}; valid: auto, {', '.join(CAPTION_FORMATS.names())}")
    p = Path(path)
    if not p.exists():
        raise fail(p, "no such file or folder; check the path")
    fmt = detect_format(p) if format == "auto" else format
    raw = CAPTION_FORMATS.create(fmt, path=p, split=split, allow_unknown_images=allow_unknown_images)
    table = raw.finish(skip_empty=skip_empty)
    if split is not None and raw.split_names is not None:
        table = filter_split(table, split, raw.split_names(split))
    logger.debug("read %d captions of %d images from %s (%s)", len(table), len(table.unique_images()), p, fmt)
    return table
