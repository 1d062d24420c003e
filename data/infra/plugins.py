"""One registry shape for every kind of plug-in (caption formats, label sources, losses, models, samplers).

A :class:`Registry` maps a name to an :class:`Entry` (a factory, a one-line description and the keyword options
the factory accepts); every plug-in is made the same way, by ``create(name, **options)``. ``get`` and ``create`` of an
unknown name raise a :class:`~bcls.data.infra.errors.ConfigError` that lists the valid names; ``create`` refuses options
the entry does not declare, naming the accepted ones. The CLI lists a registry with :meth:`Registry.describe`.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, Sequence, TypeVar

from .errors import ConfigError, setting

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered plug-in.

    Attributes:
        name: the registered name.
        factory: builds the plug-in from keyword options.
        description: one line for listings.
        options: the keyword options ``factory`` accepts (``create`` refuses others).
        alias_of: the name this entry repeats, or None.
    """

    name: str
    factory: Callable[..., T]
    description: str
    options: tuple[str, ...]
    alias_of: str | None = None


    @property
    def defaults(self) -> dict[str, Any]:
        """``{option: default}`` of the options that have a default (what the CLI converts strings by)."""
        found = option_defaults(self.factory)
        return {k: found[k] for k in self.options if k in found}


def factory_options(factory: Callable[..., Any]) -> tuple[str, ...]:
    """The keyword options of a factory: a dataclass's init fields, else the named parameters of its signature."""
    if dataclasses.is_dataclass(factory):
        return tuple(f.name for f in dataclasses.fields(factory) if f.init)
    params = inspect.signature(factory).parameters.values()
    return tuple(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def option_defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    """The default value of each keyword option of ``factory`` that has one."""
    if dataclasses.is_dataclass(factory):
        return {f.name: f.default for f in dataclasses.fields(factory)
                if f.init and f.default is not dataclasses.MISSING}
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return {}
    return {p.name: p.default for p in params if p.default is not p.empty}


class Registry(Generic[T]):
    """Plug-ins of one kind by name, in registration order (see the module docstring).

    Args:
        kind: what the entries are, for messages (``"label source"``, ``"binary loss"``, …).
        setting: the config setting that names an entry (``"model"``), so an unknown name's message names it
            (:func:`~bcls.data.infra.errors.setting`); None: the ``kind`` names it.
    """

    def __init__(self, kind: str, setting: str | None = None):
        self.kind = kind
        self.setting = setting
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, factory: Callable[..., T], description: str,
                 options: Sequence[str] | None = None) -> Callable[..., T]:
        """Register ``factory`` under ``name`` (``options``: default :func:`factory_options`); returns it, so the
        method also works as a decorator through :func:`functools.partial`."""
        if name in self._entries:
            raise ConfigError(f"{self.kind} {name!r} is registered already")
        opts = tuple(options) if options is not None else factory_options(factory)
        self._entries[name] = Entry(name, factory, description, opts)
        return factory

    def alias(self, name: str, target: str) -> None:
        """Register ``name`` as another name of ``target``."""
        entry = self.get(target)
        origin = entry.alias_of or entry.name
        if name in self._entries:
            raise ConfigError(f"{self.kind} {name!r} is registered already")
        self._entries[name] = dataclasses.replace(entry, name=name, alias_of=origin,
                                                  description=f"alias of {origin}")

    def get(self, name: str) -> Entry[T]:
        """The entry of ``name``; an unknown name is a ``ConfigError`` listing the valid ones."""
        try:
            return self._entries[name]
        except KeyError:
            what = setting(self.setting) if self.setting else self.kind
            raise ConfigError(f"unknown {what} {name!r}; valid: {', '.join(self._entries)}") from None

    def create(self, name: str, /, **options: Any) -> T:
        """Build ``name`` with ``options``; an option the entry does not declare, or a bad value, is a
        ``ConfigError`` that names the entry."""
        entry = self.get(name)
        unknown = sorted(set(options) - set(entry.options))
        if unknown:
            raise ConfigError(f"{self.kind} {name!r}: unexpected option(s) {', '.join(unknown)}; it takes: "
                              f"{', '.join(entry.options) or 'none'}")
        try:  # a call that does not fit the signature, not a TypeError from inside the factory
            inspect.signature(entry.factory).bind(**options)
        except TypeError as err:
            raise ConfigError(f"{self.kind} {name!r}: {err}; it takes: {', '.join(entry.options)}") from None
        except ValueError:  # pragma: no cover - a factory without a signature
            pass
        try:
            return entry.factory(**options)
        except ConfigError as err:
            text = err.raw
            raise ConfigError(text if text.startswith(f"{self.kind} {name!r}") else f"{self.kind} {name!r}: {text}"
                              ) from None

    def options(self, name: str) -> tuple[str, ...]:
        """The keyword options of ``name``."""
        return self.get(name).options

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order."""
        return tuple(self._entries)

    def describe(self) -> dict[str, str]:
        """``{name: description}`` in registration order."""
        return {name: entry.description for name, entry in self._entries.items()}

    def unregister(self, name: str) -> None:
        """Remove ``name`` (and nothing else; for tests that register a plug-in of their own)."""
        self.get(name)
        del self._entries[name]

    def __getitem__(self, name: str) -> Entry[T]:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
