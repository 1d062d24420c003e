"""What a label folder holds while a build runs, and how a rerun resumes it.

``build_config.json`` (with the config hash) is written first and ``manifest.json`` last. A rerun into the same
folder after a crash or Ctrl-C reuses the candidates file and every shard whose Parquet schema metadata names this
config hash, shard index, layout and a hash of exactly the pairs this build puts there (and whose row count
matches), and rebuilds the rest; the result equals an uninterrupted build byte for byte. Leftover temporary files
of dead processes are removed. A folder with a different build (finished or not) is refused unless ``force``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bcls.data.infra.atomic import TEMPORARY_NAME, atomic_path, remove_stale_temporaries
from bcls.data.infra.errors import ConfigError, ShardError
from bcls.data.shards import EMBEDDINGS_FILE, MANIFEST, open_labels
from bcls.pipeline.search.neighbours import CandidateSet

log = logging.getLogger(__name__)

CONFIG_FILE = "_build_config.json"
RESUME_DIR = ".resume"
"""What only a running or interrupted build needs (the candidate pairs); removed when the build succeeds."""
CANDIDATES_FILE = f"{RESUME_DIR}/candidates.parquet"
_LEGACY = ("manifest.json", "caption_embeddings.npy", "build_config.json", "candidates.parquet")


def is_build_file(name: str) -> bool:
    return (name in (MANIFEST, EMBEDDINGS_FILE, CONFIG_FILE, RESUME_DIR, *_LEGACY) or name.startswith("shard-")
            or bool(TEMPORARY_NAME.match(name)))


def _build_config(folder: Path) -> dict:
    for name in (CONFIG_FILE, "build_config.json"):
        try:
            found = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        return found if isinstance(found, dict) else {}
    return {}


def _stored_hash(out: Path) -> str | None:
    return _build_config(out).get("config_hash")


def stored_source_options(folder: str | Path) -> dict[str, dict]:
    """The per-source options a finished or unfinished build in ``folder`` was made with (``{}`` for a folder
    from a bcls that did not record them)."""
    options = _build_config(Path(folder)).get("source_options", {})
    return options if isinstance(options, dict) else {}


def prepare_out(out: Path, identity_hash: str, force: bool) -> bool:
    """Check the output folder; return True when it already holds this exact finished build.

    An unfinished build with the same config hash is kept (to resume); one with other settings, or any other
    content, is refused unless ``force`` (which deletes only the files a build writes).
    """
    if not out.exists():
        out.mkdir(parents=True)
        return False
    if not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; choose another --out")
    manifest = out / MANIFEST if (out / MANIFEST).exists() or not (out / "manifest.json").exists() \
        else out / "manifest.json"
    replace = False
    if manifest.is_file():
        try:
            previous = open_labels(out, verify=True).provenance.get("config_hash")
        except ShardError:
            previous = None
        if previous == identity_hash:
            return True
        if not force:
            raise ConfigError(f"{out}: holds a label build with different settings or inputs; "
                              "choose another --out or pass --force to replace it")
        replace = True
    else:
        foreign = [p for p in out.iterdir() if not p.name.startswith(".") and not is_build_file(p.name)]
        if foreign and not force:
            raise ConfigError(f"{out}: is not empty and holds no label build; choose an empty --out or pass --force")
        stored = _stored_hash(out)
        if stored is not None and stored != identity_hash:
            if not force:
                raise ConfigError(f"{out}: holds an unfinished label build with different settings or inputs; "
                                  "choose another --out or pass --force to replace it")
            replace = True
        elif stored is None and any(p.name.startswith("shard-") for p in out.iterdir()) and force:
            replace = True
    remove_stale_temporaries(out)
    if (out / RESUME_DIR).is_dir():
        remove_stale_temporaries(out / RESUME_DIR)
    if replace:
        for p in out.iterdir():
            if is_build_file(p.name) and not TEMPORARY_NAME.match(p.name):
                p.unlink() if p.is_file() else shutil.rmtree(p)
    return False


def save_candidates(path: Path, cands: CandidateSet, identity_hash: str) -> None:
    meta = {b"bcls.candidates": json.dumps({"config_hash": identity_hash, "info": cands.info},
                                           sort_keys=True).encode()}
    table = pa.table({"image_pos": cands.image_pos, "caption_pos": cands.caption_pos}).replace_schema_metadata(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def load_candidates(path: Path, identity_hash: str, n_captions: int) -> CandidateSet | None:
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {})[b"bcls.candidates"])
        image_pos = table.column("image_pos").to_numpy().astype(np.int64)
        caption_pos = table.column("caption_pos").to_numpy().astype(np.int64)
    except (OSError, pa.ArrowException, KeyError, ValueError):
        log.warning("%s: unreadable, searching again", path)
        return None
    if meta.get("config_hash") != identity_hash or (len(caption_pos) and caption_pos.max() >= n_captions):
        return None
    return CandidateSet(image_pos, caption_pos, meta["info"])


def finish_resume_state(out: Path) -> None:
    """Remove what only resuming needed, once the manifest is written."""
    shutil.rmtree(out / RESUME_DIR, ignore_errors=True)
