"""Streaming labelled pairs from label shards, with memory that does not grow with the number of pairs.

:class:`ShardPairStream` is a torch ``IterableDataset`` over the rows ``(image_id, caption_id, value)`` of a label
folder: shards are read incrementally (pyarrow record batches), split across DataLoader workers and distributed
ranks, and shuffled through a bounded buffer. :func:`stream_batches` turns the stream into training batches for the
``stream`` sampler: each streamed pair (image i, caption c) brings one caption of i and the caption c, so every
pair's label is known in the batch without any in-memory label index.
"""

from __future__ import annotations

import logging
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from bcls.data.captions import CaptionTable
from bcls.data.shards import LabelSet, read_shard

log = logging.getLogger(__name__)


class ShardPairStream(IterableDataset):
    """Rows ``(image_id, caption_id, value)`` of one label source, streamed shard by shard.

    Args:
        labels: a finished label folder.
        source: the label column to stream.
        buffer_size: rows held in the shuffle buffer (the memory bound); 0 keeps the shard order.
        seed: the shuffle seed (with the same seed the stream is the same).
        rank, world: this process's share of the shards (shard ``s`` goes to ``s % (world·workers)``).
        batch_rows: rows per pyarrow record batch read from a shard.

    Yields ``(image_id int, caption_id int, value float)``; rows with a NaN value (unknown) are skipped.
    """

    def __init__(self, labels: LabelSet, source: str, buffer_size: int = 65536, seed: int = 0, rank: int = 0,
                 world: int = 1, batch_rows: int = 8192):
        if source not in labels.sources:
            from bcls.data.infra.errors import ShardError
            raise ShardError(f"{labels.folder}: label source {source!r} not in this build; it has {labels.sources}")
        self.labels, self.source = labels, source
        self.buffer_size, self.seed, self.rank, self.world, self.batch_rows = buffer_size, seed, rank, world, batch_rows

    def _my_shards(self) -> list:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        slot, slots = self.rank * workers + worker, self.world * workers
        return [p for s, p in enumerate(self.labels.shard_paths()) if s % slots == slot]

    def _rows(self) -> Iterator[tuple[int, int, float]]:
        columns = self.labels.manifest["columns"]
        for path in self._my_shards():
            read_shard(path, columns).schema  # refuses a foreign or damaged shard before streaming it
            for batch in pq.ParquetFile(path).iter_batches(batch_size=self.batch_rows,
                                                           columns=["image_id", "caption_id", self.source]):
                img, cap, val = (batch.column(i).to_numpy() for i in range(3))
                keep = ~np.isnan(val)
                yield from zip(img[keep].tolist(), cap[keep].tolist(), val[keep].tolist())

    def __iter__(self) -> Iterator[tuple[int, int, float]]:
        info = get_worker_info()
        rng = np.random.default_rng([self.seed, self.rank, info.id if info is not None else 0])
        if self.buffer_size <= 0:
            yield from self._rows()
            return
        buffer: list[tuple[int, int, float]] = []
        for row in self._rows():
            if len(buffer) < self.buffer_size:
                buffer.append(row)
                continue
            slot = int(rng.integers(len(buffer)))
            buffer[slot], row = row, buffer[slot]
            yield row
        rng.shuffle(buffer)
        yield from buffer


def stream_batches(stream: ShardPairStream, table: CaptionTable, batch_size: int, n_batches: int,
                   generator: torch.Generator) -> Iterator[tuple[torch.Tensor, dict[tuple[int, int], float]]]:
    """``n_batches`` training batches from a pair stream (restarted when it runs out).

    Each streamed pair (image i, caption c, value) adds a random caption of image i and the caption c, until the
    batch holds ``batch_size`` distinct captions. Yields the caption rows and the streamed labels of the batch as
    ``{(image_pos, caption_pos): value}``.
    """
    image_ids, offsets, order = table.groups()
    img_sorter = np.argsort(image_ids)
    cap_sorter = np.argsort(table.caption_ids)
    it = iter(stream)
    for _ in range(n_batches):
        rows: dict[int, None] = {}
        known: dict[tuple[int, int], float] = {}
        while len(rows) < batch_size:
            try:
                image_id, caption_id, value = next(it)
            except StopIteration:
                it = iter(stream)
                image_id, caption_id, value = next(it)
            ip = int(img_sorter[np.searchsorted(image_ids, image_id, sorter=img_sorter)])
            cp = int(cap_sorter[np.searchsorted(table.caption_ids, caption_id, sorter=cap_sorter)])
            if image_ids[ip] != image_id or table.caption_ids[cp] != caption_id:
                continue  # a pair outside this caption table (checked when the labels were opened)
            own = int(order[offsets[ip] + int(torch.randint(int(offsets[ip + 1] - offsets[ip]), (1,),
                                                                     generator=generator))])
            rows.setdefault(own)
            if len(rows) < batch_size:
                rows.setdefault(cp)
            known[(ip, cp)] = value
        yield torch.tensor(list(rows), dtype=torch.int64), known


class StreamLabels:
    """In-batch labels of a ``stream`` batch: the streamed pairs, nothing else (no label index in memory)."""

    def __init__(self, known: dict[tuple[int, int], float]):
        self.known = known

    def lookup(self, image_pos: torch.Tensor, caption_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same contract as :meth:`bcls.trainer.batches.labels.InBatchLabels.lookup`."""
        values = torch.zeros(len(image_pos), len(caption_pos))
        known = torch.zeros(len(image_pos), len(caption_pos), dtype=torch.bool)
        img_at: dict[int, list[int]] = {}
        for a, i in enumerate(image_pos.tolist()):
            img_at.setdefault(i, []).append(a)
        cap_at = {c: b for b, c in enumerate(caption_pos.tolist())}
        for (i, c), v in self.known.items():
            if c in cap_at:
                for a in img_at.get(i, ()):
                    values[a, cap_at[c]] = v
                    known[a, cap_at[c]] = True
        return values, known
