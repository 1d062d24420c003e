"""A small cache of per-corpus tables (tokenised n-grams, parsed scene graphs) shared by label sources.

Entries hold a weak reference to their corpus, so an entry dies with it, and at most ``size`` corpora are kept;
scoring the shards of one build (in dask threads) therefore prepares each corpus once.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Hashable, TypeVar

T = TypeVar("T")


class CorpusCache:
    """Thread-safe map ``(corpus object, key) → value``; see the module docstring."""

    def __init__(self, size: int = 4):
        self.size = size
        self._lock = threading.Lock()
        self._entries: dict[tuple[int, Hashable], tuple[weakref.ref, Any]] = {}

    def get(self, corpus: Any, key: Hashable, make: Callable[[], T]) -> T:
        """The cached value for ``(corpus, key)``, made with ``make()`` (outside the lock) when absent."""
        slot = (id(corpus), key)
        with self._lock:
            hit = self._entries.get(slot)
            if hit is not None and hit[0]() is corpus:
                return hit[1]
        value = make()
        with self._lock:
            for k in [k for k, (ref, _) in self._entries.items() if ref() is None]:
                del self._entries[k]
            while len(self._entries) >= self.size:
                del self._entries[next(iter(self._entries))]
            self._entries[slot] = (weakref.ref(corpus), value)
        return value
