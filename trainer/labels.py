"""In-batch continuous labels looked up from label shards.

Shards hold a sparse set of (image_id, caption_id, value) pairs. :class:`PairLabels` keeps them as one sorted
int64 key array (``image_pos * n_captions + caption_pos``) and answers a whole batch's ``B × B`` lookup with one
``searchsorted`` — memory is 12 bytes per stored pair, never a dense N × 5N matrix.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from bcls.data.captions import CaptionTable
from bcls.data.errors import ShardError
from bcls.data.shards import LabelSet, read_labels

log = logging.getLogger(__name__)


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
        """Labels of every (image, caption) pair of a batch.

        Args:
            image_pos: int64 ``(B_i,)``; caption_pos: int64 ``(B_c,)``.

        Returns:
            ``(values float32 (B_i, B_c), known bool (B_i, B_c))``; unknown entries hold 0.
        """
        query = image_pos.cpu().to(torch.int64)[:, None] * self.n_captions + caption_pos.cpu().to(torch.int64)[None, :]
        if len(self.keys) == 0:
            return torch.zeros(query.shape), torch.zeros(query.shape, dtype=torch.bool)
        idx = torch.searchsorted(self.keys, query).clamp(max=len(self.keys) - 1)
        known = self.keys[idx] == query
        values = torch.where(known, self.values[idx], torch.zeros(()))
        return values, known
