"""Batch samplers, judged by their batch statistics."""

import numpy as np
import pytest
import torch

from bcls.data.infra.errors import ConfigError
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


def _batches(name, n, batch_size, gen, image_index, labels, fraction, group_size=4):
    return [b.rows for b in make_batches(name, n=n, batch_size=batch_size, generator=gen, image_index=image_index,
                                         labels=labels, fraction=fraction, group_size=group_size)]


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


def test_group_batches_bring_each_seed_several_labelled_candidates():
    n, image_index, labels = _setup(n_images=2000, k=8)
    gen = torch.Generator().manual_seed(0)
    groups = _batches("groups", n, 64, gen, image_index, labels, 0.5, group_size=4)
    neigh = _batches("neighbours", n, 64, torch.Generator().manual_seed(0), image_index, labels, 0.5)
    assert len(groups) == len(neigh) == n // 64 + 1
    for b in groups:
        assert len(torch.unique(b)) == len(b) and len(b) <= 64
    # the first caption of each group is a seed; per seed image, up to 3 of its candidates follow
    first = groups[0][:4]
    seed_image = int(image_index[first[0]])
    lo = torch.searchsorted(labels.keys, torch.tensor(seed_image * n))
    hi = torch.searchsorted(labels.keys, torch.tensor((seed_image + 1) * n))
    candidates = set((labels.keys[lo:hi] % n).tolist())
    assert set(first[1:].tolist()) <= candidates
    per_query = [_labelled_pairs(b, image_index, labels) / len(b) for b in groups]
    per_query_n = [_labelled_pairs(b, image_index, labels) / len(b) for b in neigh]
    assert np.mean(per_query) > 1.3 * np.mean(per_query_n)
    again = _batches("groups", n, 64, torch.Generator().manual_seed(0), image_index, labels, 0.5, group_size=4)
    assert all(torch.equal(x, y) for x, y in zip(groups, again))
    with pytest.raises(ConfigError, match="group size must be at least 2"):
        _batches("groups", n, 64, gen, image_index, labels, 0.5, group_size=1)
