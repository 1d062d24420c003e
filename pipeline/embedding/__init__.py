"""Sentence embeddings: the encoder spec and its backends, tokens, the on-disk cache, the child process.

* :mod:`~.embed` — :class:`~.embed.EncoderSpec`, the cached sentence encoder and its backends (torch, fp16);
* :mod:`~.onnx_backend`, :mod:`~.openvino_backend` — the ONNX Runtime and OpenVINO backends;
* :mod:`~.tokens` — token counts and length-sorted batches;
* :mod:`~.child` — a build's embedding in a child process that fills the cache;
* :mod:`~.sentence_models` — sentence models installed offline from PyPI part packages, by short name.
"""
