"""Crashes and untrusted files around checkpoints.

* SIGKILL at random points of a loop of checkpoint writes always leaves a loadable checkpoint holding one of the
  written versions;
* Ctrl-C during `bcls train` exits with code 130 within seconds, with one line saying what was kept, and the run
  resumes from it;
* checkpoints are never unpickled into code, and one from another model or bcls version is refused with a message
  that says which.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import bcls
from bcls.cli import app
from bcls.data.infra.atomic import remove_stale_temporaries
from bcls.data.demo import DemoConfig, generate_demo
from bcls.data.infra.errors import CheckpointError
from bcls.trainer.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from bcls.trainer.models import Vocabulary, make_model

WRITER = """
import sys, torch
from bcls.trainer.checkpoint import save_checkpoint
target, version = sys.argv[1], int(sys.argv[2])
weights = torch.empty(1_500_000)
while True:
    weights.fill_(float(version))
    save_checkpoint(target, {"version": version, "weights": weights})
    print(version, flush=True)
    version += 1
"""


def _env():
    return os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _kill_writers(tmp_path, rounds, seed):
    target = tmp_path / "last.pt"
    rng = np.random.default_rng(seed)
    mid_write = 0
    for r in range(rounds):
        start = 1000 * (r + 1)
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(start)], env=_env(),
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == str(start)  # one checkpoint is complete
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        printed = [start] + [int(line) for line in proc.stdout.read().split()]
        proc.stdout.close()
        mid_write += any(".tmp-" in p.name for p in tmp_path.iterdir())
        ckpt = load_checkpoint(target)  # never half a file
        # the rename of the next version may have happened before its print
        assert ckpt["version"] in printed or ckpt["version"] == printed[-1] + 1, (ckpt["version"], printed[-3:])
        assert torch.equal(ckpt["weights"], torch.full((1_500_000,), float(ckpt["version"])))
        remove_stale_temporaries(tmp_path)
        assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    return mid_write


def test_sigkill_during_checkpoint_writes_leaves_a_loadable_checkpoint(tmp_path):
    _kill_writers(tmp_path, rounds=3, seed=0)


@pytest.mark.slow
def test_sigkill_many_times_during_checkpoint_writes(tmp_path):
    assert _kill_writers(tmp_path, rounds=12, seed=1) >= 1  # some kills did land inside a write


# ---------------------------------------------------------------- Ctrl-C

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctrlc")
    generate_demo(root / "data", DemoConfig(n_train=120, n_dev=10, n_test=10, seed=2))
    (root / "small.json").write_text(json.dumps({"batch_size": 16, "embed_dim": 16, "word_dim": 8}))
    return root


@pytest.mark.parametrize("delay", [0.0, 1.5])
def test_ctrl_c_during_training_exits_cleanly_saying_what_was_kept(demo, tmp_path, delay):
    out = tmp_path / "run"
    args = ["train", "--data", str(demo / "data"), "--out", str(out), "--lambda", "0", "--config",
            str(demo / "small.json")]
    # SIG_DFL in the child: a shell starts background jobs (a CI script run with `&`, say) with SIGINT ignored, and
    # Python keeps an inherited SIG_IGN, so the Ctrl-C below would be lost and training would run on.
    proc = subprocess.Popen([sys.executable, "-m", "bcls.cli", "-q", *args, "--epochs", "10000"], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not (out / "init.pt").exists():  # training has started
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(delay)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:  # never leave a 10,000-epoch run behind
            proc.kill()
            proc.communicate()
    assert time.monotonic() - sent < 5, "Ctrl-C took too long"
    assert proc.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted: "), stderr
    assert not any(".tmp-" in p.name for p in out.iterdir())
    if (out / "last.pt").exists():
        epoch = load_checkpoint(out / "last.pt")["epoch"]
        assert f"last.pt holds epoch {epoch} of 10000" in lines[0] and "--resume" in lines[0], lines[0]
        result = CliRunner().invoke(app, [*args, "--resume", "--epochs", str(epoch + 1)])
        assert result.exit_code == 0, result.output
        assert load_checkpoint(out / "last.pt")["epoch"] == epoch + 1
    else:  # init.pt is on disk, so the run has recorded it (bcls.data.infra.interrupts.interrupts_deferred)
        assert "no epoch finished, so the run holds only" in lines[0] and "init.pt" in lines[0], lines[0]
        load_checkpoint(out / "init.pt")


# ---------------------------------------------------------------- untrusted checkpoints

def _model_checkpoint(path, name="vse-gru", **settings):
    settings = {"image_dim": 8, "vocab_size": 5, "embed_dim": 4, "word_dim": 3} | settings
    model = make_model(name, **settings)
    return save_checkpoint(path, {"model_name": name, "model_settings": settings, "state_dict": model.state_dict(),
                                  "vocab": Vocabulary(["<pad>", "<unk>", "a", "b", "c"]).words, "epoch": 1})


class _Evil:
    marker = None

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_code_is_never_run(tmp_path):
    marker = tmp_path / "pwned"
    _Evil.marker = marker
    torch.save({"format": "bcls-checkpoint", "format_version": 1, "x": _Evil()}, tmp_path / "evil.pt")
    assert not marker.exists()
    with pytest.raises(CheckpointError, match=r"evil.pt: not a loadable bcls checkpoint: it holds pickled objects other than "
                                              r"tensors"):
        load_checkpoint(tmp_path / "evil.pt")
    result = CliRunner().invoke(app, ["eval", "--checkpoint", str(tmp_path / "evil.pt"), "--data", str(tmp_path)])
    assert result.exit_code == 2 and "evil.pt: not a loadable bcls checkpoint: it holds pickled" in result.output
    assert "Traceback" not in result.output
    # the label and feature readers do not unpickle either
    import pickle

    from bcls.data.infra.errors import BclsError
    from bcls.data.features import load_features
    from bcls.data.shards import open_labels

    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "_manifest.json").write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(BclsError):
        open_labels(tmp_path / "labels")
    np.save(tmp_path / "feats.npy", np.array([_Evil(), _Evil()], dtype=object), allow_pickle=True)
    with pytest.raises(BclsError, match="feats.npy: not a readable .npy file"):
        load_features(tmp_path / "feats.npy")
    assert not marker.exists()


def test_checkpoint_of_another_model_or_version_is_refused(tmp_path):
    path = _model_checkpoint(tmp_path / "ok.pt")
    model_from_checkpoint(load_checkpoint(path))
    ckpt = load_checkpoint(path)

    wrong = ckpt | {"model_name": "vse-gpo"}
    with pytest.raises(CheckpointError, match=r"m.pt: checkpoint weights \(written by bcls .*\) do not fit model "
                                              r"'vse-gpo'"):
        model_from_checkpoint(wrong, path="m.pt")
    with pytest.raises(CheckpointError, match=r"m.pt: checkpoint is of model 'clip-vit', which this bcls "
                                              rf"{bcls.__version__} does not have \(written by bcls 9.0.0; models: "
                                              "vse-gru"):
        model_from_checkpoint(ckpt | {"model_name": "clip-vit", "bcls_version": "9.0.0"}, path="m.pt")
    with pytest.raises(CheckpointError, match=r"the settings of model 'vse-gru' in this checkpoint \(written by "
                                              r"bcls .*\) do not fit this bcls"):
        model_from_checkpoint(ckpt | {"model_settings": ckpt["model_settings"] | {"depth": 3}}, path="m.pt")
    with pytest.raises(CheckpointError, match=r"checkpoint holds no model \(model_name, state_dict missing\)"):
        model_from_checkpoint({k: v for k, v in ckpt.items() if k not in ("model_name", "state_dict")})

    torch.save(ckpt | {"format_version": 2, "bcls_version": "2.0.0"}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match=r"future.pt: checkpoint format_version 2 was written by bcls 2.0.0; "
                                              rf"this bcls {bcls.__version__} reads version 1: load it with bcls "
                                              "2.0.0 or retrain"):
        load_checkpoint(tmp_path / "future.pt")
    torch.save({"state_dict": ckpt["state_dict"]}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="plain.pt: not a bcls checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty.pt: not a checkpoint \(not a file written by torch.save\)"):
        load_checkpoint(tmp_path / "empty.pt")


def test_eval_names_the_checkpoint_of_another_model(tmp_path):
    data = tmp_path / "data"
    generate_demo(data, DemoConfig(n_train=10, n_dev=5, n_test=5, seed=1))
    path = _model_checkpoint(tmp_path / "gru.pt")
    torch.save(load_checkpoint(path) | {"model_name": "vse-global"}, tmp_path / "other.pt")
    result = CliRunner().invoke(app, ["eval", "--checkpoint", str(tmp_path / "other.pt"), "--data", str(data)])
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: ") and "other.pt: checkpoint weights" in line and "'vse-global'" in line, line
    assert re.search(r"\d+ missing \(first: \S+\), \d+ unexpected \(first: \S+\); it was trained with another "
                     "model or bcls version", line), line
    # a checkpoint of the right model trained on other features
    result = CliRunner().invoke(app, ["eval", "--checkpoint", str(path), "--data", str(data)])
    assert result.exit_code == 2 and "test_ims.npy: features have dimension" in result.output, result.output
