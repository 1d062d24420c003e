"""``bcls labels build``: captions → embeddings → FAISS candidates → label values → Parquet shards + manifest.

Phases, each a public function with a rate/ETA log, run in order by :func:`build_labels`:

1. :func:`embed_captions`: sentence embeddings through an on-disk cache
   (:class:`~bcls.pipeline.embedding.embed.EmbeddingCache`, keyed by model and caption text), so a rebuild or another
   caption file with the same captions never re-embeds them;
2. :func:`find_candidates`: FAISS neighbours (exact, IVF or HNSW; GPU when faiss sees one) → candidate pairs:
   each image's top-K captions, each caption's top-K images plus its own image
   (:func:`~bcls.pipeline.search.neighbours.candidate_pairs`); saved so that a resumed build reuses them;
3. :func:`plan_shards` and :func:`score_shards`: shards of ``images_per_shard`` images built in parallel dask tasks
   (:mod:`~.scheduling`), each scoring its pairs with every source and writing its shard atomically;
4. the caption embeddings and the manifest, written last.

Resuming and the output folder's rules are in :mod:`~.resume`.
"""

from __future__ import annotations

import logging
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from bcls.data.captions import CaptionTable, read_captions
from bcls.data.infra.atomic import atomic_write_json, ensure_free_space
from bcls.data.infra.config_checks import check_field_types
from bcls.data.infra.errors import BclsError, ClusterError, ConfigError, setting
from bcls.data.infra.interrupts import remembered_interrupts
from bcls.data.infra.locks import writer_lock
from bcls.data.infra.runtime import release_free_memory
from bcls.data.infra.version import PROVENANCE_PACKAGES, __version__, package_versions
from bcls.data.shards import LabelSet, config_hash, open_labels, write_caption_embeddings, write_manifest
from bcls.pipeline.corpus import LabelCorpus, LabelSource
from bcls.pipeline.embedding.child import embed_in_child, use_child
from bcls.pipeline.embedding.embed import EmbeddingCache, Encoder, EncoderSpec, cached_encoder, check_device
from bcls.pipeline.embedding.onnx_backend import BACKEND_PACKAGES
from bcls.pipeline.search.indexes import IndexSpec, faiss_gpu_count, search_device
from bcls.pipeline.search.neighbours import CandidateSet, candidate_pairs
from bcls.pipeline.sources import LABEL_SOURCES, make_source, precompile
from bcls.pipeline.sources.ensemble import check_sentence_model

from .resume import CANDIDATES_FILE, CONFIG_FILE, finish_resume_state, load_candidates, prepare_out, save_candidates
from .scheduling import (
    LOCAL_SCHEDULERS,
    ShardPlan,
    ShardProgress,
    existing_entry,
    pairs_hash,
    run_distributed,
    run_local,
    warm_sources,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelBuildConfig:
    """Settings of one label build (saved as ``build_config.json`` beside the shards).

    Attributes:
        captions: caption table (any format :func:`bcls.data.captions.read_captions` reads).
        out: output folder.
        sources: label sources to compute, one shard column each.
        source_options: keyword options per source name (each source's own settings, e.g.
            ``{"sbert": {"aggregate": "mean"}, "file": {"path": "scores.csv"}, "spice": {"processes": 2}}``);
            ``bcls labels sources`` lists every source's options.
        k: candidate captions per image.
        caption_k: candidate images per caption besides its own, which is always a
            candidate (``None``: ``k``; 0: no caption side: image-side candidates only).
        format / split: passed to the caption reader (a precomp folder defaults to split ``train``).
        encoder: the sentence encoder (model, backend, device, batch size, cache folder;
            :class:`~bcls.pipeline.embedding.embed.EncoderSpec`) of the embeddings for candidates and the sbert
            source.
        index: FAISS index for the neighbours: ``exact``, ``ivf`` or ``hnsw``.
        nlist / nprobe: IVF lists (``None``: ``4·sqrt(N)``) and lists probed per query.
        ivf_codes: how the IVF index stores its vectors: ``float16`` (default) or ``float32`` (see
            :class:`~bcls.pipeline.search.indexes.IndexSpec`).
        hnsw_m / ef_construction / ef_search: HNSW parameters.
        recall_queries: sampled captions on which an approximate index's recall@K against exact is measured.
        images_per_shard: images whose candidate pairs go into one shard.
        use_cache: read and fill the embedding cache (``encoder.cache``).
        scheduler: ``threads`` (default), ``processes``, ``sync``, or a ``dask.distributed`` scheduler address.
        workers: local dask workers (``None``: one per CPU core).
        force: overwrite a folder that holds a build with different settings.
        skip_empty: leave out empty captions (counted in a warning) instead of refusing the caption file.
        allow_unknown_images: keep COCO annotations of image ids missing from the file's ``images``.
    """

    captions: str
    out: str
    sources: tuple[str, ...] = ("sbert",)
    source_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    k: int = 32
    caption_k: int | None = None
    format: str = "auto"
    split: str | None = None
    encoder: EncoderSpec = EncoderSpec()
    index: str = "exact"
    nlist: int | None = None
    nprobe: int = 32
    ivf_codes: str = "float16"
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    recall_queries: int = 1000
    images_per_shard: int = 5000
    use_cache: bool = True
    scheduler: str = "threads"
    workers: int | None = None
    force: bool = False
    skip_empty: bool = False
    allow_unknown_images: bool = False

    def __post_init__(self) -> None:
        check_field_types(self, "label build setting")
        if self.k < 1:
            raise ConfigError(f"{setting('k')} must be at least 1, got {self.k}")
        if self.caption_k is not None and self.caption_k < 0:
            raise ConfigError(f"{setting('caption_k')} must be 0 or more, got {self.caption_k}")
        if self.images_per_shard < 1:
            raise ConfigError(f"{setting('images_per_shard')} must be at least 1, got {self.images_per_shard}")
        if not self.sources:
            raise ConfigError("give at least one label source")
        if not isinstance(self.encoder, EncoderSpec):
            raise ConfigError(f"label build setting encoder must be an EncoderSpec, got {type(self.encoder).__name__}")
        if len(set(self.sources)) != len(self.sources):
            raise ConfigError(f"label sources repeated: {list(self.sources)}")
        for name in self.sources:
            LABEL_SOURCES.get(name)  # an unknown name lists the valid ones
        for name, options in self.source_options.items():
            if name not in self.sources:
                raise ConfigError(f"options given for label source {name!r}, which is not among the sources "
                                  f"{', '.join(self.sources)}; add it to --sources or drop its options")
            unknown = sorted(set(options) - set(LABEL_SOURCES.options(name)))
            if unknown:
                raise ConfigError(f"label source {name!r} has no option(s) {', '.join(unknown)}; it takes: "
                                  f"{', '.join(LABEL_SOURCES.options(name)) or 'none'}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"{setting('workers')} must be at least 1, got {self.workers}")
        if self.recall_queries < 0:
            raise ConfigError(f"{setting('recall_queries')} must be 0 or more, got {self.recall_queries}")
        self.index_spec()  # validates the index settings

    @property
    def images_k(self) -> int:
        """Candidate images per caption, resolved."""
        return self.k if self.caption_k is None else self.caption_k

    def index_spec(self) -> IndexSpec:
        """The FAISS index settings."""
        return IndexSpec(kind=self.index, nlist=self.nlist, nprobe=self.nprobe, codes=self.ivf_codes,
                         hnsw_m=self.hnsw_m, ef_construction=self.ef_construction, ef_search=self.ef_search)

    def make_sources(self) -> list[LabelSource]:
        """The configured label sources, in column order."""
        return [make_source(name, **dict(self.source_options.get(name, {}))) for name in self.sources]


def build_identity(config: LabelBuildConfig, sources: Sequence[LabelSource], table: CaptionTable) -> dict[str, Any]:
    """The settings and inputs that determine a build's output (not where it goes or how fast it is made): each
    source's :meth:`~bcls.pipeline.corpus.LabelSource.settings` without the keys it marks ``provenance_only``."""
    settings = {s.name: {k: v for k, v in s.settings().items() if k not in getattr(s, "provenance_only", ())}
                for s in sources}
    identity = {"sources": list(config.sources), "source_settings": settings, "k": config.k,
                "caption_k": config.images_k, "format": config.format, "split": config.split,
                "model": config.encoder.model, "index": config.index_spec().settings(),
                "input_fingerprint": table.fingerprint()}
    backend = config.encoder.backend
    return identity | ({"backend": backend} if backend != "torch" else {})  # torch: as before


def embed_captions(config: LabelBuildConfig, table: CaptionTable, encoder: Encoder | None = None,
                   encoder_id: str | None = None) -> np.ndarray:
    """Phase 1: float32 ``(N, d)`` L2-normalised embeddings of the table's captions, through the cache.

    ``encoder`` replaces the sentence encoder ``config.encoder``; ``encoder_id`` is its cache key (a custom encoder
    without one bypasses the cache)."""
    t0 = time.perf_counter()
    if encoder is None:
        spec = config.encoder

        def in_child(texts: list[str]) -> bool:  # many captions: embedded in a child process
            if not use_child(len(texts)):
                return False
            embed_in_child(texts, spec)
            return True

        encode = spec.cached(config.use_cache, fill=in_child)
    elif config.use_cache and encoder_id is not None:
        encode = cached_encoder(EmbeddingCache(config.encoder.cache_root, encoder_id), lambda: encoder)
    else:
        encode = encoder
    embeddings = np.ascontiguousarray(encode(table.texts), dtype=np.float32)
    if embeddings.shape[0] != len(table):
        raise ConfigError(f"the encoder returned {embeddings.shape[0]} embeddings for {len(table)} captions")
    seconds = time.perf_counter() - t0
    log.info("phase embedding: %d captions in %.1fs (%.0f/s)", len(table), seconds, len(table) / max(seconds, 1e-9))
    return embeddings


def find_candidates(config: LabelBuildConfig, embeddings: np.ndarray, image_index: np.ndarray, out: Path,
                    identity_hash: str) -> CandidateSet:
    """Phase 2: the candidate pairs (reused from ``out`` when an interrupted run of this build saved them)."""
    t0 = time.perf_counter()
    cands = load_candidates(out / CANDIDATES_FILE, identity_hash, len(embeddings))
    if cands is not None:
        log.info("reusing %s from the interrupted run (%d pairs)", CANDIDATES_FILE, len(cands.image_pos))
        return cands
    cands = candidate_pairs(embeddings, image_index, config.k, config.images_k, config.index_spec(),
                            recall_queries=config.recall_queries)
    save_candidates(out / CANDIDATES_FILE, cands, identity_hash)
    log.info("phase search: %d candidate pairs in %.1fs", len(cands.image_pos), time.perf_counter() - t0)
    return cands


def search_on_gpu(config: LabelBuildConfig) -> bool:
    """Whether the neighbour search runs on a GPU (:func:`~bcls.pipeline.search.indexes.search_device`, as the
    index is built), leaving the CPU cores free meanwhile."""
    return search_device(config.index) != "cpu"


def prepare_beside_search(config: LabelBuildConfig, corpus: LabelCorpus, sources: Sequence[LabelSource],
                          compiling: Any) -> Future | None:
    """When the search runs on a GPU, a thread waits for the kernel-compiling child and builds the per-corpus
    tables of the sources that need no embeddings (CIDEr-D's, spice's) while the search runs (None otherwise:
    on the CPU the search has the cores). Our choice, for the GPU build, whose scoring phase the tables slowed
    (docs/label_builds.md). The result is cached per corpus object, as at the scoring's start."""
    if config.scheduler not in ("threads", "sync") or not search_on_gpu(config):
        return None
    tabled = [s for s in sources if not s.needs_embeddings]
    if not tabled:
        return None

    def work() -> None:
        precompile.finish(compiling)
        warm_sources(corpus, tabled)

    log.info("the search runs on a GPU: preparing the %s tables beside it", ",".join(s.name for s in tabled))
    pool = ThreadPoolExecutor(1, thread_name_prefix="bcls-tables")
    future = pool.submit(work)
    pool.shutdown(wait=False)  # the thread ends with its one task
    return future


def plan_shards(cands: CandidateSet, image_ids: np.ndarray, caption_ids: np.ndarray, images_per_shard: int,
                identity_hash: str) -> list[ShardPlan]:
    """The shards of a build: pairs of ``images_per_shard`` consecutive image positions each (candidates are
    sorted by image), with the metadata that lets a rerun recognise a finished shard."""
    img_pos, cap_pos = cands.image_pos, cands.caption_pos
    n_shards = int(np.ceil(len(image_ids) / images_per_shard))
    bounds = np.searchsorted(img_pos, np.arange(n_shards + 1) * images_per_shard)
    plans = []
    for s in range(n_shards):
        lo, hi = bounds[s], bounds[s + 1]
        meta = {"config_hash": identity_hash, "shard": s, "images_per_shard": images_per_shard,
                "pairs": pairs_hash(image_ids[img_pos[lo:hi]], caption_ids[cap_pos[lo:hi]])}
        plans.append(ShardPlan(s, img_pos[lo:hi], cap_pos[lo:hi], image_ids, caption_ids, meta))
    return plans


def score_shards(config: LabelBuildConfig, out: Path, plans: list[ShardPlan], corpus: LabelCorpus,
                 sources: Sequence[LabelSource]) -> list[dict[str, Any]]:
    """Phase 3: score and write every shard not already complete in ``out``; returns the manifest entries in
    shard order."""
    t0 = time.perf_counter()
    entries: dict[int, dict[str, Any]] = {}
    for plan in plans:
        entry = existing_entry(out, plan)
        if entry is not None:
            entries[plan.index] = entry
    if entries:
        log.info("resuming: %d of %d shards already complete", len(entries), len(plans))
    todo = [p for p in plans if p.index not in entries]
    progress = ShardProgress(len(todo), int(sum(len(p.image_pos) for p in todo)))
    if todo:
        if config.scheduler in LOCAL_SCHEDULERS:
            if config.scheduler != "processes":
                warm_sources(corpus, sources)
            results = run_local(str(out), todo, corpus, sources, config.scheduler, config.workers, progress)
        else:
            results = run_distributed(config.scheduler, str(out), todo, corpus, sources, progress)
        for plan, entry in zip(todo, results):
            entries[plan.index] = {key: entry[key] for key in ("file", "rows", "sha256")}
        progress.close()
    log.info("phase scoring+writing: %d shards (%d built) in %.1fs; task time scoring %.1fs, writing %.1fs",
             len(plans), len(todo), time.perf_counter() - t0, progress.score, progress.write)
    return [entries[p.index] for p in plans]


def build_labels(config: LabelBuildConfig, encoder: Encoder | None = None,
                 table: CaptionTable | None = None, encoder_id: str | None = None) -> LabelSet:
    """Run (or resume) a label build and return the finished :class:`~bcls.data.shards.LabelSet`.

    Args:
        config: the build settings.
        encoder: caption → embedding function; default: the sentence encoder ``config.encoder``.
        table: an already-read caption table (else ``config.captions`` is read).
        encoder_id: the cache key of a custom ``encoder``; a custom encoder without one bypasses the cache.
    """
    out = Path(config.out)
    # one writer per folder, taken before any work; a Ctrl-C that Python drops stops the build at the next shard
    with remembered_interrupts(), writer_lock(out, "bcls labels build") as held:
        try:
            check_device(config.encoder.device)
            sources = config.make_sources()
            check_sentence_model(sources, config.encoder.model if encoder is None else None)
            if table is None:
                table = read_captions(config.captions, format=config.format, split=config.split,
                                      skip_empty=config.skip_empty, allow_unknown_images=config.allow_unknown_images)
            identity = build_identity(config, sources, table)
            return _build(config, encoder, table, encoder_id, sources, identity, config_hash(identity), out)
        except BclsError as err:
            # a failed first build leaves no partial output, except the shards a failed cluster finished
            if held.created and out.is_dir() and not isinstance(err, ClusterError):
                shutil.rmtree(out, ignore_errors=True)
            raise


def _build(config: LabelBuildConfig, encoder: Encoder | None, table: CaptionTable, encoder_id: str | None,
           sources: list[LabelSource], identity: dict[str, Any], identity_hash: str, out: Path) -> LabelSet:
    if prepare_out(out, identity_hash, config.force):
        log.info("%s already holds this build (config hash %s); nothing to do", out, identity_hash)
        return open_labels(out)
    # file options are stored absolute, so training from another folder still finds them (dense labels rebuild
    # the source from these options)
    stored_options = {name: {k: str(Path(v).resolve()) if k == "path" and v else v for k, v in opts.items()}
                      for name, opts in config.source_options.items()}
    atomic_write_json(out / CONFIG_FILE, asdict(config) | {"sources": list(config.sources),
                                                           "source_options": stored_options,
                                                           "config_hash": identity_hash})
    t0 = time.perf_counter()
    image_ids, image_index = table.unique_images(), table.image_index()
    log.info("label build: %d captions of %d images from %s, sources %s, K=%d (captions per image), %d (images "
             "per caption), index %s", len(table), len(image_ids), table.path, ",".join(config.sources), config.k,
             config.images_k, config.index)
    compiling = precompile.start(config.sources, config.source_options, table.texts, image_index)
    embeddings = embed_captions(config, table, encoder, encoder_id)
    release_free_memory()  # between phases: glibc keeps freed heap pages otherwise
    t_embed = time.perf_counter()
    corpus = LabelCorpus.from_groups(table.texts, image_index, embeddings, image_ids=image_ids,
                                     caption_ids=table.caption_ids)
    tables = prepare_beside_search(config, corpus, sources, compiling)
    cands = find_candidates(config, embeddings, image_index, out, identity_hash)
    if tables is not None:
        t_wait = time.perf_counter()
        tables.result()  # its errors are the build's
        log.info("tables prepared beside the search (waited %.1fs for them)", time.perf_counter() - t_wait)
    release_free_memory()
    t_search = time.perf_counter()
    if tables is None:
        precompile.finish(compiling)  # before the scoring's large arrays (pipeline/sources/precompile.py)
    bytes_per_pair = 16 + 4 * len(sources)  # uncompressed keys + float32 values: an upper bound for zstd shards
    ensure_free_space(out, len(cands.image_pos) * bytes_per_pair + embeddings.shape[0] * embeddings.shape[1] * 2
                      + (1 << 20), f"{len(cands.image_pos)} labelled pairs in shards and the caption embeddings")
    plans = plan_shards(cands, image_ids, table.caption_ids, config.images_per_shard, identity_hash)
    shards = score_shards(config, out, plans, corpus, sources)
    t_score = time.perf_counter()
    provenance: dict[str, Any] = {
        "bcls_version": __version__,
        "versions": package_versions(PROVENANCE_PACKAGES + BACKEND_PACKAGES.get(config.encoder.backend, ("", ()))[1]),
        "config_hash": identity_hash,
        "config": identity,
        "input": {"path": str(table.path), "format": table.format, "split": config.split, "captions": len(table),
                  "images": int(len(image_ids)), "fingerprint": table.fingerprint()},
        "sources": {s.name: s.settings() for s in sources},
        "sentence_model": config.encoder.model,
        "sentence_backend": config.encoder.backend,
        "embedding_dim": int(embeddings.shape[1]),
        "k": config.k,
        "caption_k": config.images_k,
        "candidates": "union of: top-k captions per image and top-caption_k images per caption, both by max "
                      "similarity of the caption to the image's other reference captions; with caption_k > 0 every "
                      "positive pair",
        "faiss": cands.info | {"gpus": faiss_gpu_count()},
        "embeddings": write_caption_embeddings(out, embeddings),
    }
    write_manifest(out, shards, [s.name for s in sources], provenance)
    finish_resume_state(out)
    log.info("label build done: %d pairs in %d shards in %.1fs; embed %.1fs, search %.1fs, score+write %.1fs",
             len(cands.image_pos), len(plans), time.perf_counter() - t0, t_embed - t0, t_search - t_embed,
             t_score - t_search)
    return open_labels(out)
