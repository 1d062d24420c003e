"""Caption tables: one row per caption, read from the common caption file formats.

Five source formats are understood (see :func:`read_captions`):

* ``"table"``: a ``.csv``, ``.tsv`` or ``.parquet`` file with columns ``image_id``, ``caption_id``, ``text`` and
  optionally ``split``;
* ``"coco"``: an MS-COCO caption JSON (``captions_train2014.json``-style);
* ``"karpathy"``: Karpathy's ``dataset_coco.json`` / ``dataset_flickr30k.json`` / ``dataset_flickr8k.json``;
* ``"precomp"``: the SCAN / VSE++ "precomp" folder (see :mod:`bcls.data.precomp`);
* ``"flickr8k"``: the Flickr8k ``Flickr8k.token.txt`` file (``<image>.jpg#<n>\t<caption>``); integer ids come from
  the image file names (:func:`flickr8k_ids`).

Every reader returns a :class:`CaptionTable` and reports a bad input as a one-line
:class:`~bcls.data.errors.DataFormatError` naming the file, the row or field, and what to do.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bcls.data.errors import ConfigError, DataFormatError
from bcls.data.precomp import precomp_paths

logger = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("table", "coco", "karpathy", "precomp", "flickr8k")
"""The caption source formats :func:`read_captions` understands (``format="auto"`` detects one of them)."""

TABLE_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".parquet", ".pq")
PRECOMP_CAPTIONS_PER_IMAGE_DEFAULT = 5
"""Captions per image assumed for a precomp split that has no ``{split}_ims.npy`` to count the images."""

_REQUIRED_COLUMNS = ("image_id", "caption_id", "text")
_MAX_SHOWN = 120  # characters of a user value quoted in a message


# --------------------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CaptionTable:
    """Captions with their image ids, one row per caption (``N`` rows).

    Attributes:
        image_ids: ``int64 (N,)`` id of the image each caption describes.
        caption_ids: ``int64 (N,)`` caption ids, unique within the table.
        texts: ``(N,)`` caption texts (leading/trailing whitespace stripped, never empty unless built by hand).
        splits: ``(N,)`` object array of split names, or ``None`` when the source has no split column.
        path: the file or folder the table was read from (for messages and provenance).
        format: the source format, one of :data:`FORMATS`.
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


# --------------------------------------------------------------------------------------------------------------
# Format detection and dispatch
# --------------------------------------------------------------------------------------------------------------


def _fail(path: str | os.PathLike, what: str) -> DataFormatError:
    """A one-line DataFormatError ``"{path}: {what}"``."""
    return DataFormatError(f"{path}: {_one_line(what)}")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _shown(value: Any) -> str:
    s = repr(value)
    return s if len(s) <= _MAX_SHOWN else s[: _MAX_SHOWN - 3] + "..."


def _precomp_split_from_file(path: Path) -> str | None:
    name = path.name
    return name[: -len("_caps.txt")] if name.endswith("_caps.txt") and len(name) > len("_caps.txt") else None


def detect_format(path: str | os.PathLike) -> str:
    """The caption format of ``path``: one of :data:`FORMATS`.

    A folder (or a ``{split}_caps.txt`` file) is ``"precomp"``; ``.csv``/``.tsv``/``.parquet`` is ``"table"``;
    a ``*.token.txt`` file is ``"flickr8k"``;
    a ``.json`` is ``"karpathy"`` when its images carry ``sentences`` and ``"coco"`` when it has
    ``annotations``.

    Raises:
        DataFormatError: the path does not exist or its format cannot be recognised.
    """
    p = Path(path)
    if not p.exists():
        raise _fail(p, "no such file or folder; check the path")
    if p.is_dir():
        if any(p.glob("*_caps.txt")):
            return "precomp"
        raise _fail(p, "folder has no {split}_caps.txt file, so it is not a precomp folder; pass a caption file")
    suffix = p.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return "table"
    if _precomp_split_from_file(p) is not None:
        return "precomp"
    if p.name.lower().endswith(".token.txt"):
        return "flickr8k"
    if suffix == ".json":
        with open(p, "rb") as fh:
            head = fh.read(1 << 20)
        if b'"sentences"' in head:
            return "karpathy"
        if b'"annotations"' in head or b'"file_name"' in head or b'"coco_url"' in head:
            return "coco"
        data = _load_json(p)
        if isinstance(data, dict):
            if "annotations" in data:
                return "coco"
            images = data.get("images")
            if isinstance(images, list) and images and isinstance(images[0], dict) and "sentences" in images[0]:
                return "karpathy"
        raise _fail(p, "JSON is neither COCO captions (no 'annotations') nor Karpathy (no images[].sentences); "
                       "pass format= explicitly")
    raise _fail(
        p,
        f"cannot tell the caption format from the suffix {suffix!r}; use .csv/.tsv/.parquet, a COCO or Karpathy "
        f".json, a precomp folder, a Flickr8k *.token.txt, or pass format= (one of {', '.join(FORMATS)})",
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
        format: ``"auto"`` (detect with :func:`detect_format`) or one of :data:`FORMATS`.
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
          ``2258277193_586949ec62.jpg#0``. Blank lines are skipped; no split column.

    Texts are stripped of leading and trailing whitespace.

    Raises:
        ConfigError: ``format`` is not ``"auto"`` or one of :data:`FORMATS`.
        DataFormatError: the file is missing, empty, malformed, has non-integer or duplicate ids, empty captions
            (without ``skip_empty``), or ``split`` matches no rows.
    """
    if format != "auto" and format not in FORMATS:
        raise ConfigError(f"unknown caption format {format!r}; valid: auto, {', '.join(FORMATS)}")
    p = Path(path)
    if not p.exists():
        raise _fail(p, "no such file or folder; check the path")
    fmt = detect_format(p) if format == "auto" else format
    if fmt == "table":
        raw = _read_table(p)
    elif fmt == "coco":
        raw = _read_coco(p, allow_unknown_images)
    elif fmt == "karpathy":
        raw = _read_karpathy(p)
    elif fmt == "flickr8k":
        raw = _read_flickr8k(p)
    else:
        raw = _read_precomp(p, split)
        split = None  # the split chose the files; every row belongs to it
    table = raw.finish(skip_empty=skip_empty)
    if split is not None:
        table = _filter_split(table, split, karpathy=(fmt == "karpathy"))
    logger.debug("read %d captions of %d images from %s (%s)", len(table), len(table.unique_images()), p, fmt)
    return table


# --------------------------------------------------------------------------------------------------------------
# Shared validation
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Raw:
    """Columns as read, before the common checks; ``where(i)`` names row ``i`` in messages."""

    path: Path
    format: str
    image_ids: np.ndarray
    caption_ids: np.ndarray
    texts: list[str]
    splits: np.ndarray | None
    where: Callable[[int], str]
    caption_id_name: str = "caption_id"

    def finish(self, *, skip_empty: bool) -> CaptionTable:
        n = len(self.texts)
        if n == 0:
            raise _fail(self.path, "no captions; the file has no rows")
        _check_unique(self.path, self.caption_ids, self.where, self.caption_id_name)
        empty = np.fromiter((not t for t in self.texts), dtype=bool, count=n)
        n_empty = int(empty.sum())
        table = CaptionTable(
            image_ids=self.image_ids.astype(np.int64, copy=False),
            caption_ids=self.caption_ids.astype(np.int64, copy=False),
            texts=tuple(self.texts),
            splits=self.splits,
            path=str(self.path),
            format=self.format,
        )
        if n_empty:
            first = int(np.argmax(empty))
            if not skip_empty:
                raise _fail(
                    self.path,
                    f"{n_empty} empty caption(s), first at {self.where(first)}; fix them or pass --skip-empty "
                    "(skip_empty=True) to leave them out",
                )
            logger.warning("%s: skipped %d empty caption(s) (first at %s)", self.path, n_empty, self.where(first))
            table = table.select(~empty)
            if len(table) == 0:
                raise _fail(self.path, "every caption is empty")
        return table


def _check_unique(path: Path, ids: np.ndarray, where: Callable[[int], str], name: str) -> None:
    order = np.argsort(ids, kind="stable")
    ids_sorted = ids[order]
    dup = np.flatnonzero(ids_sorted[1:] == ids_sorted[:-1])
    if dup.size:
        second_rows = order[dup + 1]
        k = int(np.argmin(second_rows))
        first_row, second_row = int(order[dup[k]]), int(second_rows[k])
        n_dup = int(dup.size)
        raise _fail(
            path,
            f"duplicate {name} {int(ids[second_row])} at {where(first_row)} and {where(second_row)}"
            f"{f' ({n_dup} duplicates in all)' if n_dup > 1 else ''}; caption ids must be unique",
        )


def _filter_split(table: CaptionTable, split: str, *, karpathy: bool) -> CaptionTable:
    if table.splits is None:
        raise _fail(table.path, f"has no split column, so split={split!r} cannot be selected; omit split=")
    wanted = ("train", "restval") if (karpathy and split == "train") else (split,)
    mask = np.isin(table.splits, np.array(wanted, dtype=object))
    if not mask.any():
        present = ", ".join(sorted(set(table.splits.tolist())))
        raise _fail(table.path, f"no rows with split {split!r}; splits present: {present}")
    return table.select(mask)


def _decode_utf8(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise _fail(path, f"line {line}: not valid UTF-8 ({err.reason} at byte {err.start}); re-save as UTF-8")


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise _fail(path, "not a file; check the path")
    raw = path.read_bytes()
    if not raw.strip():
        raise _fail(path, "empty file; no captions to read")
    return raw


# --------------------------------------------------------------------------------------------------------------
# table: csv / tsv / parquet
# --------------------------------------------------------------------------------------------------------------


def _read_table(path: Path) -> _Raw:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        tbl = _read_parquet(path)

        def where(i: int) -> str:
            return f"row {i + 1}"
    else:
        tbl = read_delimited_strings(path, "\t" if suffix == ".tsv" else ",")

        def where(i: int) -> str:  # the header is line 1
            return f"line {i + 2}"

    image_ids = int_column(path, tbl, "image_id", where)
    caption_ids = int_column(path, tbl, "caption_id", where)
    text = tbl.column("text")
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        try:
            text = text.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise _fail(path, f"column 'text' has type {text.type}; it must hold strings") from None
    texts = pc.utf8_trim_whitespace(text.fill_null("")).to_pylist()
    splits = None
    if "split" in tbl.column_names:
        splits = _object_strings(tbl.column("split"))
    return _Raw(path, "table", image_ids, caption_ids, texts, splits, where)


def read_delimited_strings(path: Path, delimiter: str, required: Sequence[str] = _REQUIRED_COLUMNS,
                           optional: Sequence[str] = ("split",),
                           needs: str = "a caption table needs image_id, caption_id, text and optionally split"
                           ) -> pa.Table:
    """The ``required`` (and present ``optional``) columns of a CSV/TSV file as strings, for the callers to
    convert. One-line errors name the file and line: undecodable text, a missing column (``needs`` says what the
    file must have), a row with the wrong number of fields."""
    import pyarrow.csv as pacsv

    raw = _read_bytes(path)
    text = _decode_utf8(path, raw)
    first_line = text.lstrip("\ufeff").split("\n", 1)[0].rstrip("\r")
    try:
        header = next(csv.reader([first_line], delimiter=delimiter), [])
    except csv.Error as err:
        raise _fail(path, f"line 1: cannot read the header ({err}); the first line must name the columns "
                          f"{', '.join(required)}") from None
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise _fail(path, f"missing column(s) {', '.join(missing)} (header has: {', '.join(header) or 'nothing'}); "
                          f"{needs}")
    wanted = [c for c in (*required, *optional) if c in header]
    bad_rows: list[Any] = []

    def on_invalid(row: Any) -> str:
        bad_rows.append(row)
        return "error"

    try:
        return pacsv.read_csv(
            pa.BufferReader(raw),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in wanted},
                include_columns=wanted,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        if bad_rows:
            row = bad_rows[0]
            at = f"line {row.number}" if row.number is not None else _line_of(text, row.text)
            raise _fail(
                path,
                f"{at}: expected {row.expected_columns} fields, got {row.actual_columns} "
                f"({_shown(row.text)}); check the delimiter and quoting",
            ) from None
        raise _fail(path, f"cannot parse: {str(err).splitlines()[0]}") from None


def _line_of(text: str, row_text: str) -> str:
    """``"line L"`` of the first line equal to ``row_text`` (for parse errors that lack a line number)."""
    for i, line in enumerate(text.split("\n")):
        if line.rstrip("\r") == row_text:
            return f"line {i + 1}"
    return "a row"


def _read_parquet(path: Path) -> pa.Table:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise _fail(path, "not a file; check the path")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise _fail(path, f"not a readable Parquet file ({str(err).splitlines()[0]})") from None
    names = schema.names
    missing = [c for c in _REQUIRED_COLUMNS if c not in names]
    if missing:
        raise _fail(
            path,
            f"missing column(s) {', '.join(missing)} (columns: {', '.join(names) or 'none'}); "
            f"a caption table needs {', '.join(_REQUIRED_COLUMNS)} and optionally split",
        )
    wanted = [c for c in (*_REQUIRED_COLUMNS, "split") if c in names]
    try:
        return pq.read_table(path, columns=wanted)
    except (pa.ArrowInvalid, OSError) as err:
        raise _fail(path, f"cannot read Parquet data ({str(err).splitlines()[0]})") from None


def int_column(path: Path, tbl: pa.Table, name: str, where: Callable[[int], str]) -> np.ndarray:
    """Column ``name`` of ``tbl`` as int64; a missing, non-integer or out-of-range value is a one-line error
    naming the row (``where(i)``)."""
    col = tbl.column(name)
    typ = col.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        col = pc.utf8_trim_whitespace(col)
    elif not (pa.types.is_integer(typ) or pa.types.is_floating(typ)):
        raise _fail(path, f"column {name!r} has type {typ}; ids must be integers")
    if col.null_count:
        first = int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))
        raise _fail(path, f"{where(first)}: column {name!r} is empty; ids must be integers")
    try:
        out = col.cast(pa.int64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
        values = col.to_pylist()
        for i, v in enumerate(values):
            if not _is_int64(v):
                raise _fail(path, f"{where(i)}: column {name!r} is {_shown(v)}, not an integer id") from None
        raise _fail(path, f"column {name!r} cannot be read as 64-bit integers") from None
    return np.asarray(out, dtype=np.int64)


_INT_RE = re.compile(r"[+-]?\d+\Z")


def _is_int64(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, float):
        if not np.isfinite(v) or v != int(v):
            return False
        v = int(v)
    if isinstance(v, str):
        if not _INT_RE.match(v.strip()):
            return False
        v = int(v)
    return isinstance(v, int) and -(2**63) <= v < 2**63


def _object_strings(col: pa.ChunkedArray) -> np.ndarray:
    """A string column as an object array of ``str`` (nulls become ``""``)."""
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = col.cast(pa.string())
    enc = pc.dictionary_encode(col.fill_null("")).combine_chunks()
    names = np.array(enc.dictionary.to_pylist(), dtype=object)
    return names[enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)]


# --------------------------------------------------------------------------------------------------------------
# coco / karpathy JSON
# --------------------------------------------------------------------------------------------------------------


def _load_json(path: Path) -> Any:
    text = _decode_utf8(path, _read_bytes(path))
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise _fail(
            path, f"malformed JSON at line {err.lineno} column {err.colno} (char {err.pos}): {err.msg}"
        ) from None


def _int_list(path: Path, values: list[Any], where: Callable[[int], str], field: str) -> np.ndarray:
    """Validate JSON ids (ints, not bools/floats/strings) and return them as int64."""
    try:
        arr = np.array(values) if values else np.zeros(0, dtype=np.int64)
    except (ValueError, TypeError, OverflowError):  # ragged lists and the like
        arr = np.zeros(0, dtype=object)
    if arr.dtype.kind not in "iu" or arr.dtype == bool or arr.ndim != 1:
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, int) or not _is_int64(v):
                raise _fail(path, f"{where(i)}: {field!r} is {_shown(v)}, not an integer id")
        arr = np.array(values, dtype=np.int64)
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) >= 2**63:
        i = int(np.argmax(arr >= 2**63))
        raise _fail(path, f"{where(i)}: {field!r} is {values[i]}, beyond 64-bit ids")
    return arr.astype(np.int64)


def _missing_key(path: Path, where: str, obj: Any, keys: Sequence[str]) -> DataFormatError:
    if not isinstance(obj, dict):
        return _fail(path, f"{where} is a {type(obj).__name__}, expected an object with {', '.join(keys)}")
    absent = [k for k in keys if k not in obj]
    return _fail(path, f"{where} has no {', '.join(map(repr, absent))} (keys: {', '.join(obj) or 'none'})")


def _read_coco(path: Path, allow_unknown_images: bool = False) -> _Raw:
    data = _load_json(path)
    if not isinstance(data, dict) or "annotations" not in data:
        keys = ", ".join(data) if isinstance(data, dict) else type(data).__name__
        raise _fail(path, f"no 'annotations' key (top level: {keys or 'empty'}); not a COCO caption file")
    anns = data["annotations"]
    if not isinstance(anns, list):
        raise _fail(path, f"'annotations' is a {type(anns).__name__}, expected a list")

    def where(i: int) -> str:
        return f"annotations[{i}]"

    keys = ("image_id", "id", "caption")
    try:
        image_ids = [a["image_id"] for a in anns]
        caption_ids = [a["id"] for a in anns]
        captions = [a["caption"] for a in anns]
    except (KeyError, TypeError):
        for i, a in enumerate(anns):
            if not isinstance(a, dict) or any(k not in a for k in keys):
                raise _missing_key(path, where(i), a, keys) from None
        raise
    texts = _texts(path, captions, where, "caption")
    raw = _Raw(
        path, "coco", _int_list(path, image_ids, where, "image_id"), _int_list(path, caption_ids, where, "id"),
        texts, None, where, caption_id_name="annotation id",
    )
    images = data.get("images")
    if isinstance(images, list) and images and anns:
        try:
            known = np.array([im["id"] for im in images], dtype=np.int64)
        except (KeyError, TypeError, ValueError, OverflowError):
            known = None
        if known is not None:
            unknown = ~np.isin(raw.image_ids, known)
            if unknown.any():
                first = int(np.argmax(unknown))
                what = (f"{int(unknown.sum())} annotation(s) refer to image ids not listed in 'images' (first: "
                        f"{where(first)}, image_id {int(raw.image_ids[first])})")
                if not allow_unknown_images:
                    raise _fail(path, f"{what}; fix the file or pass --allow-unknown-images "
                                      "(allow_unknown_images=True) to keep them")
                logger.warning("%s: %s; kept them", path, what)
            uncaptioned = ~np.isin(known, raw.image_ids)
            if uncaptioned.any():
                first = int(np.argmax(uncaptioned))
                logger.warning("%s: %d image(s) listed in 'images' have no caption (first: images[%d], id %d); "
                               "they are left out", path, int(uncaptioned.sum()), first, int(known[first]))
    return raw


def _texts(path: Path, values: list[Any], where: Callable[[int], str], field: str) -> list[str]:
    try:
        return [v.strip() for v in values]
    except AttributeError:
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise _fail(path, f"{where(i)}: {field!r} is {_shown(v)}, not a string") from None
        raise


def _read_karpathy(path: Path) -> _Raw:
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        keys = ", ".join(data) if isinstance(data, dict) else type(data).__name__
        raise _fail(path, f"no 'images' list (top level: {keys or 'empty'}); not a Karpathy dataset_*.json")
    images = data["images"]
    img_keys = ("split", "sentences")
    counts = np.zeros(len(images), dtype=np.int64)
    image_ids: list[Any] = []
    split_names: list[str] = []
    sentences: list[Any] = []
    for i, im in enumerate(images):
        if not isinstance(im, dict) or any(k not in im for k in img_keys) or not isinstance(im["sentences"], list):
            if isinstance(im, dict) and "sentences" in im and "split" in im:
                raise _fail(path, f"images[{i}].sentences is a {type(im['sentences']).__name__}, expected a list")
            raise _missing_key(path, f"images[{i}]", im, img_keys)
        image_id = im.get("cocoid", im.get("imgid"))
        if image_id is None:
            raise _missing_key(path, f"images[{i}]", im, ("imgid",))
        sents = im["sentences"]
        counts[i] = len(sents)
        image_ids.append(image_id)
        split_names.append(im["split"])
        sentences.extend(sents)
    starts = np.concatenate([[0], np.cumsum(counts)])

    def where(r: int) -> str:
        i = int(np.searchsorted(starts, r, side="right")) - 1
        return f"images[{i}].sentences[{r - int(starts[i])}]"

    def img_where(i: int) -> str:
        return f"images[{i}]"

    try:
        raws = [s["raw"] for s in sentences]
        sent_ids = [s["sentid"] for s in sentences]
    except (KeyError, TypeError):
        for r, s in enumerate(sentences):
            if not isinstance(s, dict) or "raw" not in s or "sentid" not in s:
                raise _missing_key(path, where(r), s, ("raw", "sentid")) from None
        raise
    per_image_ids = _int_list(path, image_ids, img_where, "cocoid/imgid")
    for i, s in enumerate(split_names):
        if not isinstance(s, str):
            raise _fail(path, f"images[{i}]: 'split' is {_shown(s)}, not a string")
    split_arr = np.array(split_names, dtype=object)
    return _Raw(
        path, "karpathy",
        np.repeat(per_image_ids, counts),
        _int_list(path, sent_ids, where, "sentid"),
        _texts(path, raws, where, "raw"),
        np.repeat(split_arr, counts) if len(split_arr) else np.zeros(0, dtype=object),
        where,
        caption_id_name="sentid",
    )


# --------------------------------------------------------------------------------------------------------------
# precomp
# --------------------------------------------------------------------------------------------------------------


def _lines(path: Path) -> list[str]:
    text = _decode_utf8(path, _read_bytes(path))
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _precomp_n_images(path: Path) -> int:
    """Number of images in a precomp ``.npy`` (only its header is read)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise _fail(path, f"not a readable .npy file ({str(err).splitlines()[0]}); rewrite it with np.save") from None
    if not isinstance(arr, np.ndarray) or arr.ndim not in (2, 3) or arr.shape[0] == 0:
        shape = getattr(arr, "shape", None)
        raise _fail(path, f"image features must be (N, R, D) or (N, D) with N > 0, got shape {shape}")
    return int(arr.shape[0])


def _read_precomp(path: Path, split: str | None) -> _Raw:
    if path.is_file():
        file_split = _precomp_split_from_file(path)
        if file_split is None:
            raise _fail(path, "a precomp caption file must be named {split}_caps.txt; pass the folder and split=")
        if split is not None and split != file_split:
            raise _fail(path, f"is the {file_split!r} split but split={split!r} was asked for")
        folder, split = path.parent, file_split
    else:
        folder, split = path, (split if split is not None else "train")
    paths = precomp_paths(folder, split)
    caps_path, ids_path, ims_path = paths["caps"], paths["ids"], paths["ims"]
    if not caps_path.exists():
        present = sorted(p.name[: -len("_caps.txt")] for p in folder.glob("*_caps.txt"))
        raise _fail(caps_path, f"no such file; splits present in {folder}: {', '.join(present) or 'none'}")
    texts = [line.strip() for line in _lines(caps_path)]
    n_caps = len(texts)
    if n_caps == 0:
        raise _fail(caps_path, "no captions; the file has no lines")

    if ims_path.exists():
        n_images = _precomp_n_images(ims_path)
        if n_caps % n_images:
            raise DataFormatError(
                f"{caps_path}: {n_caps} captions are not a multiple of the {n_images} images in {ims_path}; "
                "the captions of each image must be consecutive and equal in number"
            )
    else:
        cpi_default = PRECOMP_CAPTIONS_PER_IMAGE_DEFAULT
        if n_caps % cpi_default:
            raise _fail(
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
        id_lines = [line.strip() for line in _lines(ids_path)]
        ids = _parse_id_lines(ids_path, id_lines, where)
        if len(ids) == n_caps:
            per_image = ids.reshape(n_images, cpi)
            differs = per_image != per_image[:, :1]
            if differs.any():
                r = int(np.argmax(differs.reshape(-1)))
                k = r // cpi
                raise _fail(
                    ids_path,
                    f"line {r + 1}: id {int(ids[r])} differs from id {int(per_image[k, 0])} on line {k * cpi + 1}, "
                    f"but both lines belong to image {k} ({cpi} captions per image)",
                )
            per_image_ids = per_image[:, 0]
        elif len(ids) == n_images:
            per_image_ids = ids
        else:
            raise _fail(
                ids_path,
                f"{len(ids)} ids match neither the {n_caps} captions nor the {n_images} images of {caps_path.name}",
            )
        uniq, counts = np.unique(per_image_ids, return_counts=True)
        if (counts > 1).any():
            j = int(np.argmax(counts > 1))
            again = np.flatnonzero(per_image_ids == uniq[j])
            raise _fail(
                ids_path,
                f"image id {int(uniq[j])} names images {int(again[0])} and {int(again[1])} (lines "
                f"{int(again[0]) * cpi + 1}.. and {int(again[1]) * cpi + 1}.. of {caps_path.name}); "
                "each image of a precomp split needs its own id",
            )
        image_ids = per_image_ids[image_index]
    else:
        image_ids = image_index
    return _Raw(
        caps_path, "precomp", image_ids, np.arange(n_caps, dtype=np.int64), texts,
        np.full(n_caps, split, dtype=object), where, caption_id_name="caption id",
    )


def _parse_id_lines(path: Path, lines: list[str], where: Callable[[int], str]) -> np.ndarray:
    try:
        return np.array([int(s) for s in lines], dtype=np.int64)
    except (ValueError, OverflowError):
        for i, s in enumerate(lines):
            if not _is_int64(s):
                raise _fail(path, f"{where(i)}: {_shown(s)} is not an integer image id") from None
        raise


# --------------------------------------------------------------------------------------------------------------
# flickr8k
# --------------------------------------------------------------------------------------------------------------

# A Flickr8k image name is "<flickr photo id>_<secret>.jpg"; ".jpg.1" is an upstream typo of one caption key.
_FLICKR8K_NAME = r"(\d+)(?:_[0-9A-Za-z]+)?\.jpg(?:\.\d+)?"
_FLICKR8K_RE = re.compile(rf"({_FLICKR8K_NAME})(?:#(\d+))?\Z", re.IGNORECASE)


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
            raise _fail(path if path is not None else "<names>", f"{at}{_shown(name)} is {what}; fix the name")
        photo = int(m.group(2))
        out[i] = photo if m.group(3) is None else photo * 10 + int(m.group(3))
    return out


def _read_flickr8k(path: Path) -> _Raw:
    lines = _lines(path)
    line_no: list[int] = []
    keys: list[str] = []
    texts: list[str] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        key, tab, text = line.partition("\t")
        if not tab:
            raise _fail(path, f"line {i + 1}: no tab between the caption key and the caption "
                              f"({_shown(line)}); lines must be <image>.jpg#<n><TAB><caption>")
        if "#" not in key:
            raise _fail(path, f"line {i + 1}: caption key {_shown(key)} has no #<n>; lines must be "
                              "<image>.jpg#<n><TAB><caption>")
        line_no.append(i + 1)
        keys.append(key.strip())
        texts.append(text.strip())
    if not keys:
        raise _fail(path, "no captions; the file has only blank lines")

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
        raise _fail(path, f"{where(r)}: image {names[r]} has the photo id {int(image_ids[r])} of image "
                          f"{names[other]} ({where(other)}); Flickr8k image ids must be unique, rename one")
    n_quirk = sum(1 for k in keys if ".jpg." in k.lower())
    if n_quirk:
        logger.debug("%s: read %d caption key(s) of the form X.jpg.<n>#k as X.jpg#k", path, n_quirk)
    return _Raw(path, "flickr8k", image_ids, caption_ids, texts, None, where,
                caption_id_name="caption id (photo id * 10 + n)")
