"""Scoring and writing shards as dask tasks: locally (threads, processes, sync) or on a dask.distributed cluster.

Each task (:func:`build_shard`) scores one shard's candidate pairs with every source and writes the shard
atomically; :class:`Progress` logs the rate and ETA as tasks finish.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import time
import uuid
from concurrent.futures import CancelledError
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bcls.data.infra import version
from bcls.data.infra.atomic import TEMPORARY_NAME, atomic_write_bytes
from bcls.data.infra.errors import ClusterError, ConfigError
from bcls.data.infra.interrupts import interrupt_point
from bcls.data.infra.progress import Progress
from bcls.data.infra.runtime import release_free_memory
from bcls.data.shards import sha256_file, shard_metadata, shard_name, write_shard
from bcls.pipeline.corpus import LabelCorpus, LabelSource

log = logging.getLogger(__name__)

LOCAL_SCHEDULERS = ("threads", "processes", "sync")
CONNECT_TIMEOUT = "20s"
"""How long to wait for a ``dask.distributed`` scheduler."""
INPUTS_FILE = ".resume/cluster-inputs.pkl"
"""Where a distributed build leaves the corpus and sources for its workers (:func:`write_inputs`)."""
WORKER_TIMEOUT = 60.0
"""How long to wait, in seconds, for a first worker to join the scheduler."""


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


def build_shard(out: str, plan: ShardPlan, corpus: LabelCorpus, sources: Sequence[LabelSource],
                bcls_version: str | None = None) -> dict[str, Any]:
    """Score one shard's pairs with every source and write the shard atomically (one dask task).

    ``bcls_version``: the client's bcls version, checked on the worker (a dask worker that joins a cluster after
    :func:`check_workers` ran is checked here, before it writes anything).

    Returns:
        The manifest entry ``{"file", "rows", "sha256"}`` plus ``"score_seconds"`` and ``"write_seconds"``.
    """
    if bcls_version is not None and bcls_version != version.__version__:
        raise ConfigError(f"this dask worker runs bcls {version.__version__}, the build bcls {bcls_version}; install "
                          "the same bcls version on every worker")
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
                interrupt_point()  # dask calls this in the main thread

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


def worker_facts(probe: str) -> dict[str, Any]:
    """What :func:`check_workers` asks every dask worker: its host, its bcls and package versions, and the text
    of the probe file the client wrote in ``--out`` (None when the worker cannot read it)."""
    import socket

    try:
        seen: str | None = Path(probe).read_text()
    except OSError:
        seen = None
    return {"host": socket.gethostname(), "versions": version.package_versions(), "probe": seen}


def check_workers(client: Any, address: str, out: Path) -> None:
    """Refuse a cluster that cannot build into ``out``: no worker, a worker with another bcls version, or a worker
    that does not see ``out`` (the workers write the shards, so it must be the same path on a shared file
    system). A version difference in another package is logged, not refused."""
    try:
        client.wait_for_workers(1, timeout=WORKER_TIMEOUT)
    except TimeoutError:
        raise ClusterError(f"no dask worker joined the scheduler at {address} within {WORKER_TIMEOUT:.0f} s; "
                           f"start workers with: dask worker {address}") from None
    token = uuid.uuid4().hex
    probe = out / f".bcls-worker-probe-{token}"
    probe.write_text(token)
    try:
        facts = client.run(worker_facts, str(probe))
    except ImportError as err:
        raise ConfigError(f"a dask worker of {address} cannot import bcls ({err}); install bcls "
                          f"{version.__version__} on every worker") from None
    finally:
        probe.unlink(missing_ok=True)
    ours = version.package_versions()
    for worker, fact in sorted(facts.items()):
        theirs = fact["versions"]
        if theirs.get("bcls") != ours["bcls"]:
            raise ConfigError(f"dask worker {worker} (host {fact['host']}) runs bcls {theirs.get('bcls')}, this "
                              f"machine bcls {ours['bcls']}; install the same bcls version on every worker")
        if fact["probe"] != token:
            raise ConfigError(f"dask worker {worker} (host {fact['host']}) cannot read {probe.parent}; the workers "
                              "write the shards, so --out must be the same path on a file system they all share")
        other = {k: (v, theirs.get(k)) for k, v in ours.items() if theirs.get(k) != v}
        if other:
            log.warning("dask worker %s has other package versions than this machine (%s); the provenance records "
                        "this machine's", worker, ", ".join(f"{k} {a} here, {b} there" for k, (a, b) in other.items()))


def worker_memory(client: Any) -> str:
    """The resident memory of the cluster's workers, for the build log ("2 workers, 210–230 MiB each")."""
    rss = [info.get("metrics", {}).get("memory", 0) for info in client.scheduler_info()["workers"].values()]
    if not rss:
        return "no workers"
    lo, hi = min(rss) / 2**20, max(rss) / 2**20
    return f"{len(rss)} worker(s), {lo:.0f}–{hi:.0f} MiB each"


def run_distributed(address: str, out: str, plans: list[ShardPlan], corpus: LabelCorpus,
                     sources: Sequence[LabelSource], progress: ShardProgress) -> list[dict[str, Any]]:
    """Build the shards on the dask.distributed cluster at ``address``, after :func:`check_workers`.

    The workers read the corpus and the sources from ``--out`` (:func:`write_inputs`). A worker that dies is
    replaced by the others: dask reruns its tasks, and shards are written atomically, so a half-run task leaves at
    most a temporary file, removed here. A lost scheduler, or a task that keeps ending its workers, raises
    :class:`~bcls.data.infra.errors.ClusterError`; the finished shards stay for the rerun."""
    try:
        from distributed import Client, KilledWorker, as_completed
        from distributed.comm.core import CommClosedError
    except ImportError:
        raise ConfigError("a scheduler address needs dask.distributed (pip install 'dask[distributed]')") from None
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise ConfigError(f"cannot reach the dask scheduler at {address!r} ({err})") from None
    results: list[dict[str, Any] | None] = [None] * len(plans)
    inputs = Path(out) / INPUTS_FILE
    # A lost scheduler makes the client log tracebacks from its event-loop thread, some after the build has
    # raised; the ClusterError below says what happened and what to do, so the client's own log is silenced.
    client_log = logging.getLogger("distributed.client")
    client_level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    failed = False
    try:
        check_workers(client, address, Path(out))
        log.info("dask.distributed: %s, %s", address, worker_memory(client))
        digest = write_inputs(inputs, corpus, sources)
        run = f"{os.getpid()}-{time.time_ns()}"
        inputs_f = client.submit(load_inputs, str(inputs), digest, pure=False, key=f"bcls-inputs-{run}")
        futures = {client.submit(build_shard_task, out, p, inputs_f, version.__version__, pure=False,
                                 key=f"bcls-shard-{p.index}-{run}"): i for i, p in enumerate(plans)}
        with client.as_current():
            for fut in as_completed(list(futures)):
                entry = fut.result()
                results[futures[fut]] = entry
                progress.done(entry)
                interrupt_point()
        log.info("dask workers at the end: %s", worker_memory(client))
    except KilledWorker as err:
        shard = str(err.task).split("-")[2] if str(err.task).startswith("bcls-shard-") else err.task
        raise ClusterError(f"{_finished(plans, out)}; {err.allowed_failures + 1} dask workers died while "
                           f"running the task of shard {shard} (out of memory? see the worker logs); give the workers "
                           "more memory or use a smaller --images-per-shard, then rerun: finished shards are "
                           "reused") from None
    except (CommClosedError, CancelledError) as err:
        if client.status == "running" and not isinstance(err, CommClosedError):
            what = f"the dask cluster at {address} cancelled a shard task ({getattr(err, 'reason', err)})"
        else:
            what = f"lost the dask scheduler at {address} ({type(err).__name__})"
        failed = True
        raise ClusterError(f"{_finished(plans, out)}; {what}; rerun the same command with a running scheduler or "
                           "--scheduler threads: finished shards are reused") from None
    finally:
        client.close()
        if not failed:
            client_log.setLevel(client_level)
    inputs.unlink(missing_ok=True)
    remove_orphan_temporaries(Path(out), plans)
    return [r for r in results if r is not None]


def write_inputs(path: Path, corpus: LabelCorpus, sources: Sequence[LabelSource]) -> str:
    """Pickle what every shard task needs (the corpus and the sources) to ``path`` in the output folder; returns
    its sha256. The workers load it from there (:func:`load_inputs`) rather than from the client's memory, so a
    worker that joins late or replaces a dead one finds it, even when every worker that held it is gone."""
    payload = pickle.dumps((corpus, list(sources)), protocol=5)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, payload)
    return hashlib.sha256(payload).hexdigest()


def load_inputs(path: str, digest: str) -> tuple[LabelCorpus, list[LabelSource]]:
    """The corpus and sources :func:`write_inputs` stored (a dask task, run on one worker and fetched by the
    others, or rerun from the file when its holders are gone)."""
    try:
        payload = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: a dask worker cannot read the build's inputs ({err.strerror}); --out must be the "
                          "same path on a file system every worker shares") from None
    if hashlib.sha256(payload).hexdigest() != digest:
        raise ConfigError(f"{path}: a dask worker reads other contents than the client wrote; --out must be on a file "
                          "system every worker shares")
    return pickle.loads(payload)


def build_shard_task(out: str, plan: ShardPlan, inputs: tuple[LabelCorpus, list[LabelSource]],
                     bcls_version: str) -> dict[str, Any]:
    """:func:`build_shard` with the corpus and sources of :func:`load_inputs` (a dask.distributed task)."""
    corpus, sources = inputs
    return build_shard(out, plan, corpus, sources, bcls_version)


def _finished(plans: list[ShardPlan], out: str) -> str:
    """How many of ``plans``' shards are in ``out`` (workers may have finished some the client never heard of)."""
    done = sum((Path(out) / shard_name(p.index)).exists() for p in plans)
    return f"{out}: {done} of {len(plans)} shards finished and kept"


def remove_orphan_temporaries(out: Path, plans: list[ShardPlan]) -> None:
    """Remove the temporaries of ``plans``' shards that exist: left by a task whose worker died before its rename,
    or by a second run of a task that finished elsewhere (any pid: the workers may be on other machines)."""
    names = {shard_name(p.index) for p in plans}
    for path in out.iterdir():
        target = path.name[1:].split(".tmp-")[0]
        if TEMPORARY_NAME.match(path.name) and target in names and (out / target).exists():
            log.info("removing %s, left by a dask worker that ended mid-write", path.name)
            path.unlink(missing_ok=True)


def warm_sources(corpus: LabelCorpus, sources: Sequence[LabelSource]) -> None:
    """Let each source build its per-corpus tables once before threads share the corpus (the heap's free pages
    are given back after each: :func:`~bcls.data.infra.runtime.release_free_memory`)."""
    empty = np.zeros(0, dtype=np.int64)
    for src in sources:
        src.score(corpus, empty, empty)
        release_free_memory()
