"""bcls.trainer — stage 2: training retrieval models with BCLS, and evaluating them.

Library parts: :mod:`~.losses` (triplet, Kendall/SW-HS, total), :mod:`~.models` (VSE-style models and their
registry), :mod:`~.batches` (samplers, in-batch label lookup, streaming), :mod:`~.evaluation` (metrics, protocols,
semantic metrics, ``bcls eval`` and its :class:`EvalConfig`). The run around them: :mod:`~.config`
(:class:`TrainConfig` and its version migration), :mod:`~.builders` (data, model, labels, losses, optimizer),
:mod:`~.run_folder` (checkpoints, resume, the step log), :mod:`~.train` (:class:`Trainer` and the loop),
:mod:`~.distributed` (torchrun), :mod:`~.checkpoint`; :mod:`~.demo` runs all three stages on the demo data.

May import: :mod:`bcls.data` and :mod:`bcls.pipeline` (never the CLI).
"""

from bcls.data.infra.lazy import lazy_exports as _lazy

_EXPORTS = {
    'KendallParams': 'bcls.trainer.losses',
    'KendallLoss': 'bcls.trainer.losses',
    'BCLSLoss': 'bcls.trainer.losses',
    'BINARY_LOSSES': 'bcls.trainer.losses',
    'make_binary_loss': 'bcls.trainer.losses',
    'MODELS': 'bcls.trainer.models',
    'make_model': 'bcls.trainer.models',
    'SAMPLERS': 'bcls.trainer.batches',
    'TrainConfig': 'bcls.trainer.config',
    'evaluate': 'bcls.trainer.evaluation',
    'EvalConfig': 'bcls.trainer.evaluation',
    'Trainer': 'bcls.trainer.train',
    'load_checkpoint': 'bcls.trainer.checkpoint',
    'model_from_checkpoint': 'bcls.trainer.checkpoint',
    'run_demo': 'bcls.trainer.demo',
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _lazy(__name__, globals(), _EXPORTS)
