"""bcls.trainer — stage 2: training retrieval models with BCLS, and evaluating them.

Library parts: :mod:`~.losses` (triplet, Kendall/SW-HS, total), :mod:`~.models` (VSE-style models and their
registry), :mod:`~.batches` (samplers, in-batch label lookup, streaming), :mod:`~.evaluation` (metrics, protocols,
semantic metrics, ``bcls eval``). The run around them: :mod:`~.config` (:class:`TrainConfig`), :mod:`~.train` (the
loop), :mod:`~.distributed` (torchrun), :mod:`~.checkpoint`; :mod:`~.demo` runs all three stages on the demo data.

May import: :mod:`bcls.data` and :mod:`bcls.pipeline` (never the CLI).
"""
