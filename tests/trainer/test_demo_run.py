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
