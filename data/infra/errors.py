"""Errors that bcls reports to the user as one line (the CLI prints ``str(err)`` and exits non-zero)."""

from __future__ import annotations


class BclsError(Exception):
    """Base class of every error the CLI turns into a one-line message (exit code 2).

    The message must name the file (and the row or field where it applies) and say what to do.
    """


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


def in_flag_words(text: str, flags: dict[str, str]) -> str:
    """A library message in the words of a command line: setting names become their flags (``lam=-1`` →
    ``--lambda -1``, ``k must`` → ``--k must``, ``pass format=`` → ``pass --format``; a flag ``-o S.K`` gives
    ``-o S.K=v``), and the Python spellings next to a flag (``(skip_empty=True)``) go.

    Args:
        text: the message.
        flags: setting name → flag (``{"lam": "--lambda"}``).
    """
    import re

    text = text.removeprefix("command line: ")
    for name, flag in sorted(flags.items(), key=lambda kv: -len(kv[0])):
        text = re.sub(rf"\(\s*{name}=\w+\s*\)", "", text)
        if flag.startswith("-o "):
            text = re.sub(rf"(?<![\w.-]){name}=(\w+)", lambda m: f"{flag}={m.group(1).lower()}", text)
            continue
        text = re.sub(rf"(?<![\w.-]){name}=(?=[^\s,;)])", f"{flag} ", text)
        text = re.sub(rf"(?<![\w.-]){name}=", flag, text)
        text = re.sub(rf"(?<![\w.-]){name} (must\b|[<>]=? )", rf"{flag} \1", text)
        text = re.sub(rf"\bunknown (kendall )?{name} (?=')", f"unknown {flag} ", text)
    text = re.sub(r"\bkendall (?=--)", "", text)
    return " ".join(text.split())
