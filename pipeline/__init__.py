"""bcls.pipeline — stage 1, continuous pseudo labels: ``bcls labels build``, ``evaluate``, ``fit`` and ``bcls
features extract``. One room per concern:

* :mod:`~.corpus` — :class:`LabelCorpus` and the :class:`LabelSource` protocol (the base types);
* :mod:`~.sources` — the label sources (sbert, cider, spice, image, file, ensemble, …) and their registry;
* :mod:`~.embedding` — sentence embeddings: the encoder spec, its backends, tokens, the cache, the child process
  and the sentence models installed offline;
* :mod:`~.search` — FAISS indexes, torch search and the candidate pairs;
* :mod:`~.building` — the build's phases and orchestrator, resuming, dask scheduling;
* :mod:`~.fidelity` — agreement of label sources with human judgments, the fitted ensemble, ``labels fit``;
* :mod:`~.images` — image features from image files with a pretrained encoder.

May import: :mod:`bcls.data` only (never :mod:`bcls.trainer` or the CLI).
"""

from bcls.data.infra.lazy import lazy_exports as _lazy

_EXPORTS = {
    'LabelCorpus': 'bcls.pipeline.corpus',
    'LabelSource': 'bcls.pipeline.corpus',
    'LABEL_SOURCES': 'bcls.pipeline.sources',
    'make_source': 'bcls.pipeline.sources',
    'LabelBuildConfig': 'bcls.pipeline.building.label_build',
    'build_labels': 'bcls.pipeline.building.label_build',
    'evaluate_agreement': 'bcls.pipeline.fidelity.agreement',
    'sbert_encoder': 'bcls.pipeline.embedding.embed',
    'EncoderSpec': 'bcls.pipeline.embedding.embed',
    'AgreementConfig': 'bcls.pipeline.fidelity.agreement',
    'FitConfig': 'bcls.pipeline.fidelity.fit',
    'EnsembleModel': 'bcls.pipeline.fidelity.fitted_ensemble',
    'load_ensemble': 'bcls.pipeline.fidelity.fitted_ensemble',
    'fit_ensemble': 'bcls.pipeline.fidelity.fit',
    'install_model': 'bcls.pipeline.embedding.sentence_models',
    'extract_features': 'bcls.pipeline.images.image_encoders',
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _lazy(__name__, globals(), _EXPORTS)
