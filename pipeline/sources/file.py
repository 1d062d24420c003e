"""``file``: user-supplied continuous labels, one score per (image_id, caption_id) pair.

The scores come from a CSV (``,``), TSV (tab) or Parquet file with the columns ``image_id``, ``caption_id``
(integers, the ids of the caption table the labels are built for) and ``score`` (a finite number); other columns
are ignored. :func:`read_pair_scores` reads and checks the file; :class:`FileSource` holds the arrays it returned
and does no file I/O itself (a label source never reads files), so tests can hand it any arrays.

A pair is looked up by ids, so the :class:`~bcls.pipeline.corpus.LabelCorpus` must carry ``image_ids`` and
``caption_ids``; a pair that is not in the file gets NaN (unknown), like a pair no other source can score.
Scores are passed through unchanged (no rescaling): normalisation belongs to the trainer.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bcls.data.infra.errors import ConfigError
from bcls.data.tables import fail as _fail
from bcls.data.tables import first_duplicate, int_column, read_delimited_strings, read_parquet_columns
from bcls.data.tables import shown as _shown

from ..corpus import LabelCorpus
from .hashing import sorted_unique

log = logging.getLogger(__name__)

PAIR_SCORE_COLUMNS: tuple[str, ...] = ("image_id", "caption_id", "score")
"""The columns a pair-score file must have."""

PAIR_SCORE_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".parquet", ".pq")
NEEDS = "a pair-score file needs " + ", ".join(PAIR_SCORE_COLUMNS)
def read_pair_scores(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a pair-score file.

    Args:
        path: a ``.csv``, ``.tsv`` or ``.parquet`` (``.pq``) file with columns ``image_id``, ``caption_id``,
            ``score`` (header row for CSV/TSV).

    Returns:
        ``(image_ids, caption_ids, scores)``: int64 ``(P,)``, int64 ``(P,)``, float32 ``(P,)``, in file order.

    Raises:
        DataFormatError: the file is missing or unreadable, a column is missing, an id is not an integer, a score is
            empty or not finite (also after conversion to float32), or a pair appears twice — naming the file and
            the line (CSV/TSV, the header is line 1) or row (Parquet, 1-based).
    """
    p = Path(path)
    if not p.is_file():
        raise _fail(p, "no such file; check the path of the pair-score file")
    suffix = p.suffix.lower()
    if suffix not in PAIR_SCORE_SUFFIXES:
        raise _fail(p, f"cannot read pair scores from a {suffix or 'suffix-less'} file; "
                       f"use one of {', '.join(PAIR_SCORE_SUFFIXES)} with columns {', '.join(PAIR_SCORE_COLUMNS)}")
    if suffix in (".parquet", ".pq"):
        tbl = read_parquet_columns(p, PAIR_SCORE_COLUMNS, (), NEEDS, "; rewrite it")

        def where(i: int) -> str:
            return f"row {i + 1}"
    else:
        tbl = read_delimited_strings(p, "\t" if suffix == ".tsv" else ",", PAIR_SCORE_COLUMNS, (), NEEDS,
                                     "pair scores")

        def where(i: int) -> str:  # the header is line 1
            return f"line {i + 2}"

    if tbl.num_rows == 0:
        raise _fail(p, "no rows; the pair-score file has a header but no (image_id, caption_id, score) rows")
    image_ids = int_column(p, tbl, "image_id", where)
    caption_ids = int_column(p, tbl, "caption_id", where)
    scores = _score_column(p, tbl, where)
    _check_unique_pairs(p, image_ids, caption_ids, where)
    log.debug("read %d pair scores from %s", len(scores), p)
    return image_ids, caption_ids, scores


def _score_column(path: Path, tbl: pa.Table, where: Callable[[int], str]) -> np.ndarray:
    col = tbl.column("score")
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        col = pc.utf8_trim_whitespace(col)
        col = pc.if_else(pc.equal(col, ""), pa.scalar(None, col.type), col)
    if col.null_count:
        first = int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))
        raise _fail(path, f"{where(first)}: score is empty; give every listed pair a finite score "
                          "(leave unknown pairs out of the file)")
    try:
        values = np.asarray(col.cast(pa.float64()).to_numpy(), dtype=np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        for i, v in enumerate(col.to_pylist()):
            try:
                float(v)
            except (TypeError, ValueError):
                raise _fail(path, f"{where(i)}: score is {_shown(v)}, not a number; fix the row") from None
        raise _fail(path, f"column 'score' has type {col.type}; scores must be numbers") from None
    with np.errstate(over="ignore"):
        scores = values.astype(np.float32)
    bad = ~np.isfinite(scores)
    if bad.any():
        i = int(np.argmax(bad))
        what = "beyond the float32 range" if np.isfinite(values[i]) else "not finite"
        raise _fail(path, f"{where(i)}: score {float(values[i])!r} is {what}; give a finite score or leave the pair "
                          f"out ({int(bad.sum())} such row(s))")
    return scores


def _check_unique_pairs(path: Path, image_ids: np.ndarray, caption_ids: np.ndarray,
                        where: Callable[[int], str]) -> None:
    dup = first_duplicate([image_ids, caption_ids])
    if dup is not None:
        a, b = sorted(dup[:2])
        raise _fail(path, f"pair (image_id {int(image_ids[a])}, caption_id {int(caption_ids[a])}) appears at "
                          f"{where(a)} and again at {where(b)} ({dup[2]} duplicate(s) in all); "
                          "keep one score per pair")


@dataclass(frozen=True, eq=False)
class FileSource:
    """``file``: scores read from a user's file, looked up by (image id, caption id).

    Attributes:
        image_ids: int64 ``(P,)`` image id of each listed pair.
        caption_ids: int64 ``(P,)`` caption id of each listed pair.
        scores: float32 ``(P,)`` finite score of each pair.
        path: where the scores came from (recorded in :meth:`settings`; never opened here).

    ``score`` needs a corpus with ``image_ids`` and ``caption_ids``; pairs absent from the file are NaN. Lookup
    is vectorised: ids are coded by ``searchsorted`` into the sorted distinct ids of the file, the pair codes
    combined into one int64 key and found by ``searchsorted`` in the sorted keys.
    """

    image_ids: np.ndarray
    caption_ids: np.ndarray
    scores: np.ndarray
    path: str = ""
    name: str = field(default="file", init=False)
    provenance_only: ClassVar[tuple[str, ...]] = ("path",)  # where the scores came from does not change labels
    needs_embeddings: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        for attr, dtype in (("image_ids", np.int64), ("caption_ids", np.int64), ("scores", np.float32)):
            object.__setattr__(self, attr, np.asarray(getattr(self, attr), dtype=dtype))
        n = len(self.scores)
        if self.image_ids.shape != (n,) or self.caption_ids.shape != (n,) or self.scores.ndim != 1:
            raise ConfigError(f"file source: image_ids {self.image_ids.shape}, caption_ids "
                              f"{self.caption_ids.shape} and scores {self.scores.shape} must be 1-D of one length")
        if not np.isfinite(self.scores).all():
            raise ConfigError("file source: every score must be finite (leave unknown pairs out)")

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "FileSource":
        """Read ``path`` with :func:`read_pair_scores` and hold its arrays."""
        image_ids, caption_ids, scores = read_pair_scores(path)
        log.info("file label source: %d pair scores from %s", len(scores), path)
        return cls(image_ids, caption_ids, scores, str(path))

    @cached_property
    def _lookup(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        uniq_img = sorted_unique(self.image_ids)
        uniq_cap = sorted_unique(self.caption_ids)
        keys = (np.searchsorted(uniq_img, self.image_ids) * len(uniq_cap)
                + np.searchsorted(uniq_cap, self.caption_ids))
        order = np.argsort(keys, kind="stable")
        return uniq_img, uniq_cap, keys[order], self.scores[order]

    @cached_property
    def _fingerprint(self) -> str:
        h = hashlib.sha256(b"bcls-pair-scores-v1\0")
        for a, dt in ((self.image_ids, "<i8"), (self.caption_ids, "<i8"), (self.scores, "<f4")):
            h.update(np.ascontiguousarray(a, dtype=dt).tobytes())
        return h.hexdigest()

    def settings(self) -> dict[str, Any]:
        """The file, its number of pairs and a SHA-256 of its (image_id, caption_id, score) arrays."""
        return {"path": self.path, "pairs": int(len(self.scores)), "fingerprint": self._fingerprint,
                "missing": "NaN", "scale": "as given"}

    def score(self, corpus: LabelCorpus, image_pos: np.ndarray, caption_pos: np.ndarray) -> np.ndarray:
        """The file's score of each pair (image_pos[p], caption_pos[p]), float32 ``(P,)``; NaN where absent."""
        img, cap = corpus.ids_of(image_pos, caption_pos, "file")
        uniq_img, uniq_cap, keys, values = self._lookup
        out = np.full(len(img), np.nan, dtype=np.float32)
        if not len(keys):
            return out
        ci = np.minimum(np.searchsorted(uniq_img, img), len(uniq_img) - 1)
        cc = np.minimum(np.searchsorted(uniq_cap, cap), len(uniq_cap) - 1)
        known = (uniq_img[ci] == img) & (uniq_cap[cc] == cap)
        key = ci * len(uniq_cap) + cc
        at = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
        found = known & (keys[at] == key)
        out[found] = values[at[found]]
        return out


def file_source(path: str | os.PathLike | None = None) -> FileSource:
    """Registry factory of the ``file`` source: read ``path`` (:func:`read_pair_scores`) into a :class:`FileSource`."""
    if path is None or str(path) == "":
        raise ConfigError("the file label source needs its path option (bcls labels build --file-scores TABLE): a "
                          f"CSV/TSV/Parquet file with columns {', '.join(PAIR_SCORE_COLUMNS)}")
    return FileSource.from_file(path)
