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
