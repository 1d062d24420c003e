"""Human relevance judgments of (query, candidate) pairs, read into one common table (:class:`Judgments`).

Formats (see :func:`read_judgments`):

* ``"cxc-sits"``: Crisscrossed Captions caption–image ratings, ``caption,image,agg_score,sampling_method``;
  caption ids ``COCO_val2014:sentid:N`` (N = the MS-COCO caption *annotation* id), images
  ``COCO_val2014_000000N.jpg`` (N = COCO image id); score 0–5. Kind ``caption-image``.
* ``"cxc-sts"``: CxC caption–caption ratings, ``caption1,caption2,agg_score,sampling_method``; score 0–5.
  Kind ``caption-caption``.
* ``"flickr8k-crowdflower"``: ``CrowdFlowerAnnotations.txt``, tab-separated
  ``query_image  caption_key  fraction_yes  n_yes  n_no``; score = fraction of "yes" (0–1). Kind
  ``image-caption``.
* ``"flickr8k-expert"``: ``ExpertAnnotations.txt``, tab-separated ``query_image  caption_key  s1  s2  s3`` with three
  expert scores 1–4; score = their mean. Kind ``image-caption``.
* ``"demo-truth"``: a demo data folder's ``{split}_facts.json`` (or ``{split}_relevance.npy`` beside it): the
  ground-truth relevance of a stratified sample of (image, caption) pairs of that split (see
  :func:`read_demo_truth`), so label sources are scored against the demo's truth the same way as against people.
  Kind ``image-caption``.

Flickr8k names map to the integer ids of the ``flickr8k`` caption format (:func:`bcls.data.captions.flickr8k_ids`),
so a judgment table joins the caption table read from ``Flickr8k.token.txt``. The Flickr8k files have no sampling
column; their ``method`` is ``same_image`` when the caption is one of the query image's own captions and
``other_image`` otherwise.

Every reader reports a bad input as a one-line :class:`~bcls.data.infra.errors.DataFormatError` naming the file, the
line and what to do.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .captions import flickr8k_ids
from .infra.errors import ConfigError
from .tables import fail as _fail
from .tables import first_duplicate
from .tables import shown as _shown

logger = logging.getLogger(__name__)

JUDGMENT_FORMATS: tuple[str, ...] = ("cxc-sits", "cxc-sts", "flickr8k-crowdflower", "flickr8k-expert", "demo-truth")
"""The judgment file formats :func:`read_judgments` understands (``format="auto"`` detects one of them)."""

JUDGMENT_KINDS: tuple[str, ...] = ("caption-image", "image-caption", "caption-caption")
"""What the (query, candidate) ids of a :class:`Judgments` table are: ``caption-image`` = (caption id, image id),
``image-caption`` = (image id, caption id), ``caption-caption`` = (caption id, caption id)."""


@dataclass(frozen=True, eq=False)
class Judgments:
    """Human scores of ``P`` (query, candidate) pairs.

    Attributes:
        kind: one of :data:`JUDGMENT_KINDS`; says what ``query_ids`` and ``candidate_ids`` are.
        query_ids: int64 ``(P,)``.
        candidate_ids: int64 ``(P,)``.
        scores: float64 ``(P,)`` human scores (higher = more relevant; the scale depends on the format).
        methods: object ``(P,)`` how each pair was sampled (e.g. ``c2i_original``).
        path: the file they were read from.
        format: one of :data:`JUDGMENT_FORMATS` (or a free name for tables built by hand).
    """

    kind: str
    query_ids: np.ndarray
    candidate_ids: np.ndarray
    scores: np.ndarray
    methods: np.ndarray
    path: str
    format: str

    def __post_init__(self) -> None:
        if self.kind not in JUDGMENT_KINDS:
            raise ConfigError(f"unknown judgment kind {self.kind!r}; valid: {', '.join(JUDGMENT_KINDS)}")
        n = len(self.scores)
        for name in ("query_ids", "candidate_ids", "scores", "methods"):
            if np.shape(getattr(self, name)) != (n,):
                raise ConfigError(f"Judgments.{name} must have shape ({n},), got {np.shape(getattr(self, name))}")

    def __len__(self) -> int:
        return len(self.scores)

    def __repr__(self) -> str:
        return f"Judgments({len(self)} {self.kind} pairs, format={self.format!r}, path={self.path!r})"

    def caption_image_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """``(caption_ids, image_ids)``, int64 ``(P,)`` each, of a ``caption-image`` or ``image-caption`` table."""
        if self.kind == "caption-image":
            return self.query_ids, self.candidate_ids
        if self.kind == "image-caption":
            return self.candidate_ids, self.query_ids
        raise ConfigError(f"{self.path}: {self.kind} judgments have no image side")

    def select(self, mask: np.ndarray) -> "Judgments":
        """The rows where the boolean ``mask`` ``(P,)`` is true (or the given integer rows)."""
        return Judgments(self.kind, self.query_ids[mask], self.candidate_ids[mask], self.scores[mask],
                         self.methods[mask], self.path, self.format)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise _fail(path, "no such file; check the path of the judgment file")
    raw = path.read_bytes()
    if not raw.strip():
        raise _fail(path, "empty file; no judgments to read")
    try:
        return raw.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise _fail(path, f"line {line}: not valid UTF-8 ({err.reason}); re-save the file as UTF-8") from None


def detect_judgment_format(path: str | os.PathLike) -> str:
    """The format of a judgment file, one of :data:`JUDGMENT_FORMATS`.

    A CxC file is recognised by its header (``caption,image,…`` → ``cxc-sits``, ``caption1,caption2,…`` →
    ``cxc-sts``); a Flickr8k file by its rows (``image.jpg<TAB>key#n<TAB>a<TAB>b<TAB>c``: a fraction and two counts
    → CrowdFlower, three grades 1..4 → expert), whatever its name; only when the rows are neither does the name
    (``*CrowdFlower*`` / ``*Expert*``) decide.

    Raises:
        DataFormatError: the file is missing, is CxC SIS (image–image, which caption label sources cannot score),
            or its format cannot be recognised.
    """
    p = Path(path)
    if not p.is_file():
        raise _fail(p, "no such file; check the path of the judgment file")
    if _DEMO_TRUTH_RE.match(p.name) and (p.parent / "demo.json").is_file():
        return "demo-truth"
    with open(p, "rb") as fh:
        head = fh.readline(4096).decode("utf-8", errors="replace").lstrip("\ufeff").strip().lower()
    cols = [c.strip() for c in head.split(",")]
    if cols[:2] == ["caption", "image"]:
        return "cxc-sits"
    if cols[:2] == ["caption1", "caption2"]:
        return "cxc-sts"
    if cols[:2] == ["image1", "image2"]:
        raise _fail(p, "is CxC SIS (image–image ratings); caption label sources cannot score image pairs — use "
                       "sits_*.csv or sts_*.csv")
    by_rows = _flickr8k_kind(p)
    if by_rows is not None:
        return by_rows
    name = p.name.lower()
    if "crowdflower" in name:
        return "flickr8k-crowdflower"
    if "expert" in name:
        return "flickr8k-expert"
    raise _fail(p, "cannot tell the judgment format (not a CxC header, not Flickr8k CrowdFlower/Expert rows); pass "
                   f"format= (one of {', '.join(JUDGMENT_FORMATS)})")


_FLICKR8K_ROW = re.compile(r"^[^\t]+\.jpg\t[^\t]+#\d\t([^\t]+)\t([^\t]+)\t([^\t]+)$")


def _flickr8k_kind(path: Path, rows: int = 50) -> str | None:
    """``flickr8k-crowdflower`` or ``flickr8k-expert`` from the first ``rows`` rows (None when they are neither).

    An expert row holds three grades 1..4; a CrowdFlower row a fraction and two counts, so one of its three values
    is a decimal, a 0 (no "yes" or no "no") or a count above 4 — never three values in 1..4."""
    expert = False
    with open(path, "rb") as fh:
        for raw in fh.readlines(1 << 16)[:rows]:
            line = raw.decode("utf-8", errors="replace").strip("\r\n")
            if not line.strip():
                continue
            m = _FLICKR8K_ROW.match(line)
            if m is None:
                return None
            values = m.groups()
            if all(v.isdigit() and 1 <= int(v) <= 4 for v in values):
                expert = True
            elif all(v.replace(".", "", 1).isdigit() for v in values):
                return "flickr8k-crowdflower"
            else:
                return None
    return "flickr8k-expert" if expert else None


def read_judgments(path: str | os.PathLike, format: str = "auto") -> Judgments:
    """Read a human-judgment file into a :class:`Judgments` table.

    Args:
        path: a CxC ``sits_*.csv`` / ``sts_*.csv``, or a Flickr8k ``CrowdFlowerAnnotations.txt`` /
            ``ExpertAnnotations.txt``.
        format: ``"auto"`` (:func:`detect_judgment_format`) or one of :data:`JUDGMENT_FORMATS`.

    Raises:
        ConfigError: unknown ``format``.
        DataFormatError: missing file, wrong header or field count, malformed id, non-finite or out-of-range
            score, inconsistent CrowdFlower counts, or a pair listed twice.
    """
    if format != "auto" and format not in JUDGMENT_FORMATS:
        raise ConfigError(f"unknown judgment format {format!r}; valid: auto, {', '.join(JUDGMENT_FORMATS)}")
    fmt = detect_judgment_format(path) if format == "auto" else format
    if fmt == "cxc-sits":
        return read_cxc(path, "sits")
    if fmt == "cxc-sts":
        return read_cxc(path, "sts")
    if fmt == "flickr8k-crowdflower":
        return read_flickr8k_crowdflower(path)
    if fmt == "demo-truth":
        return read_demo_truth(path)
    return read_flickr8k_expert(path)


# ---------------------------------------------------------------------------------------------------------------
# CxC
# ---------------------------------------------------------------------------------------------------------------

_CXC_CAPTION_RE = re.compile(r"COCO_[A-Za-z]+\d{4}:sentid:(\d+)\Z")
_CXC_IMAGE_RE = re.compile(r"COCO_[A-Za-z]+\d{4}_(\d+)\.jpg\Z")
_CXC_HEADERS = {"sits": ["caption", "image", "agg_score", "sampling_method"],
                "sts": ["caption1", "caption2", "agg_score", "sampling_method"]}


def cxc_caption_id(text: str) -> int | None:
    """The COCO caption annotation id in a CxC caption id (``COCO_val2014:sentid:732091`` → 732091), else None."""
    m = _CXC_CAPTION_RE.match(text.strip())
    return int(m.group(1)) if m else None


def cxc_image_id(text: str) -> int | None:
    """The COCO image id in a CxC image name (``COCO_val2014_000000365325.jpg`` → 365325), else None."""
    m = _CXC_IMAGE_RE.match(text.strip())
    return int(m.group(1)) if m else None


def read_cxc(path: str | os.PathLike, which: str) -> Judgments:
    """Read a CxC ``sits_*.csv`` (``which="sits"``) or ``sts_*.csv`` (``which="sts"``) file.

    Returns:
        ``caption-image`` judgments (caption annotation id, image id) for SITS, ``caption-caption`` for STS;
        scores are the aggregated ratings (0–5) and methods the ``sampling_method`` column.
    """
    if which not in _CXC_HEADERS:
        raise ConfigError(f"CxC judgments are 'sits' or 'sts', got {which!r}")
    p = Path(path)
    reader = csv.reader(io.StringIO(_read_text(p)))
    try:
        rows = list(reader)
    except csv.Error as err:
        raise _fail(p, f"line {reader.line_num}: not readable as CSV ({err}); pass the right file or "
                       "format") from None
    if not rows:
        raise _fail(p, "empty file; no judgments to read")
    header = [h.strip().lower() for h in rows[0]]
    want = _CXC_HEADERS[which]
    if header != want:
        raise _fail(p, f"line 1: header is {','.join(rows[0])!r}, expected {','.join(want)!r} for CxC "
                       f"{which.upper()}; pass the right file or format")
    parse_q = cxc_caption_id
    parse_c = cxc_caption_id if which == "sts" else cxc_image_id
    q_what = "a CxC caption id COCO_<split>2014:sentid:<ann id>"
    c_what = q_what if which == "sts" else "a CxC image name COCO_<split>2014_<image id>.jpg"
    n = len(rows) - 1
    query = np.empty(n, dtype=np.int64)
    cand = np.empty(n, dtype=np.int64)
    scores = np.empty(n, dtype=np.float64)
    methods = np.empty(n, dtype=object)
    keep = np.ones(n, dtype=bool)
    for i, row in enumerate(rows[1:]):
        line = i + 2
        if not row:
            keep[i] = False
            continue
        if len(row) != 4:
            raise _fail(p, f"line {line}: expected 4 comma-separated fields, got {len(row)} ({_shown(row)}); "
                           "check the file")
        q, c = parse_q(row[0]), parse_c(row[1])
        if q is None:
            raise _fail(p, f"line {line}: {want[0]} {_shown(row[0])} is not {q_what}; fix the row")
        if c is None:
            raise _fail(p, f"line {line}: {want[1]} {_shown(row[1])} is not {c_what}; fix the row")
        query[i], cand[i] = q, c
        scores[i] = _score(p, line, "agg_score", row[2], 0.0, 5.0)
        methods[i] = row[3].strip()
    table = Judgments("caption-caption" if which == "sts" else "caption-image", query[keep], cand[keep],
                      scores[keep], methods[keep], str(p), f"cxc-{which}")
    rows_of = np.flatnonzero(keep) + 2
    _check_unique(table, lambda r: f"line {int(rows_of[r])}")
    logger.debug("read %d CxC %s judgments from %s", len(table), which.upper(), p)
    return table


def _score(path: Path, line: int, name: str, text: str, lo: float, hi: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _fail(path, f"line {line}: {name} {_shown(text)} is not a number; fix the row") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise _fail(path, f"line {line}: {name} {value!r} is outside [{lo:g}, {hi:g}]; fix the row")
    return value


def _check_unique(table: Judgments, where: Callable[[int], str]) -> None:
    dup = first_duplicate([table.query_ids, table.candidate_ids])
    if dup is not None:
        a, b = sorted(dup[:2])
        raise _fail(table.path, f"{where(b)}: the pair of {where(a)} is listed again ({dup[2]} "
                                "duplicate(s) in all); keep one judgment per pair")


# ---------------------------------------------------------------------------------------------------------------
# Flickr8k
# ---------------------------------------------------------------------------------------------------------------


def _flickr8k_rows(path: Path, what: str) -> tuple[list[list[str]], list[int]]:
    rows, lines = [], []
    for i, line in enumerate(_read_text(path).split("\n")):
        if not line.strip():
            continue
        fields = line.rstrip("\r").split("\t")
        if len(fields) != 5:
            raise _fail(path, f"line {i + 1}: expected 5 tab-separated fields ({what}), got {len(fields)} "
                              f"({_shown(line)}); check the file")
        rows.append(fields)
        lines.append(i + 1)
    return rows, lines


def _flickr8k_table(path: Path, rows: list[list[str]], lines: list[int], scores: np.ndarray,
                    fmt: str) -> Judgments:
    def where(r: int) -> str:
        return f"line {lines[r]}"

    images = flickr8k_ids([r[0] for r in rows], path=path, where=where)
    bad = [r for r, row in enumerate(rows) if "#" in row[0]]
    if bad:
        raise _fail(path, f"{where(bad[0])}: the first field {_shown(rows[bad[0]][0])} is a caption key; it must "
                          "be the query image name")
    captions = flickr8k_ids([r[1] for r in rows], path=path, where=where)
    bad = [r for r, row in enumerate(rows) if "#" not in row[1]]
    if bad:
        raise _fail(path, f"{where(bad[0])}: the second field {_shown(rows[bad[0]][1])} is not a caption key "
                          "<image>.jpg#<n>; fix the row")
    methods = np.where(captions // 10 == images, "same_image", "other_image").astype(object)
    table = Judgments("image-caption", images, captions, scores, methods, str(path), fmt)
    _check_unique(table, where)
    return table


def read_flickr8k_crowdflower(path: str | os.PathLike) -> Judgments:
    """Read Flickr8k ``CrowdFlowerAnnotations.txt`` (``query_image  caption_key  fraction_yes  n_yes  n_no``).

    Returns:
        ``image-caption`` judgments; score = ``fraction_yes`` (checked against ``n_yes / (n_yes + n_no)``).
    """
    p = Path(path)
    rows, lines = _flickr8k_rows(p, "query_image, caption_key, fraction_yes, n_yes, n_no")
    scores = np.empty(len(rows), dtype=np.float64)
    for r, row in enumerate(rows):
        frac = _score(p, lines[r], "fraction_yes", row[2], 0.0, 1.0)
        try:
            n_yes, n_no = int(row[3]), int(row[4])
        except ValueError:
            raise _fail(p, f"line {lines[r]}: n_yes/n_no {_shown(row[3])}/{_shown(row[4])} are not counts; "
                           "fix the row") from None
        if n_yes < 0 or n_no < 0 or n_yes + n_no == 0 or abs(frac - n_yes / (n_yes + n_no)) > 1e-6:
            raise _fail(p, f"line {lines[r]}: fraction_yes {frac:g} does not match n_yes {n_yes} and n_no {n_no}; "
                           "fix the row")
        scores[r] = frac
    table = _flickr8k_table(p, rows, lines, scores, "flickr8k-crowdflower")
    logger.debug("read %d Flickr8k CrowdFlower judgments from %s", len(table), p)
    return table


def read_flickr8k_expert(path: str | os.PathLike) -> Judgments:
    """Read Flickr8k ``ExpertAnnotations.txt`` (``query_image  caption_key  s1  s2  s3``, scores 1–4).

    Returns:
        ``image-caption`` judgments; score = mean of the three expert scores.
    """
    p = Path(path)
    rows, lines = _flickr8k_rows(p, "query_image, caption_key and three expert scores")
    scores = np.array([np.mean([_score(p, lines[r], f"expert score {k + 1}", row[2 + k], 1.0, 4.0)
                                for k in range(3)]) for r, row in enumerate(rows)], dtype=np.float64)
    table = _flickr8k_table(p, rows, lines, scores.reshape(-1), "flickr8k-expert")
    logger.debug("read %d Flickr8k expert judgments from %s", len(table), p)
    return table


# ---------------------------------------------------------------------------------------------------------------
# The demo's ground truth
# ---------------------------------------------------------------------------------------------------------------

_DEMO_TRUTH_RE = re.compile(r"(\w+)_(facts\.json|relevance\.npy)\Z")


def read_demo_truth(path: str | os.PathLike, related: int = 25, unrelated: int = 5, seed: int = 0) -> Judgments:
    """The demo's ground-truth relevance as judgments of a stratified sample of one split's pairs.

    For every image of the split: all its own captions (method ``same_image``), ``related`` captions of other
    images drawn uniformly among those with some relevance to it (``other_related``; relevance > 0, all of them
    when fewer) and ``unrelated`` drawn among the rest (``other_unrelated``). Over all pairs of the demo's dev split
    71 % have relevance 0, so a uniform sample would mostly compare ties; this one resembles a label build's
    candidates (mostly captions that share something with the image) plus some random negatives. Score = the
    fraction of the caption's facts true of the image (0–1), as :func:`bcls.data.demo.demo_pair_relevance`.

    Args:
        path: ``DEMO/{split}_facts.json`` or ``DEMO/{split}_relevance.npy`` (the split is taken from the name; the
            facts file is what is read).
        related, unrelated: other-image captions per image, per stratum.
        seed: seed of the sample.
    """
    from .demo import demo_pair_relevance, read_demo_facts

    p = Path(path)
    m = _DEMO_TRUTH_RE.match(p.name)
    if m is None or not (p.parent / "demo.json").is_file():
        raise _fail(p, "is not a demo split's facts or relevance file (DEMO/{split}_facts.json or "
                       "DEMO/{split}_relevance.npy beside demo.json); give one written by `bcls demo`")
    facts = read_demo_facts(p.parent, m.group(1))
    n_images, n_captions, cpi = len(facts.image_ids), facts.n_captions, facts.captions_per_image
    rng = np.random.default_rng(seed)
    captions = np.arange(n_captions)
    query, candidate, method = [], [], []
    for i in range(n_images):
        rel = demo_pair_relevance(facts, np.full(n_captions, i), captions)
        own = captions // cpi == i
        picked = {"same_image": captions[own]}
        for name, pool, n in (("other_related", ~own & (rel > 0), related),
                              ("other_unrelated", ~own & (rel <= 0), unrelated)):
            rows = captions[pool]
            picked[name] = np.sort(rng.choice(rows, min(n, len(rows)), replace=False))
        for name, rows in picked.items():
            query.append(np.full(len(rows), i))
            candidate.append(rows)
            method.append(np.full(len(rows), name, dtype=object))
    img_rows, cap_rows = np.concatenate(query), np.concatenate(candidate)
    scores = demo_pair_relevance(facts, img_rows, cap_rows).astype(np.float64)
    table = Judgments("image-caption", facts.image_ids[img_rows].astype(np.int64), cap_rows.astype(np.int64),
                      scores, np.concatenate(method), str(p), "demo-truth")
    logger.debug("sampled %d demo ground-truth judgments of split %s from %s", len(table), facts.split, p.parent)
    return table


__all__: Sequence[str] = ("JUDGMENT_FORMATS", "JUDGMENT_KINDS", "Judgments", "cxc_caption_id", "cxc_image_id",
                          "detect_judgment_format", "read_cxc", "read_flickr8k_crowdflower",
                          "read_demo_truth", "read_flickr8k_expert", "read_judgments")
