"""Checks shared by the frozen config dataclasses: every field holds a value of its annotated type, so a config
file with ``{"epochs": "two"}`` is a one-line error naming the key, not a traceback deep inside a run."""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from typing import Any

from .errors import ConfigError

_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}


def _accepts(hint: Any, value: Any) -> bool | None:
    """Whether ``value`` fits ``hint`` (None: a hint this check does not judge)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        verdicts = [_accepts(h, value) for h in typing.get_args(hint)]
        return None if None in verdicts else any(verdicts)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (str, type(None)):
        return isinstance(value, hint)
    if origin is tuple and typing.get_args(hint)[1:] == (Ellipsis,):
        return isinstance(value, (tuple, list)) and all(_accepts(typing.get_args(hint)[0], v) for v in value)
    if origin in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    return None


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return "a list of " + {str: "strings", int: "integers", float: "numbers"}.get(typing.get_args(hint)[0],
                                                                                        "values")
    return _NAMES.get(hint, "an object")


def check_field_types(config: Any, what: str) -> None:
    """A :class:`ConfigError` naming the first field of the dataclass ``config`` whose value does not have the
    field's annotated type (``what`` names the kind of setting in the message)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if _accepts(hints[f.name], value) is False:
            raise ConfigError(f"{what} {f.name} must be {_describe(hints[f.name])}, got {value!r} "
                              f"({type(value).__name__})")
