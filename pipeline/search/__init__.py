"""Neighbour search: FAISS indexes (:mod:`~.indexes`), exact search in torch (:mod:`~.torch_search`) and the
candidate (image, caption) pairs of a build (:mod:`~.neighbours`)."""
