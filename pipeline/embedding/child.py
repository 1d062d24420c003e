"""Embedding a label build's captions in a child process that fills the embedding cache.

A label build that has many captions to embed (:data:`CHILD_MIN_TEXTS` or more) runs the sentence model in a
child process (``python -m bcls.pipeline.embedding.child JOB``) instead of its own, and then reads the embeddings
from the cache as a warm rerun does. The build's process so never loads sentence-transformers, transformers or
an inference runtime: they and the model's buffers stay resident once loaded (a part of the full-COCO build's
peak measured in docs/benchmarks.md), through the search and scoring phases
that follow. This is our engineering choice; the embeddings are the same as in one process (tested).

The job is a folder holding ``job.json`` (the model, device, batch size, backend, cache and log settings) and
``texts.arrow`` (the captions to embed; Arrow IPC, no pickle). The child logs its progress on the build's
stderr, stores each block in the cache when done (so Ctrl-C keeps what was embedded) and writes ``error.json``
when it stops on a known error, which the build raises again as the same one-line error.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from bcls.data.infra import errors
from bcls.data.infra.errors import BclsError
from bcls.data.infra.interrupts import remembered_interrupts
from bcls.data.infra.progress import setup_logging

if TYPE_CHECKING:
    from .embed import EncoderSpec

log = logging.getLogger(__name__)

CHILD_MIN_TEXTS = 20_000
"""Missing captions from which a label build embeds them in a child process (fewer: in its own process, where
the child's start, seconds of imports, would cost more than the memory it saves)."""


def use_child(n_texts: int) -> bool:
    """Whether :func:`embed_in_child` should embed ``n_texts`` captions: enough of them, and this process may
    have children (a daemonic dask worker may not)."""
    return n_texts >= CHILD_MIN_TEXTS and not multiprocessing.current_process().daemon


def _log_settings() -> dict[str, Any]:
    root = logging.getLogger()
    formatter = root.handlers[0].formatter if root.handlers and root.handlers[0].formatter else None
    return {"level": logging.getLogger("bcls").getEffectiveLevel(),
            "format": formatter._fmt if formatter else None,  # noqa: SLF001 -- the format the CLI chose
            "datefmt": formatter.datefmt if formatter else None}


def embed_in_child(texts: Sequence[str], spec: EncoderSpec) -> None:
    """Embed ``texts`` with the encoder ``spec`` into its embedding cache in a child process and wait for it. A
    known error of the child is raised here again; Ctrl-C stops the child too (the blocks it finished stay cached)
    and raises :class:`KeyboardInterrupt`."""
    import pyarrow as pa

    root = spec.cache_root
    root.mkdir(parents=True, exist_ok=True)
    job = root / f".embed-job-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        job.mkdir()
        with pa.OSFile(str(job / "texts.arrow"), "wb") as sink:
            batch = pa.record_batch([pa.array(list(texts), pa.large_string())], names=["text"])
            with pa.ipc.new_file(sink, batch.schema) as writer:
                writer.write_batch(batch)
        torch = sys.modules.get("torch")
        threads = torch.get_num_threads() if torch is not None else None
        (job / "job.json").write_text(json.dumps({
            "encoder": spec.to_dict(), "threads": threads, "log": _log_settings(),
            "parent": os.getpid()}))
        log.info("embedding %d captions in a child process, so this one never holds the sentence model",
                 len(texts))
        try:
            stdout = sys.stderr.fileno()  # the child's stray prints must not mix with the command's output
        except (AttributeError, OSError, ValueError):
            stdout = None
        child = subprocess.Popen([sys.executable, "-m", "bcls.pipeline.embedding.child", str(job)], stdout=stdout)
        log.debug("embedding process: pid %d", child.pid)
        try:
            code = child.wait()
        except KeyboardInterrupt:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)  # a terminal's Ctrl-C reaches it already; a signal to us alone not
                child.wait()
            raise
        error = job / "error.json"
        if error.is_file():
            raised = json.loads(error.read_text())
            cls = getattr(errors, raised["type"], None)
            raise (cls if isinstance(cls, type) and issubclass(cls, BclsError) else BclsError)(raised["message"])
        if code < 0:
            raise BclsError(f"the embedding process was killed by signal {-code} (out of memory?); the captions it "
                            f"had embedded are cached in {root}, so a rerun embeds only the rest")
        if code == 130:
            raise KeyboardInterrupt("embedding stopped; the captions embedded so far are cached, so a rerun "
                                    "embeds only the rest")
        if code != 0:
            raise BclsError(f"the embedding process failed (exit {code}); its error is above. The captions it had "
                            f"embedded are cached in {root}, so a rerun embeds only the rest")
    finally:
        shutil.rmtree(job, ignore_errors=True)


def stop_with_parent(parent: int, poll: float = 1.0) -> None:
    """Interrupt this process, as Ctrl-C would, once process ``parent`` is no longer its parent (the build was
    killed), so that no orphaned child goes on embedding; a watcher thread checks every ``poll`` seconds.

    Call it from the main thread: it also makes SIGINT raise ``KeyboardInterrupt`` again where the process
    inherited it ignored (a shell starts background jobs, ``bcls labels build … &``, with SIGINT ignored, and
    Python keeps that), so that neither this interrupt nor the build's forwarded Ctrl-C is lost."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, name="bcls-parent-watch", daemon=True).start()


def run_job(job: Path) -> None:
    """The child's side: embed the job's texts into the cache (``python -m bcls.pipeline.embedding.child JOB``)."""
    import pyarrow as pa

    spec = json.loads((job / "job.json").read_text())
    stop_with_parent(spec["parent"])  # before the next line: it gives SIGINT back to Python where it was ignored
    with remembered_interrupts():
        setup_logging(spec["log"]["level"], spec["log"]["format"], spec["log"]["datefmt"])
        if spec["threads"]:
            import torch

            torch.set_num_threads(int(spec["threads"]))
        from .embed import EmbeddingCache, EncoderSpec, embed_blocks, text_keys

        with pa.memory_map(str(job / "texts.arrow")) as source:
            texts = pa.ipc.open_file(source).read_all().column("text").to_pylist()
        encoder = EncoderSpec(**spec["encoder"])
        cache = EmbeddingCache(encoder.cache_root, encoder.cache_id)
        for _ in embed_blocks(cache, encoder.encoder, texts, text_keys(texts)):
            pass


def main(argv: Sequence[str]) -> int:
    job = Path(argv[0])
    try:
        run_job(job)
    except BclsError as err:
        (job / "error.json").write_text(json.dumps({"type": type(err).__name__, "message": str(err)}))
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
