"""One writer per output folder, with real processes: a second label build or training into a folder another
process writes is refused at once, naming the holder; a holder that died is taken over; a refused command writes
nothing."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bcls.data.demo import DemoConfig, generate_demo
from bcls.data.infra.locks import LOCK_NAME, FolderLockedError, holder_of, writer_lock

HOLD = ("import sys, time\nfrom bcls.data.infra.locks import writer_lock\n"
        "with writer_lock(sys.argv[1], sys.argv[2]):\n    print('held', flush=True)\n    time.sleep(120)\n")


def _holder(folder: Path, what: str) -> subprocess.Popen:
    """A process that holds the writer lock of ``folder`` until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), what], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _cli(*args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bcls.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    return done, time.perf_counter() - start


def _listing(folder: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime for p in folder.iterdir() if p.name != LOCK_NAME}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("locks")
    generate_demo(root / "data", DemoConfig(n_train=60, n_dev=10, n_test=10, seed=3))
    return root


@pytest.mark.parametrize("command", ["labels build", "train"])
def test_a_second_writer_is_refused_at_once_naming_the_holder(demo, tmp_path, command):
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept.txt").write_text("the user's file")
    holder = _holder(out, "bcls " + command)
    try:
        before = _listing(out)
        args = (["labels", "build", "--captions", str(demo / "data"), "--out", str(out)] if command == "labels build"
                else ["train", "--data", str(demo / "data"), "--out", str(out), "--lambda", "0"])
        done, seconds = _cli(*args)
        assert done.returncode == 2, done.stderr
        line = [ln for ln in done.stderr.splitlines() if ln.startswith("error: ")]
        assert len(line) == 1 and f"bcls {command} (host {socket.gethostname()}, pid {holder.pid}, started " in line[0]
        assert "wait for it to end or choose another --out" in line[0]
        assert seconds < 2.0, f"refused after {seconds:.2f} s"
        assert _listing(out) == before  # nothing written, nothing of the user's lost
        assert holder_of(out)["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_running_training_holds_its_folder_against_a_second_one(demo, tmp_path):
    """Both writers real `bcls train` commands: the second, started while the first trains, is refused."""
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "bcls.cli", "-q", "train", "--data", str(demo / "data"), "--out",
                              str(out), "--lambda", "0", "--epochs", "200", "--embed-dim", "16"],
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 60
        while holder_of(out).get("pid") != first.pid and time.monotonic() < deadline:
            time.sleep(0.05)
        assert holder_of(out)["command"] == "bcls train"
        done, seconds = _cli("train", "--data", str(demo / "data"), "--out", str(out), "--lambda", "0", "--resume")
        assert done.returncode == 2 and f"pid {first.pid}" in done.stderr and seconds < 2.0, (seconds, done.stderr)
        assert first.poll() is None  # the first one trains on
    finally:
        first.kill()
        first.wait()


def test_a_holder_that_died_is_taken_over(tmp_path, caplog):
    out = tmp_path / "labels"
    holder = _holder(out, "bcls labels build")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert holder_of(out)["pid"] == holder.pid  # its record stays behind; its lock does not
    with caplog.at_level("INFO", logger="bcls"), writer_lock(out, "bcls labels build"):
        assert holder_of(out)["pid"] == os.getpid()
        assert f"pid {holder.pid}" in caplog.text and "no longer running" in caplog.text
    assert not (out / LOCK_NAME).exists()  # released: the record goes with the lock


def test_the_lock_is_reentrant_in_one_process_and_exclusive_across_processes(tmp_path):
    out = tmp_path / "x"
    with writer_lock(out, "outer"):
        with writer_lock(out, "inner"):  # the CLI holds it, the library call takes it again
            assert json.loads((out / LOCK_NAME).read_text())["command"] == "outer"
        assert (out / LOCK_NAME).exists()
        check = subprocess.run([sys.executable, "-c", "import sys\nfrom bcls.data.infra.locks import writer_lock\n"
                                "with writer_lock(sys.argv[1], 'other'):\n    pass", str(out)],
                               capture_output=True, text=True, timeout=60)
        assert check.returncode != 0 and "FolderLockedError" in check.stderr and "outer" in check.stderr
    with pytest.raises(FolderLockedError):
        holder = _holder(out, "other")
        try:
            with writer_lock(out, "me"):
                pass
        finally:
            holder.kill()
            holder.wait()
