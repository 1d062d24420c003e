"""The registry of label sources by name; ``bcls labels sources`` lists them.

A new source is one module with a class (or factory) following :class:`~bcls.pipeline.corpus.LabelSource`, whose
keyword arguments are its options, plus one ``LABEL_SOURCES.register(...)`` line (the sources bcls ships register
in the package's ``__init__``, so a source that combines others, such as ``ensemble``, can use this module):
``bcls labels build --sources NAME --option NAME.KEY=VALUE`` then builds it, with no other edit.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from bcls.data.infra.errors import ConfigError
from bcls.data.infra.plugins import Registry

from ..corpus import LabelSource

LABEL_SOURCES: Registry[LabelSource] = Registry("label source")
"""Label sources by name; an entry's options are the keyword arguments of its factory."""


def convert_option(source: str, key: str, text: str, flag: str = "option") -> Any:
    """A source option given as text, converted to the type of the option's default (bool, int, float; else the
    string); an unknown source or a value of the wrong type is a ``ConfigError`` that starts with ``flag`` (an
    unknown option is refused when the source is made)."""
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
        raise ConfigError(f"{flag} {source}.{key}={text}: not a {type(default).__name__}") from None
    return text


def parse_source_options(items: Sequence[str], given: Mapping[tuple[str, str], Any] | None = None,
                         flag: str = "option") -> dict[str, dict[str, Any]]:
    """Per-source options from ``SOURCE.KEY=VALUE`` items (values typed by :func:`convert_option`), on top of
    ``given`` ``{(source, key): value}`` entries that are not None (e.g. shortcut flags); messages name ``flag``."""
    out: dict[str, dict[str, Any]] = {}
    for (source, key), value in (given or {}).items():
        if value is not None:
            out.setdefault(source, {})[key] = value
    for item in items:
        name, eq, text = item.partition("=")
        source, dot, key = name.partition(".")
        if not (eq and dot and source and key):
            raise ConfigError(f"{flag} {item!r}: write SOURCE.KEY=VALUE, e.g. sbert.aggregate=mean")
        source, key = source.strip(), key.strip()
        out.setdefault(source, {})[key] = convert_option(source, key, text.strip(), flag)
    return out


def options_with_shortcuts(items: Sequence[str], aggregate: str | None = None, file_scores: Any = None,
                           ensemble: Any = None, more: Mapping[tuple[str, str], Any] | None = None
                           ) -> dict[str, dict[str, Any]]:
    """:func:`parse_source_options` of ``--option`` items on top of the CLI's shortcut flags that were given
    (``--aggregate``, ``--file-scores``, ``--ensemble`` and ``more`` ``{(source, key): value}``)."""
    given = {("sbert", "aggregate"): aggregate, ("file", "path"): str(file_scores) if file_scores else None,
             ("ensemble", "path"): str(ensemble) if ensemble else None, **dict(more or {})}
    return parse_source_options(items, given, flag="--option")


def make_source(name: str, **options: Any) -> LabelSource:
    """Build the registered label source ``name`` with its keyword ``options`` (an unknown name or option is a
    ``ConfigError`` that lists the valid ones)."""
    return LABEL_SOURCES.create(name, **options)
