"""Streaming label pairs from shards: completeness, splits across ranks and workers, bounded shuffling."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bcls.data.shards import open_labels, write_manifest, write_shard
from bcls.trainer.batches.streaming import ShardPairStream, StreamLabels


@pytest.fixture
def labels(tmp_path):
    entries = []
    for s in range(5):
        img = np.repeat(np.arange(s * 10, s * 10 + 10), 3)
        cap = np.arange(len(img)) + 1000 * s
        val = np.linspace(0, 1, len(img))
        val[::7] = np.nan  # unknown values are skipped
        entries.append(write_shard(tmp_path, s, img, cap, {"sbert": val}))
    write_manifest(tmp_path, entries, ["sbert"], {})
    return open_labels(tmp_path)


def _all_rows(labels):
    rows = []
    for s in range(5):
        img = np.repeat(np.arange(s * 10, s * 10 + 10), 3)
        cap = np.arange(len(img)) + 1000 * s
        val = np.linspace(0, 1, len(img)).astype(np.float32)
        keep = np.ones(len(img), bool)
        keep[::7] = False
        rows += [(int(i), int(c), float(v)) for i, c, v in zip(img[keep], cap[keep], val[keep])]
    return sorted(rows)


def test_every_known_row_once_and_shuffled(labels):
    stream = ShardPairStream(labels, "sbert", buffer_size=16, seed=3, batch_rows=4)
    got = list(stream)
    assert sorted(got) == _all_rows(labels)
    assert got != sorted(got)  # shuffled
    assert got == list(ShardPairStream(labels, "sbert", buffer_size=16, seed=3, batch_rows=4))  # same seed
    assert list(ShardPairStream(labels, "sbert", buffer_size=0)) == sorted(got, key=lambda r: (r[1] // 1000, r[1]))


def test_ranks_and_workers_share_the_shards_without_overlap(labels):
    parts = [list(ShardPairStream(labels, "sbert", buffer_size=8, rank=r, world=2)) for r in range(2)]
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == _all_rows(labels)
    loader = DataLoader(ShardPairStream(labels, "sbert", buffer_size=8), batch_size=None, num_workers=2)
    rows = [(int(i), int(c), float(v)) for i, c, v in loader]
    assert sorted(rows) == _all_rows(labels)


def test_stream_labels_lookup():
    labels = StreamLabels({(1, 7): 0.5, (2, 9): 0.25})
    values, known = labels.lookup(torch.tensor([1, 2, 1]), torch.tensor([9, 7]))
    assert known.tolist() == [[False, True], [True, False], [False, True]]
    assert values[0, 1] == 0.5 and values[1, 0] == 0.25
