"""The ``table`` caption format: a CSV, TSV or Parquet file with columns ``image_id``, ``caption_id``, ``text``
(and optionally ``split``)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..tables import fail, int_column, object_strings, read_delimited_strings, read_parquet_columns
from .table import RawCaptions

SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".parquet", ".pq")
REQUIRED_COLUMNS: tuple[str, ...] = ("image_id", "caption_id", "text")
NEEDS = "a caption table needs image_id, caption_id, text and optionally split"


def read_table(path: Path, split: str | None = None, allow_unknown_images: bool = False) -> RawCaptions:
    """A ``.csv`` / ``.tsv`` / ``.parquet`` caption table (required columns ``image_id``, ``caption_id``, ``text``;
    optional ``split``, which ``split=`` filters on)."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        tbl = read_parquet_columns(path, REQUIRED_COLUMNS, ("split",), NEEDS)

        def where(i: int) -> str:
            return f"row {i + 1}"
    else:
        tbl = read_delimited_strings(path, "\t" if suffix == ".tsv" else ",", REQUIRED_COLUMNS, ("split",), NEEDS,
                                     "captions")

        def where(i: int) -> str:  # the header is line 1
            return f"line {i + 2}"

    image_ids = int_column(path, tbl, "image_id", where)
    caption_ids = int_column(path, tbl, "caption_id", where)
    text = tbl.column("text")
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        try:
            text = text.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise fail(path, f"column 'text' has type {text.type}; it must hold strings") from None
    texts = pc.utf8_trim_whitespace(text.fill_null("")).to_pylist()
    splits = None
    if "split" in tbl.column_names:
        splits = object_strings(tbl.column("split"))
    return RawCaptions(path, "table", image_ids, caption_ids, texts, splits, where)
