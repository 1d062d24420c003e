"""One split of a training or test set, from either layout bcls reads, in one id space.

* a **precomp folder** (``--data``): ``{split}_caps.txt`` + ``{split}_ims.npy`` (+ ``{split}_ids.txt``), the
  SCAN / VSE∞ layout, feature row = image position (:mod:`~.precomp`);
* a **caption file plus a feature folder** (``--captions TABLE --features DIR``): any caption format
  (:func:`~bcls.data.captions.read_captions`: a table with its ``split`` column, COCO JSON, Karpathy JSON, precomp,
  Flickr8k) and a folder of features keyed by image id (:mod:`~.feature_folder`, what ``bcls features extract``
  writes). Captions are joined to feature rows by image id, so labels built from the same caption file (whatever
  its format: annotation ids stay annotation ids) train directly.

:func:`read_split` returns ``(table, features)`` with ``features.batch(table.image_index())`` giving each caption's
image features either way.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from .captions import CaptionTable, read_captions
from .feature_folder import features_for_images
from .features import ImageFeatures
from .infra.errors import ConfigError
from .precomp import read_precomp_split

__all__ = ["read_split", "has_split"]


def _check(data, captions, features) -> None:
    if data and (captions or features):
        raise ConfigError("give either --data (a precomp folder) or --captions with --features, not both")
    if not data and not (captions and features):
        missing = "--features" if captions else "--captions" if features else "--data (or --captions and --features)"
        raise ConfigError(f"missing {missing}: training and evaluation need a precomp folder or a caption file "
                          "with a feature folder")


def read_split(split: str, data: str | os.PathLike | None = None, captions: str | os.PathLike | None = None,
               features: str | os.PathLike | None = None, *, caption_format: str = "auto",
               skip_missing: bool = False, kind: str = "auto") -> tuple[CaptionTable, ImageFeatures]:
    """The captions and image features of one split (see the module docstring).

    Args:
        split: the split name (a precomp file prefix, or a value of the caption file's split column; a caption file
            without splits is read whole).
        data: a precomp folder; or ``captions`` (a caption file) with ``features`` (a feature folder).
        caption_format: the caption file's format (``auto`` detects it).
        skip_missing: leave out (and count, in the log) captions whose image has no features, instead of refusing.
        kind: which arrays of a feature folder: ``global``, ``regions`` or ``auto`` (regions when present); a
            precomp folder has regions only.

    Raises:
        ConfigError: neither or both layouts given.
        DataFormatError: unreadable files, a split the caption file lacks, or images without features.
    """
    _check(data, captions, features)
    if data:
        return read_precomp_split(data, split)
    table = _split_of(captions, caption_format, split)
    assert features is not None  # _check: captions come with features
    return features_for_images(features, table, kind=kind, skip_missing=skip_missing)


def _read(captions, caption_format: str, split: str | None) -> CaptionTable:
    """:func:`read_captions`, parsed once per process for a given file state (a run asks for the whole file, its
    train split and its dev split, each maybe twice)."""
    p = Path(captions)
    stat = p.stat() if p.is_file() else None
    key = (str(p.resolve()), caption_format, split, stat.st_mtime_ns if stat else None, stat.st_size if stat else None)
    return _read_cached(key)


@functools.lru_cache(maxsize=8)
def _read_cached(key: tuple) -> CaptionTable:
    path, caption_format, split = key[:3]
    return read_captions(path, format=caption_format, split=split)


def _split_of(captions, caption_format: str, split: str) -> CaptionTable:
    """The rows of ``split``; a caption file without splits (COCO JSON, a table without a ``split`` column,
    Flickr8k's token file) is one split, returned whole whatever ``split`` is asked for."""
    table = _read(captions, caption_format, None)
    if table.splits is None:
        return table
    return _read(captions, caption_format, split)  # the format's own split rules (Karpathy's restval)


def has_split(split: str, data: str | os.PathLike | None = None, captions: str | os.PathLike | None = None,
              *, caption_format: str = "auto") -> bool:
    """Whether the precomp folder or caption file holds ``split`` (for an optional dev split); a caption file
    without splits (a COCO JSON, a table without a ``split`` column) holds none: all of it is one split, so it
    never doubles as its own dev split."""
    from .infra.errors import DataFormatError
    from .precomp import precomp_paths

    if data:
        return precomp_paths(data, split)["caps"].is_file()
    if _read(captions, caption_format, None).splits is None:
        return False
    try:
        _read(captions, caption_format, split)
    except DataFormatError:
        return False
    return True
