"""Label shards: the files that join ``bcls labels build`` to ``bcls train``.

A label folder holds (and is one Parquet dataset: ``pyarrow.dataset.dataset(DIR)``, ``pandas.read_parquet(DIR)``,
``dask.dataframe.read_parquet(DIR)`` and ``DIR/*.parquet`` globs read exactly the labelled pairs, because every
other file's name starts with ``_`` or ``.``, which those readers skip)

* ``shard-00000.parquet``, ``shard-00001.parquet``, … — one declared pyarrow schema (:func:`label_schema`):
  ``image_id`` (int64), ``caption_id`` (int64) and one float32 column per label source, named after the source
  and holding that source's raw value for the (image, caption) pair;
* ``_caption_embeddings.npy`` — the sentence embeddings of the captions, float16, in caption-table order (dense
  in-batch ``sbert`` labels are computed from them);
* ``_manifest.json`` — written last: the shards with their row counts and sha256 checksums, the columns, and the
  provenance (sources and their settings, sentence model, K, input fingerprint, config hash, bcls version).

Every file is written under a temporary name and renamed when complete, so a reader never sees half a file;
a folder without a manifest is an unfinished build. Readers never unpickle and refuse paths that leave the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .infra.atomic import atomic_path, atomic_write_bytes
from .infra.errors import ShardError

MANIFEST = "_manifest.json"
EMBEDDINGS_FILE = "_caption_embeddings.npy"
"""The label build's caption embeddings (float16, caption-table order), beside the shards."""
LEGACY_NAMES = {MANIFEST: "manifest.json", EMBEDDINGS_FILE: "caption_embeddings.npy"}
"""The names folders built by bcls before 0.1.0's dataset layout used (still read)."""
MANIFEST_FORMAT = "bcls-labels"
MANIFEST_VERSION = 1
KEY_COLUMNS = ("image_id", "caption_id")
_SCHEMA_META_KEY = b"bcls.provenance"


def _existing(folder: Path, name: str) -> Path:
    """``folder / name``, or the legacy name's path when only that file exists."""
    path = folder / name
    legacy = folder / LEGACY_NAMES.get(name, name)
    return legacy if not path.exists() and legacy.exists() else path


def label_schema(sources: Sequence[str], provenance: dict[str, Any] | None = None) -> pa.Schema:
    """The shard schema: ``image_id``/``caption_id`` int64 keys, then one float32 column per source."""
    for name in sources:
        if name in KEY_COLUMNS or not name.replace("_", "").replace("-", "").isalnum():
            raise ShardError(f"label source name {name!r} cannot be a shard column; use letters, digits, - and _")
    fields = [pa.field("image_id", pa.int64(), nullable=False), pa.field("caption_id", pa.int64(), nullable=False)]
    fields += [pa.field(name, pa.float32(), nullable=False) for name in sources]
    meta = {_SCHEMA_META_KEY: json.dumps(provenance or {}, sort_keys=True).encode()}
    return pa.schema(fields, metadata=meta)


def sha256_file(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def config_hash(settings: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able settings dict (key order does not matter)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def write_shard(
    folder: str | os.PathLike,
    index: int,
    image_ids: np.ndarray,
    caption_ids: np.ndarray,
    values: dict[str, np.ndarray],
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write shard ``index`` atomically and return its manifest entry ``{"file", "rows", "sha256"}``.

    Args:
        image_ids, caption_ids: int64 ``(P,)`` pair keys.
        values: source name → float ``(P,)`` raw label values (stored as float32).
    """
    folder = Path(folder)
    schema = label_schema(list(values), provenance)
    n = len(image_ids)
    arrays = [pa.array(np.asarray(image_ids, dtype=np.int64)), pa.array(np.asarray(caption_ids, dtype=np.int64))]
    for name, column in values.items():
        column = np.asarray(column, dtype=np.float32)
        if column.shape != (n,):
            raise ShardError(f"source {name!r} gave {column.shape} values for {n} pairs")
        arrays.append(pa.array(column))
    table = pa.Table.from_arrays(arrays, schema=schema)
    path = folder / shard_name(index)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return {"file": path.name, "rows": n, "sha256": sha256_file(path)}


def shard_metadata(path: str | os.PathLike) -> tuple[dict[str, Any], int] | None:
    """The provenance stored in a shard's schema metadata and its row count, from the Parquet footer only.

    Returns ``None`` when the file is missing or is not a readable bcls shard (e.g. truncated).
    """
    try:
        meta = pq.read_metadata(path)
        raw = (meta.schema.to_arrow_schema().metadata or {}).get(_SCHEMA_META_KEY)
        provenance = json.loads(raw) if raw else None
    except (OSError, pa.ArrowException, ValueError):
        return None
    if not isinstance(provenance, dict):
        return None
    return provenance, int(meta.num_rows)


def write_manifest(folder: str | os.PathLike, shards: list[dict[str, Any]], columns: Sequence[str],
                   provenance: dict[str, Any]) -> Path:
    """Write ``manifest.json`` (last step of a build) atomically."""
    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "columns": list(KEY_COLUMNS) + list(columns),
        "rows": int(sum(s["rows"] for s in shards)),
        "shards": shards,
        "provenance": provenance,
    }
    path = Path(folder) / MANIFEST
    atomic_write_bytes(path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return path


@dataclass(frozen=True)
class LabelSet:
    """The manifest of a finished label folder."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def sources(self) -> list[str]:
        return [c for c in self.manifest["columns"] if c not in KEY_COLUMNS]

    @property
    def provenance(self) -> dict[str, Any]:
        return self.manifest["provenance"]

    def shard_paths(self) -> list[Path]:
        return [self.folder / s["file"] for s in self.manifest["shards"]]


def _safe_shard_path(folder: Path, name: Any, manifest_path: Path) -> Path:
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise ShardError(f"{manifest_path}: shard entry {name!r} is not a plain file name inside the folder")
    return folder / name


def _check_manifest_layout(manifest: dict[str, Any], path: Path) -> None:
    """Refuse a manifest whose fields do not have the types a bcls build writes (edited or foreign)."""
    def bad(field: str, what: str) -> ShardError:
        return ShardError(f"{path}: field {field!r} {what}; the manifest was edited or damaged, rebuild the labels")

    columns = manifest.get("columns")
    if (not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)
            or tuple(columns[:2]) != KEY_COLUMNS or len(set(columns)) != len(columns)):
        raise bad("columns", f"must list {', '.join(KEY_COLUMNS)} and then distinct source names")
    shards = manifest.get("shards")
    if not isinstance(shards, list):
        raise bad("shards", "is not a list")
    for i, entry in enumerate(shards):
        if (not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
                or not isinstance(entry.get("rows"), int) or isinstance(entry.get("rows"), bool)
                or entry["rows"] < 0):
            raise bad(f"shards[{i}]", "is not an entry {file, rows, sha256}")
    rows = manifest.get("rows")
    if not isinstance(rows, int) or isinstance(rows, bool) or rows != sum(e["rows"] for e in shards):
        raise bad("rows", "does not equal the sum of the shards' rows")
    if not isinstance(manifest.get("provenance"), dict):
        raise bad("provenance", "is not an object")


def open_labels(folder: str | os.PathLike, verify: bool = True) -> LabelSet:
    """Open a finished label folder, checking its manifest (and, with ``verify``, every shard's checksum).

    Raises:
        ShardError: no manifest (unfinished build), a foreign manifest, a missing/changed shard.
    """
    folder = Path(folder)
    path = _existing(folder, MANIFEST)
    if not folder.is_dir():
        raise ShardError(f"{folder}: label folder not found; build it with `bcls labels build`")
    if not path.is_file():
        raise ShardError(f"{path}: no manifest, so the label build did not finish; rerun `bcls labels build`")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise ShardError(f"{path}: not valid JSON ({reason}); rebuild the labels") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ShardError(f"{path}: not a bcls label manifest (format field is not {MANIFEST_FORMAT!r})")
    if manifest.get("format_version") != MANIFEST_VERSION:
        raise ShardError(f"{path}: manifest format_version {manifest.get('format_version')!r} is not "
                         f"{MANIFEST_VERSION}; rebuild the labels with this bcls")
    _check_manifest_layout(manifest, path)
    for entry in manifest["shards"]:
        shard = _safe_shard_path(folder, entry.get("file"), path)
        if not shard.is_file():
            raise ShardError(f"{shard}: listed in the manifest but missing; rebuild the labels")
        if verify and sha256_file(shard) != entry.get("sha256"):
            raise ShardError(f"{shard}: checksum differs from the manifest (changed or truncated); rebuild the labels")
    listed = {entry.get("file") for entry in manifest["shards"]}
    stray = sorted(p.name for p in folder.glob("shard-*.parquet") if p.name not in listed)
    if stray:  # a shard copied in from another build would otherwise be silently ignored
        raise ShardError(f"{folder / stray[0]}: a shard the manifest does not list ({len(stray)} such file(s)); "
                         "move it out of the label folder or rebuild the labels")
    return LabelSet(folder, manifest)


def read_shard(path: Path, expected_columns: Sequence[str], config_hash: str | None = None) -> pa.Table:
    """Read one shard and check it has exactly the declared schema (and, given ``config_hash``, that its
    metadata names the build of the manifest)."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        reason = " ".join(str(err).split())[:200]
        raise ShardError(f"{path}: not a readable Parquet shard ({reason}); rebuild the labels") from None
    names = table.schema.names
    if names != list(expected_columns):
        raise ShardError(f"{path}: columns {names} differ from the manifest's {list(expected_columns)}")
    expected = label_schema([c for c in expected_columns if c not in KEY_COLUMNS])
    for field in expected:
        if table.schema.field(field.name).type != field.type:
            raise ShardError(f"{path}: column {field.name!r} has type {table.schema.field(field.name).type}, "
                             f"expected {field.type}")
    if config_hash is not None:
        try:
            meta = json.loads((table.schema.metadata or {}).get(_SCHEMA_META_KEY, b"{}"))
        except (ValueError, UnicodeDecodeError):
            meta = None
        found = meta.get("config_hash") if isinstance(meta, dict) else None
        if found != config_hash:
            raise ShardError(f"{path}: written by another label build (config hash {found!r}, the manifest's is "
                             f"{config_hash!r}); rebuild the labels")
    return table


def read_labels(labels: LabelSet, columns: Iterable[str] | None = None) -> pa.Table:
    """All rows of a label set as one table (keys plus the requested source columns)."""
    wanted = list(KEY_COLUMNS) + list(columns if columns is not None else labels.sources)
    missing = [c for c in wanted if c not in labels.manifest["columns"]]
    if missing:
        raise ShardError(f"{labels.folder}: label source(s) {missing} not in this build; it has {labels.sources}")
    build = labels.provenance.get("config_hash")
    tables = [read_shard(p, labels.manifest["columns"], build if isinstance(build, str) else None).select(wanted)
              for p in labels.shard_paths()]
    if not tables:
        return label_schema(wanted[2:]).empty_table()
    return pa.concat_tables(tables)


def write_caption_embeddings(folder: str | os.PathLike, embeddings: np.ndarray) -> dict[str, Any]:
    """Store ``(N, d)`` caption embeddings as float16 :data:`EMBEDDINGS_FILE` (atomically); returns the manifest's
    provenance entry for them."""
    with atomic_path(Path(folder) / EMBEDDINGS_FILE, suffix=".npy") as tmp:
        np.save(tmp, np.asarray(embeddings).astype(np.float16), allow_pickle=False)
    return {"file": EMBEDDINGS_FILE, "dtype": "float16", "rows": "caption table order"}


def read_caption_embeddings(labels: LabelSet, n_captions: int) -> np.ndarray:
    """The float32 ``(n_captions, d)`` caption embeddings a label build stored; missing or of another length is a
    :class:`ShardError` that says to rebuild."""
    path = _existing(labels.folder, EMBEDDINGS_FILE)
    if not path.is_file():
        raise ShardError(f"{path}: caption embeddings missing; rebuild the labels")
    emb = np.load(path, allow_pickle=False).astype(np.float32)
    if emb.ndim != 2 or emb.shape[0] != n_captions:
        raise ShardError(f"{path}: {emb.shape[0]} embeddings for {n_captions} captions; rebuild the labels")
    return emb
