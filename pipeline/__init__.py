"""bcls.pipeline — stage 1, continuous pseudo labels: ``bcls labels build`` and ``bcls labels evaluate``.

* :mod:`~.corpus` — :class:`LabelCorpus` and the :class:`LabelSource` protocol (the base types);
* :mod:`~.sources` — the label sources (sbert, cider, spice, file) and their registry;
* :mod:`~.embed` — sentence embeddings and their on-disk cache (:mod:`~.embed_process`: a build's embedding in a
  child process that fills the cache); :mod:`~.indexes` — FAISS indexes and their search; :mod:`~.neighbours`
  — candidate pairs;
* :mod:`~.build` — the build's phases and its orchestrator, with :mod:`~.resume` (the output folder, resuming)
  and :mod:`~.scheduling` (dask shard tasks);
* :mod:`~.agreement` — agreement of label sources with human judgments (:mod:`~.correlation` its statistics);
* :mod:`~.ensemble` — the fitted ensemble of sources (model, JSON, cross-validation) and :mod:`~.fit` (``bcls
  labels fit``: judgments → fitted ensemble);
* :mod:`~.models` — sentence models installed offline from PyPI part packages, by short name;
* :mod:`~.features` — image features from image files with a pretrained encoder (``bcls features extract``).

May import: :mod:`bcls.data` only (never :mod:`bcls.trainer` or the CLI).
"""

from bcls.data.lazy import lazy_exports as _lazy

_EXPORTS = {
    'LabelCorpus': 'bcls.pipeline.corpus',
    'LabelSource': 'bcls.pipeline.corpus',
    'LABEL_SOURCES': 'bcls.pipeline.sources',
    'make_source': 'bcls.pipeline.sources',
    'LabelBuildConfig': 'bcls.pipeline.build',
    'build_labels': 'bcls.pipeline.build',
    'evaluate_agreement': 'bcls.pipeline.agreement',
    'sbert_encoder': 'bcls.pipeline.embed',
    'EnsembleModel': 'bcls.pipeline.ensemble',
    'load_ensemble': 'bcls.pipeline.ensemble',
    'fit_ensemble': 'bcls.pipeline.fit',
    'install_model': 'bcls.pipeline.models',
    'extract_features': 'bcls.pipeline.features',
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _lazy(__name__, globals(), _EXPORTS)
