"""Token ids straight from a sentence model's Rust tokenizer, checked against the model's own preprocessing.

sentence-transformers tokenises each batch through the transformers tokenizer call, whose Python side (building
per-text lists, padding them, converting to tensors) costs more than the tokenisation itself. On 100,000 COCO
captions on the 2-core dev machine that call ran 20–22k captions/s, while the Rust ``encode_batch_fast`` of the
same captions ran 50–53k/s (it spreads a call over every core) and padding its ids into numpy arrays 430–690k/s
(``python bench/bench_embed.py --tokeniser``). On a GPU, where the model's own work is a few seconds for full
COCO, the library's tokeniser is what the embedding phase waits for; on the CPU it is a few per cent.

:class:`FastTokenizer` calls the Rust tokenizer once for many texts and pads in numpy. Our choice, not the
library's: :func:`fast_tokenizer` hands one out only for a model whose own ``preprocess`` gives exactly the same
arrays (keys, ids, masks, padding, truncation) on :data:`PROBE`, a set of awkward texts; for any other model it
returns None and the callers keep the library's path.
"""

from __future__ import annotations

import copy
import itertools
import logging
import weakref
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

#: Texts that exercise what could set the two paths apart: case, punctuation, runs of whitespace, leading and
#: trailing spaces, accents, other scripts, emoji, empty and blank texts, and two texts over the maximum length
#: (many short words; long words of many word pieces each), so truncation and padding are compared too.
PROBE = ("A man riding a wave on top of a surfboard.", "two dogs", "", "   ",
         "  UPPER case, punctuation!?; and   spaces\ttabs\nnewlines  ", "café naïve Zoë — “quotes” … ½",
         "東京の猫 🐈 と犬", "a " * 600, "supercalifragilisticexpialidocious " * 40)

_ARRAY_KEYS = ("input_ids", "attention_mask", "token_type_ids")


class FastTokenizer:
    """Padded int64 ``input_ids``, ``attention_mask`` (and ``token_type_ids`` where the model takes them) from a
    copy of the model's Rust tokenizer, truncated at the model's maximum length and padded on the right."""

    def __init__(self, rust, max_length: int, pad_id: int, keys: Sequence[str], constants: dict[str, Any]):
        self.rust = copy.deepcopy(rust)  # the model's own tokenizer keeps its settings
        self.rust.no_padding()
        self.rust.enable_truncation(max_length)
        self.pad_id = pad_id
        self.keys = tuple(keys)
        self.constants = dict(constants)  # non-array features the model's preprocess adds (e.g. the modality)

    def encode(self, texts: Sequence[str]) -> list:
        """The Rust encodings of ``texts`` (one call, spread over the cores by the tokenizers library)."""
        return self.rust.encode_batch_fast(list(texts))

    def pad(self, encodings: Sequence) -> dict[str, np.ndarray]:
        """int64 arrays ``(len(encodings), longest)`` of the encodings' ids and mask (token types all 0)."""
        ids = [e.ids for e in encodings]
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        mask = np.arange(int(lengths.max(initial=0))) < lengths[:, None]
        out = {"input_ids": np.full(mask.shape, self.pad_id, dtype=np.int64),
               "attention_mask": mask.astype(np.int64)}
        out["input_ids"][mask] = np.fromiter(itertools.chain.from_iterable(ids), np.int64, int(lengths.sum()))
        if "token_type_ids" in self.keys:
            out["token_type_ids"] = np.zeros(mask.shape, dtype=np.int64)
        return out

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return self.pad(self.encode(texts))


_checked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fast_tokenizer(st_model) -> FastTokenizer | None:
    """A :class:`FastTokenizer` for a sentence-transformers model whose own preprocessing it reproduces exactly on
    :data:`PROBE`, else None (checked once per model object)."""
    if st_model not in _checked:
        _checked[st_model] = _build(st_model)
    return _checked[st_model]


def _build(st_model) -> FastTokenizer | None:
    tokenizer = getattr(st_model, "tokenizer", None)
    rust = getattr(tokenizer, "_tokenizer", None)
    if not hasattr(rust, "encode_batch_fast") or getattr(tokenizer, "pad_token_id", None) is None:
        return None
    max_length = getattr(st_model[0], "max_seq_length", None) or getattr(tokenizer, "model_max_length", None)
    if max_length is None:
        return None
    try:
        preprocess = getattr(st_model, "preprocess", None) or st_model.tokenize
        reference = preprocess(list(PROBE))
        arrays = {k: v for k, v in reference.items() if hasattr(v, "shape")}
        if not set(arrays) <= set(_ARRAY_KEYS) or not {"input_ids", "attention_mask"} <= set(arrays):
            return None
        fast = FastTokenizer(rust, int(max_length), int(getattr(tokenizer, "pad_token_id")), list(arrays),
                             {k: v for k, v in reference.items() if k not in arrays})
        ours = fast(PROBE)
        same = set(ours) == set(arrays) and all(np.array_equal(np.asarray(arrays[k]), ours[k]) for k in arrays)
    except Exception as err:  # noqa: BLE001 -- any failure means: keep the library's path
        log.debug("fast tokenizer not used (%s: %s)", type(err).__name__, err)
        return None
    if not same:
        log.debug("fast tokenizer not used: it differs from the model's preprocessing on the probe texts")
        return None
    return fast
