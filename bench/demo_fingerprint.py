"""Fingerprint of the whole pipeline's outputs on a small fixed-seed demo: run it before and after a refactoring
and diff the two JSON files; equal fingerprints mean the change left every output the same.

``python bench/demo_fingerprint.py OUT_DIR > fingerprint.json`` (one thread, a few minutes on 2 cores). It hashes
the generated data files, the label values of an sbert and an sbert+cider+spice build (column by column, so the
config hash in the shard metadata does not count), the caption embeddings, and for seven training configurations
(defaults, λ = 0, dense labels, neighbour batches, streaming, cider with percentile labels, vse-gpo) the weights of
init/best/last checkpoints, the training log and every test metric.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

torch.set_num_threads(1)

from bcls.data.demo import DemoConfig, generate_demo  # noqa: E402

from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels  # noqa: E402
from bcls.trainer.config import TrainConfig  # noqa: E402
from bcls.trainer.evaluation import evaluate  # noqa: E402
from bcls.trainer.train import train  # noqa: E402


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()[:16]


def table_hash(path: Path) -> dict:
    t = pq.read_table(path)
    return {c: sha(np.ascontiguousarray(t.column(c).to_numpy()).tobytes()) for c in t.column_names} | {
        "rows": t.num_rows}


def ckpt_hash(path: Path) -> dict:
    ck = torch.load(path, weights_only=True)
    state = ck["state_dict"]
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return {"weights": h.hexdigest()[:16], "epoch": ck["epoch"], "history": json.dumps(
        [{k: v for k, v in e.items()} for e in ck["history"]], sort_keys=True, default=str)[:4000]}


def main() -> None:
    out = Path(sys.argv[1])
    data = out / "data"
    fp: dict = {}
    generate_demo(data, DemoConfig(seed=0, n_train=400, n_dev=100, n_test=200))
    fp["data"] = {p.name: sha(p.read_bytes()) for p in sorted(data.iterdir()) if p.name != "demo.json"}
    demo = json.loads((data / "demo.json").read_text())
    demo.pop("bcls_version", None)
    fp["demo_json"] = sha(json.dumps(demo, sort_keys=True).encode())
    builds = {"labels": ("sbert",), "labels3": ("sbert", "cider", "spice")}
    for name, sources in builds.items():
        build_labels(LabelBuildConfig(captions=str(data), out=str(out / name), split="train", k=8,
                                      sources=sources, force=True))
        fp[name] = {p.name: table_hash(p) for p in sorted((out / name).glob("shard-*.parquet"))}
        fp[name]["embeddings"] = sha((out / name / "_caption_embeddings.npy").read_bytes())
        man = json.loads((out / name / "_manifest.json").read_text())
        fp[name]["rows"] = man["rows"]
    runs = {
        "default": {},
        "lam0": {"lam": 0.0},
        "dense": {"label_mode": "dense", "gap": 0.1},
        "neighbours": {"sampler": "neighbours", "window": 2, "n_hard": 2},
        "stream": {"sampler": "stream"},
        "cider-pct": {"source": "cider", "label_norm": "percentile", "surrogate": "tanh", "temperature": 0.5},
        "gpo": {"model": "vse-gpo", "binary_loss": "triplet-sn-softmax", "schedule": "cosine"},
    }
    for name, settings in runs.items():
        labels = out / ("labels3" if settings.get("source") == "cider" else "labels")
        run = out / f"run-{name}"
        cfg = TrainConfig.from_dict(dict(data=str(data), labels=str(labels), out=str(run), epochs=2, embed_dim=64,
                                         word_dim=32, batch_size=64, **settings))
        train(cfg, overwrite=True)
        fp[f"run-{name}"] = {ck: ckpt_hash(run / ck) for ck in ("init.pt", "best.pt", "last.pt")}
        log = (run / "train_log.csv").read_text()
        fp[f"run-{name}"]["train_log"] = sha(log.encode())
        m = evaluate(run / "best.pt", data, "test", out / f"eval-{name}")["metrics"]
        fp[f"run-{name}"]["metrics"] = {k: round(v, 10) for k, v in sorted(m.items())}
    print(json.dumps(fp, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
