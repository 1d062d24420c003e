"""One writer per output folder: a label build or a training run holds ``FOLDER/.bcls-writer.lock`` while it writes.

The lock is an advisory ``flock`` on that file, which the kernel drops when the holding process ends in any way
(exit, crash, SIGKILL), so a lock left by a dead writer is taken over at once; the file itself records who holds
it (host, pid, start time, command) for the message a second writer gets. The lock is re-entrant within one
process: the CLI takes it before its heavy imports (so a second command is refused within a second or two), and
the library call under it takes it again without blocking.

Our choice of mechanism: ``flock`` needs no clean-up after a crash (a pid file would, and pids are reused). On a
network file system it holds where the file system forwards ``flock`` (NFSv4 and most cluster file systems do).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import BclsError, ConfigError

log = logging.getLogger(__name__)

LOCK_NAME = ".bcls-writer.lock"
"""The lock file inside an output folder (a dot file: the folders' "foreign file" checks ignore it)."""

_HELD: dict[Path, list[Any]] = {}  # resolved folder -> [file descriptor, depth, created] of this process's locks


@dataclass(frozen=True)
class HeldLock:
    """A writer lock this process holds: its folder, and whether the outermost holder created the folder (so a
    writer that fails before finishing may remove it, leaving nothing behind)."""

    folder: Path
    created: bool


class FolderLockedError(BclsError):
    """Another process is writing into the output folder."""


def holder_of(folder: str | os.PathLike) -> dict[str, Any]:
    """What the lock file of ``folder`` says about its holder (empty when there is none or it is unreadable)."""
    try:
        return json.loads((Path(folder) / LOCK_NAME).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(holder: dict[str, Any]) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return (f"{holder.get('command', 'a bcls command')} (host {holder.get('host', '?')}, pid "
            f"{holder.get('pid', '?')}, started {when})")


@contextlib.contextmanager
def writer_lock(folder: str | os.PathLike, what: str) -> Iterator[HeldLock]:
    """Hold the writer lock of ``folder`` (created if missing, and removed again if the block left it empty) for
    the ``with`` block; ``what`` names this writer in the message another one gets (``"bcls labels build"``).

    Raises:
        FolderLockedError: another process holds the lock; the message names it (host, pid, start time).
    """
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path}: exists and is not a folder; choose another --out")
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    key = path.resolve()
    if key in _HELD:  # this process holds it already (the CLI took it before the library call)
        _HELD[key][1] += 1
        try:
            yield HeldLock(path, _HELD[key][2])
        finally:
            _HELD[key][1] -= 1
        return
    try:
        fd = _acquire(path / LOCK_NAME, what)
    except BaseException:
        if created:
            _remove_if_empty(path)
        raise
    _HELD[key] = [fd, 1, created]
    try:
        yield HeldLock(path, created)
    finally:
        del _HELD[key]
        with contextlib.suppress(FileNotFoundError):
            (path / LOCK_NAME).unlink()  # while still holding it: a waiting opener sees the file gone and retries
        os.close(fd)
        if created:
            _remove_if_empty(path)  # a command refused before writing leaves no folder behind


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()  # fails (and is meant to) when anything is in it


def _acquire(lock: Path, what: str) -> int:
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _describe(holder_of(lock.parent))
            raise FolderLockedError(f"{lock.parent}: another writer is using this folder: {holder}; wait for it to "
                                    "end or choose another --out") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder removed the file as we opened it: take the new one
            os.close(fd)
            continue
        previous = holder_of(lock.parent)
        if previous:
            log.info("%s: taking over the writer lock of %s, which is no longer running", lock.parent,
                     _describe(previous))
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
              "command": what, "argv": sys.argv[:8]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        return fd
