"""A label build with many captions to embed runs the sentence model in a child process that fills the embedding
cache (bcls.pipeline.embedding.child); the embeddings and the errors are those of an embedding in one process."""

import numpy as np
import pytest

from bcls.data.infra.errors import BclsError, ConfigError
from bcls.data.shards import read_caption_embeddings
from bcls.pipeline.embedding import child as embed_process
from bcls.pipeline.embedding.embed import EmbeddingCache, EncoderSpec, model_cache_id, sbert_encoder, text_keys


def _child_always(monkeypatch):
    monkeypatch.setattr(embed_process, "CHILD_MIN_TEXTS", 0)


def test_a_build_embeds_in_a_child_the_same_embeddings(coco_corpus, monkeypatch, tmp_path, caplog):
    """The build's process never calls the sentence model (it raises here), yet the build finishes with the
    embeddings one process makes, read back from the cache the child filled; no job folder is left behind."""
    from bcls.data.captions import CaptionTable
    from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
    from bcls.pipeline.embedding.embed import EncoderSpec

    corpus = coco_corpus(8)
    table = CaptionTable.from_lists(corpus.image_index.tolist(), list(range(len(corpus.texts))), list(corpus.texts))
    texts = list(table.texts)  # as the table normalises them
    reference = sbert_encoder()(texts)
    _child_always(monkeypatch)

    def refuse(*args, **kwargs):
        raise AssertionError("the build's own process loaded the sentence model")

    monkeypatch.setattr(EncoderSpec, "encoder", refuse)
    cache = tmp_path / "cache"
    with caplog.at_level("INFO", logger="bcls"):
        built = build_labels(LabelBuildConfig(captions="x", out=str(tmp_path / "labels"), k=3,
                                              encoder=EncoderSpec(cache=str(cache))), table=table)
    assert "in a child process" in caplog.text
    found, cached = EmbeddingCache(cache, model_cache_id("all-MiniLM-L6-v2")).lookup(text_keys(texts))
    assert found.all()
    np.testing.assert_allclose(cached, reference, atol=1e-5)
    np.testing.assert_allclose(read_caption_embeddings(built, len(texts)), reference, atol=2e-3)  # float16 there
    assert not [p for p in cache.iterdir() if p.name.startswith(".embed-job")]


def test_few_captions_stay_in_process():
    assert not embed_process.use_child(embed_process.CHILD_MIN_TEXTS - 1)
    assert embed_process.use_child(embed_process.CHILD_MIN_TEXTS)


def test_a_known_error_of_the_child_is_raised_again_as_one_line(tmp_path):
    """A model folder that does not exist: the child's ConfigError comes back with its class and message, the
    message the same as the one-process embedding gives."""
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ConfigError) as here:
        sbert_encoder(missing)
    with pytest.raises(ConfigError) as child:
        embed_process.embed_in_child(["a dog"], EncoderSpec(missing, cache=str(tmp_path / "cache")))
    assert str(child.value) == str(here.value) and "\n" not in str(child.value)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".embed-job")]


def test_a_crash_of_the_child_says_what_was_kept(monkeypatch, tmp_path):
    """A child that dies on an unexpected error (a job it cannot read) gives one BclsError naming the cache."""
    monkeypatch.setattr(embed_process, "_log_settings", lambda: {"level": "NOT-A-LEVEL"})  # the child's setup fails
    with pytest.raises(BclsError, match=r"embedding process failed \(exit 1\).*cached in"):
        embed_process.embed_in_child(["a dog"], EncoderSpec(cache=str(tmp_path / "cache")))


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_the_child_stops_when_the_build_is_killed(tmp_path, sigint):
    """A child whose parent exits without stopping it (as a build killed by SIGKILL does) interrupts itself
    instead of embedding on, also when it inherited SIGINT ignored (a build started as a background job)."""
    import signal
    import subprocess
    import sys
    import time

    marker = tmp_path / "stopped"
    # the watch starts inside the try: a child slower to start than its parent's 0.5 s is interrupted at once
    child = (f"import sys, time; from bcls.pipeline.embedding.child import stop_with_parent\n"
             f"try:\n    stop_with_parent(int(sys.argv[1]), poll=0.1)\n    time.sleep(60)\n"
             f"except KeyboardInterrupt:\n    open({str(marker)!r}, 'w').close()\n")
    parent = (f"import os, subprocess, sys, time\n"
              f"subprocess.Popen([sys.executable, '-c', {child!r}, str(os.getpid())])\ntime.sleep(0.5)")
    disposition = signal.SIG_IGN if sigint == "ignored" else signal.SIG_DFL  # whatever this test runs under
    subprocess.run([sys.executable, "-c", parent], check=True, timeout=30,  # the parent exits, its child stays
                   preexec_fn=lambda: signal.signal(signal.SIGINT, disposition))
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists()
