"""Reading user tables (CSV/TSV/Parquet/JSON) with one-line errors: the one copy of these helpers.

Every reader of a user file (caption tables, pair-score files, judgment files) builds its messages with
:func:`fail` — ``"{path}: {what}"`` on one line — names rows with a ``where(i)`` callable (``"line 3"``,
``"row 2"``, ``"annotations[4]"``) and quotes user values with :func:`shown`.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .infra.errors import DataFormatError

MAX_SHOWN = 120
"""Characters of a user value quoted in a message."""

Where = Callable[[int], str]
"""``where(i)`` names row ``i`` of a file in messages."""


def one_line(text: str) -> str:
    """``text`` with every run of white space (newlines included) folded to one space."""
    return " ".join(str(text).split())


def fail(path: str | os.PathLike, what: str) -> DataFormatError:
    """A one-line :class:`DataFormatError` ``"{path}: {what}"``."""
    return DataFormatError(f"{path}: {one_line(what)}")


def shown(value: Any) -> str:
    """``repr(value)`` cut to :data:`MAX_SHOWN` characters."""
    s = repr(value)
    return s if len(s) <= MAX_SHOWN else s[: MAX_SHOWN - 3] + "..."


def read_bytes(path: Path, what: str = "captions") -> bytes:
    """The bytes of a file that must exist and hold something besides white space (else a one-line error)."""
    if not path.is_file():
        raise fail(path, "not a file; check the path")
    raw = path.read_bytes()
    if not raw.strip():
        raise fail(path, f"empty file; no {what} to read")
    return raw


def decode_utf8(path: Path, raw: bytes) -> str:
    """``raw`` decoded as UTF-8; invalid bytes are an error naming the line."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise fail(path, f"line {line}: not valid UTF-8 ({err.reason} at byte {err.start}); re-save as UTF-8") \
            from None


def text_lines(path: Path, what: str = "captions") -> list[str]:
    """The lines of a UTF-8 text file, without a final empty line."""
    lines = decode_utf8(path, read_bytes(path, what)).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def load_json(path: Path, what: str = "captions") -> Any:
    """A JSON file's content; malformed JSON is an error naming the line and column."""
    text = decode_utf8(path, read_bytes(path, what))
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise fail(path, f"malformed JSON at line {err.lineno} column {err.colno} (char {err.pos}): {err.msg}") \
            from None


def read_delimited_strings(path: Path, delimiter: str, required: Sequence[str], optional: Sequence[str] = (),
                           needs: str = "", what: str = "rows") -> pa.Table:
    """The ``required`` (and present ``optional``) columns of a CSV/TSV file as strings, for the callers to
    convert. One-line errors name the file and line: undecodable text, a missing column (``needs`` says what the
    file must have), a row with the wrong number of fields."""
    import pyarrow.csv as pacsv

    raw = read_bytes(path, what)
    text = decode_utf8(path, raw)
    first_line = text.lstrip("\ufeff").split("\n", 1)[0].rstrip("\r")
    try:
        header = next(csv.reader([first_line], delimiter=delimiter), [])
    except csv.Error as err:
        raise fail(path, f"line 1: cannot read the header ({err}); the first line must name the columns "
                         f"{', '.join(required)}") from None
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise fail(path, f"missing column(s) {', '.join(missing)} (header has: {', '.join(header) or 'nothing'}); "
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
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in wanted},
                                                 include_columns=wanted, strings_can_be_null=False,
                                                 quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        if bad_rows:
            row = bad_rows[0]
            at = f"line {row.number}" if row.number is not None else _line_of(text, row.text)
            raise fail(path, f"{at}: expected {row.expected_columns} fields, got {row.actual_columns} "
                             f"({shown(row.text)}); check the delimiter and quoting") from None
        raise fail(path, f"cannot parse: {str(err).splitlines()[0]}") from None


def _line_of(text: str, row_text: str) -> str:
    """``"line L"`` of the first line equal to ``row_text`` (for parse errors that lack a line number)."""
    for i, line in enumerate(text.split("\n")):
        if line.rstrip("\r") == row_text:
            return f"line {i + 1}"
    return "a row"


def read_parquet_columns(path: Path, required: Sequence[str], optional: Sequence[str] = (), needs: str = "",
                         rewrite: str = "") -> pa.Table:
    """The ``required`` (and present ``optional``) columns of a Parquet file; an unreadable file or a missing
    column is a one-line error (``needs`` says what the file must have, ``rewrite`` what to do with a broken
    file)."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise fail(path, "not a file; check the path")
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError) as err:
        raise fail(path, f"not a readable Parquet file ({str(err).splitlines()[0]}){rewrite}") from None
    missing = [c for c in required if c not in names]
    if missing:
        raise fail(path, f"missing column(s) {', '.join(missing)} (columns: {', '.join(names) or 'none'}); {needs}")
    try:
        return pq.read_table(path, columns=[c for c in (*required, *optional) if c in names])
    except (pa.ArrowInvalid, OSError) as err:
        raise fail(path, f"cannot read Parquet data ({str(err).splitlines()[0]})") from None


_INT_RE = re.compile(r"[+-]?\d+\Z")


def is_int64(v: Any) -> bool:
    """Whether ``v`` (an int, an integral float or an integer string) fits a signed 64-bit id."""
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


def int_column(path: Path, tbl: pa.Table, name: str, where: Where) -> np.ndarray:
    """Column ``name`` of ``tbl`` as int64; a missing, non-integer or out-of-range value is a one-line error
    naming the row (``where(i)``)."""
    col = tbl.column(name)
    typ = col.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        col = pc.utf8_trim_whitespace(col)
    elif not (pa.types.is_integer(typ) or pa.types.is_floating(typ)):
        raise fail(path, f"column {name!r} has type {typ}; ids must be integers")
    if col.null_count:
        first = int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))
        raise fail(path, f"{where(first)}: column {name!r} is empty; ids must be integers")
    try:
        out = col.cast(pa.int64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
        for i, v in enumerate(col.to_pylist()):
            if not is_int64(v):
                raise fail(path, f"{where(i)}: column {name!r} is {shown(v)}, not an integer id") from None
        raise fail(path, f"column {name!r} cannot be read as 64-bit integers") from None
    return np.asarray(out, dtype=np.int64)


def int_list(path: Path, values: list[Any], where: Where, field: str) -> np.ndarray:
    """JSON ids (ints, not bools/floats/strings) as int64; a bad one is an error naming ``where(i)``."""
    try:
        arr = np.array(values) if values else np.zeros(0, dtype=np.int64)
    except (ValueError, TypeError, OverflowError):  # ragged lists and the like
        arr = np.zeros(0, dtype=object)
    if arr.dtype.kind not in "iu" or arr.dtype == bool or arr.ndim != 1:
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, int) or not is_int64(v):
                raise fail(path, f"{where(i)}: {field!r} is {shown(v)}, not an integer id")
        arr = np.array(values, dtype=np.int64)
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) >= 2**63:
        i = int(np.argmax(arr >= 2**63))
        raise fail(path, f"{where(i)}: {field!r} is {values[i]}, beyond 64-bit ids")
    return arr.astype(np.int64)


def object_strings(col: pa.ChunkedArray) -> np.ndarray:
    """A string column as an object array of ``str`` (nulls become ``""``)."""
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = col.cast(pa.string())
    enc = pc.dictionary_encode(col.fill_null("")).combine_chunks()
    names = np.array(enc.dictionary.to_pylist(), dtype=object)
    return names[enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)]


def missing_key(path: Path, where: str, obj: Any, keys: Sequence[str]) -> DataFormatError:
    """The error for a JSON object at ``where`` that lacks some of ``keys`` (or is not an object)."""
    if not isinstance(obj, dict):
        return fail(path, f"{where} is a {type(obj).__name__}, expected an object with {', '.join(keys)}")
    absent = [k for k in keys if k not in obj]
    return fail(path, f"{where} has no {', '.join(map(repr, absent))} (keys: {', '.join(obj) or 'none'})")


def id_positions(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """int64 index in ``ids`` (distinct, any order) of each of ``wanted``; -1 where absent: how files keyed by id
    (judgments, feature rows) join a table."""
    ids = np.asarray(ids)
    wanted = np.asarray(wanted)
    order = np.argsort(ids, kind="stable")
    srt = ids[order]
    if not len(srt):
        return np.full(len(wanted), -1, dtype=np.int64)
    at = np.minimum(np.searchsorted(srt, wanted), len(srt) - 1)
    return np.where(srt[at] == wanted, order[at], -1).astype(np.int64)


def first_duplicate(keys: Sequence[np.ndarray]) -> tuple[int, int, int] | None:
    """The first repeated row of the composite key ``keys`` (arrays of one length): ``(first row, repeat row,
    number of repeats)`` with the repeat the earliest in file order, or None when every key is unique."""
    order = np.lexsort(tuple(reversed(keys)))
    same = np.ones(len(order) - 1 if len(order) else 0, dtype=bool)
    for k in keys:
        ks = k[order]
        same &= ks[1:] == ks[:-1]
    if not same.any():
        return None
    at = np.flatnonzero(same)
    second = order[at + 1]
    j = int(np.argmin(second))
    return int(order[at[j]]), int(second[j]), int(at.size)
