"""What the frozen config dataclasses share: every field holds a value of its annotated type, so a config file with
``{"epochs": "two"}`` is a one-line error naming the key, not a traceback deep inside a run
(:func:`check_field_types`); and the defaults and given values by field name, so a front end such as the CLI
writes no default of its own (:func:`field_default`, :func:`given_fields`)."""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from typing import Any

from .errors import ConfigError, setting

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
            raise ConfigError(f"{what} {setting(f.name)} must be {_describe(hints[f.name])}, got {value!r} "
                              f"({type(value).__name__})")


def field_default(owner: Any, path: str) -> Any:
    """The default of ``path`` (``field``, or ``field.sub`` into a nested config) in ``owner``: a config dataclass
    (its field's default), a function (its parameter's) or a dict (its key's value)."""
    import inspect

    first, *rest = path.split(".")
    if isinstance(owner, dict):
        value = owner[first]
    elif dataclasses.is_dataclass(owner):
        f = {f.name: f for f in dataclasses.fields(owner)}[first]
        factory = f.default_factory
        value = factory() if f.default is dataclasses.MISSING and callable(factory) else f.default
    else:
        value = inspect.signature(owner).parameters[first].default
    for name in rest:
        value = getattr(value, name)
    return value


def given_fields(values: dict[str, Any], owner: type, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The entries of ``values`` that name fields of the dataclass ``owner`` (but not ``skip``) and are not None —
    what a user gave — with paths as strings."""
    import os

    names = {f.name for f in dataclasses.fields(owner)} - set(skip)
    return {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in values.items()
            if k in names and v is not None}
