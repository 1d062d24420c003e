"""``bcls labels build``: captions → embeddings → FAISS candidates → label values → Parquet shards + manifest.

Phases, each with a rate/ETA log:

1. **embedding**: sentence embeddings through an on-disk cache (:class:`~bcls.pipeline.embed.EmbeddingCache`,
   keyed by model and caption text), so a rebuild or another caption file with the same captions never
   re-embeds them;
2. **search**: FAISS neighbours (exact, IVF or HNSW; GPU when faiss sees one) → candidate pairs: each image's
   top-K captions, each caption's top-K images plus its own image (:func:`~.neighbours.candidate_pairs`);
   saved to ``candidates.parquet`` so a resumed build reuses them;
3. **scoring + writing**: shards of ``images_per_shard`` images built in parallel dask tasks, each scoring its
   pairs with every source and writing its shard atomically; the local threaded scheduler by default
   (``processes``/``sync`` or a ``dask.distributed`` scheduler address otherwise);
4. the manifest, written last.

**Resuming.** ``build_config.json`` (with the config hash) is written first. A rerun into the same folder after
a crash or Ctrl-C reuses the candidates file and every shard whose Parquet schema metadata names this config
hash, shard index, layout and a hash of exactly the pairs this build puts there (and whose row count matches),
and rebuilds the rest; the result equals an uninterrupted build byte for byte. Leftover temporary files of dead
processes are removed. A folder with a different build (finished or not) is refused unless ``force``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import bcls
from bcls.data.captions import CaptionTable, read_captions
from bcls.data.errors import BclsError, ConfigError, ShardError
from bcls.data.atomic import (TEMPORARY_NAME, atomic_path, atomic_write_json, ensure_free_space,
                              remove_stale_temporaries)
from bcls.data.shards import (MANIFEST, LabelSet, config_hash, open_labels, sha256_file, shard_metadata,
                              shard_name, write_manifest, write_shard)

from .embed import DEFAULT_MODEL, EmbeddingCache, Encoder, cached_encoder, default_cache_dir, model_cache_id, \
    sbert_encoder
from .neighbours import CandidateSet, IndexSpec, candidate_pairs, faiss_gpu_count
from .sources import LabelCorpus, LabelSource, make_source

log = logging.getLogger(__name__)

EMBEDDINGS_FILE = "caption_embeddings.npy"
CONFIG_FILE = "build_config.json"
CANDIDATES_FILE = "candidates.parquet"
LOCAL_SCHEDULERS = ("threads", "processes", "sync")
CONNECT_TIMEOUT = "20s"
"""How long to wait for a ``dask.distributed`` scheduler."""


@dataclass(frozen=True)
class LabelBuildConfig:
    """Settings of one label build (saved as ``build_config.json`` beside the shards).

    Attributes:
        captions: caption table (any format :func:`bcls.data.captions.read_captions` reads).
        out: output folder.
        sources: label sources to compute, one shard column each.
        k: candidate captions per image.
        caption_k: candidate images per caption besides its own, which is always a
            candidate (``None``: ``k``; 0: no caption side: image-side candidates only).
        format / split: passed to the caption reader (a precomp folder defaults to split ``train``).
        model: sentence-transformers model name or path (embeddings for candidates and the sbert source).
        aggregate: how ``sbert`` aggregates over an image's references (``max`` or ``mean``).
        index: FAISS index for the neighbours: ``exact``, ``ivf`` or ``hnsw``.
        nlist / nprobe: IVF lists (``None``: ``4·sqrt(N)``) and lists probed per query.
        hnsw_m / ef_construction / ef_search: HNSW parameters.
        recall_queries: sampled captions on which an approximate index's recall@K against exact is measured.
        images_per_shard: images whose candidate pairs go into one shard.
        batch_size: sentence-embedding batch size.
        device: torch device for the sentence model (``None`` = its default).
        cache: embedding cache folder (``None``: ``$BCLS_CACHE_DIR`` or ``~/.cache/bcls/embeddings``).
        use_cache: read and fill the embedding cache.
        scheduler: ``threads`` (default), ``processes``, ``sync``, or a ``dask.distributed`` scheduler address.
        workers: local dask workers (``None``: one per CPU core).
        parse_processes: processes of the ``spice`` source's spaCy parse (0: one per CPU core); about 0.5 GiB
            each, and the values do not depend on it.
        file_scores: the (image_id, caption_id, score) table read by the ``file`` source.
        force: overwrite a folder that holds a build with different settings.
        skip_empty: leave out empty captions (counted in a warning) instead of refusing the caption file.
        allow_unknown_images: keep COCO annotations of image ids missing from the file's ``images``.
    """

    captions: str
    out: str
    sources: tuple[str, ...] = ("sbert",)
    k: int = 32
    caption_k: int | None = None
    format: str = "auto"
    split: str | None = None
    model: str = DEFAULT_MODEL
    aggregate: str = "max"
    file_scores: str | None = None
    index: str = "exact"
    nlist: int | None = None
    nprobe: int = 32
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    recall_queries: int = 1000
    images_per_shard: int = 5000
    batch_size: int = 256
    device: str | None = None
    cache: str | None = None
    use_cache: bool = True
    scheduler: str = "threads"
    workers: int | None = None
    parse_processes: int = 1
    force: bool = False
    skip_empty: bool = False
    allow_unknown_images: bool = False

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"k must be at least 1, got {self.k}")
        if self.caption_k is not None and self.caption_k < 0:
            raise ConfigError(f"caption_k must be 0 or more, got {self.caption_k}")
        if self.images_per_shard < 1:
            raise ConfigError(f"images_per_shard must be at least 1, got {self.images_per_shard}")
        if not self.sources:
            raise ConfigError("give at least one label source")
        if len(set(self.sources)) != len(self.sources):
            raise ConfigError(f"label sources repeated: {list(self.sources)}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if self.parse_processes < 0:
            raise ConfigError(f"parse_processes must be 0 (one per CPU core) or more, got {self.parse_processes}")
        if self.recall_queries < 0:
            raise ConfigError(f"recall_queries must be 0 or more, got {self.recall_queries}")
        self.index_spec()  # validates the index settings

    @property
    def images_k(self) -> int:
        """Candidate images per caption, resolved."""
        return self.k if self.caption_k is None else self.caption_k

    def index_spec(self) -> IndexSpec:
        """The FAISS index settings."""
        return IndexSpec(self.index, self.nlist, self.nprobe, self.hnsw_m, self.ef_construction, self.ef_search)

    def identity(self) -> dict[str, Any]:
        """The settings that determine the output (not where it goes or how fast it is made)."""
        d = {"sources": list(self.sources), "k": self.k, "caption_k": self.images_k, "format": self.format,
             "split": self.split, "model": self.model, "aggregate": self.aggregate,
             "index": self.index_spec().settings()}
        if "file" in self.sources:  # the scores file's content decides the output, not its path
            d["file_scores"] = sha256_file(self.file_scores) if self.file_scores and Path(self.file_scores).is_file() \
                else self.file_scores
        return d


def _versions() -> dict[str, str]:
    out = {"bcls": bcls.__version__}
    for pkg in ("torch", "sentence-transformers", "faiss-cpu", "faiss-gpu", "pyarrow", "numpy", "dask"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _source_settings(name: str, config: LabelBuildConfig) -> dict[str, Any]:
    if name == "sbert":
        return {"aggregate": config.aggregate, "model": config.model}
    if name == "file":
        if not config.file_scores:
            raise ConfigError("the file label source needs --file-scores TABLE (image_id, caption_id, score)")
        return {"path": config.file_scores}
    if name == "spice":
        return {"processes": config.parse_processes}
    return {}


def _is_build_file(name: str) -> bool:
    return (name in (MANIFEST, EMBEDDINGS_FILE, CONFIG_FILE, CANDIDATES_FILE) or name.startswith("shard-")
            or bool(TEMPORARY_NAME.match(name)))


def _stored_hash(out: Path) -> str | None:
    import json

    try:
        return json.loads((out / CONFIG_FILE).read_text()).get("config_hash")
    except (OSError, ValueError, AttributeError):
        return None


def _prepare_out(out: Path, identity_hash: str, force: bool) -> bool:
    """Check the output folder; return True when it already holds this exact finished build.

    An unfinished build with the same config hash is kept (to resume); one with other settings, or any other
    content, is refused unless ``force`` (which deletes only the files a build writes).
    """
    if not out.exists():
        out.mkdir(parents=True)
        return False
    if not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; choose another --out")
    manifest = out / MANIFEST
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
        foreign = [p for p in out.iterdir() if not p.name.startswith(".") and not _is_build_file(p.name)]
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
    if replace:
        for p in out.iterdir():
            if _is_build_file(p.name) and not TEMPORARY_NAME.match(p.name):
                p.unlink() if p.is_file() else shutil.rmtree(p)
    return False


# ---- candidates file ------------------------------------------------------------------------------------------

def _save_candidates(path: Path, cands: CandidateSet, identity_hash: str) -> None:
    import json

    meta = {b"bcls.candidates": json.dumps({"config_hash": identity_hash, "info": cands.info},
                                           sort_keys=True).encode()}
    table = pa.table({"image_pos": cands.image_pos, "caption_pos": cands.caption_pos}).replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _load_candidates(path: Path, identity_hash: str, n_captions: int) -> CandidateSet | None:
    import json

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


# ---- shard tasks ----------------------------------------------------------------------------------------------

def _pairs_hash(image_ids: np.ndarray, caption_ids: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(image_ids, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(caption_ids, dtype="<i8").tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ShardPlan:
    """One shard to build: its index, pairs (positions and ids) and the metadata stored in its schema."""

    index: int
    image_pos: np.ndarray
    caption_pos: np.ndarray
    image_ids: np.ndarray
    caption_ids: np.ndarray
    meta: dict[str, Any]


def build_shard(out: str, plan: ShardPlan, corpus: LabelCorpus, sources: Sequence[LabelSource]) -> dict[str, Any]:
    """Score one shard's pairs with every source and write the shard atomically (one dask task).

    Returns:
        The manifest entry ``{"file", "rows", "sha256"}`` plus ``"score_seconds"`` and ``"write_seconds"``.
    """
    t0 = time.perf_counter()
    values = {src.name: src.score(corpus, plan.image_pos, plan.caption_pos) for src in sources}
    t1 = time.perf_counter()
    entry = write_shard(out, plan.index, plan.image_ids, plan.caption_ids, values, plan.meta)
    return entry | {"score_seconds": t1 - t0, "write_seconds": time.perf_counter() - t1}


def _existing_entry(out: Path, plan: ShardPlan) -> dict[str, Any] | None:
    """The manifest entry of a complete shard left by an earlier run of this same build, else None."""
    path = out / shard_name(plan.index)
    found = shard_metadata(path)
    if found is None:
        return None
    meta, rows = found
    if meta != plan.meta or rows != len(plan.image_ids):
        log.info("%s: from another build or layout, rebuilding it", path.name)
        return None
    return {"file": path.name, "rows": rows, "sha256": sha256_file(path)}


class _Progress:
    """Rate/ETA log of the scoring + writing phase."""

    def __init__(self, total_shards: int, total_pairs: int) -> None:
        self.total_shards, self.total_pairs = total_shards, total_pairs
        self.shards = self.pairs = 0
        self.score = self.write = 0.0
        self.start = time.perf_counter()

    def done(self, entry: dict[str, Any]) -> None:
        self.shards += 1
        self.pairs += entry["rows"]
        self.score += entry.get("score_seconds", 0.0)
        self.write += entry.get("write_seconds", 0.0)
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rate = self.pairs / elapsed
        log.info("scoring+writing: %s done, %d/%d shards, %d/%d pairs (%.0f pairs/s, ETA %.0fs)", entry["file"],
                 self.shards, self.total_shards, self.pairs, self.total_pairs, rate,
                 (self.total_pairs - self.pairs) / max(rate, 1e-9))


def _run_local(out: str, plans: list[ShardPlan], corpus: LabelCorpus, sources: Sequence[LabelSource],
               scheduler: str, workers: int | None, progress: _Progress) -> list[dict[str, Any]]:
    import dask
    from dask.callbacks import Callback

    # Pass the corpus and sources once as named graph nodes (no hashing of big arrays, one reference per graph).
    corpus_node = dask.delayed(corpus, name="bcls-corpus", traverse=False)
    sources_node = dask.delayed(list(sources), name="bcls-sources", traverse=False)
    tasks = [dask.delayed(build_shard, pure=False)(out, p, corpus_node, sources_node,
                                                   dask_key_name=f"bcls-shard-{p.index}") for p in plans]

    class _Log(Callback):
        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            if isinstance(key, str) and key.startswith("bcls-shard-"):
                progress.done(result)

    if scheduler == "threads":
        # Our own pool, joined before returning: dask's cached pools keep threads that have run native code
        # (torch, faiss) alive until interpreter exit, where they can abort the process ("terminate called").
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool, _Log():
            return list(dask.compute(*tasks, scheduler="threads", pool=pool))
    kwargs: dict[str, Any] = {"scheduler": scheduler}
    if workers is not None and scheduler != "sync":
        kwargs["num_workers"] = workers
    with _Log():
        return list(dask.compute(*tasks, **kwargs))


def _run_distributed(address: str, out: str, plans: list[ShardPlan], corpus: LabelCorpus,
                     sources: Sequence[LabelSource], progress: _Progress) -> list[dict[str, Any]]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise ConfigError("a scheduler address needs dask.distributed (pip install 'dask[distributed]')") from None
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise ConfigError(f"cannot reach the dask scheduler at {address!r} ({err})") from None
    try:
        log.info("dask.distributed: %s, %d worker(s)", address, len(client.scheduler_info()["workers"]))
        corpus_f = client.scatter(corpus, broadcast=True, hash=False)
        sources_f = client.scatter(list(sources), broadcast=True, hash=False)
        futures = {client.submit(build_shard, out, p, corpus_f, sources_f, pure=False, key=f"bcls-shard-{p.index}-"
                                 f"{os.getpid()}-{time.time_ns()}"): i for i, p in enumerate(plans)}
        results: list[dict[str, Any] | None] = [None] * len(plans)
        with client.as_current():
            for fut in as_completed(list(futures)):
                entry = fut.result()
                results[futures[fut]] = entry
                progress.done(entry)
        return [r for r in results if r is not None]
    finally:
        client.close()


def _warm_sources(corpus: LabelCorpus, sources: Sequence[LabelSource]) -> None:
    """Let each source build its per-corpus tables once before threads share the corpus."""
    empty = np.zeros(0, dtype=np.int64)
    for src in sources:
        src.score(corpus, empty, empty)


def build_labels(config: LabelBuildConfig, encoder: Encoder | None = None,
                 table: CaptionTable | None = None, encoder_id: str | None = None) -> LabelSet:
    """Run (or resume) a label build and return the finished :class:`~bcls.data.shards.LabelSet`.

    Args:
        config: the build settings.
        encoder: caption → embedding function; default: the sentence-transformers model ``config.model``.
        table: an already-read caption table (else ``config.captions`` is read).
        encoder_id: the cache key of a custom ``encoder``; a custom encoder without one bypasses the cache.
    """
    sources = [make_source(name, **_source_settings(name, config)) for name in config.sources]
    if table is None:
        table = read_captions(config.captions, format=config.format, split=config.split,
                              skip_empty=config.skip_empty, allow_unknown_images=config.allow_unknown_images)
    identity = config.identity() | {"input_fingerprint": table.fingerprint()}
    identity_hash = config_hash(identity)
    out = Path(config.out)
    created = not out.exists()
    try:
        return _build_labels(config, encoder, table, encoder_id, sources, identity, identity_hash, out)
    except BclsError:
        if created and out.is_dir():  # a failed first build leaves no partial output
            shutil.rmtree(out, ignore_errors=True)
        raise


def _build_labels(config: LabelBuildConfig, encoder: Encoder | None, table: CaptionTable, encoder_id: str | None,
                  sources: list[LabelSource], identity: dict[str, Any], identity_hash: str, out: Path) -> LabelSet:
    if _prepare_out(out, identity_hash, config.force):
        log.info("%s already holds this build (config hash %s); nothing to do", out, identity_hash)
        return open_labels(out)
    atomic_write_json(out / CONFIG_FILE, asdict(config) | {"sources": list(config.sources),
                                                           "config_hash": identity_hash})
    t0 = time.perf_counter()
    image_ids = table.unique_images()
    image_index = table.image_index()
    log.info("label build: %d captions of %d images from %s, sources %s, K=%d (captions per image), %d (images "
             "per caption), index %s", len(table), len(image_ids), table.path, ",".join(config.sources), config.k,
             config.images_k, config.index)

    # 1. embedding
    if encoder is None:
        cache_id = model_cache_id(config.model)

        def make() -> Encoder:
            return sbert_encoder(config.model, config.device, config.batch_size)
    else:
        cache_id = encoder_id

        def make() -> Encoder:
            return encoder
    if config.use_cache and cache_id is not None:
        encode = cached_encoder(EmbeddingCache(config.cache or default_cache_dir(), cache_id), make)
    else:
        encode = make()
    embeddings = np.ascontiguousarray(encode(table.texts), dtype=np.float32)
    if embeddings.shape[0] != len(table):
        raise ConfigError(f"the encoder returned {embeddings.shape[0]} embeddings for {len(table)} captions")
    t_embed = time.perf_counter()
    log.info("phase embedding: %d captions in %.1fs (%.0f/s)", len(table), t_embed - t0,
             len(table) / max(t_embed - t0, 1e-9))

    # 2. search
    cands = _load_candidates(out / CANDIDATES_FILE, identity_hash, len(table))
    if cands is not None:
        log.info("reusing %s from the interrupted run (%d pairs)", CANDIDATES_FILE, len(cands.image_pos))
    else:
        cands = candidate_pairs(embeddings, image_index, config.k, config.images_k, config.index_spec(),
                                recall_queries=config.recall_queries)
        _save_candidates(out / CANDIDATES_FILE, cands, identity_hash)
    img_pos, cap_pos = cands.image_pos, cands.caption_pos
    t_search = time.perf_counter()
    log.info("phase search: %d candidate pairs in %.1fs", len(img_pos), t_search - t_embed)

    corpus = LabelCorpus.from_groups(table.texts, image_index, embeddings, image_ids=image_ids,
                                     caption_ids=table.caption_ids)
    provenance: dict[str, Any] = {
        "bcls_version": bcls.__version__,
        "versions": _versions(),
        "config_hash": identity_hash,
        "config": identity,
        "input": {"path": str(table.path), "format": table.format, "split": config.split, "captions": len(table),
                  "images": int(len(image_ids)), "fingerprint": table.fingerprint()},
        "sources": {s.name: s.settings() for s in sources},
        "sentence_model": config.model,
        "embedding_dim": int(embeddings.shape[1]),
        "k": config.k,
        "caption_k": config.images_k,
        "candidates": "union of: top-k captions per image and top-caption_k images per caption, both by max "
                      "similarity of the caption to the image's other reference captions; with caption_k > 0 every "
                      "positive pair",
        "faiss": cands.info | {"gpus": faiss_gpu_count()},
    }

    # 3. scoring + writing
    bytes_per_pair = 16 + 4 * len(sources)  # uncompressed keys + float32 values: an upper bound for zstd shards
    ensure_free_space(out, len(img_pos) * bytes_per_pair + embeddings.shape[0] * embeddings.shape[1] * 2
                      + (1 << 20), f"{len(img_pos)} labelled pairs in shards and the caption embeddings")
    n_shards = int(np.ceil(len(image_ids) / config.images_per_shard))
    bounds = np.searchsorted(img_pos, np.arange(n_shards + 1) * config.images_per_shard)
    plans = []
    for s in range(n_shards):
        lo, hi = bounds[s], bounds[s + 1]
        ids_i, ids_c = image_ids[img_pos[lo:hi]], table.caption_ids[cap_pos[lo:hi]]
        meta = {"config_hash": identity_hash, "shard": s, "images_per_shard": config.images_per_shard,
                "pairs": _pairs_hash(ids_i, ids_c)}
        plans.append(ShardPlan(s, img_pos[lo:hi], cap_pos[lo:hi], ids_i, ids_c, meta))
    entries: dict[int, dict[str, Any]] = {}
    for plan in plans:
        entry = _existing_entry(out, plan)
        if entry is not None:
            entries[plan.index] = entry
    if entries:
        log.info("resuming: %d of %d shards already complete", len(entries), n_shards)
    todo = [p for p in plans if p.index not in entries]
    progress = _Progress(len(todo), int(sum(len(p.image_ids) for p in todo)))
    if todo:
        if config.scheduler in LOCAL_SCHEDULERS:
            if config.scheduler != "processes":
                _warm_sources(corpus, sources)
            results = _run_local(str(out), todo, corpus, sources, config.scheduler, config.workers, progress)
        else:
            results = _run_distributed(config.scheduler, str(out), todo, corpus, sources, progress)
        for plan, entry in zip(todo, results):
            entries[plan.index] = {key: entry[key] for key in ("file", "rows", "sha256")}
    shards = [entries[s] for s in range(n_shards)]
    t_score = time.perf_counter()
    log.info("phase scoring+writing: %d shards (%d built) in %.1fs; task time scoring %.1fs, writing %.1fs",
             n_shards, len(todo), t_score - t_search, progress.score, progress.write)

    # 4. embeddings copy and manifest (last)
    with atomic_path(out / EMBEDDINGS_FILE, suffix=".npy") as tmp:
        np.save(tmp, embeddings.astype(np.float16), allow_pickle=False)
    provenance["embeddings"] = {"file": EMBEDDINGS_FILE, "dtype": "float16", "rows": "caption table order"}
    write_manifest(out, shards, [s.name for s in sources], provenance)
    log.info("label build done: %d pairs in %d shards in %.1fs; embed %.1fs, search %.1fs, score+write %.1fs",
             len(img_pos), n_shards, time.perf_counter() - t0, t_embed - t0, t_search - t_embed,
             t_score - t_search)
    return open_labels(out)
