"""`bcls labels build` killed with SIGKILL at random points, then rerun: the result equals an uninterrupted build.

The real CLI runs in subprocesses with the real default model name; the embedding cache is filled beforehand
(with the deterministic test encoder, under the packaged model's cache id), so no run loads the model.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bcls.data.captions import read_captions
from bcls.data.infra.errors import ShardError
from bcls.data.shards import open_labels
from bcls.pipeline.embedding.embed import DEFAULT_MODEL, EmbeddingCache, cached_encoder, model_cache_id
from tests.conftest import hash_encoder, label_files, write_caption_csv

WORDS = "dog cat man woman beach street red blue small large runs sits car ball tree park".split()


def _captions(path, n_images):
    return write_caption_csv(path, n_images, first_image=7000, first_caption=90_000, words=WORDS, n_words=6)



def _command(captions, out, cache):
    return [sys.executable, "-m", "bcls.cli", "-q", "labels", "build", "--captions", str(captions), "--out",
            str(out), "--cache", str(cache), "--k", "4", "--sources", "sbert,cider", "--images-per-shard", "1",
            "--workers", "2"]


def _env():
    return os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _kill_and_resume(tmp_path, n_images, kills, seed):
    captions = _captions(tmp_path / "caps.csv", n_images)
    cache = tmp_path / "cache"
    table = read_captions(captions)
    cached_encoder(EmbeddingCache(cache, model_cache_id(DEFAULT_MODEL)), lambda: hash_encoder())(table.texts)

    t0 = time.perf_counter()
    subprocess.run(_command(captions, tmp_path / "clean", cache), check=True, env=_env(), timeout=120)
    duration = time.perf_counter() - t0
    clean = label_files(tmp_path / "clean")
    assert len(clean) == n_images + 1

    out = tmp_path / "killed"
    rng = np.random.default_rng(seed)
    killed_midway = 0
    for delay in np.sort(rng.uniform(0.2 * duration, 1.1 * duration, kills)):
        proc = subprocess.Popen(_command(captions, out, cache), env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_midway += 1
        if (out / "_manifest.json").is_file():
            assert label_files(out) == clean  # a manifest only ever appears over a complete, correct build
            continue
        if out.is_dir():
            with pytest.raises(ShardError):
                open_labels(out)  # no reader accepts the half-written build
    assert killed_midway >= 1
    subprocess.run(_command(captions, out, cache), check=True, env=_env(), timeout=120)
    assert label_files(out) == clean
    open_labels(out)
    assert not any(".tmp-" in p.name for p in out.iterdir())


def test_sigkill_at_random_points_then_rerun_equals_a_clean_build(tmp_path):
    _kill_and_resume(tmp_path, n_images=40, kills=3, seed=1)


@pytest.mark.slow
def test_sigkill_many_times_on_a_bigger_build(tmp_path):
    _kill_and_resume(tmp_path, n_images=300, kills=8, seed=2)


def test_interrupted_embedding_keeps_what_was_embedded(tmp_path):
    """Ctrl-C in the third block of new captions: the two finished blocks are cached, a rerun embeds the rest."""
    texts = [f"caption number {i} " + "word " * (i % 7) for i in range(50)]
    base = hash_encoder()
    seen: list[str] = []

    def failing(batch):
        if len(seen) >= 20:
            raise KeyboardInterrupt
        seen.extend(batch)
        return base(batch)

    cache = EmbeddingCache(tmp_path / "cache", "hash")
    with pytest.raises(KeyboardInterrupt):
        cached_encoder(cache, lambda: failing, block=10)(texts)
    assert len(seen) == 20
    again: list[str] = []

    def counting(batch):
        again.extend(batch)
        return base(batch)

    out = cached_encoder(EmbeddingCache(tmp_path / "cache", "hash"), lambda: counting, block=10)(texts)
    assert len(again) == 30 and not set(again) & set(seen)  # only what was not embedded before
    np.testing.assert_allclose(out, base(texts), atol=1e-6)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux's /proc/self/maps")
def test_cache_reads_leave_no_part_mapped(tmp_path):
    """A warm read gives the cached rows (in the asked order, repeats included) without the model, and maps the
    part files only while reading them: pages of a mapped file count as the process's memory (about 0.9 GiB
    through a full-COCO build's embedding phase)."""
    texts = [f"caption {i}" for i in range(40)]
    base = hash_encoder()
    cached_encoder(EmbeddingCache(tmp_path / "cache", "hash"), lambda: base, block=10)(texts)
    cache = EmbeddingCache(tmp_path / "cache", "hash")
    asked = texts[::-1] + texts[:3]
    out = cached_encoder(cache, lambda: pytest.fail("a warm read loaded the model"))(asked)
    np.testing.assert_allclose(out, base(asked), atol=1e-6)
    assert len(list(cache.folder.glob("*.emb.npy"))) == 4
    assert str(cache.folder) not in Path("/proc/self/maps").read_text()
