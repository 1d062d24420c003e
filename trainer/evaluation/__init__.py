"""Evaluation: retrieval recall under the field's protocols, semantic metrics, and the ``bcls eval`` outputs.

* :mod:`~.metrics` — ranks of the ground truth, Recall@K, rsum, median / mean rank;
* :mod:`~.protocols` — COCO 5-fold 1K / 5K, Flickr 1K, and which one a test set is;
* :mod:`~.semantic` — NCS@K and rank correlation with continuous relevance;
* :mod:`~.eccv` — ECCV Caption / CxC through the official ``eccv-caption`` package;
* :mod:`~.judged` — agreement of a model's similarities with human judgments (``bcls eval --judgments``);
* :mod:`~.examples` — ``examples.html``, retrieved examples with thumbnails (``bcls eval --images``);
* :mod:`~.evaluate` — embed a split with a checkpoint and compute every metric (``bcls eval``);
* :mod:`~.report` — ``report.md``, the plots, side-by-side comparisons.

May import: :mod:`bcls.data`, :mod:`bcls.pipeline`, and :mod:`bcls.trainer`'s models, checkpoints and label lookup.
"""

from .eccv import eccv_metrics, eccv_metrics_from_sims, load_coco_test_ids, rankings_from_sims
from .evaluate import (
                       PRIMARY_METRIC,
                       EvalConfig,
                       SplitScores,
                       encode_split,
                       evaluate,
                       evaluate_model,
                       load_relevance,
                       relevance_metrics,
                       score_split,
)
from .examples import write_examples
from .judged import judged_metrics
from .metrics import recall_metrics, retrieval_ranks
from .protocols import PROTOCOLS, coco_5fold_1k, detect_protocol
from .report import compare_runs, markdown_report, metrics_table
from .semantic import ncs_at_k, rank_correlation

__all__ = ["PRIMARY_METRIC", "PROTOCOLS", "EvalConfig", "SplitScores", "coco_5fold_1k", "compare_runs",
           "detect_protocol", "eccv_metrics", "eccv_metrics_from_sims", "encode_split", "evaluate", "evaluate_model",
           "judged_metrics", "load_coco_test_ids", "load_relevance", "markdown_report", "metrics_table", "ncs_at_k",
           "rank_correlation", "rankings_from_sims", "recall_metrics", "relevance_metrics", "retrieval_ranks",
           "score_split", "write_examples"]
