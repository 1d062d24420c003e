"""bcls eval: relevance inputs, protocol detection, report files and run comparison."""

import json

import numpy as np
import pytest
import torch

from bcls.data.captions import read_captions
from bcls.data.infra.errors import DataFormatError
from bcls.data.precomp import write_precomp_split
from bcls.trainer.evaluation import detect_protocol, load_relevance, relevance_metrics
from bcls.trainer.evaluation.report import compare_runs, markdown_report, recall_curve


def _split(tmp_path, n_images=6, cpi=2):
    caps = [f"caption {i} of image {i // cpi}" for i in range(n_images * cpi)]
    write_precomp_split(tmp_path, "test", caps, np.zeros((n_images, 3), np.float32))
    return read_captions(tmp_path, split="test")


def test_dense_relevance_file_and_shape_check(tmp_path):
    table = _split(tmp_path)
    np.save(tmp_path / "rel.npy", np.ones((6, 12), np.float16))
    rel, known, desc = load_relevance(tmp_path / "rel.npy", table)
    assert rel.shape == (6, 12) and known is None and desc.endswith("rel.npy")
    np.save(tmp_path / "bad.npy", np.ones((6, 11)))
    with pytest.raises(DataFormatError, match="bad.npy: relevance has shape"):
        load_relevance(tmp_path / "bad.npy", table)


def test_label_folder_relevance_is_sparse(tmp_path, encoder):
    from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels

    table = _split(tmp_path)
    build_labels(LabelBuildConfig(captions=str(tmp_path), split="test", out=str(tmp_path / "labels"), k=3),
                 encoder=encoder)
    from bcls.data.shards import open_labels

    rel, known, desc = load_relevance(tmp_path / "labels", table)
    assert int(known.sum()) == open_labels(tmp_path / "labels").manifest["rows"] and "sbert" in desc
    assert (rel[~known] == 0).all()


def test_relevance_metrics_perfect_order():
    c2i = torch.tensor([0, 1, 2])
    rel = torch.tensor([[1.0, 0.5, 0.0], [0.2, 1.0, 0.6], [0.0, 0.3, 1.0]])
    out = relevance_metrics(rel.clone(), rel, c2i, ks=(1,))
    assert out["rel_kendall_i2t"] == pytest.approx(1.0) and out["rel_kendall_t2i"] == pytest.approx(1.0)
    assert out["ncs_i2t_1"] == pytest.approx(100.0) and out["ncs_t2i_1"] == pytest.approx(100.0)
    worst = relevance_metrics(-rel, rel, c2i, ks=(1,))
    assert worst["rel_kendall_i2t"] == pytest.approx(-1.0)


def test_protocol_detection(tmp_path):
    assert detect_protocol(_split(tmp_path), tmp_path) == ("full", None)


def test_recall_curve_and_report():
    assert recall_curve(torch.tensor([0, 1, 5, 60]), max_k=3).tolist() == [25.0, 50.0, 50.0]
    metrics = {k: 1.0 for k in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")}
    metrics |= {"rel_kendall_i2t": 0.3, "rel_kendall_t2i": 0.2, "ncs_i2t_5": 50.0, "ncs_t2i_5": 40.0}
    text = markdown_report(metrics, {"checkpoint": "c.pt", "relevance": "gt"}, ["a/recall_at_k.png"])
    assert "| whole split | 1.00" in text and "| rel_kendall | 0.3000 | 0.2000 |" in text
    assert "| ncs_5 | 50.00 | 40.00 |" in text and "![recall_at_k](recall_at_k.png)" in text


def test_compare_runs(tmp_path):
    for name, rsum in (("a", 100.0), ("b", 112.5)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({"rsum": rsum, "_provenance": {}}))
    text = compare_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "cmp")
    assert "| metric | run 1 | run 2 | run 2 − run 1 |" in text and "| rsum | 100.00 | 112.50 | +12.50 |" in text
    assert "Warning" not in text
    assert (tmp_path / "cmp" / "compare.md").read_text() == text
    with pytest.raises(DataFormatError, match="no metrics.json"):
        compare_runs([tmp_path / "a", tmp_path / "missing"])
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "metrics.json").write_text(json.dumps({"rsum": 90.0, "rel_kendall_i2t": 0.41234,
                                                             "_provenance": {"data": "other", "split": "dev"}}))
    text = compare_runs([tmp_path / "a", tmp_path / "c"])
    assert "| rsum | 100.00 | 90.00 | -10.00 |" in text and "| rel_kendall_i2t | — | 0.4123 | — |" in text
    assert text.startswith("**Warning:** the runs were evaluated on different data or splits")
