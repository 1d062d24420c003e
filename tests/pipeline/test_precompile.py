"""The child that compiles the cider / spice kernels beside a large build's embedding: when it starts, and that the
build then loads every kernel from numba's cache instead of compiling it (at another corpus size)."""

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bcls.pipeline.sources import precompile

# In a fresh process with the given NUMBA_CACHE_DIR: score a corpus with cider and spice, then print how many
# times each kernel was compiled here (cache misses) and loaded from the cache (hits).
_SCORE_AND_COUNT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from bcls.pipeline.corpus import LabelCorpus
    from bcls.pipeline.sources import cider, hashing, ngram_kernels, ptb, make_source
    job = json.load(sys.stdin)
    corpus = LabelCorpus.from_groups(tuple(job["texts"]), np.asarray(job["image_index"]))
    n = len(corpus.texts)
    img, cap = corpus.image_index[np.arange(n)[::-1]], np.arange(n)
    for name in job["sources"]:
        make_source(name).score(corpus, img, cap)
    k = ngram_kernels._kernels()
    found = {"cider": cider._compiled_kernel(), "insert": hashing._insert_kernel(), "tokens": ptb._token_kernel(),
             "order_ids": k.order_ids, "counts": k.counts, "group": k.group}
    print(json.dumps({name: [sum(d.stats.cache_misses.values()), sum(d.stats.cache_hits.values())]
                      for name, d in found.items()}))
""")


def _count_compiles(texts, image_index, sources, cache_dir):
    job = json.dumps({"texts": list(texts), "image_index": np.asarray(image_index).tolist(), "sources": sources})
    done = subprocess.run([sys.executable, "-c", _SCORE_AND_COUNT], input=job, capture_output=True, text=True,
                          env=os.environ | {"NUMBA_CACHE_DIR": str(cache_dir)}, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_small_builds_and_other_sources_start_no_child(monkeypatch):
    started = []
    monkeypatch.setattr(precompile.subprocess, "Popen", lambda *a, **k: started.append(a))
    texts, index = ["a dog"] * 10, np.arange(10) // 5
    assert precompile.start(["sbert", "cider"], {}, texts, index) is None  # 10 < MIN_CAPTIONS
    monkeypatch.setattr(precompile, "MIN_CAPTIONS", 5)
    assert precompile.start(["sbert", "file"], {}, texts, index) is None
    assert started == [] and precompile.finish(None) is None


def test_the_child_fills_the_cache_the_build_then_loads(coco_corpus, monkeypatch, tmp_path, caplog):
    """An empty numba cache: the child, on the first 250 captions, compiles every kernel of cider and spice; a
    build-like process on 1,000 other captions (another corpus size) then compiles none (no cache miss) and loads
    each from the cache (a cache hit; a kernel compiled there would count a miss, none a hit)."""
    pytest.importorskip("spacy")
    try:
        from bcls.pipeline.sources.spice_graph import load_spacy
        load_spacy()
    except Exception as exc:  # noqa: BLE001 -- the spaCy model is an optional part
        pytest.skip(str(exc))
    corpus = coco_corpus(400)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "filled"))
    monkeypatch.setattr(precompile, "MIN_CAPTIONS", 100)
    child = precompile.start(["sbert", "cider", "spice"], {}, corpus.texts, corpus.image_index)
    assert child is not None
    with caplog.at_level(logging.INFO, logger=precompile.__name__):
        precompile.finish(child)
    assert child.returncode == 0 and "kernels compiled in the child process" in caplog.text
    later = slice(400, 1400)
    loaded = _count_compiles(corpus.texts[later], corpus.image_index[later] - corpus.image_index[later].min(),
                             ["cider", "spice"], tmp_path / "filled")
    assert all(misses == 0 and hits >= 1 for misses, hits in loaded.values()), loaded  # loaded, none compiled


def test_a_child_that_fails_leaves_the_build_to_compile(monkeypatch, caplog):
    """A child that cannot start, or ends at once without reading its job, is reported in one warning and the
    build goes on (the kernels then compile in the build's process, as without the child)."""
    monkeypatch.setattr(precompile, "MIN_CAPTIONS", 5)
    texts, index = ["a dog runs"] * 300, np.arange(300) // 5
    monkeypatch.setattr(precompile.sys, "executable", "/nonexistent/python")
    with caplog.at_level(logging.WARNING, logger=precompile.__name__):
        assert precompile.start(["cider"], {}, texts, index) is None
    assert "cannot start the process" in caplog.text
    monkeypatch.setattr(precompile.sys, "executable", "false")  # exits 1 at once, its stdin unread
    child = precompile.start(["cider"], {"cider": {"path": Path("x")}}, texts, index)  # any option type is sent
    with caplog.at_level(logging.WARNING, logger=precompile.__name__):
        precompile.finish(child)
    assert child.returncode == 1 and "failed (exit 1); they compile in this process instead" in caplog.text
