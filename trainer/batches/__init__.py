"""What each training step sees: which captions form a batch and the continuous labels of its pairs.

* :mod:`~.labels` — the :class:`InBatchLabels` protocol; in-batch label lookup from the shards
  (:class:`PairLabels`), dense on-the-fly labels (:class:`DenseSbertLabels`, :class:`DenseSourceLabels`), label
  normalisation;
* :mod:`~.samplers` — the batch samplers and their registry (:data:`SAMPLERS`, :func:`make_batches`);
* :mod:`~.streaming` — labelled pairs streamed from the shards with bounded memory.

May import: :mod:`bcls.data`, :mod:`bcls.pipeline`.
"""

from .labels import DenseSbertLabels, DenseSourceLabels, InBatchLabels, LabelNormalizer, PairLabels, dense_labels
from .samplers import SAMPLERS, Batch, group_batches, make_batches, neighbour_batches, random_batches
from .streaming import ShardPairStream, StreamLabels, stream_batches

__all__ = ["SAMPLERS", "Batch", "DenseSbertLabels", "DenseSourceLabels", "InBatchLabels", "LabelNormalizer",
           "PairLabels", "ShardPairStream", "StreamLabels", "dense_labels", "group_batches", "make_batches",
           "neighbour_batches", "random_batches", "stream_batches"]
