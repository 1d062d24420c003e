"""Compile the cider and spice sources' numba kernels in a short child process while a large build embeds.

numba compiles a kernel on its first call and keeps it in an on-disk cache, so after an installation the first label
build compiles the CIDEr-D, tokeniser and hashing kernels itself, at its first scoring, amid the scoring's large arrays.
The compiler's many small, long-lived allocations then land among freed arrays and keep their pages from being given
back, which raised the first full-COCO build's peak (docs/label_builds.md). Our remedy: when a build of at least
:data:`MIN_CAPTIONS` captions uses these sources, a child process scores a few of its real captions with the same
sources, beside the embedding; that fills numba's cache, and the build loads the compiled kernels. The kernels' argument
types do not depend on the corpus size (a 250-caption build compiled every kernel a 100,000-caption build then loaded
without compiling). When the cache is already filled the child only loads it: a few seconds of one core beside the
embedding.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from typing import Any, Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)

#: Sources whose scoring runs numba kernels.
COMPILED_SOURCES = ("cider", "spice")
#: Smaller builds compile in their own process: their arrays are small, and a child would only cost time.
MIN_CAPTIONS = 50_000
#: How many of the build's captions the child scores (every image × caption pair among them).
SAMPLE = 250


def start(sources: Sequence[str], options: Mapping[str, Mapping[str, Any]], texts: Sequence[str],
          image_index: np.ndarray) -> subprocess.Popen | None:
    """Start the child for a build of ``texts`` (image of each: ``image_index``) with ``sources``; None when the
    build is small or uses none of :data:`COMPILED_SOURCES`."""
    names = [s for s in sources if s in COMPILED_SOURCES]
    if not names or len(texts) < MIN_CAPTIONS:
        return None
    _, index = np.unique(np.asarray(image_index[:SAMPLE]), return_inverse=True)
    job = {"sources": {n: dict(options.get(n, {})) for n in names}, "texts": list(texts[:SAMPLE]),
           "image_index": index.ravel().tolist()}
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    try:  # an optimisation only: nothing here may stop the build
        child = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    except OSError as err:
        log.warning("cannot start the process that compiles the kernels (%s); they compile in this process", err)
        return None
    try:
        assert child.stdin is not None
        with child.stdin:
            child.stdin.write(json.dumps(job, default=str).encode("utf-8"))  # e.g. a Path option as text
    except OSError:  # the child ended at once (a broken pipe): finish() reports its exit code
        pass
    log.info("compiling the %s kernels in a child process (pid %d) beside the embedding", ",".join(names),
             child.pid)
    return child


def finish(child: subprocess.Popen | None, timeout: float = 300.0) -> None:
    """Wait for the child before scoring; if it failed or is too slow, the kernels compile in this process."""
    if child is None:
        return
    start_wait = time.perf_counter()
    try:
        code: int | str = child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        code = "timed out"
    waited = time.perf_counter() - start_wait
    if code == 0:
        log.info("kernels compiled in the child process (waited %.1fs for it)", waited)
    else:
        log.warning("compiling the kernels in a child process failed (%s); they compile in this process instead",
                    f"exit {code}" if isinstance(code, int) else code)


def main() -> None:
    """The child: score every pair of the sample with each source (results discarded)."""
    from bcls.pipeline.corpus import LabelCorpus
    from bcls.pipeline.sources.source_registry import make_source

    job = json.loads(sys.stdin.buffer.read())
    corpus = LabelCorpus.from_groups(tuple(job["texts"]), np.asarray(job["image_index"], dtype=np.int64))
    n_images, n_captions = int(corpus.image_index.max()) + 1, len(corpus.texts)
    image_pos = np.repeat(np.arange(n_images, dtype=np.int64), n_captions)
    caption_pos = np.tile(np.arange(n_captions, dtype=np.int64), n_images)
    for name, options in job["sources"].items():
        make_source(name, **options).score(corpus, image_pos, caption_pos)


if __name__ == "__main__":
    main()
