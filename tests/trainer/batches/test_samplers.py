"""Batch samplers, judged by their batch statistics."""

import numpy as np
import pytest
import torch

from bcls.data.errors import ConfigError
from bcls.trainer.batches import PairLabels, make_batches


def _setup(n_images=200, cpi=5, k=4, seed=0):
    rng = np.random.default_rng(seed)
    n = n_images * cpi
    image_index = torch.arange(n) // cpi
    img = np.repeat(np.arange(n_images), k)
    cap = rng.integers(0, n, len(img))
    keys = np.unique(img * n + cap)
    labels = PairLabels(keys // n, keys % n, rng.random(len(keys)).astype(np.float32), n)
    return n, image_index, labels


def _batches(name, n, batch_size, gen, image_index, labels, fraction):
    return [b.rows for b in make_batches(name, n=n, batch_size=batch_size, generator=gen, image_index=image_index,
                                         labels=labels, fraction=fraction)]


def _labelled_pairs(batch, image_index, labels):
    images = image_index[batch]
    _, known = labels.lookup(images, batch)
    return int((known & (images[:, None] != images[None, :])).sum())


@pytest.mark.parametrize("name", ["random", "neighbours"])
def test_epoch_shape(name):
    n, image_index, labels = _setup()
    gen = torch.Generator().manual_seed(0)
    batches = _batches(name, n, 64, gen, image_index, labels, 0.5)
    assert len(batches) == n // 64 + 1  # 15 full batches + one of 40
    for b in batches:
        assert len(torch.unique(b)) == len(b) and len(b) <= 64
        assert b.min() >= 0 and b.max() < n
    if name == "random":
        assert sorted(torch.cat(batches).tolist()) == list(range(n))


def test_neighbour_batches_hold_many_more_labelled_pairs():
    n, image_index, labels = _setup(n_images=2000)
    gen = torch.Generator().manual_seed(0)
    rand = [_labelled_pairs(b, image_index, labels) for b in _batches("random", n, 64, gen, image_index,
                                                                     labels, 0.5)]
    neigh = [_labelled_pairs(b, image_index, labels) for b in _batches("neighbours", n, 64, gen, image_index,
                                                                       labels, 0.5)]
    # every seed brings one of its image's candidates: 32+ labelled pairs per batch against
    # 64 * 63 * 4 / 10000 ≈ 1.6 expected at random
    assert np.mean(rand) < 3
    assert np.mean(neigh) > 10 * np.mean(rand)
    assert np.mean(neigh) >= 25


def test_same_seed_same_batches_and_bad_names():
    n, image_index, labels = _setup()
    a = _batches("neighbours", n, 50, torch.Generator().manual_seed(3), image_index, labels, 0.3)
    b = _batches("neighbours", n, 50, torch.Generator().manual_seed(3), image_index, labels, 0.3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ConfigError, match="valid: random, neighbours"):
        _batches("nope", n, 50, torch.Generator(), image_index, labels, 0.5)
    with pytest.raises(ConfigError, match="fraction"):
        _batches("neighbours", n, 50, torch.Generator(), image_index, labels, 1.0)
