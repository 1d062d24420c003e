"""Scoring and writing shards as dask tasks: locally (threads, processes, sync) or on a dask.distributed cluster.

Each task (:func:`build_shard`) scores one shard's candidate pairs with every source and writes the shard
atomically; :class:`Progress` logs the rate and ETA as tasks finish.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bcls.data.infra.errors import ConfigError
from bcls.data.infra.progress import Progress
from bcls.data.infra.runtime import release_free_memory
from bcls.data.shards import sha256_file, shard_metadata, shard_name, write_shard
from bcls.pipeline.corpus import LabelCorpus, LabelSource

log = logging.getLogger(__name__)

LOCAL_SCHEDULERS = ("threads", "processes", "sync")
CONNECT_TIMEOUT = "20s"
"""How long to wait for a ``dask.distributed`` scheduler."""


def pairs_hash(image_ids: np.ndarray, caption_ids: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(image_ids, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(caption_ids, dtype="<i8").tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ShardPlan:
    """One shard to build: its index, pairs (positions, and the id of every image and caption position, shared by
    all plans: a shard's ids are looked up when it is built, not held by every plan through the build) and the
    metadata stored in its schema."""

    index: int
    image_pos: np.ndarray
    caption_pos: np.ndarray
    image_id_of: np.ndarray
    caption_id_of: np.ndarray
    meta: dict[str, Any]

    @property
    def image_ids(self) -> np.ndarray:
        return self.image_id_of[self.image_pos]

    @property
    def caption_ids(self) -> np.ndarray:
        return self.caption_id_of[self.caption_pos]


def build_shard(out: str, plan: ShardPlan, corpus: LabelCorpus, sources: Sequence[LabelSource]) -> dict[str, Any]:
    """Score one shard's pairs with every source and write the shard atomically (one dask task).

    Returns:
        The manifest entry ``{"file", "rows", "sha256"}`` plus ``"score_seconds"`` and ``"write_seconds"``.
    """
    t0 = time.perf_counter()
    values = {src.name: src.score(corpus, plan.image_pos, plan.caption_pos) for src in sources}
    t1 = time.perf_counter()
    entry = write_shard(out, plan.index, plan.image_ids, plan.caption_ids, values, plan.meta)
    t2 = time.perf_counter()
    del values
    release_free_memory()  # the shard's temporaries, in whichever process ran the task
    return entry | {"score_seconds": t1 - t0, "write_seconds": t2 - t1}


def existing_entry(out: Path, plan: ShardPlan) -> dict[str, Any] | None:
    """The manifest entry of a complete shard left by an earlier run of this same build, else None."""
    path = out / shard_name(plan.index)
    found = shard_metadata(path)
    if found is None:
        return None
    meta, rows = found
    if meta != plan.meta or rows != len(plan.image_pos):
        log.info("%s: from another build or layout, rebuilding it", path.name)
        return None
    return {"file": path.name, "rows": rows, "sha256": sha256_file(path)}


class ShardProgress:
    """Progress of the scoring + writing phase (pairs done, rate, ETA; :class:`~bcls.data.infra.progress.Progress`)
    and the task time spent scoring and writing."""

    def __init__(self, total_shards: int, total_pairs: int) -> None:
        self.total_shards, self.shards = total_shards, 0
        self.score = self.write = 0.0
        self.report = Progress(total_pairs, "scoring+writing", "pairs", log)

    def done(self, entry: dict[str, Any]) -> None:
        self.shards += 1
        self.score += entry.get("score_seconds", 0.0)
        self.write += entry.get("write_seconds", 0.0)
        self.report.update(entry["rows"], f"{self.shards}/{self.total_shards} shards")

    def close(self) -> None:
        self.report.close(f"{self.shards}/{self.total_shards} shards")


def run_local(out: str, plans: list[ShardPlan], corpus: LabelCorpus, sources: Sequence[LabelSource],
               scheduler: str, workers: int | None, progress: ShardProgress) -> list[dict[str, Any]]:
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


def run_distributed(address: str, out: str, plans: list[ShardPlan], corpus: LabelCorpus,
                     sources: Sequence[LabelSource], progress: ShardProgress) -> list[dict[str, Any]]:
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


def warm_sources(corpus: LabelCorpus, sources: Sequence[LabelSource]) -> None:
    """Let each source build its per-corpus tables once before threads share the corpus (the heap's free pages
    are given back after each: :func:`~bcls.data.infra.runtime.release_free_memory`)."""
    empty = np.zeros(0, dtype=np.int64)
    for src in sources:
        src.score(corpus, empty, empty)
        release_free_memory()
