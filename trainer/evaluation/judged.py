"""Agreement of a trained model's similarities with human relevance judgments (``bcls eval --judgments``).

The judgments are the files ``bcls labels evaluate`` reads (:func:`bcls.data.judgments.read_judgments`: Flickr8k
CrowdFlower and expert, CxC SITS): each judged (image, caption) pair of the evaluated split gets the model's cosine
similarity, and the similarities are correlated with the human scores — over all judged pairs (Spearman ρ,
Kendall τ-b and τ-c, the statistics of :func:`bcls.pipeline.fidelity.correlation.correlations`) and per query (Kendall
τ-b within each query's judged candidates, averaged over the queries whose human scores take at least two values).
Pairs whose image or caption is not in the split are counted, not fatal.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch

from bcls.data.captions import CaptionTable
from bcls.data.infra.errors import ConfigError
from bcls.data.judgments import Judgments
from bcls.data.tables import id_positions
from bcls.pipeline.fidelity.correlation import correlations

log = logging.getLogger(__name__)

JUDGED_COUNTS: tuple[str, ...] = ("judged_pairs", "judged_queries", "judged_outside_split")
"""The ``metrics.json`` keys of :func:`judged_metrics` that are counts."""
JUDGED_KEYS: tuple[str, ...] = ("judged_spearman", "judged_kendall_b", "judged_kendall_c", "judged_query_kendall_b",
                                *JUDGED_COUNTS)
"""The ``metrics.json`` keys :func:`judged_metrics` writes."""


def judged_similarities(sims: torch.Tensor | np.ndarray, table: CaptionTable, judgments: Judgments
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The model's similarity of every judged pair that lies in the split.

    Args:
        sims: ``(n_images, n_captions)`` similarities, images in ``table.unique_images()`` order, captions in
            table row order.
        table: the evaluated split's captions.
        judgments: caption–image or image–caption judgments.

    Returns:
        ``(similarity (P,), human (P,), query (P,), outside)``: float64 similarities and human scores of the
        ``P`` pairs inside the split, the query id of each (as the judgment file names it), and how many judged
        pairs lie outside the split.
    """
    if judgments.kind not in ("caption-image", "image-caption"):
        raise ConfigError(f"{judgments.path}: {judgments.kind} judgments compare captions with captions; "
                          "bcls eval --judgments takes image-caption judgments (Flickr8k CrowdFlower / expert, "
                          "CxC SITS)")
    caption_ids, image_ids = judgments.caption_image_pairs()
    img = id_positions(table.unique_images(), image_ids)
    cap = id_positions(table.caption_ids, caption_ids)
    inside = (img >= 0) & (cap >= 0)
    s = np.asarray(sims, dtype=np.float64) if not isinstance(sims, torch.Tensor) else sims.double().numpy()
    return s[img[inside], cap[inside]], judgments.scores[inside].astype(np.float64), \
        judgments.query_ids[inside], int((~inside).sum())


def query_kendall_b(similarity: np.ndarray, human: np.ndarray, query: np.ndarray) -> tuple[float | None, int]:
    """Mean over queries of Kendall τ-b between similarity and human score within the query's pairs.

    Queries whose human scores take fewer than two values have no τ and are left out; so are queries whose
    similarities are all equal. Returns ``(mean τ-b or None, queries used)``.
    """
    from scipy import stats

    order = np.argsort(query, kind="stable")
    q, s, h = query[order], similarity[order], human[order]
    bounds = np.flatnonzero(np.diff(q)) + 1
    taus = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(q)]):
            if hi - lo < 2 or np.ptp(h[lo:hi]) == 0 or np.ptp(s[lo:hi]) == 0:
                continue
            taus.append(stats.kendalltau(s[lo:hi], h[lo:hi], variant="b").statistic)
    return (float(np.mean(taus)) if taus else None), len(taus)


def judged_metrics(sims: torch.Tensor | np.ndarray, table: CaptionTable, judgments: Judgments) -> dict[str, float]:
    """``judged_*`` metrics of a split's similarities against human judgments (keys: :data:`JUDGED_KEYS`).

    ``judged_spearman`` / ``judged_kendall_b`` / ``judged_kendall_c`` over all judged pairs of the split,
    ``judged_query_kendall_b`` the per-query mean (:func:`query_kendall_b`), ``judged_pairs`` and
    ``judged_queries`` the pairs and queries used, ``judged_outside_split`` the judged pairs not in the split.
    Undefined statistics (fewer than two pairs, constant scores) are NaN.

    Raises:
        ConfigError: no judged pair lies in the split, or the judgments are caption–caption.
    """
    sim, human, query, outside = judged_similarities(sims, table, judgments)
    if not len(sim):
        raise ConfigError(f"{judgments.path}: none of its {len(judgments)} judged pairs is in the evaluated split "
                          f"({table.path}); evaluate the split the judgments are about (e.g. --split test)")
    if outside:
        log.info("%s: %d of %d judged pairs are outside the evaluated split; left out", judgments.path, outside,
                 len(judgments))
    corr = correlations(sim, human)
    per_query, n_queries = query_kendall_b(sim, human, query)

    def num(v: float | int | None) -> float:
        return float("nan") if v is None else float(v)

    return {"judged_spearman": num(corr["spearman"]), "judged_kendall_b": num(corr["kendall"]),
            "judged_kendall_c": num(corr["kendall_c"]), "judged_query_kendall_b": num(per_query),
            "judged_pairs": float(len(sim)), "judged_queries": float(n_queries),
            "judged_outside_split": float(outside)}
