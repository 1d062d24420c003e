"""A folder of image features keyed by image id (what ``bcls features extract`` writes).

Layout of ``DIR``:

* ``features.npy`` — global features ``(N, D)``, float16 (or any float dtype), memory-mapped when read;
* ``regions.npy`` (optional) — patch / grid / region tokens ``(N, R, D)`` for the region models (``vse-gpo``);
* ``image_ids.npy`` — int64 ``(N,)``, the image id of each row, distinct;
* ``features.json`` — written last (a folder without it is unfinished): the provenance (model, image size,
  preprocessing, bcls version, sources), the row count and the sha256 of each array file.

:func:`features_for_images` joins a caption table to the rows by image id, so captions and features from any
source meet in one id space; :func:`write_feature_folder` writes one (atomically, file by file).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .captions import CaptionTable
from .features import ImageFeatures, load_features
from .infra.atomic import atomic_path, atomic_write_json
from .infra.errors import DataFormatError
from .shards import sha256_file

log = logging.getLogger(__name__)

GLOBAL_FILE = "features.npy"
REGIONS_FILE = "regions.npy"
IDS_FILE = "image_ids.npy"
INFO_FILE = "features.json"
FORMAT = "bcls-features-v1"

__all__ = ["FORMAT", "GLOBAL_FILE", "IDS_FILE", "INFO_FILE", "REGIONS_FILE", "features_for_images",
           "read_feature_folder", "write_feature_folder"]


@functools.lru_cache(maxsize=16)
def _checksum(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, once per process and file state (training reads the train and the dev rows of one folder)."""
    return sha256_file(path)


def _file_checksum(path: Path) -> str:
    stat = path.stat()
    return _checksum(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def write_feature_folder(folder: str | os.PathLike, image_ids: np.ndarray, features: np.ndarray,
                         regions: np.ndarray | None = None, provenance: Mapping[str, Any] | None = None) -> Path:
    """Write a feature folder from arrays in memory (``features`` ``(N, D)``, ``regions`` ``(N, R, D)``), each file
    atomically and ``features.json`` last; returns the folder."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(image_ids, dtype=np.int64)
    arrays = {IDS_FILE: ids, GLOBAL_FILE: np.asarray(features)}
    if regions is not None:
        arrays[REGIONS_FILE] = np.asarray(regions)
    for name, arr in arrays.items():
        if len(arr) != len(ids):
            raise ValueError(f"{name} has {len(arr)} rows for {len(ids)} image ids")
        with atomic_path(out / name, suffix=".npy") as tmp:
            np.save(tmp, arr, allow_pickle=False)
    finish_feature_folder(out, provenance or {})
    return out


def finish_feature_folder(out: Path, provenance: Mapping[str, Any]) -> None:
    """Write ``features.json`` (the checksums of the array files present, the row count, ``provenance``)."""
    files = {name: sha256_file(out / name) for name in (GLOBAL_FILE, REGIONS_FILE, IDS_FILE) if (out / name).is_file()}
    n = int(np.load(out / IDS_FILE, mmap_mode="r").shape[0])
    atomic_write_json(out / INFO_FILE, {"format": FORMAT, "images": n, "sha256": files, **dict(provenance)})


def read_feature_folder(folder: str | os.PathLike, kind: str = "auto", *, verify: bool = True
                        ) -> tuple[np.ndarray, ImageFeatures, dict[str, Any]]:
    """``(image_ids, features, info)`` of a feature folder.

    Args:
        kind: ``global`` (``features.npy``), ``regions`` (``regions.npy``) or ``auto`` (regions when present).
        verify: check the arrays' sha256 against ``features.json``.

    Raises:
        DataFormatError: not a feature folder, unfinished, a checksum mismatch, duplicate ids or a row-count
            mismatch, each naming the file and what to do.
    """
    p = Path(folder)
    if not p.is_dir():
        raise DataFormatError(f"{p}: no such feature folder; give the --out folder of `bcls features extract`")
    try:
        info = json.loads((p / INFO_FILE).read_text())
    except FileNotFoundError:
        raise DataFormatError(f"{p}: no {INFO_FILE}, so the feature extraction did not finish; rerun `bcls features "
                              "extract` with the same arguments to resume it") from None
    except (OSError, ValueError) as err:
        raise DataFormatError(f"{p / INFO_FILE}: unreadable ({err}); rerun `bcls features extract`") from None
    if info.get("format") != FORMAT:
        raise DataFormatError(f"{p / INFO_FILE}: format {info.get('format')!r} is not {FORMAT!r}")
    if kind == "auto":
        kind = "regions" if (p / REGIONS_FILE).is_file() else "global"
    name = REGIONS_FILE if kind == "regions" else GLOBAL_FILE
    if kind not in ("global", "regions") or not (p / name).is_file():
        raise DataFormatError(f"{p}: no {name}; extract {kind} features (--regions) or use the other kind")
    if verify:
        for fname in (IDS_FILE, name):
            want = info.get("sha256", {}).get(fname)
            if want is None or _file_checksum(p / fname) != want:
                raise DataFormatError(f"{p / fname}: checksum differs from {INFO_FILE} (changed or truncated); "
                                      "extract the features again")
    ids = np.load(p / IDS_FILE, allow_pickle=False)
    feats = load_features(p / name)
    if ids.ndim != 1 or len(ids) != feats.n_images:
        raise DataFormatError(f"{p / IDS_FILE}: {ids.shape} ids for {feats.n_images} feature rows; extract again")
    if len(np.unique(ids)) != len(ids):
        raise DataFormatError(f"{p / IDS_FILE}: image ids are not distinct; extract the features again")
    return ids.astype(np.int64), feats, info


def features_for_images(folder: str | os.PathLike, table: CaptionTable, *, kind: str = "auto",
                        skip_missing: bool = False) -> tuple[CaptionTable, ImageFeatures]:
    """The rows of a feature folder for the images of ``table``, in ``table.unique_images()`` order.

    Args:
        skip_missing: leave out the captions whose image has no features (counted in the log) instead of
            refusing them.

    Returns:
        ``(table, features)``: the table (without the skipped captions) and features whose row ``k`` belongs to
        ``table.unique_images()[k]`` (a view over the memory-mapped file, rows gathered per batch).

    Raises:
        DataFormatError: captions name images without features (count and first id), unless ``skip_missing``.
    """
    ids, feats, _ = read_feature_folder(folder, kind)
    order = np.argsort(ids)
    wanted = table.unique_images()
    at = np.minimum(np.searchsorted(ids, wanted, sorter=order), len(ids) - 1)
    rows = order[at]
    found = ids[rows] == wanted
    if not found.all():
        missing = wanted[~found]
        n_caps = int(np.isin(table.image_ids, missing).sum())
        if not skip_missing:
            raise DataFormatError(f"{folder}: {len(missing)} image(s) of {table.path} ({n_caps} captions) have no "
                                  f"features (first image id {int(missing[0])}); extract features for them or pass "
                                  "--skip-missing to leave their captions out")
        log.warning("%s: left out %d captions of %d images without features (first image id %d)", folder, n_caps,
                    len(missing), int(missing[0]))
        table = table.select(np.isin(table.image_ids, missing, invert=True))
        # dropping whole images keeps the others' order of first appearance: the kept rows stay aligned
        rows, wanted = rows[found], wanted[found]
    unused = len(ids) - len(wanted)
    if unused:
        log.info("%s: %d of %d feature rows are for images %s does not name (another split); not used", folder,
                 unused, len(ids), table.path)
    return table, feats.take(rows)
