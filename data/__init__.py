"""bcls.data — file formats and datasets, the bottom layer: everything else may import it, it imports nothing else.

* :mod:`~.errors` (the one-line errors), :mod:`~.atomic` (atomic writes, disk-space checks), :mod:`~.tables`
  (reading user tables with one-line errors), :mod:`~.registry` (the plug-in registry shape), :mod:`~.version`;
* :mod:`~.captions` (caption tables, one module per format), :mod:`~.precomp` (the precomp folder layout),
  :mod:`~.features` (image features), :mod:`~.judgments` (human relevance judgments);
* :mod:`~.shards` (the label shards' schema, manifest and caption embeddings);
* :mod:`~.demo` (the synthetic demo dataset with ground-truth relevance).

May import: only :mod:`bcls.data` modules (never :mod:`bcls.pipeline`, :mod:`bcls.trainer` or the CLI).
"""
