"""A real dask cluster on this machine for the fault tests (``test_cluster.py``, ``bench/dask_faults.py``): a
scheduler and workers started as the ``dask scheduler`` / ``dask worker`` commands, and label sources whose tasks
wait for a gate file or end their worker.

The worker processes import this file as the top-level module ``cluster_kit`` (its folder is on their
``PYTHONPATH``), so the test process must import it the same way for the sources to unpickle there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bcls.pipeline.sources import LABEL_SOURCES, SbertSource

HERE = Path(__file__).resolve().parent
SCHEDULER = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]


class GatedSource(SbertSource):
    """sbert's values; when ``$BCLS_TEST_GATE`` names a file that does not exist, a shard task waits for it once
    ``FREE`` shards are in the folder ``$BCLS_TEST_OUT`` (so a test can act while tasks are in flight, whichever
    shards the workers took first)."""

    FREE = 2

    def score(self, corpus, image_pos, caption_pos):
        gate, out = os.environ.get("BCLS_TEST_GATE"), os.environ.get("BCLS_TEST_OUT")
        if gate and out and len(image_pos) and shard_count(Path(out)) >= self.FREE:
            while not os.path.exists(gate):
                time.sleep(0.02)
        return super().score(corpus, image_pos, caption_pos)


class ExitingSource(SbertSource):
    """sbert's values, except that scoring the shard of image position ``DOOMED`` ends the process at once (like a
    worker killed for memory)."""

    DOOMED = 4

    def score(self, corpus, image_pos, caption_pos):
        if len(image_pos) and int(image_pos[0]) == self.DOOMED:
            os._exit(1)
        return super().score(corpus, image_pos, caption_pos)


def register() -> None:
    for name, cls in (("gated", GatedSource), ("exiting", ExitingSource)):
        if name not in LABEL_SOURCES.names():
            LABEL_SOURCES.register(name, cls, "sbert for the cluster fault tests")


class Cluster:
    """``dask scheduler`` and ``n`` ``dask worker --no-nanny`` processes (a killed worker stays dead) on
    127.0.0.1, with this folder on the workers' ``PYTHONPATH``; ``env`` adds to their environment."""

    def __init__(self, folder: Path, n: int = 2, env: dict[str, str] | None = None,
                 worker_args: tuple[str, ...] = (), worker_prefix: tuple[str, ...] = ()) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.file = self.folder / "scheduler.json"
        self.env = dict(os.environ, PYTHONPATH=str(HERE), OMP_NUM_THREADS="1", **(env or {}))
        self.n, self.worker_args, self.worker_prefix = n, worker_args, worker_prefix
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    def _start(self, args: list[str], log: str) -> subprocess.Popen:
        return subprocess.Popen(args, env=self.env, cwd=self.folder, stdout=subprocess.DEVNULL,
                                stderr=open(self.folder / log, "wb"), start_new_session=True)

    def __enter__(self) -> "Cluster":
        self.scheduler = self._start([*SCHEDULER, "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                      "--scheduler-file", str(self.file)], "scheduler.log")
        deadline = time.monotonic() + 60
        while not self.file.exists():
            if time.monotonic() > deadline or self.scheduler.poll() is not None:
                raise RuntimeError(f"the dask scheduler did not start: {(self.folder / 'scheduler.log').read_text()}")
            time.sleep(0.05)
        for i in range(self.n):
            self.workers.append(self._start([*self.worker_prefix, *WORKER, "--scheduler-file", str(self.file),
                                             "--no-nanny", "--nthreads", "1", "--no-dashboard", *self.worker_args],
                                            f"worker{i}.log"))
        return self

    @property
    def address(self) -> str:
        for _ in range(100):  # the scheduler writes the file, then fills it
            try:
                return json.loads(self.file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.05)
        raise RuntimeError(f"{self.file}: no scheduler address")

    def wait_for_workers(self, n: int | None = None, timeout: float = 60) -> None:
        from distributed import Client

        with Client(self.address, timeout="20s") as client:
            client.wait_for_workers(self.n if n is None else n, timeout=timeout)

    def kill_worker(self, i: int = 0) -> None:
        self.workers[i].send_signal(signal.SIGKILL)
        self.workers[i].wait(30)

    def kill_scheduler(self) -> None:
        assert self.scheduler is not None
        self.scheduler.send_signal(signal.SIGKILL)
        self.scheduler.wait(30)

    def __exit__(self, *exc: object) -> None:
        for proc in [*self.workers, self.scheduler]:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)


def shard_count(folder: Path) -> int:
    return len(list(Path(folder).glob("shard-*.parquet")))


def wait_for(predicate, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.02)


def call_with_timeout(fn, timeout: float):
    """``fn()`` in a thread: its result, or its exception raised here; TimeoutError when it has not ended within
    ``timeout`` seconds (the thread is a daemon and is left behind), so a hang fails instead of blocking."""
    box: dict = {}

    def work():
        try:
            box["result"] = fn()
        except BaseException as err:  # handed to the calling thread
            box["error"] = err

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no end within {timeout:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["result"]
