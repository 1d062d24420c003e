"""bcls.data — file formats and datasets, the bottom layer: everything else may import it, it imports nothing else.

* :mod:`~.infra` — the shared infrastructure: errors, the plug-in registry, config checks, atomic writes,
  progress, lazy exports, runtime, version;
* :mod:`~.tables` (reading user tables with one-line errors);
* :mod:`~.captions` (caption tables, one module per format), :mod:`~.precomp` (the precomp folder layout),
  :mod:`~.features` (image features), :mod:`~.feature_folder` (features keyed by image id), :mod:`~.datasets`
  (one split from either layout, joined by image id), :mod:`~.judgments` (human relevance judgments);
* :mod:`~.shards` (the label shards' schema, manifest and caption embeddings);
* :mod:`~.demo` (the synthetic demo dataset with ground-truth relevance).

May import: only :mod:`bcls.data` modules (never :mod:`bcls.pipeline`, :mod:`bcls.trainer` or the CLI).
"""

from .infra.lazy import lazy_exports as _lazy

_EXPORTS = {
    'BclsError': 'bcls.data.infra.errors',
    'ConfigError': 'bcls.data.infra.errors',
    'DataFormatError': 'bcls.data.infra.errors',
    'ShardError': 'bcls.data.infra.errors',
    'CheckpointError': 'bcls.data.infra.errors',
    'DiskSpaceError': 'bcls.data.infra.errors',
    'CaptionTable': 'bcls.data.captions',
    'CAPTION_FORMATS': 'bcls.data.captions',
    'read_captions': 'bcls.data.captions',
    'ImageFeatures': 'bcls.data.features',
    'load_features': 'bcls.data.features',
    'read_precomp_split': 'bcls.data.precomp',
    'write_precomp_split': 'bcls.data.precomp',
    'read_split': 'bcls.data.datasets',
    'read_feature_folder': 'bcls.data.feature_folder',
    'write_feature_folder': 'bcls.data.feature_folder',
    'Judgments': 'bcls.data.judgments',
    'read_judgments': 'bcls.data.judgments',
    'LabelSet': 'bcls.data.shards',
    'open_labels': 'bcls.data.shards',
    'read_labels': 'bcls.data.shards',
    'DemoConfig': 'bcls.data.demo',
    'generate_demo': 'bcls.data.demo',
    'demo_relevance': 'bcls.data.demo',
    'Registry': 'bcls.data.infra.plugins',
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _lazy(__name__, globals(), _EXPORTS)
