"""The caption table (one row per caption) and the checks every caption reader shares.

:class:`CaptionTable` is what every reader of :mod:`bcls.data.captions` returns; :class:`RawCaptions` holds the
columns as a reader found them until :meth:`RawCaptions.finish` applies the common checks (no rows, duplicate
caption ids, empty captions) with one-line errors that name the file and the row.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..infra.errors import setting, setting_is
from ..tables import Where, fail, first_duplicate, shown

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class CaptionTable:
    """Captions with their image ids, one row per caption (``N`` rows).

    Attributes:
        image_ids: ``int64 (N,)`` id of the image each caption describes.
        caption_ids: ``int64 (N,)`` caption ids, unique within the table.
        texts: ``(N,)`` caption texts (leading/trailing whitespace stripped, never empty unless built by hand).
        splits: ``(N,)`` object array of split names, or ``None`` when the source has no split column.
        path: the file or folder the table was read from (for messages and provenance).
        format: the source format, a name registered in :data:`~bcls.data.captions.CAPTION_FORMATS`.
    """

    image_ids: np.ndarray
    caption_ids: np.ndarray
    texts: tuple[str, ...]
    splits: np.ndarray | None
    path: str
    format: str

    def __post_init__(self) -> None:
        n = len(self.texts)
        if self.image_ids.shape != (n,) or self.caption_ids.shape != (n,):
            raise ValueError(
                f"image_ids {self.image_ids.shape} and caption_ids {self.caption_ids.shape} must both be ({n},)"
            )
        if self.splits is not None and self.splits.shape != (n,):
            raise ValueError(f"splits must be ({n},), got {self.splits.shape}")

    @classmethod
    def from_lists(cls, image_ids: Sequence[int], caption_ids: Sequence[int], texts: Sequence[str],
                   splits: Sequence[str] | None = None, path: str = "(in memory)") -> "CaptionTable":
        """A table built in memory, with the checks every reader applies (rows present, unique caption ids, no
        empty caption), each a one-line error naming the row."""
        n = len(texts)
        for name, col in (("image_ids", image_ids), ("caption_ids", caption_ids), ("splits", splits)):
            if col is not None and len(col) != n:
                raise fail(path, f"{name} has {len(col)} entries for {n} texts; give one per caption")
        raw = RawCaptions(Path(path), "table", np.asarray(image_ids, dtype=np.int64),
                          np.asarray(caption_ids, dtype=np.int64), [str(t).strip() for t in texts],
                          None if splits is None else np.asarray(splits, dtype=object), lambda i: f"row {i}")
        return raw.finish(skip_empty=False)

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        return (
            f"CaptionTable({len(self)} captions, {len(self.unique_images())} images, "
            f"format={self.format!r}, path={self.path!r})"
        )

    @cached_property
    def _grouping(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        ids = self.image_ids
        uniq_sorted, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        appearance = np.argsort(first, kind="stable")  # sorted-unique position -> appearance order
        rank = np.empty_like(appearance)
        rank[appearance] = np.arange(len(appearance))
        unique = uniq_sorted[appearance].astype(np.int64, copy=False)
        image_index = rank[inverse.reshape(-1)].astype(np.int64, copy=False)
        order = np.argsort(image_index, kind="stable").astype(np.int64, copy=False)
        offsets = np.zeros(len(unique) + 1, dtype=np.int64)
        np.cumsum(np.bincount(image_index, minlength=len(unique)), out=offsets[1:])
        for a in (unique, image_index, order, offsets):
            a.setflags(write=False)
        return unique, image_index, order, offsets

    def unique_images(self) -> np.ndarray:
        """``int64 (n_images,)`` distinct image ids, in order of first appearance."""
        return self._grouping[0]

    def image_index(self) -> np.ndarray:
        """``int64 (N,)`` position of each caption's image in :meth:`unique_images`."""
        return self._grouping[1]

    def groups(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR grouping of captions by image.

        Returns:
            ``(image_ids_unique, offsets, order)``: ``image_ids_unique`` is :meth:`unique_images` ``(n_images,)``,
            ``offsets`` is ``int64 (n_images + 1,)`` and ``order`` is ``int64 (N,)``; the captions of image ``k``
            are the rows ``order[offsets[k]:offsets[k + 1]]``, in row order.
        """
        unique, _, order, offsets = self._grouping
        return unique, offsets, order

    def select(self, rows_or_mask: np.ndarray | Sequence[int] | Sequence[bool]) -> "CaptionTable":
        """A new table with the rows given by integer indices or by a boolean mask of length ``N``."""
        sel = np.asarray(rows_or_mask)
        if sel.dtype == bool:
            if sel.shape != (len(self),):
                raise ValueError(f"boolean mask must have shape ({len(self)},), got {sel.shape}")
            rows = np.flatnonzero(sel)
        elif sel.size == 0:
            rows = np.zeros(0, dtype=np.int64)
        elif np.issubdtype(sel.dtype, np.integer):
            rows = sel.reshape(-1).astype(np.int64, copy=False)
        else:
            raise TypeError(f"select() takes integer row indices or a boolean mask, got dtype {sel.dtype}")
        texts = self.texts
        return CaptionTable(
            image_ids=self.image_ids[rows],
            caption_ids=self.caption_ids[rows],
            texts=tuple(texts[i] for i in rows.tolist()),
            splits=None if self.splits is None else self.splits[rows],
            path=self.path,
            format=self.format,
        )

    @cached_property
    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(b"bcls-captions-v1\0")
        h.update(np.int64(len(self)).tobytes())
        h.update(np.ascontiguousarray(self.image_ids, dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(self.caption_ids, dtype="<i8").tobytes())
        encoded = [t.encode("utf-8") for t in self.texts]
        h.update(np.fromiter(map(len, encoded), dtype="<i8", count=len(encoded)).tobytes())
        h.update(b"".join(encoded))
        return h.hexdigest()

    def fingerprint(self) -> str:
        """SHA-256 hex digest of ``(image_id, caption_id, text)`` of every row, in row order.

        It does not depend on the split column, the path or the source format, and is stable across runs and
        machines, so it identifies the caption set that derived files (embeddings, label shards) were built from.
        """
        return self._fingerprint



@dataclass
class RawCaptions:
    """Columns as a reader found them, before the common checks; ``where(i)`` names row ``i`` in messages.

    ``split_names(split)`` says which values of the split column a requested split selects (Karpathy's ``train``
    also takes ``restval``); ``None`` means the reader has used the split already (a precomp split names files).
    """

    path: Path
    format: str
    image_ids: np.ndarray
    caption_ids: np.ndarray
    texts: list[str]
    splits: np.ndarray | None
    where: Where
    caption_id_name: str = "caption_id"
    split_names: Callable[[str], tuple[str, ...]] | None = field(default=lambda split: (split,))

    def finish(self, *, skip_empty: bool) -> CaptionTable:
        """The :class:`CaptionTable` after the common checks (rows present, unique caption ids, no empty
        caption unless ``skip_empty``, which leaves them out with a warning)."""
        n = len(self.texts)
        if n == 0:
            raise fail(self.path, "no captions; the file has no rows")
        check_unique_ids(self.path, self.caption_ids, self.where, self.caption_id_name)
        empty = np.fromiter((not t for t in self.texts), dtype=bool, count=n)
        n_empty = int(empty.sum())
        table = CaptionTable(image_ids=self.image_ids.astype(np.int64, copy=False),
                             caption_ids=self.caption_ids.astype(np.int64, copy=False), texts=tuple(self.texts),
                             splits=self.splits, path=str(self.path), format=self.format)
        if n_empty:
            first = int(np.argmax(empty))
            if not skip_empty:
                raise fail(self.path, f"{n_empty} empty caption(s), first at {self.where(first)}; fix them or pass "
                                      f"{setting_is('skip_empty', True)} to leave them out")
            logger.warning("%s: skipped %d empty caption(s) (first at %s)", self.path, n_empty, self.where(first))
            table = table.select(~empty)
            if len(table) == 0:
                raise fail(self.path, "every caption is empty")
        return table


def check_unique_ids(path: Path, ids: np.ndarray, where: Where, name: str) -> None:
    """A one-line error naming the first repeated caption id and both rows."""
    dup = first_duplicate([ids])
    if dup is not None:
        first_row, second_row, n_dup = dup
        raise fail(path, f"duplicate {name} {int(ids[second_row])} at {where(first_row)} and {where(second_row)}"
                         f"{f' ({n_dup} duplicates in all)' if n_dup > 1 else ''}; caption ids must be unique")


def filter_split(table: CaptionTable, split: str, wanted: tuple[str, ...]) -> CaptionTable:
    """The rows of ``table`` whose split is one of ``wanted`` (what ``split`` selects); errors name the file."""
    if table.splits is None:
        hint = (" or put the official Flickr_8k.{train,dev,test}Images.txt beside it" if table.format == "flickr8k"
                else "")
        raise fail(table.path, f"has no split column, so {setting_is('split', split)} cannot be selected; "
                               f"omit {setting('split')}{hint}")
    mask = np.isin(table.splits, np.array(wanted, dtype=object))
    if not mask.any():
        present = ", ".join(sorted(set(table.splits.tolist())))
        raise fail(table.path, f"no rows with split {split!r}; splits present: {present}")
    return table.select(mask)


def texts_of(path: Path, values: list[Any], where: Where, field_name: str) -> list[str]:
    """JSON caption values as stripped strings; a non-string is an error naming ``where(i)``."""
    try:
        return [v.strip() for v in values]
    except AttributeError:
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise fail(path, f"{where(i)}: {field_name!r} is {shown(v)}, not a string") from None
        raise
