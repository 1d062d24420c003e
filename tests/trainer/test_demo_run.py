"""`bcls demo`'s orchestration on a tiny generated dataset (stand-in encoder, small model)."""

import json

from bcls.data.demo import DemoConfig
from bcls.trainer.demo import run_demo


def test_demo_keeps_every_stage_and_reports_ground_truth_metrics(tmp_path, encoder):
    result = run_demo(tmp_path / "demo", epochs=2, k=4, encoder=encoder,
                      demo=DemoConfig(n_train=40, n_dev=10, n_test=12, seed=1),
                      train_settings={"batch_size": 16, "embed_dim": 16, "word_dim": 8})
    root = tmp_path / "demo"
    for path in ("data/train_caps.txt", "data/test_relevance.npy", "labels/_manifest.json", "run/best.pt",
                 "run/init.pt", "eval/metrics.json", "eval/report.md", "eval/recall_at_k.png",
                 "eval/similarity_vs_label.png", "eval/untrained.json"):
        assert (root / path).is_file(), path
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert metrics["rsum"] == result["trained"]["rsum"]
    assert -1.0 <= metrics["rel_kendall_i2t"] <= 1.0 and 0.0 <= metrics["ncs_t2i_5"] <= 100.0
    assert result["untrained"].keys() >= {"rsum", "rel_kendall_t2i"}


def test_demo_never_replaces_what_it_did_not_make(tmp_path, encoder):
    import pytest

    from bcls.data.infra.errors import ConfigError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my experiment")
    with pytest.raises(ConfigError, match="holds files that `bcls demo` did not write"):
        run_demo(mine, epochs=1, k=2, encoder=encoder, demo=DemoConfig(n_train=20, n_dev=5, n_test=5, seed=1))
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]  # nothing written, nothing lost
    small = {"batch_size": 16, "embed_dim": 8, "word_dim": 8}
    for _ in range(2):  # a folder the demo made is its own to replace
        run_demo(tmp_path / "demo", epochs=1, k=2, encoder=encoder,
                 demo=DemoConfig(n_train=20, n_dev=5, n_test=5, seed=1), train_settings=small)
    run_demo(mine, epochs=1, k=2, encoder=encoder, demo=DemoConfig(n_train=20, n_dev=5, n_test=5, seed=1),
             train_settings=small, overwrite=True)
    assert (mine / "notes.txt").read_text() == "my experiment" and (mine / "eval" / "metrics.json").is_file()
