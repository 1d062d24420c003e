"""The registry of label sources by name; ``bcls labels sources`` lists them.

A new source is one module with a class (or factory) following :class:`~bcls.pipeline.corpus.LabelSource`, whose
keyword arguments are its options, plus one ``LABEL_SOURCES.register(...)`` line (the sources bcls ships register
in the package's ``__init__``, so a source that combines others, such as ``ensemble``, can use this module):
``bcls labels build --sources NAME --option NAME.KEY=VALUE`` then builds it, with no other edit.
"""

from __future__ import annotations

from typing import Any

from bcls.data.errors import ConfigError
from bcls.data.registry import Registry

from ..corpus import LabelSource

LABEL_SOURCES: Registry[LabelSource] = Registry("label source")
"""Label sources by name; an entry's options are the keyword arguments of its factory."""


def convert_option(source: str, key: str, text: str) -> Any:
    """A source option given as text, converted to the type of the option's default (bool, int, float; else the
    string); an unknown source or a value of the wrong type is a ``ConfigError`` (an unknown option is refused
    when the source is made)."""
    default = LABEL_SOURCES.get(source).defaults.get(key)
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise ConfigError(f"option {source}.{key}={text}: not a {type(default).__name__}") from None
    return text


def make_source(name: str, **options: Any) -> LabelSource:
    """Build the registered label source ``name`` with its keyword ``options`` (an unknown name or option is a
    ``ConfigError`` that lists the valid ones)."""
    return LABEL_SOURCES.create(name, **options)
