"""Tests of the fitted ensemble (bcls.pipeline.fidelity.fitted_ensemble) and the ``ensemble`` label source."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from bcls.data.captions import read_captions
from bcls.data.demo import DemoConfig, generate_demo
from bcls.data.infra.errors import ConfigError, DataFormatError
from bcls.data.judgments import read_judgments
from bcls.pipeline.corpus import LabelCorpus
from bcls.pipeline.fidelity.fitted_ensemble import (EnsembleModel, Member, apply_knots, cross_validate, fit_calibration, fit_model,
                                    fit_weights, image_folds, load_ensemble, rank_knots)
from bcls.pipeline.fidelity.fit import fit_ensemble, fit_report_markdown
from bcls.pipeline.sources import EnsembleSource, SbertSource, make_source
from bcls.pipeline.sources.ensemble import parse_members
from tests.conftest import hash_encoder


def test_rank_knots_are_the_mid_rank_cdf():
    v = np.array([3.0, 1.0, 2.0, 2.0, 5.0, np.nan, 2.0])
    x, f = rank_knots(v)
    finite = v[np.isfinite(v)]
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0, 5.0])
    # mid-rank / n: scipy's average rank minus one half, over n
    np.testing.assert_allclose(apply_knots(finite, x, f), (stats.rankdata(finite) - 0.5) / len(finite))
    np.testing.assert_allclose(apply_knots(np.array([0.0, 9.0, 2.5, np.nan]), x, f)[:3], [f[0], f[-1], (f[1] + f[2]) / 2])
    assert np.isnan(apply_knots(np.array([np.nan]), x, f)[0])
    many = np.random.default_rng(0).standard_normal(10_000)
    x, f = rank_knots(many, max_knots=50)
    assert len(x) <= 50 and x[0] == many.min() and x[-1] == many.max() and np.all(np.diff(x) > 0)
    np.testing.assert_allclose(apply_knots(many, x, f), (stats.rankdata(many) - 0.5) / len(many), atol=0.01)


def test_weights_follow_the_informative_member():
    rng = np.random.default_rng(1)
    a, b, noise = rng.random(4000), rng.random(4000), rng.random(4000)
    human = 3 * a + b
    w = fit_weights(np.c_[a, b, noise], human)
    assert w.sum() == pytest.approx(1.0) and np.all(w >= 0)
    assert w[0] > 2 * w[1] > 0 and w[2] < 0.02


def test_calibration_is_monotone_and_recovers_a_calibrated_score():
    rng = np.random.default_rng(2)
    s = rng.random(5000)
    human = 5 * s ** 2 + rng.normal(0, 0.05, 5000)  # on a 0–5 scale
    cx, cy = fit_calibration(s, human)
    assert np.all(np.diff(cx) > 0) and np.all(np.diff(cy) > 0)
    lo, hi = human.min(), human.max()
    grid = np.linspace(0.1, 0.9, 9)
    np.testing.assert_allclose(apply_knots(grid, cx, cy), (5 * grid ** 2 - lo) / (hi - lo), atol=0.03)


def _toy_model(calibrate=True):
    rng = np.random.default_rng(3)
    values = np.c_[rng.random(500), rng.random(500) * 10]
    human = values[:, 0] + values[:, 1] / 20 + rng.normal(0, 0.1, 500)
    members = (Member("sbert"), Member("cider"))
    return fit_model(members, values, human, calibrate=calibrate, sentence_model="m"), values, human


def test_predictions_are_strictly_increasing_in_each_member():
    model, values, _ = _toy_model()
    grid = np.c_[np.linspace(0, 1, 200), np.full(200, 5.0)]
    out = model.predict(grid)
    assert np.all(np.diff(out) > 0)  # calibration plateaus never tie two different inputs
    assert np.isnan(model.predict(np.array([[np.nan, 1.0]]))[0])


def test_json_round_trip_and_errors(tmp_path):
    model, values, _ = _toy_model()
    path = tmp_path / "ens.json"
    sha = model.save(path)
    loaded, sha2 = load_ensemble(path)
    assert sha == sha2 and [m.label for m in loaded.members] == ["sbert", "cider"]
    np.testing.assert_allclose(loaded.predict(values), model.predict(values), rtol=1e-12)
    doc = json.loads(path.read_text())
    assert doc["format"] == "bcls-ensemble-v1" and set(doc["weights"]) == {"sbert", "cider"}
    for edit, match in [(lambda d: d.update(format="x"), "field 'format'"),
                        (lambda d: d["weights"].update(cider=-1), "weight of 'cider'"),
                        (lambda d: d["normalisation"].pop("sbert"), "member 'sbert' has no normalisation"),
                        (lambda d: d.update(members="sbert"), "field 'members'"),
                        (lambda d: d.update(members=[]), "field 'members' lists no source")]:
        bad = json.loads(path.read_text())
        edit(bad)
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(DataFormatError, match=rf"bad\.json: .*{match}.*refit it with `bcls labels fit`"):
            load_ensemble(tmp_path / "bad.json")
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(DataFormatError, match="junk.json: not a JSON file"):
        load_ensemble(tmp_path / "junk.json")
    with pytest.raises(DataFormatError, match="nope.json: ensemble file not found"):
        load_ensemble(tmp_path / "nope.json")


def test_members_parse_with_typed_options():
    members = parse_members("sbert, spice:measure=precision,sbert:aggregate=topk:k=3")
    assert [m.label for m in members] == ["sbert", "spice:measure=precision", "sbert:aggregate=topk:k=3"]
    assert members[2].options == {"aggregate": "topk", "k": 3}
    for text, match in [("sbert,sbert", "given twice"), ("ensemble", "cannot be a member"),
                        ("nope", "unknown label source 'nope'"), ("sbert:k", "write NAME:KEY=VALUE"), ("", "at least one member"),
                        ("sbert:k=two", "not a int")]:
        with pytest.raises(ConfigError, match=match):
            parse_members(text)


def test_folds_keep_each_image_in_one_fold_and_cv_compares_on_the_same_pairs():
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(60), 10)
    fold = image_folds(groups, 5)
    assert all(len(set(fold[groups == g])) == 1 for g in range(60)) and set(fold) == set(range(5))
    good, noisy = rng.random(600), rng.random(600)
    human = good + 0.3 * rng.standard_normal(600)
    values = np.c_[good + 0.3 * rng.standard_normal(600), noisy]
    cv = cross_validate((Member("sbert"), Member("cider")), values, human, groups, folds=5)
    assert len(cv["per_fold"]) == 5
    for f, row in enumerate(cv["per_fold"]):  # each member's held-out figure is its plain correlation on the fold
        test = fold == f
        assert row["cider"]["spearman"] == pytest.approx(stats.spearmanr(noisy[test], human[test]).statistic)
        assert row["ensemble"]["pairs"] == row["sbert"]["pairs"] == int(test.sum())
    assert cv["mean"]["ensemble"]["spearman"] > cv["mean"]["cider"]["spearman"] + 0.3
    with pytest.raises(ConfigError, match="cannot make 5 cross-validation folds"):
        image_folds(np.arange(3), 5)


def _corpus():
    texts = ("a dog runs on grass", "a dog on green grass", "a brown dog outside", "a red bus on a street",
             "a bus by the road", "a city bus", "two cats on a sofa", "cats on a couch", "a cat sleeping")
    index = np.repeat(np.arange(3), 3)
    return LabelCorpus.from_groups(texts, index, hash_encoder()(texts), image_ids=np.arange(3),
                                   caption_ids=np.arange(9))


def test_fitted_source_applies_the_model_to_its_members(tmp_path):
    corpus = _corpus()
    img, cap = np.repeat(np.arange(3), 9), np.tile(np.arange(9), 3)
    members = (Member("sbert"), Member("cider"))
    raw = np.c_[SbertSource().score(corpus, img, cap), make_source("cider").score(corpus, img, cap)]
    model = fit_model(members, raw, raw[:, 0] + raw[:, 1] / 10, sentence_model="all-MiniLM-L6-v2")
    model.save(tmp_path / "e.json")
    source = make_source("ensemble", path=str(tmp_path / "e.json"))
    assert source.needs_embeddings and source.settings()["kind"] == "fitted"
    np.testing.assert_allclose(source.score(corpus, img, cap), model.predict(raw).astype(np.float32))


def test_rank_average_of_one_member_keeps_its_order():
    corpus = _corpus()
    img, cap = np.repeat(np.arange(3), 9), np.tile(np.arange(9), 3)
    alone = EnsembleSource(members="sbert", reference_images=3)
    got, sbert = alone.score(corpus, img, cap), SbertSource().score(corpus, img, cap)
    ok = np.isfinite(sbert)
    assert np.all(np.isnan(got[~ok])) and np.all((got[ok] >= 0) & (got[ok] <= 1))
    assert stats.spearmanr(got[ok], sbert[ok]).statistic > 0.99
    both = EnsembleSource(members="sbert,cider", reference_images=3).score(corpus, img, cap)
    assert np.all(np.isfinite(both[ok]))


def test_fit_on_demo_truth_then_build_with_it(tmp_path):
    from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
    from bcls.data.shards import open_labels, read_labels

    data = tmp_path / "demo"
    generate_demo(data, DemoConfig(n_train=60, n_dev=40, n_test=10, seed=1))
    judged = read_judgments(data / "dev_relevance.npy")
    model, report = fit_ensemble(read_captions(data, split="dev"), judged, "sbert,spice:measure=precision",
                                 tmp_path / "ens.json", folds=3, encoder=hash_encoder())
    assert set(report["cv"]["mean"]) == {"ensemble", "sbert", "spice:measure=precision"}
    text = fit_report_markdown(report)
    best = max(("sbert", "spice:measure=precision"), key=lambda k: report["cv"]["mean"][k]["spearman"])
    gain = np.mean([f["ensemble"]["spearman"] - f[best]["spearman"] for f in report["cv"]["per_fold"]])
    assert f"best single source ({best}), Spearman on the same held-out pairs: {gain:+.3f}" in text
    assert report["pairs"] == len(judged) and model.sentence_model is None  # a custom encoder records no model
    doc = json.loads((tmp_path / "ens.json").read_text())
    assert doc["fit"]["judgments"]["format"] == "demo-truth" and doc["fit"]["cv"]["folds"] == 3
    out = tmp_path / "labels"
    result = build_labels(LabelBuildConfig(captions=str(data), split="train", out=str(out), k=4,
                                           sources=("ensemble", "sbert"),
                                           source_options={"ensemble": {"path": str(tmp_path / "ens.json")}}),
                          encoder=hash_encoder(), encoder_id="hash")
    labels = open_labels(out)
    assert labels.provenance["sources"]["ensemble"]["sha256"] == report["sha256"]
    table = read_labels(labels)
    train = read_captions(data, split="train")
    corpus = LabelCorpus.from_groups(train.texts, train.image_index(), hash_encoder()(train.texts))
    img = np.searchsorted(train.unique_images(), table.column("image_id").to_numpy())
    cap = table.column("caption_id").to_numpy()
    precision = make_source("spice", measure="precision")
    raw = np.c_[SbertSource().score(corpus, img, cap), precision.score(corpus, img, cap)]
    np.testing.assert_allclose(table.column("ensemble").to_numpy(), model.predict(raw), atol=1e-6)
    assert list(result.sources) == ["ensemble", "sbert"]


def test_a_relative_ensemble_path_is_stored_absolute(tmp_path, monkeypatch):
    """Dense labels rebuild the source from the build's stored options, maybe from another working folder."""
    from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
    from bcls.pipeline.building.resume import stored_source_options
    from tests.conftest import write_caption_csv

    model, _, _ = _toy_model()
    model.save(tmp_path / "e.json")
    monkeypatch.chdir(tmp_path)
    build_labels(LabelBuildConfig(captions=str(write_caption_csv(tmp_path / "c.csv")), out="labels", k=2,
                                  sources=("ensemble",), source_options={"ensemble": {"path": "e.json"}}),
                 encoder=hash_encoder(), encoder_id="hash")
    assert stored_source_options(tmp_path / "labels")["ensemble"]["path"] == str(tmp_path / "e.json")


def test_a_fitted_model_refuses_another_sentence_model(tmp_path):
    model, _, _ = _toy_model()
    EnsembleModel(model.members, model.knots, model.weights, model.calibration, "all-mpnet-base-v2").save(
        tmp_path / "e.json")
    from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels

    with pytest.raises(ConfigError, match="fitted with sentence model 'all-mpnet-base-v2', not 'all-MiniLM-L6-v2'; "
                                          "pass --model all-mpnet-base-v2"):
        build_labels(LabelBuildConfig(captions=str(tmp_path / "none.csv"), out=str(tmp_path / "o"),
                                      sources=("ensemble",),
                                      source_options={"ensemble": {"path": str(tmp_path / "e.json")}}))
    assert not (tmp_path / "o").exists()
