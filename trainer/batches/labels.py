"""In-batch continuous labels: looked up from label shards, or computed for every pair of a batch (dense).

Shards hold a sparse set of (image_id, caption_id, value) pairs. :class:`PairLabels` keeps them as one sorted
int64 key array (``image_pos * n_captions + caption_pos``) and answers a whole batch's ``B × B`` lookup with one
``searchsorted`` — memory is 12 bytes per stored pair, never a dense N × 5N matrix.

Every in-batch label lookup — :class:`PairLabels`, :class:`DenseSbertLabels`, :class:`DenseSourceLabels` and
:class:`~bcls.trainer.batches.streaming.StreamLabels` — follows the :class:`InBatchLabels` protocol, which is all
the training step knows of them.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from bcls.data.captions import CaptionTable
from bcls.data.infra.errors import ConfigError, ShardError
from bcls.data.shards import LabelSet, read_caption_embeddings, read_labels
from bcls.pipeline.building.resume import stored_source_options
from bcls.pipeline.corpus import LabelCorpus, LabelSource
from bcls.pipeline.sources import SbertSource, make_source
from bcls.pipeline.sources.sbert import AGGREGATES

log = logging.getLogger(__name__)


@runtime_checkable
class InBatchLabels(Protocol):
    """The continuous labels of a batch's (image, caption) pairs, as the training step asks for them."""

    def lookup(self, image_pos: torch.Tensor, caption_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels of every (image, caption) pair of a batch.

        Args:
            image_pos: int64 ``(B_i,)`` image positions; caption_pos: int64 ``(B_c,)`` caption positions, both in the
                training caption table.

        Returns:
            ``(values float32 (B_i, B_c), known bool (B_i, B_c))``; unknown entries hold 0.
        """
        ...


class PairLabels:
    """Sparse continuous labels over (image position, caption position) of one training caption table.

    Args:
        image_pos, caption_pos: int64 ``(P,)`` positions (image in ``table.unique_images()``, caption row).
        values: float32 ``(P,)`` label values; NaN values are dropped (unknown).
        n_captions: number of captions (the key stride).
    """

    def __init__(self, image_pos: np.ndarray, caption_pos: np.ndarray, values: np.ndarray, n_captions: int):
        keep = ~np.isnan(values)
        keys = image_pos[keep].astype(np.int64) * n_captions + caption_pos[keep].astype(np.int64)
        order = np.argsort(keys, kind="stable")
        self.keys = torch.from_numpy(keys[order])
        self.values = torch.from_numpy(values[keep][order].astype(np.float32))
        self.n_captions = n_captions

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def from_labels(cls, labels: LabelSet, source: str, table: CaptionTable) -> "PairLabels":
        """Load one source's column from a label folder and map its ids onto ``table``'s positions."""
        if labels.provenance.get("input", {}).get("fingerprint") != table.fingerprint():
            log.warning("%s: labels were built from a different caption table than %s; ids are matched, "
                        "pairs on captions or images that are absent are an error", labels.folder, table.path)
        data = read_labels(labels, [source])
        img_ids = data.column("image_id").to_numpy()
        cap_ids = data.column("caption_id").to_numpy()
        values = data.column(source).to_numpy()
        images = table.unique_images()
        img_sorter = np.argsort(images)
        img_pos = img_sorter[np.clip(np.searchsorted(images, img_ids, sorter=img_sorter), 0, len(images) - 1)]
        cap_sorter = np.argsort(table.caption_ids)
        cap_pos = cap_sorter[np.clip(np.searchsorted(table.caption_ids, cap_ids, sorter=cap_sorter), 0,
                                     len(table) - 1)]
        bad_img = images[img_pos] != img_ids
        bad_cap = table.caption_ids[cap_pos] != cap_ids
        if bad_img.any() or bad_cap.any():
            what = (f"image_id {img_ids[bad_img][0]}" if bad_img.any() else f"caption_id {cap_ids[bad_cap][0]}")
            raise ShardError(f"{labels.folder}: {int(bad_img.sum() + bad_cap.sum())} label pairs name ids absent "
                             f"from {table.path} (first: {what}); build the labels from the training captions")
        return cls(img_pos, cap_pos, values.astype(np.float32), len(table))

    def lookup(self, image_pos: torch.Tensor, caption_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`InBatchLabels.lookup`: the stored pairs are known, every other pair unknown."""
        query = image_pos.cpu().to(torch.int64)[:, None] * self.n_captions + caption_pos.cpu().to(torch.int64)[None, :]
        if len(self.keys) == 0:
            return torch.zeros(query.shape), torch.zeros(query.shape, dtype=torch.bool)
        idx = torch.searchsorted(self.keys, query).clamp(max=len(self.keys) - 1)
        known = self.keys[idx] == query
        values = torch.where(known, self.values[idx], torch.zeros(()))
        return values, known


class DenseSbertLabels:
    """Dense in-batch ``sbert`` labels computed on the fly from the caption embeddings a label build stored.

    Every (image, caption) pair of a batch gets a label — the paper's setting — by applying the definition of the
    :class:`~bcls.pipeline.sources.sbert.SbertSource` that wrote the shards to all ``B × B`` pairs, so values equal the
    shard values wherever both exist. The embeddings live on the training ``device`` and the labels are computed
    there: on the CPU they cost a GPU step's time at large batches (docs/benchmarks.md, "Host work of a step at
    COCO's shape").
    """

    def __init__(self, corpus: LabelCorpus, source: SbertSource, device: str | torch.device = "cpu"):
        self.corpus, self.source = corpus, source
        self.device = torch.device(device)
        self.embeddings = torch.from_numpy(np.ascontiguousarray(corpus.embeddings, dtype=np.float32)).to(self.device)
        self.refs = torch.from_numpy(corpus.refs).to(self.device)

    @classmethod
    def from_labels(cls, labels: LabelSet, table: CaptionTable,
                    device: str | torch.device = "cpu") -> "DenseSbertLabels":
        _same_table(labels, table, "sbert")
        emb = read_caption_embeddings(labels, len(table))
        options = stored_source_options(labels.folder).get("sbert")
        if options is None:  # a folder from a bcls that recorded only the provenance's settings
            options = {"aggregate": labels.provenance.get("sources", {}).get("sbert", {}).get("aggregate", "max")}
        source = SbertSource(**options)
        return cls(LabelCorpus.from_groups(table.texts, table.image_index(), emb), source, device)

    def lookup(self, image_pos: torch.Tensor, caption_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same contract as :meth:`InBatchLabels.lookup`, on :attr:`device`; every pair is known unless its image
        has no other caption.

        The source's definition applied to all ``B_i × B_c`` pairs at once: one matrix product of the images'
        reference embeddings ``(B_i·M, d)`` with the captions' ``(d, B_c)``, instead of ``B_i·B_c`` gathers.
        """
        img = image_pos.to(self.device, torch.int64)
        cap = caption_pos.to(self.device, torch.int64)
        refs = self.refs[img]  # (B_i, M), -1 = padding
        ref_emb = self.embeddings[refs.clamp(min=0)]
        raw = torch.einsum("imd,jd->ijm", ref_emb, self.embeddings[cap])
        valid = (refs >= 0)[:, None, :] & (refs[:, None, :] != cap[None, :, None])
        gram = torch.einsum("imd,ind->imn", ref_emb, ref_emb)[:, None] if self.source.aggregate == "centroid" \
            else None
        values = aggregate_similarities_torch(raw, valid, self.source.aggregate, k=self.source.k,
                                              temperature=self.source.temperature, gram=gram)
        known = ~torch.isnan(values)
        return torch.where(known, values, 0.0), known


def aggregate_similarities_torch(raw: torch.Tensor, valid: torch.Tensor, aggregate: str, *, k: int = 2,
                                 temperature: float = 0.1, gram: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`bcls.pipeline.sources.sbert.aggregate_similarities` (the definition, in numpy, that label builds use)
    on torch tensors, on their device; same arguments and result. A test holds the two equal for every aggregate."""
    n_valid = valid.sum(dim=-1)
    sims = raw.clamp(0.0, 1.0)
    if aggregate == "max":
        value = sims.masked_fill(~valid, -torch.inf).amax(dim=-1)
    elif aggregate == "mean":
        value = sims.masked_fill(~valid, 0.0).sum(dim=-1) / n_valid
    elif aggregate == "topk":
        top = sims.masked_fill(~valid, -torch.inf).topk(min(k, sims.shape[-1]), dim=-1).values
        value = torch.where(torch.isfinite(top), top, 0.0).sum(dim=-1) / n_valid.clamp(max=k)
    elif aggregate == "softmax":
        logits = (sims / temperature).masked_fill(~valid, -torch.inf)
        weights = torch.exp(logits - logits.amax(dim=-1, keepdim=True))
        value = (weights * sims.masked_fill(~valid, 0.0)).sum(dim=-1) / weights.sum(dim=-1)
    elif aggregate == "centroid":
        if gram is None:
            raise ConfigError("the centroid aggregate needs the references' cosines (gram)")
        pair_valid = valid[..., :, None] & valid[..., None, :]  # padding may hold anything: masked, not multiplied
        norm = torch.where(pair_valid, gram, 0.0).sum(dim=(-2, -1)).clamp(min=1e-12).sqrt()
        value = (raw.masked_fill(~valid, 0.0).sum(dim=-1) / norm).clamp(0.0, 1.0)
    else:
        raise ConfigError(f"unknown sbert aggregate {aggregate!r}; valid: {', '.join(AGGREGATES)}")
    return torch.where(n_valid > 0, value, torch.nan).float()


class DenseSourceLabels:
    """Dense in-batch labels of any label source that can score arbitrary pairs (every source but ``file``):
    the source the label build used, rebuilt with the build's options, scores all ``B_i × B_c`` pairs of a batch.

    Values therefore equal the shard values wherever both exist. Per-corpus tables (CIDEr-D n-grams, spice scene
    graphs) are prepared once, when the first batch is scored.
    """

    def __init__(self, corpus: LabelCorpus, source: LabelSource):
        self.corpus, self.source = corpus, source

    @classmethod
    def from_labels(cls, labels: LabelSet, source: str, table: CaptionTable) -> "DenseSourceLabels":
        if source == "file":
            raise ConfigError("dense labels need a source that can score any pair; the file source only knows its "
                              "listed pairs: use --label-mode sparse")
        _same_table(labels, table, source)
        built = make_source(source, **stored_source_options(labels.folder).get(source, {}))
        _same_settings(labels, built)
        emb = read_caption_embeddings(labels, len(table)) if built.needs_embeddings else None
        corpus = LabelCorpus.from_groups(table.texts, table.image_index(), emb, image_ids=table.unique_images(),
                                         caption_ids=table.caption_ids)
        return cls(corpus, built)

    def lookup(self, image_pos: torch.Tensor, caption_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same contract as :meth:`InBatchLabels.lookup`; a pair the source cannot score (NaN) is unknown."""
        img = image_pos.cpu().numpy().astype(np.int64)
        cap = caption_pos.cpu().numpy().astype(np.int64)
        scored = self.source.score(self.corpus, np.repeat(img, len(cap)), np.tile(cap, len(img)))
        values = torch.from_numpy(np.asarray(scored, dtype=np.float32).reshape(len(img), len(cap)))
        known = ~torch.isnan(values)
        return torch.where(known, values, torch.zeros(())), known


def _same_settings(labels: LabelSet, built: LabelSource) -> None:
    """Refuse a source whose settings differ from the build's (e.g. an ensemble file changed since): its dense
    labels would not be the labels the shards hold."""
    import json

    def identity(settings: dict) -> str:
        kept = {k: v for k, v in settings.items() if k not in getattr(built, "provenance_only", ())}
        return json.dumps(kept, sort_keys=True, default=str)

    stored = labels.provenance.get("sources", {}).get(built.name)
    if stored is not None and identity(stored) != identity(json.loads(json.dumps(built.settings(), default=str))):
        raise ShardError(f"{labels.folder}: the {built.name} source now has other settings than when these labels "
                         f"were built (stored {identity(stored)[:120]}); rebuild the labels or restore its inputs")


def _same_table(labels: LabelSet, table: CaptionTable, source: str) -> None:
    if labels.provenance.get("input", {}).get("fingerprint") != table.fingerprint():
        raise ShardError(f"{labels.folder}: dense {source} labels need the label build's caption table, and "
                         f"{table.path} differs from it; rebuild the labels from these captions or use sparse labels")


def dense_labels(labels: LabelSet, source: str, table: CaptionTable,
                 device: str | torch.device = "cpu") -> "DenseSbertLabels | DenseSourceLabels":
    """The dense in-batch labels of ``source``: the matrix-product path for ``sbert`` (computed on ``device``), the
    source itself otherwise (on the CPU)."""
    if source == "sbert":
        return DenseSbertLabels.from_labels(labels, table, device)
    return DenseSourceLabels.from_labels(labels, source, table)


class LabelNormalizer:
    """Per-source normalisation of raw label values, fitted on the training labels.

    ``none`` keeps raw values; ``minmax`` maps [min, max] of the training labels to [0, 1]; ``percentile`` maps a
    value to the fraction of training labels below it (robust to a source's scale and skew, e.g. CIDEr-D).
    The Kendall loss only uses label *order* and label *differences* (its ``gap``), so normalisation decides what
    a gap means, not which pairs are ordered.
    """

    KINDS = ("none", "minmax", "percentile")

    def __init__(self, kind: str, values: np.ndarray):
        if kind not in self.KINDS:
            raise ConfigError(f"unknown label normalisation {kind!r}; valid: {', '.join(self.KINDS)}")
        self.kind = kind
        values = values[~np.isnan(values)]
        self.sorted = torch.from_numpy(np.sort(values).astype(np.float32)) if kind == "percentile" else None
        self.lo = float(values.min()) if len(values) else 0.0
        self.hi = float(values.max()) if len(values) else 1.0

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        if self.kind == "minmax":
            return (values - self.lo) / max(self.hi - self.lo, 1e-12)
        if self.sorted is not None:  # percentile
            if self.sorted.device != values.device:  # moved once, to the device the labels are computed on
                self.sorted = self.sorted.to(values.device)
            return torch.searchsorted(self.sorted, values.contiguous()).float() / max(len(self.sorted), 1)
        return values

    @property
    def top(self) -> float:
        """The label given to ground-truth pairs: above every normalised label (1 for minmax / percentile)."""
        return 1.0 if self.kind != "none" else max(self.hi, 1.0)

    def describe(self) -> str:
        return f"{self.kind} (training labels in [{self.lo:.4f}, {self.hi:.4f}])"
