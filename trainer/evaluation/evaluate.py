"""``bcls eval``: embed a split with a trained model and measure cross-modal retrieval."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bcls.data.captions import CaptionTable
from bcls.data.datasets import read_split
from bcls.data.features import ImageFeatures
from bcls.data.infra.atomic import atomic_write_bytes, atomic_write_json
from bcls.data.infra.config_checks import check_field_types
from bcls.data.infra.errors import ConfigError, DataFormatError
from bcls.data.infra.interrupts import interrupt_point
from bcls.data.infra.progress import Progress
from bcls.data.infra.version import __version__
from bcls.data.judgments import read_judgments
from bcls.data.shards import open_labels, sha256_file

from ..batches.inputs import image_batch
from ..batches.labels import PairLabels
from ..checkpoint import load_checkpoint, model_from_checkpoint
from ..models import RetrievalModel, Vocabulary, feature_kind, pad_batch, tokenize_texts
from .eccv import eccv_metrics_from_sims
from .examples import write_examples
from .judged import judged_metrics
from .metrics import recall_metrics, retrieval_ranks
from .protocols import PROTOCOLS, coco_5fold_1k, detect_protocol
from .report import RECALL_KEYS, markdown_report, plot_recall_curves, plot_similarity_vs_label, recall_curve
from .semantic import extended_precision_at_r, ncs_at_k, rank_correlation

log = logging.getLogger(__name__)

TRAIN_KEYS_SHOWN = ("model", "binary_loss", "lam", "source", "label_mode", "sampler", "kendall.gap", "epochs",
                    "seed")
"""The training settings of a checkpoint that ``metrics.json`` and ``report.md`` show, so runs are told apart
(``kendall.gap``: the ``gap`` of the nested Kendall settings)."""

PRIMARY_METRIC = "rsum"
"""The metric that picks the best epoch of a training run (on dev) and heads ``bcls eval``'s report."""


def _shown_settings(saved: dict[str, Any]) -> dict[str, Any]:
    """The :data:`TRAIN_KEYS_SHOWN` of a checkpoint's (migrated) training config; a nested key is ``a.b``."""
    shown = {}
    for key in TRAIN_KEYS_SHOWN:
        value: Any = saved
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        shown[key] = value
    return shown


@torch.no_grad()
def encode_split(model: RetrievalModel, vocab: Vocabulary, table: CaptionTable, feats: ImageFeatures,
                 device: str | torch.device = "cpu", batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed every image and caption of a split.

    Returns:
        ``(images (n_images, E), captions (n_captions, E))`` float32 on CPU, L2-normalised.
    """
    model.eval()
    images, captions = [], []
    with Progress(feats.n_images + len(table), "eval: encoding images and captions", "items", log) as progress:
        for lo in range(0, feats.n_images, batch_size):
            interrupt_point()  # where a training run's dev evaluation stops on Ctrl-C
            idx = np.arange(lo, min(lo + batch_size, feats.n_images))
            images.append(model.encode_images(image_batch(feats, idx, torch.device(device))).float().cpu())
            progress.update(len(idx))
        for lo in range(0, len(table), batch_size):
            interrupt_point()
            ids, lengths = pad_batch(tokenize_texts(model, vocab, table.texts[lo:lo + batch_size]))
            captions.append(model.encode_texts(ids.to(device), lengths).float().cpu())
            progress.update(len(lengths))
    return torch.cat(images), torch.cat(captions)


def relevance_metrics(sims: torch.Tensor, relevance: torch.Tensor, caption_to_image: torch.Tensor,
                      known: torch.Tensor | None = None, ks: tuple[int, ...] = (1, 5, 10, 20, 30),
                      positive_threshold: float = 1.0) -> dict[str, float]:
    """How well the predicted similarities follow graded relevance (ground truth or a label source).

    Args:
        sims, relevance: ``(n_images, n_captions)``; caption_to_image: ``(n_captions,)``.
        known: ``(n_images, n_captions)`` bool where the relevance is known (sparse labels); ``None`` = all.
            Correlations use known pairs only; NCS treats unknown pairs as relevance 0.
        positive_threshold: with a full relevance matrix (``known`` None), the relevance that makes a pair a
            positive of the extended mAP@R / R-Precision.

    Returns:
        ``rel_kendall_{i2t,t2i}`` / ``rel_spearman_{i2t,t2i}``: mean per-query Kendall τ-b / Spearman ρ between
        similarities and relevance; ``ncs_{i2t,t2i}_K``: NCS@K in percent, ground-truth pairs excluded
        (Biten et al., WACV 2022); with a full relevance matrix also ``rel_map_at_r_{i2t,t2i}`` and
        ``rel_rprecision_{i2t,t2i}`` (ECCV-style, positives = relevance >= ``positive_threshold``;
        :func:`~bcls.trainer.evaluation.semantic.extended_precision_at_r`).
    """
    gt = caption_to_image[None, :] == torch.arange(sims.shape[0])[:, None]
    out: dict[str, float] = {}
    views = (("i2t", sims, relevance, gt, known), ("t2i", sims.T, relevance.T, gt.T,
                                                    known.T if known is not None else None))
    for direction, s, rel, mask, kn in views:
        corr = rank_correlation(s, rel, kn)
        out[f"rel_kendall_{direction}"] = corr["kendall"]
        out[f"rel_spearman_{direction}"] = corr["spearman"]
        ncs = ncs_at_k(s, rel, ks=ks, gt_mask=mask, exclude_gt=True)
        assert isinstance(ncs, dict)  # without return_counts
        for k, value in ncs.items():
            out[f"ncs_{direction}_{k}"] = value
        if kn is None:
            ext = extended_precision_at_r(s, rel, positive_threshold)
            out[f"rel_map_at_r_{direction}"] = ext["map_at_r"]
            out[f"rel_rprecision_{direction}"] = ext["rprecision"]
    return out


@dataclass
class SplitScores:
    """What the evaluator gives for one split.

    Attributes:
        sims: ``(n_images, n_captions)`` cosine similarities of the model's embeddings.
        caption_to_image: ``(n_captions,)`` image position of each caption.
        metrics: Recall@K (i2t, t2i), rsum and ranks over the whole split (one block).
    """

    sims: torch.Tensor
    caption_to_image: torch.Tensor
    metrics: dict[str, float]


def score_split(model: RetrievalModel, vocab: Vocabulary, table: CaptionTable, feats: ImageFeatures,
                device: str | torch.device = "cpu") -> SplitScores:
    """The evaluator: embed a split with ``model`` and measure retrieval over the whole split. The dev
    evaluation of a training run (:func:`evaluate_model`) and ``bcls eval`` (:func:`evaluate`, which adds the
    protocol's, relevance and judged metrics on the same similarities) both call it."""
    img, cap = encode_split(model, vocab, table, feats, device)
    caption_to_image = torch.from_numpy(table.image_index().copy())
    sims = img @ cap.T
    return SplitScores(sims, caption_to_image, recall_metrics(sims, caption_to_image))


def evaluate_model(model: RetrievalModel, vocab: Vocabulary, table: CaptionTable, feats: ImageFeatures,
                   device: str | torch.device = "cpu", relevance: np.ndarray | None = None) -> dict[str, float]:
    """The metrics of :func:`score_split` on one split, plus :func:`relevance_metrics` when a
    ``(n_images, n_captions)`` relevance matrix is given."""
    scores = score_split(model, vocab, table, feats, device)
    metrics = scores.metrics
    if relevance is not None:
        metrics |= relevance_metrics(scores.sims, torch.from_numpy(np.asarray(relevance, dtype=np.float32)),
                                     scores.caption_to_image)
    return metrics


def load_relevance(path: str | os.PathLike, table: CaptionTable, source: str | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """Relevance of every (image, caption) pair of a split.

    Args:
        path: a ``.npy`` ``(n_images, n_captions)`` matrix (e.g. the demo's ground truth), or a label folder built
            by ``bcls labels build`` for this split (sparse: unknown pairs are 0 and marked unknown).
        source: the label column to use from a label folder (default: its first source).

    Returns:
        ``(relevance float32 (n_images, n_captions), known bool or None, description)``.
    """
    path = Path(path)
    n_images, n_captions = len(table.unique_images()), len(table)
    if path.is_dir():
        labels = open_labels(path)
        source = source or labels.sources[0]
        pairs = PairLabels.from_labels(labels, source, table)
        keys = pairs.keys.numpy()
        rel = torch.zeros(n_images * n_captions)
        known = torch.zeros(n_images * n_captions, dtype=torch.bool)
        rel[keys] = pairs.values
        known[keys] = True
        return rel.view(n_images, n_captions), known.view(n_images, n_captions), f"{path} ({source})"
    try:
        rel = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataFormatError(f"{path}: not a readable .npy relevance matrix or label folder ({err})") from None
    if rel.shape != (n_images, n_captions):
        raise DataFormatError(f"{path}: relevance has shape {rel.shape}, the split has {n_images} images and "
                              f"{n_captions} captions")
    return torch.from_numpy(np.asarray(rel, dtype=np.float32)), None, str(path)


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one evaluation (``bcls eval``): a checkpoint on ``split`` of a precomp folder ``data`` (or of a
    caption file ``captions`` with a feature folder ``features``, joined by image id:
    :func:`bcls.data.datasets.read_split`).

    Attributes:
        out: folder for ``metrics.json``, ``report.md``, the plots (``plots``) and ``examples.html``.
        device: torch device of the model.
        relevance: graded relevance for the relevance metrics (see :func:`load_relevance`), from the label column
            ``relevance_source``; by default ``{data}/{split}_relevance.npy`` when it exists (the demo's ground truth).
        protocol: ``auto`` (:func:`detect_protocol`), ``coco`` (5-fold 1K + 5K), ``flickr`` (1K) or ``full``.
        eccv: on COCO, also ECCV Caption mAP@R / R-P / R@1 and CxC R@K (eccv-caption package).
        caption_format, skip_missing: how ``captions`` is read, and whether captions without features are left out.
        judgments: human judgments of (image, caption) pairs (Flickr8k CrowdFlower / expert, CxC SITS;
            :func:`bcls.data.judgments.read_judgments` with ``judgment_format``): adds the ``judged_*`` metrics
            (:func:`~bcls.trainer.evaluation.judged.judged_metrics`); the file and its sha256 go in the provenance.
        images: the folder of the split's image files: with ``out``, also writes ``examples.html``
            (:func:`~bcls.trainer.evaluation.examples.write_examples`).
    """

    checkpoint: str
    data: str | None = None
    split: str = "test"
    out: str | None = None
    device: str = "cpu"
    relevance: str | None = None
    relevance_source: str | None = None
    protocol: str = "auto"
    eccv: bool = True
    plots: bool = True
    captions: str | None = None
    features: str | None = None
    caption_format: str = "auto"
    skip_missing: bool = False
    judgments: str | None = None
    judgment_format: str = "auto"
    images: str | None = None

    def __post_init__(self) -> None:
        check_field_types(self, "eval setting")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"unknown protocol {self.protocol!r}; valid: {', '.join(PROTOCOLS)}")
        if self.images is not None and self.out is None:
            raise ConfigError("images: examples.html is written into the output folder; give out (--out)")

    @classmethod
    def of(cls, checkpoint: str | os.PathLike, **settings: Any) -> "EvalConfig":
        """The config of ``checkpoint`` and ``settings``, paths given as ``Path`` or str; a setting given as None
        keeps its default."""
        given = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in settings.items() if v is not None}
        return cls(checkpoint=os.fspath(checkpoint), **given)


def evaluate(checkpoint: str | os.PathLike | EvalConfig, data: str | os.PathLike | None = None,
             split: str | None = None, out: str | os.PathLike | None = None, **settings: Any) -> dict[str, Any]:
    """Evaluate a checkpoint: ``evaluate(EvalConfig(...))``, or ``evaluate(checkpoint, data, split, out,
    **settings)`` with the fields of :class:`EvalConfig` (None keeps a default).

    ``metrics.json`` keys: ``i2t_r{1,5,10}``, ``t2i_r{1,5,10}``, ``rsum``, ``{i2t,t2i}_{medr,meanr}`` over the whole
    split; ``coco_1k_*`` (5-fold average) for COCO; ``rel_{kendall,spearman}_{i2t,t2i}`` and ``ncs_{i2t,t2i}_K``
    with a relevance, and ``rel_{map_at_r,rprecision}_{i2t,t2i}`` with a full one (the demo's ground truth);
    ``eccv_*``, ``cxc_*`` on COCO; ``judged_*`` with ``judgments``; ``_provenance``.
    """
    config = checkpoint if isinstance(checkpoint, EvalConfig) else \
        EvalConfig.of(checkpoint, data=data, split=split, out=out, **settings)
    return _evaluate(config)


def _evaluate(config: EvalConfig) -> dict[str, Any]:
    checkpoint, data, split, out, device = config.checkpoint, config.data, config.split, config.out, config.device
    relevance, relevance_source = config.relevance, config.relevance_source
    protocol, eccv = config.protocol, config.eccv
    captions, features, judgments, images = config.captions, config.features, config.judgments, config.images
    ckpt = load_checkpoint(checkpoint, device)
    model, vocab = model_from_checkpoint(ckpt, device, checkpoint)
    table, feats = read_split(split, data, captions, features, caption_format=config.caption_format,
                              skip_missing=config.skip_missing, kind=feature_kind(ckpt["model_name"]))
    where = data or captions or ""
    image_dim = ckpt["model_settings"].get("image_dim")
    if image_dim is not None and image_dim != feats.dim:
        raise DataFormatError(f"{feats.path}: features have dimension {feats.dim}, the checkpoint's model expects "
                              f"{image_dim}; evaluate on data with the training features' layout")
    detected, coco_captions = detect_protocol(table, where)
    if protocol == "coco" and detected != "coco":
        raise ConfigError(f"{where} split {split!r}: --protocol coco needs the MS-COCO Karpathy 5K test split (5,000 "
                          f"images with the ECCV Caption ids), this split has {feats.n_images} images that are not "
                          "it; use --protocol auto or full")
    protocol = detected if protocol == "auto" else protocol
    eccv_skipped = None
    if protocol != "coco":
        eccv_skipped = "not the COCO Karpathy 5K test split"
    elif not eccv:
        eccv_skipped = "--no-eccv"
    scores = score_split(model, vocab, table, feats, device)
    sims, caption_to_image, metrics = scores.sims, scores.caption_to_image, scores.metrics
    if protocol == "coco":
        fold = coco_5fold_1k(sims, caption_to_image)
        metrics |= {f"coco_1k_{k}": v for k, v in fold.items()}
        metrics |= {f"coco_5k_{k}": v for k, v in metrics.items() if k in RECALL_KEYS}
        if eccv and coco_captions is not None:
            metrics |= eccv_metrics_from_sims(sims, table.unique_images(), coco_captions)
    if eccv_skipped:
        log.info("ECCV Caption / CxC metrics skipped: %s", eccv_skipped)
    default_rel = Path(data) / f"{split}_relevance.npy" if data else None
    rel_path = relevance if relevance is not None else (
        default_rel if default_rel is not None and default_rel.is_file() else None)
    rel_desc = None
    rel = known = None
    if rel_path is not None:
        rel, known, rel_desc = load_relevance(rel_path, table, relevance_source)
        metrics |= relevance_metrics(sims, rel, caption_to_image, known)
    judged_info = judged = None
    if judgments is not None:
        judged = read_judgments(judgments, config.judgment_format)
        metrics |= judged_metrics(sims, table, judged)
        judged_info = {"path": str(judgments), "format": judged.format, "sha256": sha256_file(Path(judgments)),
                       "rows": len(judged)}
    log.info("eval %s/%s: rsum %.1f", where, split, metrics["rsum"])
    provenance: dict[str, Any] = {"checkpoint": str(checkpoint), "data": str(data) if data else None,
                  "caption_file": str(captions) if captions else None,
                  "features": str(features) if features else None, "split": split, "protocol": protocol,
                  "judgments": judged_info,
                  "images": feats.n_images, "captions": len(table), "relevance": rel_desc,
                  "epoch": ckpt.get("epoch"), "bcls_version": __version__,
                  "checkpoint_bcls_version": ckpt.get("bcls_version"), "eccv_skipped": eccv_skipped,
                  "recall_ties": "pessimistic (a negative tied with the ground truth ranks above it)",
                  "ncs_empty_queries": "zero (a query without a relevant candidate scores 0, as ncs_metric does)",
                  "train_config": _shown_settings(ckpt.get("train_config", {}))}
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        if config.plots:
            tc = provenance["train_config"]
            subtitle = f"{tc.get('model')}, λ {tc.get('lam')}, labels {tc.get('source')} ({tc.get('label_mode')})"
            i2t_ranks, t2i_ranks = retrieval_ranks(sims, caption_to_image)
            written.append(plot_recall_curves({"image→text": recall_curve(i2t_ranks),
                                               "text→image": recall_curve(t2i_ranks)}, folder / "recall_at_k.png",
                                              subtitle))
            if rel is not None:
                written.append(plot_similarity_vs_label(sims, rel, known, folder / "similarity_vs_label.png",
                                                        subtitle=subtitle))
        if images is not None:
            written_html = write_examples(folder / "examples.html", sims, table, images, judged)
            log.info("eval: wrote %s", written_html)
        atomic_write_json(folder / "metrics.json", metrics | {"_provenance": provenance})
        atomic_write_bytes(folder / "report.md", markdown_report(metrics, provenance, [str(p) for p in written])
                           .encode())
    return {"metrics": metrics, "provenance": provenance}
