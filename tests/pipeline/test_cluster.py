"""The label build on real dask clusters on this machine: worker processes (so the corpus and the sources are
pickled to another process), workers and a scheduler killed with SIGKILL mid-build, and workers that cannot take
part (another bcls version, no access to ``--out``). Every build runs under a timeout, so a hang fails the test."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from bcls.data.infra.errors import ClusterError, ConfigError
from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
from tests.conftest import hash_encoder, label_files, write_caption_csv

distributed = pytest.importorskip("distributed")
HERE = Path(__file__).resolve().parent
TIMEOUT = 120


@pytest.fixture
def kit(monkeypatch):
    """``cluster_kit`` imported as the workers import it (a top-level module), its sources registered."""
    monkeypatch.syspath_prepend(str(HERE))
    import cluster_kit

    cluster_kit.register()
    yield cluster_kit
    from bcls.pipeline.sources import LABEL_SOURCES

    for name in ("gated", "exiting"):
        LABEL_SOURCES.unregister(name)


def _shards(folder):
    """The shards' and manifest's hashes, and the names of any other files (temporaries) left behind."""
    others = sorted(p.name for p in Path(folder).iterdir() if p.name.startswith(".") and p.name != ".resume")
    return label_files(folder), others


def _config(tmp_path, out, sources=("gated",), **kw):
    captions = tmp_path / "caps.csv"
    if not captions.exists():
        write_caption_csv(captions, n_images=12)
    return LabelBuildConfig(captions=str(captions), out=str(tmp_path / out), k=3, sources=sources,
                            images_per_shard=1, use_cache=False, **kw)


def _build_with_timeout(kit, config):
    """build_labels, failing the test (TimeoutError) if it has not ended within TIMEOUT seconds."""
    return kit.call_with_timeout(lambda: build_labels(config, encoder=hash_encoder()), TIMEOUT)


def test_worker_processes_give_the_same_shards(tmp_path, kit):
    """A LocalCluster with worker processes: the corpus and the sources cross a process boundary."""
    sources = ("sbert", "cider")
    local = _build_with_timeout(kit, _config(tmp_path, "local", sources))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        dist = _build_with_timeout(kit, _config(tmp_path, "dist", sources, scheduler=c.scheduler_address))
    assert _shards(local.folder) == _shards(dist.folder)
    assert len(_shards(local.folder)[0]) == 13


def test_a_worker_killed_mid_build_is_replaced_and_the_shards_equal_a_local_build(tmp_path, kit):
    local = _build_with_timeout(kit, _config(tmp_path, "local"))
    gate = tmp_path / "gate"
    out = tmp_path / "dist"
    with kit.Cluster(tmp_path / "cluster", env={"BCLS_TEST_GATE": str(gate), "BCLS_TEST_OUT": str(out)}) as cluster:
        cluster.wait_for_workers()

        def kill_then_open():
            kit.wait_for(lambda: kit.shard_count(out) >= 2, what="the first shards")
            cluster.kill_worker(0)  # it holds a shard task that waits at the gate
            gate.touch()

        killer = threading.Thread(target=kill_then_open, daemon=True)
        killer.start()
        dist = _build_with_timeout(kit, _config(tmp_path, "dist", scheduler=cluster.address))
        killer.join(5)
        assert cluster.workers[0].returncode == -9 and cluster.workers[1].poll() is None
    assert _shards(dist.folder) == _shards(local.folder)
    assert _shards(dist.folder)[1] == []  # no temporaries left behind


def test_a_lost_scheduler_is_one_clear_error_and_the_rerun_reuses_the_finished_shards(tmp_path, kit):
    """Through the CLI (a wrapper registers the test source first; the packaged sentence model embeds): exit code
    2 and one line naming what was kept; a local rerun of the same command reuses every finished shard and equals a
    clean local build."""
    write_caption_csv(tmp_path / "caps.csv", n_images=12)
    gate = tmp_path / "gate"

    def cli(out, *extra):
        args = [sys.executable, "-c", "import sys, cluster_kit; cluster_kit.register(); from bcls.cli import main; "
                "sys.argv[0] = 'bcls'; main()", "labels", "build", "--captions", str(tmp_path / "caps.csv"),
                "--out", str(tmp_path / out), "--k", "3", "--sources", "gated", "--images-per-shard", "1",
                "--no-cache", *extra]
        env = dict(os.environ, PYTHONPATH=str(HERE), OMP_NUM_THREADS="1")
        return subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)

    local = cli("local", "--scheduler", "threads")
    assert local.wait(TIMEOUT) == 0, local.stderr.read() if local.stderr else ""
    out = tmp_path / "dist"
    with kit.Cluster(tmp_path / "cluster", env={"BCLS_TEST_GATE": str(gate), "BCLS_TEST_OUT": str(out)}) as cluster:
        cluster.wait_for_workers()
        proc = cli("dist", "--scheduler", cluster.address)
        kit.wait_for(lambda: kit.shard_count(out) >= 2, timeout=TIMEOUT, what="the first shards")
        cluster.kill_scheduler()
        _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "lost the dask scheduler" in lines[0] and "finished and kept" in lines[0], err
    assert "Traceback" not in err, err
    kept = {p.name for p in out.glob("shard-*.parquet")}
    assert len(kept) >= 2
    rerun = cli("dist", "--scheduler", "threads")
    _, err = rerun.communicate(timeout=TIMEOUT)
    assert rerun.returncode == 0, err
    assert f"resuming: {len(kept)} of 12 shards already complete" in err
    assert _shards(out) == _shards(tmp_path / "local")


def test_a_task_that_keeps_ending_its_workers_is_a_cluster_error_that_keeps_the_other_shards(tmp_path, kit):
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                     env={"PYTHONPATH": str(HERE)}) as c:
        # dask blames every task that was assigned to a dying worker, so the shard named need not be shard 4
        with pytest.raises(ClusterError, match=r"2 dask workers died while running the task of shard \d+ \(out of "
                                               r"memory\?.*finished shards are reused") as info:
            _build_with_timeout(kit, _config(tmp_path, "dist", ("exiting",), scheduler=c.scheduler_address))
    assert "shards finished and kept" in str(info.value)
    assert (tmp_path / "dist" / "_build_config.json").exists()  # the folder of a failed first build is kept


def test_a_worker_with_another_bcls_version_is_refused(tmp_path, kit):
    preload = tmp_path / "other_version.py"
    preload.write_text("import bcls.data.infra.version as v\nv.__version__ = '0.0.1-other'\n")
    with kit.Cluster(tmp_path / "cluster", n=1, worker_args=("--preload", str(preload))) as cluster:
        cluster.wait_for_workers()
        with pytest.raises(ConfigError, match=r"runs bcls 0\.0\.1-other, this machine bcls .*install the same bcls "
                                              r"version on every worker"):
            _build_with_timeout(kit, _config(tmp_path, "dist", ("sbert",), scheduler=cluster.address))
    assert not (tmp_path / "dist").exists()  # refused before anything was written


def _can_hide(folder: Path) -> bool:
    """Whether this machine lets a process mount a tmpfs over ``folder`` in its own mount namespace."""
    try:
        return subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs none '{folder}'"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_a_worker_that_cannot_see_the_output_folder_is_refused(tmp_path, kit):
    """The worker runs in its own mount namespace with an empty tmpfs over the folder that holds --out: like a
    machine that does not mount the shared file system (it sees another, empty folder at that path)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    if not _can_hide(shared):
        pytest.skip("this machine does not allow a mount namespace (unshare -m needs root)")
    prefix = ("unshare", "-m", "sh", "-c", 'mount -t tmpfs none "$0" && exec "$@"', str(shared))
    with kit.Cluster(tmp_path / "cluster", n=1, worker_prefix=prefix) as cluster:
        cluster.wait_for_workers()
        with pytest.raises(ConfigError, match=r"cannot read .*dist; the workers write the shards, so --out must be "
                                              r"the same path on a file system they all share"):
            _build_with_timeout(kit, _config(tmp_path, "shared/dist", ("sbert",), scheduler=cluster.address))
    assert not (shared / "dist").exists()  # refused before anything was written


def test_orphan_temporaries_of_finished_shards_are_removed_and_others_kept(tmp_path):
    """What a worker killed between writing and renaming leaves (any pid: it may be another machine's)."""
    from bcls.pipeline.building.scheduling import ShardPlan, remove_orphan_temporaries

    plans = [ShardPlan(i, np.zeros(0, int), np.zeros(0, int), np.zeros(0, int), np.zeros(0, int), {})
             for i in range(3)]
    names = ["shard-00000.parquet", ".shard-00000.parquet.tmp-123-ab12cd34", ".shard-00001.parquet.tmp-7-ffffffff",
             ".shard-00009.parquet.tmp-5-00000000", "_manifest.json"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    remove_orphan_temporaries(tmp_path, plans)
    # shard 0 exists: its temporary goes; shard 1 is unfinished and shard 9 is not this build's: theirs stay
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(names) - {names[1]})
