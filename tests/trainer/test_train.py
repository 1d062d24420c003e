"""Training loop: reproducibility, exact resume, schedules and the run-folder rules."""

import json
from pathlib import Path

import pytest
import torch

from bcls.data.demo import DemoConfig, generate_demo
from bcls.data.infra.errors import CheckpointError, ConfigError
from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
from bcls.trainer.checkpoint import load_checkpoint
from bcls.trainer.batches import Batch
from bcls.trainer.config import TrainConfig
from bcls.trainer.train import Trainer, _lr_factor, train
from tests.conftest import drop_a_ctrl_c

SMALL = {"batch_size": 16, "embed_dim": 16, "word_dim": 8}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, encoder_module):
    root = tmp_path_factory.mktemp("train")
    generate_demo(root / "data", DemoConfig(n_train=40, n_dev=10, n_test=10, seed=5))
    build_labels(LabelBuildConfig(captions=str(root / "data"), split="train", out=str(root / "labels"), k=5),
                 encoder=encoder_module)
    return root


@pytest.fixture(scope="module")
def encoder_module():
    import hashlib
    import re

    import numpy as np

    def encode(texts):
        out = np.zeros((len(texts), 32), np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                seed = int.from_bytes(hashlib.sha256(w.encode()).digest()[:8], "little")
                out[i] += np.random.default_rng(seed).standard_normal(32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return encode


def _config(tiny, out, **kw):
    return TrainConfig.from_dict({"data": str(tiny / "data"), "labels": str(tiny / "labels"), "out": str(tiny / out)}
                                 | SMALL | kw)


def _weights(path):
    return load_checkpoint(path)["state_dict"]


@pytest.mark.parametrize("extra", [{}, {"sampler": "neighbours", "label_mode": "dense", "label_norm": "percentile",
                                        "binary_loss": "triplet-mean", "schedule": "cosine", "optimizer": "adamw"},
                                   {"sampler": "stream", "stream_buffer": 16}])
def test_resume_equals_an_uninterrupted_run(tiny, extra, monkeypatch):
    name = extra.get("sampler", "p")
    train(_config(tiny, f"full{name}", epochs=3, **extra))
    real_step = Trainer.step

    def crash_in_epoch_3(self, batch, epoch, step):
        if epoch == 3 and step == 1:
            raise KeyboardInterrupt  # a kill in the middle of epoch 3, after one logged step
        return real_step(self, batch, epoch, step)

    monkeypatch.setattr(Trainer, "step", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train(_config(tiny, f"part{name}", epochs=3, **extra))
    monkeypatch.setattr(Trainer, "step", real_step)
    assert load_checkpoint(tiny / f"part{name}" / "last.pt")["epoch"] == 2
    resumed = train(_config(tiny, f"part{name}", epochs=3, **extra), resume=True)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    full, part = _weights(tiny / f"full{name}" / "last.pt"), _weights(tiny / f"part{name}" / "last.pt")
    for key in full:
        torch.testing.assert_close(full[key], part[key], rtol=0, atol=0)
    log_full = (tiny / f"full{name}" / "train_log.csv").read_text()
    assert log_full == (tiny / f"part{name}" / "train_log.csv").read_text()


def test_a_ctrl_c_that_python_drops_still_stops_training_at_the_next_step(tiny, monkeypatch):
    import sys

    real_step, steps = Trainer.step, []

    def drop_a_ctrl_c_in_epoch_2(self, batch, epoch, step):
        steps.append((epoch, step))
        if (epoch, step) == (2, 0):
            drop_a_ctrl_c()
        return real_step(self, batch, epoch, step)

    unraisable = []  # what Python would print as "Exception ignored in: …"
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    monkeypatch.setattr(Trainer, "step", drop_a_ctrl_c_in_epoch_2)
    with pytest.raises(KeyboardInterrupt, match="last.pt holds epoch 1 of 50"):
        train(_config(tiny, "dropped", epochs=50))
    assert steps[-2:] == [(1, steps[-3][1] + 1), (2, 0)]  # stopped before epoch 2's second step
    assert unraisable == []  # and without a traceback: the interrupt was not lost


def test_a_ctrl_c_just_after_last_pt_is_written_names_that_epoch(tiny, monkeypatch):
    """The message of an interrupted run names the epoch on disk, also when Ctrl-C lands between last.pt's rename
    and the run's record of it."""
    import signal

    from bcls.trainer import run_folder

    real = run_folder.save_checkpoint

    def save_then_ctrl_c(path, payload):
        written = real(path, payload)
        if path.name == "last.pt" and payload["epoch"] == 2:
            signal.raise_signal(signal.SIGINT)
        return written

    monkeypatch.setattr(run_folder, "save_checkpoint", save_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt, match="last.pt holds epoch 2 of 5"):
        train(_config(tiny, "renamed", epochs=5))
    assert load_checkpoint(tiny / "renamed" / "last.pt")["epoch"] == 2


def test_ctrl_c_stops_training_between_steps_never_inside_a_log_write(tiny, monkeypatch):
    """A Ctrl-C inside the step's log write (TensorBoard's queue, the CSV) lets that write finish and stops the run
    before the next step: an exception inside a writer can leave its queue half-updated and closing it hang."""
    import signal

    from bcls.trainer.run_folder import TrainLog

    real, finished, trained = TrainLog.step, [], []
    real_step = Trainer.step

    def ctrl_c_inside(self, epoch, step, global_step, record):
        if (epoch, step) == (1, 2):
            signal.raise_signal(signal.SIGINT)
        real(self, epoch, step, global_step, record)
        finished.append((epoch, step))

    def counting(self, batch, epoch, step):
        trained.append((epoch, step))
        return real_step(self, batch, epoch, step)

    monkeypatch.setattr(TrainLog, "step", ctrl_c_inside)
    monkeypatch.setattr(Trainer, "step", counting)
    with pytest.raises(KeyboardInterrupt):
        train(_config(tiny, "between", epochs=3))
    assert finished == trained == [(1, 0), (1, 1), (1, 2)]


def test_same_seed_same_weights_and_labelled_pairs_logged(tiny):
    train(_config(tiny, "a", epochs=1, sampler="neighbours"))
    train(_config(tiny, "b", epochs=1, sampler="neighbours"))
    for key, value in _weights(tiny / "a" / "last.pt").items():
        torch.testing.assert_close(value, _weights(tiny / "b" / "last.pt")[key], rtol=0, atol=0)
    rows = (tiny / "a" / "train_log.csv").read_text().splitlines()[1:]
    assert sum(int(r.split(",")[5]) for r in rows) > 0  # labelled off-diagonal pairs were seen


def test_run_folder_rules(tiny):
    train(_config(tiny, "c", epochs=1))
    with pytest.raises(ConfigError, match="--resume"):
        train(_config(tiny, "c", epochs=1))
    with pytest.raises(CheckpointError, match="different settings \\(lr: 0.001 then, 0.5 now\\)"):
        train(_config(tiny, "c", epochs=2, lr=0.5), resume=True)
    train(_config(tiny, "c", epochs=1, lr=0.5), overwrite=True)
    assert json.loads((tiny / "c" / "train_config.json").read_text())["lr"] == 0.5


def test_lambda_zero_trains_without_labels(tiny):
    summary = train(TrainConfig(data=str(tiny / "data"), out=str(tiny / "t"), lam=0, epochs=1, **SMALL))
    assert summary["history"][0]["continuous"] == 0.0


@pytest.mark.parametrize("bad", [{"lr": 0}, {"batch_size": 1}, {"sampler": "x"}, {"schedule": "poly"},
                                 {"label_mode": "dense", "source": "file"}, {"neighbour_fraction": 1.0},
                                 {"sampler": "groups", "group_size": 1}, {"kendall": {"window": 0}},
                                 {"kendall": {"gap": 0.1, "lam": 1}}, {"warmup_loss": "triplet-nope"}])
def test_bad_settings_are_refused(tiny, bad):
    with pytest.raises(ConfigError):
        _config(tiny, "never", **bad)


def test_lr_schedules():
    base = dict(data="d", out="o", lam=0, epochs=4)
    cos = TrainConfig(**base, schedule="cosine")
    assert _lr_factor(cos, 1, 0, 10) == 1.0 and _lr_factor(cos, 3, 0, 10) == pytest.approx(0.5)
    step = TrainConfig(**base, schedule="step", lr_step_epoch=3)
    assert [_lr_factor(step, e, 0, 10) for e in (1, 2, 3, 4)] == [1.0, 1.0, pytest.approx(0.1), pytest.approx(0.1)]
    warm = TrainConfig(**base, lr_warmup_steps=4)
    assert [_lr_factor(warm, 1, s, 10) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_transformer_text_tower_trains_with_its_own_learning_rate(tiny):
    """vse-transformer: the packaged MiniLM fine-tuned end to end, tokenized by its own tokenizer."""
    from bcls.trainer.checkpoint import model_from_checkpoint
    from bcls.trainer.evaluation.evaluate import evaluate
    from bcls.trainer.models import pad_batch, tokenize_texts

    config = _config(tiny, "tf", epochs=1, model="vse-transformer", lam=0.5, text_lr_mult=0.5, lr=1e-3)
    run = Trainer(config)
    assert [g["base_lr"] for g in run.optimizer.param_groups] == [1e-3, 5e-4]
    before = {k: v.clone() for k, v in run.model.text.transformer.state_dict().items()}
    record = run.step(Batch(torch.arange(16)), 2, 0)
    assert record["lr"] == 1e-3 and run.optimizer.param_groups[1]["lr"] == 5e-4
    changed = [k for k, v in run.model.text.transformer.state_dict().items() if not torch.equal(v, before[k])]
    assert changed  # the pretrained tower is fine-tuned
    ids, lengths = pad_batch(tokenize_texts(run.model, run.vocab, ["A dog on a beach."]))
    assert ids[0, 0] == run.model.text.tokenizer.cls_token_id and lengths.tolist() == [ids.shape[1]]
    train(config)
    model, _ = model_from_checkpoint(load_checkpoint(tiny / "tf" / "last.pt"))
    assert model.name == "vse-transformer"
    assert evaluate(tiny / "tf" / "last.pt", tiny / "data", "test")["metrics"]["rsum"] >= 0


def test_tensorboard_events_when_installed(tiny):
    pytest.importorskip("tensorboard")
    train(_config(tiny, "tb", epochs=1, lam=0))
    assert list((tiny / "tb" / "tensorboard").glob("events.out.tfevents.*"))


def test_two_processes_follow_one_process_with_the_same_global_batch(tiny):
    """torchrun, 2 CPU processes (gloo), each half of every batch, against one process with the whole batch."""
    import subprocess
    import sys

    settings = tiny / "ddp.json"
    settings.write_text(json.dumps(SMALL | {"epochs": 2, "lam": 0.5}))
    common = ["--data", str(tiny / "data"), "--labels", str(tiny / "labels"), "--config", str(settings)]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "bcls.cli", "train", "--out", str(tiny / "one"), *common],
                            capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                            "-m", "bcls.cli", "train", "--out", str(tiny / "two"), *common],
                           capture_output=True, text=True, env=env, timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    assert "rank 0 of 2 (gloo)" in multi.stderr and "rank 1 of 2 (gloo)" in multi.stderr
    one, two = _weights(tiny / "one" / "last.pt"), _weights(tiny / "two" / "last.pt")
    for key in one:
        torch.testing.assert_close(one[key], two[key], rtol=1e-4, atol=1e-5)
    log_one, log_two = ((tiny / run / "train_log.csv").read_text().splitlines() for run in ("one", "two"))
    assert len(log_one) == len(log_two)  # rank 0 alone logs, one row per global step
    # rank 0 alone evaluates the dev split (the other rank takes its figures): one process's evaluation lines
    evaluations = single.stderr.count("eval: encoding images and captions")
    assert evaluations >= 2 and multi.stderr.count("eval: encoding images and captions") == evaluations
    best = [json.loads((tiny / run / "summary.json").read_text())["best_epoch"] for run in ("one", "two")]
    assert best[0] == best[1]


def test_a_rank_killed_mid_epoch_restarts_from_last_pt_and_ends_as_an_uninterrupted_run(tiny):
    """torchrun --max-restarts 1, 2 CPU ranks; rank 1 kills itself (SIGKILL) at epoch 2, step 1 of the first
    attempt (tests/trainer/kill_rank.py). The second attempt resumes from epoch 1's last.pt and ends with the
    weights of an uninterrupted 2-rank run."""
    import os
    import subprocess
    import sys

    settings = tiny / "restart.json"
    settings.write_text(json.dumps(SMALL | {"epochs": 3, "lam": 0.5}))
    common = ["--data", str(tiny / "data"), "--labels", str(tiny / "labels"), "--config", str(settings)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KILL_RANK": "1"}
    runs = {}
    for name, restarts, entry in (("whole", "0", ["-m", "bcls.cli"]),
                                  ("killed", "1", [str(Path(__file__).parent / "kill_rank.py")])):
        runs[name] = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                     "--nproc_per_node", "2", "--max-restarts", restarts, "--monitor-interval", "0.2",
                                     *entry, "train", "--out", str(tiny / name), *common],
                                    capture_output=True, text=True, env=env, timeout=300)
        assert runs[name].returncode == 0, runs[name].stderr[-3000:]
    err = runs["killed"].stderr
    assert "failed (exitcode: -9) local_rank: 1" in err, err[-3000:]  # the first attempt lost rank 1
    assert "restarted by torchrun" in err and "resuming" in err.lower(), err[-3000:]
    whole, killed = _weights(tiny / "whole" / "last.pt"), _weights(tiny / "killed" / "last.pt")
    for key in whole:
        torch.testing.assert_close(whole[key], killed[key], rtol=0, atol=0)
    rows = [(tiny / run / "train_log.csv").read_text().splitlines() for run in ("whole", "killed")]
    assert len(rows[0]) == len(rows[1])


def test_stream_sampler_sees_labelled_pairs_without_a_label_index(tiny):
    run = Trainer(_config(tiny, "st", epochs=1, sampler="stream", stream_buffer=32))
    assert run.labels.pairs is None  # nothing loaded into memory
    batch = next(iter(run.batches(1)))
    rows, streamed = batch
    assert len(rows) == 16 and len(set(rows.tolist())) == 16 and streamed.known
    record = run.step(batch, 2, 0)
    assert record["labelled_pairs"] > 0 and record["continuous"] > 0
    with pytest.raises(ConfigError, match="stream sampler"):
        _config(tiny, "st2", sampler="stream", label_norm="minmax")


def test_every_loss_setting_reaches_the_loss(tiny):
    """Each TrainConfig field that configures a loss arrives in the criterion the run trains with."""
    from bcls.trainer.losses import KendallParams, TripletSNSoftmaxLoss

    kendall = KendallParams(window=3, gap=0.15, surrogate="hinge", temperature=0.4, margin=0.05, n_hard=2)
    config = _config(tiny, "cfg", lam=0.7, kendall=kendall, binary_loss="triplet-sn-softmax", margin=0.3,
                     triplet_tau=0.2, warmup_loss="triplet-hardest")
    run = Trainer(config)
    assert run.losses.main.continuous.params is kendall
    assert run.losses.main.lam == 0.7
    binary = run.losses.main.binary
    assert isinstance(binary, TripletSNSoftmaxLoss) and (binary.margin, binary.tau) == (0.3, 0.2)
    warmup = run.losses.warmup
    assert warmup.binary.margin == 0.3 and warmup.lam == 0.0 and warmup.binary.mining == "hardest"


def test_one_set_of_kendall_defaults():
    from bcls.trainer.losses import DEFAULT_KENDALL, KendallLoss, KendallParams

    config = TrainConfig(data="d", out="o", lam=0.0)
    assert config.kendall == KendallParams() == DEFAULT_KENDALL == KendallLoss().params


def test_lambda_ramp():
    from bcls.trainer.train import _ramp

    config = TrainConfig(data="d", out="o", lam=0.0, warmup_epochs=1, lam_ramp_epochs=2)
    shares = [_ramp(config, epoch, step, 4) for epoch in (2, 3, 4) for step in range(4)]
    assert shares == [0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_any_json_value_for_any_setting_is_a_config_error_or_fine():
    """Property: a config file can hold anything JSON can; a bad value is a ConfigError, never a traceback."""
    import dataclasses

    from hypothesis import given, settings, strategies as st

    json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=8),
                               lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                             max_size=3), max_leaves=5)
    keys = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("data", "out")]

    @settings(max_examples=400, deadline=None)
    @given(key=st.sampled_from(keys), value=json_values)
    def check(key, value):
        try:
            TrainConfig.from_dict({"data": "d", "out": "o", "lam": 0.0, key: value}, "cfg.json")
        except ConfigError as err:
            assert str(err).startswith("cfg.json: ") and "\n" not in str(err)

    check()


def test_evaluation_reports_progress(tiny, caplog):
    """Evaluation encodes with the one progress style: a final line with the items done, rate and time."""
    import logging

    from bcls.trainer.evaluation.evaluate import evaluate

    train(_config(tiny, "ev", epochs=1, lam=0))
    with caplog.at_level(logging.INFO, logger="bcls"):
        evaluate(tiny / "ev" / "last.pt", tiny / "data", "test", plots=False)
    lines = [r.getMessage() for r in caplog.records if "eval: encoding images and captions" in r.getMessage()]
    from bcls.data.precomp import read_precomp_split

    table, feats = read_precomp_split(tiny / "data", "test")
    total = feats.n_images + len(table)
    assert lines and f"{total}/{total}" in lines[-1]


@pytest.mark.parametrize("pairs", ["all", "negatives"])
def test_kendall_pairs_decides_whether_ground_truth_pairs_are_ranked(tiny, pairs):
    """``kendall_pairs=negatives`` hands the Kendall term a mask without any same-image pair; ``all`` (the default)
    marks every same-image pair known, with the top label, beside the labelled negatives."""
    run = Trainer(_config(tiny, f"pairs{pairs}", epochs=2, warmup_epochs=0, kendall_pairs=pairs, label_mode="dense"))
    seen = {}
    real = run.losses.main.forward

    def spy(S, R, label_mask, positive_mask=None):
        seen.update(R=R.clone(), mask=label_mask.clone(), positive=positive_mask.clone())
        return real(S, R, label_mask, positive_mask)

    run.losses.main.forward = spy
    rows = torch.arange(16)
    run.step((rows, None), epoch=1, step=0)
    positive, mask = seen["positive"], seen["mask"]
    assert positive.any() and (mask & ~positive).any()
    if pairs == "negatives":
        assert not (mask & positive).any()
    else:
        assert mask[positive].all() and (seen["R"][positive] == run.labels.norm.top).all()
    with pytest.raises(ConfigError, match="unknown kendall_pairs 'some'"):
        _config(tiny, "bad", kendall_pairs="some")


def _as_version_1(saved: dict) -> dict:
    """A train_config as bcls wrote it before config versions: flat Kendall fields, log_every, no kendall_pairs
    and no warmup_loss."""
    v1 = {k: v for k, v in saved.items() if k not in ("config_version", "kendall", "kendall_pairs", "warmup_loss")}
    k = saved["kendall"]
    return v1 | {"window": k["window"], "gap": k["gap"], "surrogate": k["surrogate"],
                 "temperature": k["temperature"], "kendall_margin": k["margin"], "n_hard": k["n_hard"],
                 "log_every": 50}


def test_version_1_configs_migrate_by_hand_computed_rules():
    from bcls.trainer.config import CONFIG_VERSION, migrate_saved

    v1 = {"data": "d", "out": "o", "labels": "l", "lam": 0.5, "window": 3, "gap": 0.2, "surrogate": "tanh", "temperature": 0.5,
          "kendall_margin": 0.1, "n_hard": 2, "log_every": 50}
    assert migrate_saved(v1) == {"data": "d", "out": "o", "labels": "l", "lam": 0.5, "kendall_pairs": "all",
                                 "warmup_loss": "triplet-mean", "config_version": CONFIG_VERSION,
                                 "kendall": {"window": 3, "gap": 0.2, "surrogate": "tanh", "temperature": 0.5,
                                             "margin": 0.1, "n_hard": 2}}
    config = TrainConfig.from_dict(migrate_saved(v1))
    assert config.kendall.margin == 0.1 and config.kendall_pairs == "all"
    assert TrainConfig.from_dict(config.to_dict()) == config  # the saved shape reads back as it is
    # a user's settings without a version: old spellings renamed, nothing assumed about kendall_pairs
    user = TrainConfig.from_dict({"data": "d", "out": "o", "lam": 0.0, "gap": 0.2, "log_every": 5})
    assert user.kendall.gap == 0.2 and user.kendall_pairs == "negatives"
    with pytest.raises(ConfigError, match="config_version 9"):
        TrainConfig.from_dict({"data": "d", "out": "o", "config_version": 9})


def test_a_run_saved_by_version_1_resumes_as_it_trained(tiny):
    """A checkpoint of the first config version ranked every pair (the only behaviour then): resuming it needs
    kendall_pairs=all, and the new default is refused by name rather than silently changing the run."""
    train(_config(tiny, "old", epochs=1, kendall_pairs="all"))
    ckpt = torch.load(tiny / "old" / "last.pt", weights_only=False)
    ckpt["train_config"] = _as_version_1(ckpt["train_config"])
    torch.save(ckpt, tiny / "old" / "last.pt")
    assert load_checkpoint(tiny / "old" / "last.pt")["train_config"]["kendall"]["gap"] == 0.4
    with pytest.raises(CheckpointError, match="kendall_pairs: 'all' then, 'negatives' now"):
        train(_config(tiny, "old", epochs=2), resume=True)
    summary = train(_config(tiny, "old", epochs=2, kendall_pairs="all"), resume=True)
    assert len(summary["history"]) == 2
    assert json.loads((tiny / "old" / "train_config.json").read_text())["config_version"] == 2

def test_dev_evaluation_and_bcls_eval_are_one_evaluator(tiny, monkeypatch):
    """The best epoch's dev rsum, as training recorded it, is what `bcls eval` computes for best.pt on dev — and
    both go through score_split (counted)."""
    import importlib

    from bcls.trainer import evaluation

    evaluate_module = importlib.import_module("bcls.trainer.evaluation.evaluate")

    calls = []
    real = evaluate_module.score_split
    monkeypatch.setattr(evaluate_module, "score_split", lambda *a, **k: calls.append(1) or real(*a, **k))
    summary = train(_config(tiny, "one-eval", epochs=2, lam=0.0))
    assert len(calls) == 2  # one dev evaluation per epoch
    metrics = evaluation.evaluate(tiny / "one-eval" / "best.pt", tiny / "data", "dev", plots=False)["metrics"]
    assert len(calls) == 3
    assert metrics[evaluation.PRIMARY_METRIC] == pytest.approx(summary["best_dev_rsum"])
