"""Errors that bcls reports to the user as one line (the CLI prints the message and exits non-zero).

A message names the settings it is about as structured tokens — :func:`setting` (``k``) and :func:`setting_is`
(``lr=-1.0``) — so that each front end shows them in its own words: ``str(err)`` in Python's (``k must be at
least 1``, ``lr=-1.0``), the CLI in flags (``--k must be at least 1``, ``--lr -1.0``; :meth:`BclsError.render`).
Code that wraps an error in a longer message keeps the tokens by using :attr:`BclsError.raw`.
"""

from __future__ import annotations

from typing import Mapping

_OPEN, _CLOSE = "\u27e6", "\u27e7"  # ⟦ ⟧, which no message contains otherwise


def setting(name: str) -> str:
    """A setting named in a message (``k``; a nested one as ``kendall.gap``): on the command line, its flag."""
    return f"{_OPEN}{name}{_CLOSE}"


def setting_is(name: str, value: object) -> str:
    """A setting with its value: ``lr=-1.0`` in Python; ``--lr -1.0`` on the command line (a switch given True
    shows as the switch alone, an ``-o SOURCE.KEY`` flag as ``-o SOURCE.KEY=value``)."""
    return f"{_OPEN}{name}={value if isinstance(value, str) else repr(value)}{_CLOSE}"


def render(text: str, flags: Mapping[str, str] | None = None) -> str:
    """``text`` with its setting tokens in Python's words (``flags`` None), or as the flags ``flags`` maps setting
    names to (a setting without a flag keeps its Python spelling). A nested setting ``a.b`` takes the flag of
    ``a_b``, else of ``b`` (``kendall.margin`` → ``--kendall-margin``, ``kendall.gap`` → ``--gap``)."""
    out, rest = [], text
    while _OPEN in rest:
        head, _, tail = rest.partition(_OPEN)
        token, _, rest = tail.partition(_CLOSE)
        name, has_value, value = token.partition("=")
        flags = flags or {}
        flag = flags.get(name) or flags.get(name.replace(".", "_")) or flags.get(name.rpartition(".")[2])
        if flag is None:
            word = token
        elif not has_value:
            word = flag
        elif flag.startswith("-o "):
            word = f"{flag}={value}"
        else:
            word = flag if value == "True" else f"{flag} {value}"
        out += [head, word]
    return "".join(out) + rest


class BclsError(Exception):
    """Base class of every error the CLI turns into a one-line message (exit code 2).

    The message must name the file (and the row or field where it applies) and say what to do; the settings it
    names are tokens (:func:`setting`, :func:`setting_is`), shown by :meth:`render` in the caller's words.
    """

    @property
    def raw(self) -> str:
        """The message with its setting tokens (to wrap it in a longer message that keeps them)."""
        return str(self.args[0]) if self.args else ""

    def render(self, flags: Mapping[str, str] | None = None) -> str:
        """The message, its settings shown as the flags ``flags`` maps them to (:func:`render`)."""
        return render(self.raw, flags)

    def __str__(self) -> str:
        return render(self.raw)


class DataFormatError(BclsError, ValueError):
    """An input file is missing, unreadable or does not have the expected layout or values."""


class ConfigError(BclsError, ValueError):
    """A configuration value is unknown or out of range."""


class ShardError(BclsError, ValueError):
    """A label shard folder is incomplete, corrupt, or was built from different inputs/settings."""


class CheckpointError(BclsError, ValueError):
    """A checkpoint cannot be loaded (wrong model, version, or not a bcls checkpoint)."""


class DiskSpaceError(BclsError):
    """Not enough free disk space for the next write (checked before a long phase starts)."""


class ClusterError(BclsError):
    """A dask.distributed cluster failed under a running label build (scheduler lost, a task that keeps ending its
    workers). The shards finished before it are kept, and a rerun reuses them."""
