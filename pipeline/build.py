"""``bcls labels build``: captions → embeddings → FAISS candidates → label values → Parquet shards + manifest."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import bcls
from bcls.data.captions import CaptionTable, read_captions
from bcls.data.errors import ConfigError, ShardError
from bcls.data.atomic import atomic_path, atomic_write_json
from bcls.data.shards import (MANIFEST, LabelSet, config_hash, open_labels, shard_name,
                              write_manifest, write_shard)

from .embed import DEFAULT_MODEL, Encoder, sbert_encoder
from .neighbours import faiss_gpu_count, image_candidates
from .sources import LabelCorpus, make_source

log = logging.getLogger(__name__)

EMBEDDINGS_FILE = "caption_embeddings.npy"
CONFIG_FILE = "build_config.json"


@dataclass(frozen=True)
class LabelBuildConfig:
    """Settings of one label build (saved as ``build_config.json`` beside the shards).

    Attributes:
        captions: caption table (any format :func:`bcls.data.captions.read_captions` reads).
        out: output folder.
        sources: label sources to compute, one shard column each.
        k: candidate captions per image.
        format / split: passed to the caption reader (a precomp folder defaults to split ``train``).
        model: sentence-transformers model name or path (embeddings for candidates and the sbert source).
        aggregate: how ``sbert`` aggregates over an image's references (``max`` or ``mean``).
        images_per_shard: images whose candidate pairs go into one shard.
        batch_size: sentence-embedding batch size.
        device: torch device for the sentence model (``None`` = its default).
        force: overwrite a folder that holds a build with different settings.
    """

    captions: str
    out: str
    sources: tuple[str, ...] = ("sbert",)
    k: int = 32
    format: str = "auto"
    split: str | None = None
    model: str = DEFAULT_MODEL
    aggregate: str = "max"
    images_per_shard: int = 5000
    batch_size: int = 256
    device: str | None = None
    force: bool = False

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"k must be at least 1, got {self.k}")
        if self.images_per_shard < 1:
            raise ConfigError(f"images_per_shard must be at least 1, got {self.images_per_shard}")
        if not self.sources:
            raise ConfigError("give at least one label source")
        if len(set(self.sources)) != len(self.sources):
            raise ConfigError(f"label sources repeated: {list(self.sources)}")

    def identity(self) -> dict[str, Any]:
        """The settings that determine the output (not where it goes or how fast it is made)."""
        d = asdict(self)
        for key in ("out", "force", "batch_size", "device", "images_per_shard", "captions"):
            d.pop(key)
        d["sources"] = list(self.sources)
        return d


def _versions() -> dict[str, str]:
    out = {"bcls": bcls.__version__}
    for pkg in ("torch", "sentence-transformers", "faiss-cpu", "faiss-gpu", "pyarrow", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _source_settings(name: str, config: LabelBuildConfig) -> dict[str, Any]:
    return {"aggregate": config.aggregate, "model": config.model} if name == "sbert" else {}


def _prepare_out(out: Path, identity_hash: str, force: bool) -> bool:
    """Check the output folder; return True when it already holds this exact finished build."""
    if not out.exists():
        out.mkdir(parents=True)
        return False
    if not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; choose another --out")
    manifest = out / MANIFEST
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
    elif any(p for p in out.iterdir() if not p.name.startswith(".") and p.name not in (CONFIG_FILE,)
             and not p.name.startswith("shard-") and p.name != EMBEDDINGS_FILE):
        if not force:
            raise ConfigError(f"{out}: is not empty and holds no label build; choose an empty --out or pass --force")
    if force:
        for p in out.iterdir():
            if p.name == MANIFEST or p.name.startswith("shard-") or p.name in (EMBEDDINGS_FILE, CONFIG_FILE):
                p.unlink() if p.is_file() else shutil.rmtree(p)
    return False


def build_labels(config: LabelBuildConfig, encoder: Encoder | None = None,
                 table: CaptionTable | None = None) -> LabelSet:
    """Run a label build and return the finished :class:`~bcls.data.shards.LabelSet`.

    Args:
        config: the build settings.
        encoder: caption → embedding function; default: the sentence-transformers model ``config.model``.
        table: an already-read caption table (else ``config.captions`` is read).
    """
    sources = [make_source(name, **_source_settings(name, config)) for name in config.sources]
    split = config.split
    if table is None:
        table = read_captions(config.captions, format=config.format, split=split)
    identity = config.identity() | {"input_fingerprint": table.fingerprint()}
    identity_hash = config_hash(identity)
    out = Path(config.out)
    if _prepare_out(out, identity_hash, config.force):
        log.info("%s already holds this build (config hash %s); nothing to do", out, identity_hash)
        return open_labels(out)
    t0 = time.perf_counter()
    image_ids = table.unique_images()
    image_index = table.image_index()
    log.info("label build: %d captions of %d images from %s, sources %s, K=%d", len(table), len(image_ids),
             table.path, ",".join(config.sources), config.k)

    encode = encoder or sbert_encoder(config.model, config.device, config.batch_size)
    embeddings = np.ascontiguousarray(encode(table.texts), dtype=np.float32)
    if embeddings.shape[0] != len(table):
        raise ConfigError(f"the encoder returned {embeddings.shape[0]} embeddings for {len(table)} captions")
    t_embed = time.perf_counter()

    img_pos, cap_pos, _ = image_candidates(embeddings, image_index, config.k)
    t_search = time.perf_counter()
    corpus = LabelCorpus.from_groups(table.texts, image_index, embeddings)

    provenance: dict[str, Any] = {
        "bcls_version": bcls.__version__,
        "versions": _versions(),
        "config_hash": identity_hash,
        "config": identity,
        "input": {"path": str(table.path), "format": table.format, "split": split, "captions": len(table),
                  "images": int(len(image_ids)), "fingerprint": table.fingerprint()},
        "sources": {s.name: s.settings() for s in sources},
        "sentence_model": config.model,
        "embedding_dim": int(embeddings.shape[1]),
        "k": config.k,
        "candidates": "top-k captions per image by max similarity to the image's other reference captions",
        "faiss": {"index": "IndexFlatIP (exact)", "gpus": faiss_gpu_count()},
    }
    shards = []
    bounds = np.searchsorted(img_pos, np.arange(0, len(image_ids) + config.images_per_shard,
                                                config.images_per_shard))
    n_shards = int(np.ceil(len(image_ids) / config.images_per_shard))
    for s in range(n_shards):
        lo, hi = bounds[s], bounds[s + 1]
        values = {src.name: src.score(corpus, img_pos[lo:hi], cap_pos[lo:hi]) for src in sources}
        shards.append(write_shard(out, s, image_ids[img_pos[lo:hi]], table.caption_ids[cap_pos[lo:hi]],
                                  values, {"config_hash": identity_hash, "shard": s}))
        log.info("wrote %s (%d/%d shards, %d pairs)", shard_name(s), s + 1, n_shards, hi - lo)
    with atomic_path(out / EMBEDDINGS_FILE, suffix=".npy") as tmp:
        np.save(tmp, embeddings.astype(np.float16))
    provenance["embeddings"] = {"file": EMBEDDINGS_FILE, "dtype": "float16", "rows": "caption table order"}
    atomic_write_json(out / CONFIG_FILE, asdict(config) | {"sources": list(config.sources)})
    t_score = time.perf_counter()
    write_manifest(out, shards, [s.name for s in sources], provenance)
    log.info("label build done: %d pairs in %d shards; embed %.1fs, search %.1fs, score+write %.1fs",
             len(img_pos), n_shards, t_embed - t0, t_search - t_embed, t_score - t_search)
    return open_labels(out)
