"""The BCLS sweep on the demo: settings of the continuous loss against λ = 0, chosen on dev, reported on test.

    python bench/sweep_bcls.py setup --out runs/sweep                 # demo data + labels (sbert, cider, spice, truth)
    python bench/sweep_bcls.py setup-ensemble --out runs/sweep        # ensemble fitted on dev truth, labels_ens/
    python bench/sweep_bcls.py teacher --out runs/sweep [--extra spice:measure=precision,ensemble:path=E.json]
    python bench/sweep_bcls.py run --out runs/sweep --queue bench/sweep_bcls.json [--only NAME,...]
    python bench/sweep_bcls.py reevaluate --out runs/sweep            # every best.pt again, with this bcls's metrics
    python bench/sweep_bcls.py table --out runs/sweep --split dev     # mean ± sd over seeds, per-seed values
    python bench/sweep_bcls.py plot --out runs/sweep                  # τ gain vs teacher quality, τ–rsum frontier
    python bench/sweep_bcls.py misses --out runs/sweep --split test --only lam0-s0-e8,...   # R@1 vs correct top-1

``run`` is a worker: it takes the next job of the queue (a JSON list of ``{"name", "settings", "seeds",
"epochs"}``, re-read before every job, so jobs can be appended while it runs) that has no result and no lock,
trains it, evaluates the best-by-dev-rsum checkpoint on dev and test (with the demo's ground-truth relevance) and
writes ``OUT/runs/NAME-sSEED-eEPOCHS/result.json``; several workers share one queue through lock folders (run at
most two on 2 cores, each with ``OMP_NUM_THREADS=1``). ``settings`` are :class:`~bcls.trainer.config.TrainConfig`
fields (``labels`` names another label folder under OUT, e.g. ``labels_ens`` from ``setup-ensemble``); the demo
data, the default demo generator and the label build are shared by every job.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import time
import traceback
from pathlib import Path

import numpy as np

from bcls.data.captions import read_captions
from bcls.data.demo import generate_demo
from bcls.data.shards import open_labels, read_labels
from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
from bcls.trainer.config import TrainConfig
from bcls.trainer.evaluation import evaluate
from bcls.trainer.train import train

KEYS = ["rsum", "rel_kendall_i2t", "rel_kendall_t2i", "ncs_i2t_5", "ncs_t2i_5", "rel_map_at_r_i2t",
        "rel_map_at_r_t2i"]
SOURCES = ("sbert", "cider", "spice", "truth")


def setup(out: Path) -> None:
    """The default demo (seed 0) and one label build with every source on the same candidates (K = 32)."""
    data, labels = out / "data", out / "labels"
    if not (data / "demo.json").is_file():
        generate_demo(data)
    build_labels(LabelBuildConfig(captions=str(data), split="train", out=str(labels), k=32, sources=SOURCES,
                                  source_options={"truth": {"path": str(data)}}))


ENSEMBLE_MEMBERS = "sbert,cider,spice,spice:measure=precision"


def setup_ensemble(out: Path) -> None:
    """The ensemble teacher: fitted on the dev split's ground truth (``OUT/ensemble.json``, as ``bcls labels fit``)
    and built on the same candidates (K = 32) into ``OUT/labels_ens``; spice precision alone into
    ``OUT/labels_spp``."""
    from bcls.data.judgments import read_judgments
    from bcls.pipeline.fidelity.fit import fit_ensemble, fit_report_markdown

    data = out / "data"
    _, report = fit_ensemble(read_captions(data, split="dev"), read_judgments(data / "dev_relevance.npy"),
                             ENSEMBLE_MEMBERS, out / "ensemble.json")
    print(fit_report_markdown(report))
    build_labels(LabelBuildConfig(captions=str(data), split="train", out=str(out / "labels_ens"), k=32,
                                  sources=("ensemble",),
                                  source_options={"ensemble": {"path": str(out / "ensemble.json")}}))
    build_labels(LabelBuildConfig(captions=str(data), split="train", out=str(out / "labels_spp"), k=32,
                                  sources=("spice",), source_options={"spice": {"measure": "precision"}}))


def _ranks(values: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(values) / len(values)


def teacher(out: Path, extra: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Mean per-image Kendall τ-b between each source and the ground truth over the image's candidate captions of
    other images (and for a rank average of sbert, cider and spice, and for ``extra`` source specs such as
    ``spice:measure=precision`` or ``ensemble:path=ens.json``, scored on the same candidates); printed with the
    same over random pairs."""
    from scipy.stats import kendalltau

    labels = open_labels(out / "labels")
    data = read_labels(labels)
    img = data.column("image_id").to_numpy()
    table = read_captions(out / "data", split="train")
    image_of = dict(zip(table.caption_ids.tolist(), table.image_ids.tolist()))
    own = np.array([image_of[c] for c in data.column("caption_id").to_numpy().tolist()]) == img
    cols = {s: data.column(s).to_numpy() for s in SOURCES}
    cols["rank-average"] = np.mean([_ranks(cols[s]) for s in ("sbert", "cider", "spice")], axis=0)
    corpus = _corpus(labels, table)
    image_pos = np.searchsorted(table.unique_images(), img)
    caption_pos = np.searchsorted(table.caption_ids, data.column("caption_id").to_numpy())
    for spec in extra or ():
        cols[spec] = _spec_source(spec, out).score(corpus, image_pos, caption_pos)
    truth = cols["truth"]
    order = np.argsort(img, kind="stable")
    bounds = np.flatnonzero(np.diff(img[order])) + 1
    result = {}
    for name, values in cols.items():
        if name == "truth":
            continue
        taus = []
        for rows in np.split(order, bounds):
            rows = rows[~own[rows]]
            if len(rows) > 2 and np.ptp(truth[rows]) > 0 and np.ptp(values[rows]) > 0:
                taus.append(kendalltau(values[rows], truth[rows]).statistic)
        result[name] = float(np.mean(taus))
    both = {"candidates": result, "random_pairs": _dense_teacher(out, table, corpus, extra)}
    print(json.dumps(both))
    return both


def _corpus(labels, table):
    from bcls.data.shards import read_caption_embeddings
    from bcls.pipeline.corpus import LabelCorpus

    return LabelCorpus.from_groups(table.texts, table.image_index(), read_caption_embeddings(labels, len(table)),
                                   image_ids=table.unique_images(), caption_ids=table.caption_ids)


def _spec_source(spec: str, out: Path):
    """The label source of a spec (``truth`` reads the sweep's demo data)."""
    from bcls.pipeline.sources.ensemble import build_member, parse_spec

    member = parse_spec(spec)
    if member.source == "truth":
        return build_member(type(member)("truth", {"path": str(out / "data")}))
    return build_member(member)


def _dense_teacher(out: Path, table, corpus, extra: list[str] | None = None, n_images: int = 150,
                   n_captions: int = 800) -> dict[str, float]:
    """The same τ over random pairs (what dense in-batch labels see): ``n_images`` images against ``n_captions``
    random captions, each source scoring every pair."""
    from scipy.stats import kendalltau

    rng = np.random.default_rng(0)
    img = rng.choice(len(table.unique_images()), n_images, replace=False)
    cap = rng.choice(len(table), n_captions, replace=False)
    pairs_i, pairs_c = np.repeat(img, len(cap)), np.tile(cap, len(img))
    own = (table.image_index()[pairs_c] == pairs_i).reshape(len(img), len(cap))
    values = {name: _spec_source(name, out).score(corpus, pairs_i, pairs_c).reshape(own.shape)
              for name in [*SOURCES, *(extra or ())]}
    truth = values.pop("truth")
    print(json.dumps({"concordance_by_label_difference": {name: _concordance(v, truth, own) for name, v in
                                                          values.items()}}))
    return {name: float(np.nanmean([kendalltau(v[i][~own[i]], truth[i][~own[i]]).statistic
                                    for i in range(len(img))])) for name, v in values.items()}


def _concordance(values: np.ndarray, truth: np.ndarray, own: np.ndarray,
                 edges: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0)) -> dict[str, list]:
    """Of an image's pairs of other captions, how often the source orders them as the truth does, by the source's
    label difference |Δ| (what ``gap`` filters on): ``{"[lo, hi)": [pairs, fraction concordant]}``; pairs the
    truth ties are left out, pairs the source ties (Δ = 0) are counted under ``"tied"``."""
    diffs, agree = [], []
    for i in range(len(values)):
        v, t = values[i][~own[i]], truth[i][~own[i]]
        a, b = np.triu_indices(len(v), 1)
        dv, dt = v[a] - v[b], t[a] - t[b]
        keep = dt != 0
        diffs.append(np.abs(dv[keep]))
        agree.append(np.sign(dv[keep]) == np.sign(dt[keep]))
    d, ok = np.concatenate(diffs), np.concatenate(agree)
    table: dict[str, list] = {"tied": [int((d == 0).sum()), None]}
    for lo, hi in zip(edges[:-1], edges[1:]):
        rows = (d > 0) & (d >= lo) & ((d < hi) if hi < edges[-1] else (d <= hi))
        table[f"[{lo}, {hi})"] = [int(rows.sum()), round(float(ok[rows].mean()), 3) if rows.any() else None]
    return table


def _jobs(queue: Path, only: set[str] | None) -> list[tuple[str, dict, int, int]]:
    jobs = []
    for item in json.loads(queue.read_text()):
        if only is None or item["name"] in only:
            jobs += [(item["name"], item.get("settings", {}), seed, item.get("epochs", 8)) for seed in item["seeds"]]
    return jobs


def run(out: Path, queue: Path, only: set[str] | None, poll: float) -> None:
    """Work through the queue until it holds no job without a result or lock (``poll`` > 0: then wait for more)."""
    data = out / "data"
    while True:
        job = None
        for name, settings, seed, epochs in _jobs(queue, only):
            tag = f"{name}-s{seed}-e{epochs}"
            lock = out / "locks" / tag
            lock.parent.mkdir(parents=True, exist_ok=True)
            if (out / "runs" / tag / "result.json").is_file():
                continue
            try:
                lock.mkdir()
            except FileExistsError:
                continue
            job = (name, settings, seed, epochs, tag)
            break
        if job is None:
            if poll <= 0 or (out / "STOP").exists():
                return
            time.sleep(poll)
            continue
        name, settings, seed, epochs, tag = job
        run_dir, start = out / "runs" / tag, time.perf_counter()
        try:
            chosen = dict(settings)  # a job may train on another label folder of OUT ("labels": "labels_ens")
            config = TrainConfig.from_dict(dict(data=str(data), labels=str(out / chosen.pop("labels", "labels")),
                                                out=str(run_dir), epochs=epochs, seed=seed, **chosen))
            summary = train(config, overwrite=True)
            metrics = {split: evaluate(run_dir / "best.pt", data, split, plots=False)["metrics"]
                       for split in ("dev", "test")}
            history = [{k: v for k, v in h.items() if k != "dev"} | {"dev_rsum": h.get("dev", {}).get("rsum")}
                       for h in summary["history"]]
            payload = {"name": name, "seed": seed, "epochs": epochs, "settings": settings,
                       "best_epoch": summary["best_epoch"], **metrics, "history": history,
                       "seconds": time.perf_counter() - start}
            tmp = run_dir / "result.json.tmp"
            tmp.write_text(json.dumps(payload, indent=1))
            tmp.rename(run_dir / "result.json")
            for ckpt in ("init.pt", "last.pt"):  # keep best.pt only
                (run_dir / ckpt).unlink(missing_ok=True)
            d = metrics["dev"]
            print(f"{tag}: dev rsum {d['rsum']:.1f} τ {d['rel_kendall_i2t']:.4f}/{d['rel_kendall_t2i']:.4f} "
                  f"NCS@5 {d['ncs_i2t_5']:.1f}/{d['ncs_t2i_5']:.1f}; test rsum {metrics['test']['rsum']:.1f} "
                  f"({time.perf_counter() - start:.0f}s)", flush=True)
        except Exception:  # keep the worker alive; the lock and the traceback stay for a look
            (out / "locks" / f"{tag}.failed").write_text(traceback.format_exc())
            traceback.print_exc()


def reevaluate(out: Path, only: set[str] | None = None) -> None:
    """Evaluate every finished run's best.pt (or the run folders in ``only``) again with this bcls (after a change
    to the metrics), in place."""
    from bcls.data.infra.version import __version__

    for path in sorted((out / "runs").glob("*/result.json")):
        if only and path.parent.name not in only:
            continue
        result = json.loads(path.read_text())
        for split in ("dev", "test"):
            result[split] = evaluate(path.parent / "best.pt", out / "data", split, plots=False)["metrics"]
        result["evaluated_by"] = f"bcls {__version__}"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.rename(path)
        print(f"{path.parent.name}: dev rsum {result['dev']['rsum']:.1f}", flush=True)


def results(out: Path) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for path in sorted((out / "runs").glob("*/result.json")):
        r = json.loads(path.read_text())
        rows.setdefault(f"{r['name']} e{r['epochs']}", []).append(r)
    return rows


def table(out: Path, split: str, match: str | None) -> None:
    """A markdown table (mean ± sd over seeds) of ``split`` and, below it, every seed's values."""
    rows = {k: v for k, v in results(out).items() if match is None or re.search(match, k)}
    print(f"| variant ({split}) | seeds | " + " | ".join(KEYS) + " | compared / query |")
    print("|---" * (len(KEYS) + 3) + "|")
    for name, runs in rows.items():
        cells = []
        for key in KEYS:
            vals = [r[split].get(key, float("nan")) for r in runs]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            fmt = "{:.4f} ± {:.4f}" if key.startswith("rel_kendall") else "{:.2f} ± {:.2f}"
            cells.append(fmt.format(statistics.mean(vals), sd) if len(vals) > 1 else fmt.split(" ±")[0].format(vals[0]))
        logged = [r["history"][-1]["compared"] for r in runs if r["history"][-1].get("compared") is not None]
        compared = statistics.mean(logged) if logged else float("nan")  # runs before the column have none
        print(f"| {name} | {len(runs)} | " + " | ".join(cells) + f" | {compared:.1f} |")
    print()
    for name, runs in rows.items():
        per_seed = "; ".join(f"s{r['seed']}: rsum {r[split]['rsum']:.1f}, τ {r[split]['rel_kendall_i2t']:.4f}/"
                             f"{r[split]['rel_kendall_t2i']:.4f}, NCS@5 {r[split]['ncs_i2t_5']:.1f}/"
                             f"{r[split]['ncs_t2i_5']:.1f}, mAP@R {r[split]['rel_map_at_r_i2t']:.1f}/"
                             f"{r[split]['rel_map_at_r_t2i']:.1f}" for r in sorted(runs, key=lambda r: r["seed"]))
        print(f"- {name}: {per_seed}")


def misses(out: Path, names: list[str], split: str = "test") -> None:
    """Why plain R@1 understates a more correct ranking: per run, image→text R@1 against the share of queries whose
    top caption is fully correct (ground-truth relevance 1, the image's own or another image's caption)."""
    import torch

    from bcls.data.precomp import read_precomp_split
    from bcls.trainer.checkpoint import load_checkpoint, model_from_checkpoint
    from bcls.trainer.evaluation.evaluate import encode_split

    table, feats = read_precomp_split(out / "data", split)
    relevance = torch.from_numpy(np.load(out / "data" / f"{split}_relevance.npy"))
    own = torch.from_numpy(table.image_index().copy())
    print(f"| run ({split}) | i2t R@1 | top-1 fully correct | misses that are fully correct captions of another image |")
    print("|---|---|---|---|")
    for name in names:
        path = out / "runs" / name / "best.pt"
        model, vocab = model_from_checkpoint(load_checkpoint(path, "cpu"), "cpu", path)
        img, cap = encode_split(model, vocab, table, feats)
        top = (img @ cap.T).argmax(dim=1)
        hit = own[top] == torch.arange(len(img))
        correct = relevance[torch.arange(len(img)), top] >= 1.0
        print(f"| {name} | {100 * hit.float().mean():.1f} | {100 * correct.float().mean():.1f} | "
              f"{100 * (correct & ~hit).sum() / max(int((~hit).sum()), 1):.1f} % |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("setup", "setup-ensemble", "teacher", "run", "reevaluate", "table",
                                            "plot", "misses"))
    parser.add_argument("--out", default="runs/sweep", type=Path)
    parser.add_argument("--queue", default=Path(__file__).with_suffix(".json"), type=Path)
    parser.add_argument("--only", default=None, help="comma-separated job names (misses: run folders)")
    parser.add_argument("--poll", type=float, default=0.0, help="run: seconds between looks at an empty queue "
                        "(0: stop when it is empty; a file OUT/STOP also stops the worker)")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--match", default=None, help="table: only variants matching this regular expression")
    parser.add_argument("--extra", default="", help="teacher: more source specs scored on the same pairs, "
                        "comma-separated (spice:measure=precision,ensemble:path=ens.json)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.command == "setup":
        setup(args.out)
    elif args.command == "setup-ensemble":
        setup_ensemble(args.out)
    elif args.command == "teacher":
        teacher(args.out, [x for x in args.extra.split(",") if x])
    elif args.command == "run":
        run(args.out, args.queue, set(args.only.split(",")) if args.only else None, args.poll)
    elif args.command == "reevaluate":
        reevaluate(args.out, set(args.only.split(",")) if args.only else None)
    elif args.command == "misses":
        misses(args.out, args.only.split(","), args.split)
    elif args.command == "table":
        table(args.out, args.split, args.match)
    else:
        from sweep_plots import plots  # bench/sweep_plots.py

        plots(args.out)


if __name__ == "__main__":
    main()
