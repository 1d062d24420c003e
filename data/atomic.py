"""Atomic file writes: write beside the target under a temporary name, fsync, rename.

A reader (or a rerun after a crash) therefore sees either the complete old file, the complete new file, or no
file — never half of one. Temporary names start with ``.`` and contain ``.tmp-``; they are removed on failure.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, fsync it and rename it to ``path``.

    ``suffix`` is appended to the temporary name for writers that insist on an extension (``np.save``).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")
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
