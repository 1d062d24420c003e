"""Atomic file writes: write beside the target under a temporary name, fsync, rename.

A reader (or a rerun after a crash) therefore sees either the complete old file, the complete new file, or no
file — never half of one. Temporary names start with ``.`` and contain ``.tmp-``; they are removed on failure.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import DiskSpaceError

logger = logging.getLogger(__name__)

TEMPORARY_NAME = re.compile(r"^\..+\.tmp-(\d+)")


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, fsync it and rename it to ``path``.

    ``suffix`` is appended to the temporary name for writers that insist on an extension (``np.save``).
    """
    path = Path(path)
    # the pid finds a dead writer's leftovers (remove_stale_temporaries); the random part keeps two writers apart
    # when they share a pid on different machines (dask workers writing to a shared file system)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    """Write ``payload`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)


def atomic_write_json(path: str | os.PathLike, obj: Any, **dump_kw: Any) -> None:
    """Write ``obj`` as indented JSON (plus a newline) to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, **dump_kw) + "\n").encode("utf-8"))


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def ensure_free_space(path: str | os.PathLike, needed_bytes: int | float, what: str) -> None:
    """Raise :class:`~bcls.data.infra.errors.DiskSpaceError` when the file system of ``path`` has less than
    ``needed_bytes`` free.

    Call it before a long phase with an estimate of what that phase writes, so that a run fails at once with a
    clear message instead of hours later with a half-written file. ``path`` need not exist yet: its nearest
    existing parent folder is checked.
    """
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError as err:  # an unusual file system: do not block the run on the check itself
        logger.debug("cannot measure the free space of %s (%s)", probe, err)
        return
    needed = int(needed_bytes)
    if free < needed:
        raise DiskSpaceError(f"{path}: not enough disk space for {what}: about {_human(needed)} needed, "
                             f"{_human(free)} free on {probe}; free some space or choose another folder")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[str]:
    """Delete the temporary files (see :func:`atomic_path`) that dead processes left in ``folder``.

    Returns the names removed. Temporaries of live processes (another run writing right now) are kept.
    """
    removed: list[str] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = TEMPORARY_NAME.match(p.name)
        if m and p.is_file() and not _pid_alive(int(m.group(1))):
            logger.info("removing %s, left by an interrupted run", p.name)
            p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed
