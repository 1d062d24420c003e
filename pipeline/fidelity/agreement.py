"""How well a label source agrees with human relevance judgments.

:func:`evaluate_agreement` scores every human-rated pair with each requested label source and reports the rank and
linear correlations (Spearman, Pearson, Kendall τ-b and τ-c, from :mod:`scipy.stats`) between the source's values
and the human scores, over all pairs and per sampling method.

How a pair is scored:

* **caption–image** (CxC SITS; Flickr8k CrowdFlower / expert, query image first): the pair (caption c, image i)
  gets the source's label of (image i, caption c) exactly as a label build defines it — c against refs(i) with c
  itself left out (it matters only when c is one of i's own captions). The
  :class:`~bcls.pipeline.corpus.LabelCorpus` is the whole caption table (one image per caption-table image), so
  corpus statistics such as CIDEr-D's document frequencies come from all of its images.
* **caption–caption** (CxC STS, pair (c1, c2)): c1 is scored against the *single* reference c2. The corpus is the
  caption table with every caption as its own one-caption "image" (image id = its caption id), and the pair is
  scored as (image of c2, caption c1): sbert gives the clipped cosine of c1 and c2; CIDEr-D gives c1 against {c2},
  with document frequencies counted over single captions (D = number of captions in the table). The direction
  (c1 candidate, c2 reference) follows the file's column order; CIDEr-D is not symmetric.

Pairs whose captions or images are not in the caption table are counted and skipped (logged); pairs a source
cannot score (NaN, e.g. an image with no caption besides c) are left out of that source's correlations, and each
result says how many pairs it used. Sentence embeddings are computed only for the captions the scored pairs need
(candidates and the references of the judged images); the other rows of the corpus's embedding matrix are NaN.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from bcls.data.captions import CaptionTable, read_captions
from bcls.data.infra.atomic import atomic_write_bytes, atomic_write_json
from bcls.data.infra.config_checks import check_field_types
from bcls.data.infra.errors import ConfigError
from bcls.data.judgments import Judgments, read_judgments
from bcls.data.tables import id_positions
from bcls.pipeline.corpus import LabelCorpus, LabelSource
from bcls.pipeline.embedding.embed import Encoder, EncoderSpec
from bcls.pipeline.sources import make_source
from bcls.pipeline.sources.ensemble import check_sentence_model, parse_spec

from .correlation import correlations

log = logging.getLogger(__name__)

JSON_FILE = "agreement.json"
MARKDOWN_FILE = "agreement.md"


@dataclass(frozen=True)
class AgreementConfig:
    """Settings of ``bcls labels evaluate``: which label sources to score against which human judgments.

    Attributes:
        captions: the caption file holding the judged captions (any format ``labels build`` reads), read with
            ``format`` and ``split``.
        judgments: the judgments file, read with ``judgment_format`` (:func:`~bcls.data.judgments.read_judgments`).
        out: folder for ``agreement.json`` and ``agreement.md``.
        sources: label source names or member specs (``spice:measure=precision``).
        source_options: keyword options per source name (as ``labels build -o``).
        encoder, use_cache: the sentence encoder of the sources that embed, and whether it uses the cache.
    """

    captions: str
    judgments: str
    out: str
    sources: tuple[str, ...] = ("sbert", "cider")
    format: str = "auto"
    split: str | None = None
    judgment_format: str = "auto"
    source_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    encoder: EncoderSpec = EncoderSpec()
    use_cache: bool = True

    def __post_init__(self) -> None:
        check_field_types(self, "agreement setting")
        if not self.sources:
            raise ConfigError("no label source to evaluate; name at least one (e.g. sbert, cider)")


def run_agreement(config: AgreementConfig) -> dict[str, Any]:
    """``bcls labels evaluate``: read the captions and judgments of ``config`` and :func:`evaluate_agreement`."""
    return evaluate_agreement(read_captions(config.captions, format=config.format, split=config.split),
                              read_judgments(config.judgments, format=config.judgment_format), config.sources,
                              out=config.out, source_settings=config.source_options, spec=config.encoder,
                              use_cache=config.use_cache)

def _build_sources(sources: Sequence[str | LabelSource],
                   source_settings: Mapping[str, Mapping[str, Any]] | None) -> tuple[list[str], list[LabelSource]]:
    """``(labels, sources)``: each item built — a name, or a member spec ``NAME:KEY=VALUE…`` (the ensemble's
    syntax, :func:`~bcls.pipeline.sources.ensemble.parse_spec`) whose options override ``source_settings``
    [NAME] — and the label it is reported under (the spec; a built source's name)."""
    labels: list[str] = []
    built: list[LabelSource] = []
    for s in sources:
        if isinstance(s, str):
            member = parse_spec(s)
            options = {**dict((source_settings or {}).get(member.source, {})), **member.options}
            built.append(make_source(member.source, **options))
            labels.append(s if ":" in s else member.source)
        else:
            built.append(s)
            labels.append(s.name)
    if not labels:
        raise ConfigError("no label source to evaluate; name at least one (e.g. sbert, cider)")
    dup = sorted({n for n in labels if labels.count(n) > 1})
    if dup:
        raise ConfigError(f"label source(s) {', '.join(dup)} given twice; each source is reported under its name")
    return labels, built


def _embeddings(texts: Sequence[str], rows: np.ndarray, encoder: Encoder) -> np.ndarray:
    """float32 ``(N, d)``: the encoder's embeddings at ``rows``, NaN elsewhere (never read by the sources)."""
    rows = np.unique(rows)
    emb_rows = np.asarray(encoder([texts[r] for r in rows.tolist()]), dtype=np.float32)
    if emb_rows.ndim != 2 or emb_rows.shape[0] != len(rows):
        raise ConfigError(f"the encoder returned shape {emb_rows.shape} for {len(rows)} captions; expected "
                          f"({len(rows)}, d)")
    emb = np.full((len(texts), emb_rows.shape[1]), np.nan, dtype=np.float32)
    emb[rows] = emb_rows
    return emb


def score_judgments(
    captions: CaptionTable,
    judgments: Judgments,
    sources: Sequence[str | LabelSource],
    encoder: Encoder | None = None,
    *,
    source_settings: Mapping[str, Mapping[str, Any]] | None = None,
    spec: EncoderSpec = EncoderSpec(),
    use_cache: bool = True,
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, int]]:
    """Score every judged pair with each source (see the module docstring for how).

    Args:
        captions: the caption table holding the judged captions (and the references of the judged images).
        judgments: the human judgments.
        sources: label source names (see ``LABEL_SOURCES``), member specs (``spice:measure=precision``) or built
            sources; results are keyed by the name or spec.
        encoder: caption → L2-normalised embedding function for sources that need embeddings; default: the
            sentence encoder ``spec`` through the embedding cache.
        source_settings: keyword settings per source name, e.g. ``{"file": {"path": "scores.csv"}}``.
        spec: the sentence encoder (when no ``encoder`` is given); its cache folder is read and filled as by
            ``labels build``, so comparing sources or aggregates embeds each caption once.
        use_cache: read and fill the embedding cache.

    Returns:
        ``(scored, values, counts)``: ``scored`` bool ``(P,)`` marks the pairs found in the caption table;
        ``values[name]`` float32 ``(P,)`` holds each source's values (NaN where not scored); ``counts`` has
        ``pairs``, ``scored``, ``missing_captions`` and ``missing_images`` (pairs skipped for each reason).
    """
    labels, built = _build_sources(sources, source_settings)
    scored, columns, counts = score_pairs(captions, judgments, built, encoder, spec=spec, use_cache=use_cache)
    return scored, dict(zip(labels, columns)), counts


def score_pairs(
    captions: CaptionTable,
    judgments: Judgments,
    built: Sequence[LabelSource],
    encoder: Encoder | None = None,
    *,
    spec: EncoderSpec = EncoderSpec(),
    use_cache: bool = True,
) -> tuple[np.ndarray, list[np.ndarray], dict[str, int]]:
    """:func:`score_judgments` for built sources that may share a name (an ensemble's members, e.g. two sbert
    aggregates): one float32 ``(P,)`` column per source, in order, over one corpus (so per-corpus tables such as
    spice's parse are made once)."""
    check_sentence_model(built, spec.model if encoder is None else None)
    n_pairs = len(judgments)
    if judgments.kind == "caption-caption":
        q = id_positions(captions.caption_ids, judgments.query_ids)
        c = id_positions(captions.caption_ids, judgments.candidate_ids)
        scored = (q >= 0) & (c >= 0)
        counts = {"missing_captions": int((~scored).sum()), "missing_images": 0}
        cap_pos, img_pos = q[scored], c[scored]  # c1 scored against the one-caption image of c2
        image_index = np.arange(len(captions), dtype=np.int64)
        image_ids = captions.caption_ids
        needed = np.concatenate([cap_pos, img_pos])
    else:
        cap_ids, img_ids = judgments.caption_image_pairs()
        cap = id_positions(captions.caption_ids, cap_ids)
        img = id_positions(captions.unique_images(), img_ids)
        scored = (cap >= 0) & (img >= 0)
        counts = {"missing_captions": int((cap < 0).sum()), "missing_images": int(((cap >= 0) & (img < 0)).sum())}
        cap_pos, img_pos = cap[scored], img[scored]
        image_index = captions.image_index()
        image_ids = captions.unique_images()
        needed = None
    counts = {"pairs": n_pairs, "scored": int(scored.sum()), **counts}
    if counts["scored"] < n_pairs:
        log.warning("%s: %d of %d judged pairs skipped (%d with a caption and %d with an image not in the caption "
                    "table %s)", judgments.path, n_pairs - counts["scored"], n_pairs, counts["missing_captions"],
                    counts["missing_images"], captions.path)
    if counts["scored"] == 0:
        raise ConfigError(f"none of the {n_pairs} judged pairs of {judgments.path} has its captions and images in "
                          f"the caption table {captions.path}; give the caption file the judgments refer to")

    corpus = LabelCorpus.from_groups(captions.texts, image_index, image_ids=image_ids,
                                     caption_ids=captions.caption_ids)
    if any(s.needs_embeddings for s in built):
        if needed is None:
            refs = corpus.refs[img_pos]
            needed = np.concatenate([cap_pos, refs[refs >= 0]])
        if encoder is None:
            encoder = spec.cached(use_cache)
        log.info("agreement: embedding %d of %d captions", len(np.unique(needed)), len(captions))
        corpus = LabelCorpus(corpus.texts, corpus.image_index, corpus.refs,
                             _embeddings(captions.texts, needed, encoder), corpus.image_ids, corpus.caption_ids)
    columns: list[np.ndarray] = []
    for src in built:
        full = np.full(n_pairs, np.nan, dtype=np.float32)
        full[scored] = np.asarray(src.score(corpus, img_pos, cap_pos), dtype=np.float32)
        unscored = int(np.isnan(full[scored]).sum())
        if unscored:
            log.info("agreement: source %s could not score %d of %d pairs (NaN)", src.name, unscored,
                     counts["scored"])
        columns.append(full)
    return scored, columns, counts


def evaluate_agreement(
    captions: CaptionTable,
    judgments: Judgments,
    sources: Sequence[str | LabelSource],
    encoder: Encoder | None = None,
    out: str | os.PathLike | None = None,
    *,
    source_settings: Mapping[str, Mapping[str, Any]] | None = None,
    spec: EncoderSpec = EncoderSpec(),
    use_cache: bool = True,
) -> dict[str, Any]:
    """Correlate each label source with human judgments, overall and per sampling method.

    Args:
        captions: the caption table the judgments refer to (read with
            :func:`~bcls.data.captions.read_captions`).
        judgments: human judgments (:func:`~bcls.data.judgments.read_judgments`).
        sources: label source names (``"sbert"``, ``"cider"``, ``"file"``, …), member specs
            (``"sbert:aggregate=softmax"``, reported under the spec) or built sources.
        encoder: embedding function for sources that need embeddings (default: the sentence encoder ``spec``).
        out: folder to write ``agreement.json`` and ``agreement.md`` to (created); nothing is written when None.
        source_settings: keyword settings per source name, e.g. ``{"file": {"path": "scores.csv"}}``.
        spec, use_cache: the sentence encoder and whether it uses the embedding cache (see
            :func:`score_judgments`).

    Returns:
        The JSON written to ``out/agreement.json``::

            {"overall": {source: {"spearman", "pearson", "kendall", "kendall_c", "pairs"}},
             "by_method": {method: {source: {...}}},
             "judgments": {"path", "format", "kind", "pairs", "scored", "missing_captions", "missing_images"},
             "captions": {"path", "format", "captions", "images", "fingerprint"},
             "sources": {source: settings}, "sentence_model": str (when a source embeds), "pair_scoring": str}

        A statistic is ``null`` where undefined; ``pairs`` counts the pairs it was computed on.

    Raises:
        ConfigError: unknown or duplicate source, or no judged pair is in the caption table.
    """
    labels, built = _build_sources(sources, source_settings)
    _, columns, counts = score_pairs(captions, judgments, built, encoder, spec=spec, use_cache=use_cache)
    values = dict(zip(labels, columns))
    human = judgments.scores
    result: dict[str, Any] = {
        "overall": {name: correlations(v, human) for name, v in values.items()},
        "by_method": {},
    }
    for method in sorted(set(judgments.methods.tolist())):
        mask = judgments.methods == method
        result["by_method"][method] = {name: correlations(v[mask], human[mask]) for name, v in values.items()}
    result["judgments"] = {"path": judgments.path, "format": judgments.format, "kind": judgments.kind, **counts}
    result["captions"] = {"path": captions.path, "format": captions.format, "captions": len(captions),
                          "images": len(captions.unique_images()), "fingerprint": captions.fingerprint()}
    result["sources"] = {label: s.settings() for label, s in zip(labels, built)}
    if any(s.needs_embeddings for s in built):
        result["sentence_model"] = spec.model if encoder is None else getattr(encoder, "model_id", "custom encoder")
        result["sentence_backend"] = spec.backend if encoder is None else "custom encoder"
    result["pair_scoring"] = (
        "caption-caption: c1 scored against the single reference c2 (every caption its own one-caption image)"
        if judgments.kind == "caption-caption" else
        "caption-image: the label of (image i, caption c), c against refs(i) without c")
    for name, stats in result["overall"].items():
        log.info("agreement %s vs %s: spearman %s, kendall %s over %d pairs", name, judgments.format,
                 _fmt(stats["spearman"]), _fmt(stats["kendall"]), stats["pairs"])
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / JSON_FILE, result)
        atomic_write_bytes(folder / MARKDOWN_FILE, agreement_markdown(result).encode("utf-8"))
        log.info("agreement written to %s", folder / JSON_FILE)
    return result


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def agreement_markdown(result: Mapping[str, Any]) -> str:
    """A markdown report of an :func:`evaluate_agreement` result: one table row per (subset, source)."""
    j = result.get("judgments", {})
    lines = ["# Agreement of label sources with human judgments", ""]
    if j:
        lines += [(f"Judgments: `{j['path']}` ({j['format']}, {j['kind']}): {j['pairs']} pairs, {j['scored']} "
                   f"scored; skipped {j['missing_captions']} whose caption and {j['missing_images']} whose image "
                   "is not in the caption table."), ""]
    if "captions" in result:
        c = result["captions"]
        lines += [f"Captions: `{c['path']}` ({c['captions']} captions, {c['images']} images).", ""]
    if "pair_scoring" in result:
        lines += [f"Pair scoring: {result['pair_scoring']}.", ""]
    if "sentence_model" in result:
        lines += [f"Sentence model: `{result['sentence_model']}`.", ""]
    lines += ["| subset | source | pairs | Spearman | Pearson | Kendall τ-b | Kendall τ-c |",
              "|---|---|---:|---:|---:|---:|---:|"]
    subsets = [("all", result["overall"])] + list(result["by_method"].items())
    for subset, per_source in subsets:
        for name, s in per_source.items():
            lines.append(f"| {subset} | {name} | {s['pairs']} | {_fmt(s['spearman'])} | {_fmt(s['pearson'])} | "
                         f"{_fmt(s['kendall'])} | {_fmt(s['kendall_c'])} |")
    return "\n".join(lines) + "\n"
