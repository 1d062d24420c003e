"""Batch samplers: which training captions (rows of the caption table) form each batch.

With top-K label candidates per image, a uniformly random batch of 128 out of 15k (demo) or 566k (COCO) captions
holds few or almost no labelled off-diagonal pairs, so sparse labels give the continuous loss little to learn
from. The ``neighbours`` sampler builds each batch from seed captions plus one label candidate of each seed's
image, so every seed row has at least one labelled pair besides its own caption; the ``groups`` sampler gives each
seed ``group_size - 1`` candidates, so a seed image orders several labelled captions in every batch.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, NamedTuple

import torch

from bcls.data.captions import CaptionTable
from bcls.data.infra.errors import ConfigError
from bcls.data.infra.plugins import Registry
from bcls.data.shards import LabelSet

from .labels import PairLabels
from .streaming import ShardPairStream, StreamLabels, stream_batches


def random_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """A random permutation of ``n`` caption rows cut into batches (a last batch of one row is dropped)."""
    perm = torch.randperm(n, generator=generator)
    for lo in range(0, n, batch_size):
        if n - lo >= 2:
            yield perm[lo:lo + batch_size]


def _seeded_batches(n: int, batch_size: int, generator: torch.Generator, n_seed: int,
                    members: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[torch.Tensor]:
    """The epoch skeleton of the label-aware samplers: as many batches as :func:`random_batches` gives, each made
    of ``n_seed`` seed captions from a random permutation and ``members(seeds)`` (the seeds and what they bring,
    in order), repeats dropped, cut to ``batch_size`` and filled with further captions of the permutation."""
    perm = torch.randperm(n, generator=generator)
    n_batches = n // batch_size + (n % batch_size >= 2)
    pos = 0
    for _ in range(n_batches):
        seeds = perm[pos:pos + n_seed]
        pos += len(seeds)
        batch = _unique_in_order(members(seeds))[:batch_size]
        while len(batch) < batch_size and pos < n:  # fill with further captions of the permutation
            extra = perm[pos:pos + batch_size - len(batch)]
            pos += len(extra)
            batch = _unique_in_order(torch.cat([batch, extra]))
        if len(batch) >= 2:
            yield batch


def _candidate_ranges(labels: PairLabels, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lo, hi)``: the labelled candidates of each image are ``labels.keys[lo[k]:hi[k]]``."""
    return (torch.searchsorted(labels.keys, images * labels.n_captions),
            torch.searchsorted(labels.keys, (images + 1) * labels.n_captions))


def neighbour_batches(n: int, batch_size: int, generator: torch.Generator, image_index: torch.Tensor,
                      labels: PairLabels, fraction: float = 0.5) -> Iterator[torch.Tensor]:
    """Batches of seed captions plus, for each seed, one random label candidate of the seed's image.

    An epoch has as many batches as :func:`random_batches` gives (same compute per epoch). Each batch takes
    ``round(batch_size * (1 - fraction))`` seeds from a random permutation, adds for each seed one caption drawn
    uniformly from its image's labelled candidates (when it has any), drops repeats, and fills any remaining
    places with further captions of the permutation.

    Args:
        n: number of captions; image_index: int64 ``(n,)`` image position of each caption.
        labels: the sparse labels whose candidates are drawn.
        fraction: share of each batch given to neighbours (0 gives random batches).
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"neighbour fraction must be in [0, 1), got {fraction}")

    def members(seeds: torch.Tensor) -> torch.Tensor:
        lo, hi = _candidate_ranges(labels, image_index[seeds])
        pick = lo + (torch.rand(len(seeds), generator=generator) * (hi - lo)).long()
        return torch.cat([seeds, labels.keys[pick[hi > lo]] % labels.n_captions])

    return _seeded_batches(n, batch_size, generator, max(1, round(batch_size * (1.0 - fraction))), members)


def group_batches(n: int, batch_size: int, generator: torch.Generator, image_index: torch.Tensor,
                  labels: PairLabels, group_size: int = 4) -> Iterator[torch.Tensor]:
    """Batches of groups: a seed caption and ``group_size - 1`` distinct labelled candidate captions of the seed's
    image (other images' captions), so that each seed image orders several labelled candidates in every batch.

    An epoch has as many batches as :func:`random_batches` gives. Each batch takes ``batch_size // group_size``
    seeds from a random permutation of the captions, draws for each seed up to ``group_size - 1`` of its image's
    labelled candidates (uniformly, without replacement; the image's own captions are not drawn), lays the groups
    out one after the other, drops repeats and fills the remaining places with further captions of the
    permutation.

    Args:
        n: number of captions; image_index: int64 ``(n,)`` image position of each caption.
        labels: the sparse labels whose candidates are drawn.
        group_size: captions per group (>= 2).
    """
    if group_size < 2:
        raise ConfigError(f"group size must be at least 2 (a seed and one candidate), got {group_size}")

    def members(seeds: torch.Tensor) -> torch.Tensor:
        images = image_index[seeds]
        lo, hi = _candidate_ranges(labels, images)
        out = []
        for seed, img, a, b in zip(seeds.split(1), images.tolist(), lo.tolist(), hi.tolist()):
            caps = labels.keys[a:b] % labels.n_captions
            caps = caps[image_index[caps] != img]
            out += [seed, caps[torch.randperm(len(caps), generator=generator)[:group_size - 1]]]
        return torch.cat(out)

    return _seeded_batches(n, batch_size, generator, max(1, batch_size // group_size), members)


def _unique_in_order(values: torch.Tensor) -> torch.Tensor:
    """``values`` without repeats, each kept at its first occurrence."""
    uniq, inverse = torch.unique(values, return_inverse=True)
    first = torch.full((len(uniq),), len(values), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(values)), reduce="amin")
    return values[first.sort().values]


class Batch(NamedTuple):
    """One training batch: caption rows ``(B,)`` int64 and, for a sampler that brings its own labels (``stream``),
    their lookup (``None`` otherwise: the run's label index answers)."""

    rows: torch.Tensor
    labels: StreamLabels | None = None


def _rows_only(batches: Iterator[torch.Tensor]) -> Iterator[Batch]:
    return (Batch(rows) for rows in batches)


def _random(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
    return _rows_only(random_batches(n, batch_size, generator))


def _neighbours(n: int, batch_size: int, generator: torch.Generator, image_index: torch.Tensor,
                labels: PairLabels | None, fraction: float) -> Iterator[Batch]:
    if labels is None or fraction == 0:
        return _random(n, batch_size, generator)
    return _rows_only(neighbour_batches(n, batch_size, generator, image_index, labels, fraction))


def _groups(n: int, batch_size: int, generator: torch.Generator, image_index: torch.Tensor,
            labels: PairLabels | None, group_size: int) -> Iterator[Batch]:
    if labels is None:
        raise ConfigError("the groups sampler draws labelled candidates: it needs --labels")
    return _rows_only(group_batches(n, batch_size, generator, image_index, labels, group_size))


def _stream(label_set: LabelSet, source: str, buffer_size: int, seed: int, table: CaptionTable, batch_size: int,
            n_batches: int, generator: torch.Generator) -> Iterator[Batch]:
    stream = ShardPairStream(label_set, source, buffer_size, seed=seed)
    return (Batch(rows, StreamLabels(known)) for rows, known in stream_batches(stream, table, batch_size, n_batches,
                                                                                generator))


SAMPLERS: Registry[Iterator[Batch]] = Registry("batch sampler")
"""Batch samplers by name; each factory takes what it needs of the keyword context :func:`make_batches` gets."""
SAMPLERS.register("random", _random, "uniformly random batches of captions")
SAMPLERS.register("neighbours", _neighbours, "seed captions plus one labelled candidate caption of each seed's image")
SAMPLERS.register("groups", _groups, "groups of a seed caption and group_size - 1 labelled candidate captions of "
                  "the seed's image")
SAMPLERS.register("stream", _stream, "labelled pairs streamed from the shards (bounded shuffle buffer, no label "
                  "index in memory): each brings a caption of its image and its caption")


def make_batches(name: str, **context: Any) -> Iterator[Batch]:
    """The batches of one epoch from sampler ``name`` (an unknown name lists the valid ones).

    ``context`` holds everything any sampler may use — ``n`` (captions), ``batch_size``, ``generator``,
    ``image_index`` (int64 ``(n,)`` image position of each caption), ``labels`` (:class:`PairLabels` or None),
    ``fraction`` (neighbour share), ``group_size`` (``groups``), and for ``stream`` ``label_set``, ``source``,
    ``buffer_size``, ``seed``, ``table``, ``n_batches`` — and each sampler takes the keys it declares.
    """
    options = SAMPLERS.options(name)
    missing = [k for k in options if k not in context]
    if missing:
        raise ConfigError(f"batch sampler {name!r} needs {', '.join(missing)}")
    return SAMPLERS.create(name, **{k: context[k] for k in options})
