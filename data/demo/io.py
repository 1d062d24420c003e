"""The demo's files: :func:`generate_demo` writes every split, :func:`read_demo_facts` reads the ground truth."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bcls.data.infra.atomic import atomic_write_bytes
from bcls.data.infra.errors import DataFormatError
from bcls.data.infra.version import __version__

from ..precomp import write_precomp_split
from .captions import scene_captions
from .demo_config import DemoConfig, DemoFacts
from .regions import DemoPrototypes, demo_prototypes, region_features
from .relevance import demo_relevance
from .scenes import sample_scene
from .world import ATTR_NAMES, CONTEXT_NAMES, CONTEXTS, OBJ_NAMES, OBJECTS, RELATIONS, VOCAB

logger = logging.getLogger(__name__)

FACTS_FORMAT = "bcls-demo-facts"
FACTS_VERSION = 1


def facts_path(folder: str | os.PathLike, split: str) -> Path:
    return Path(folder) / f"{split}_facts.json"


def vocabulary() -> dict[str, Any]:
    return {"contexts": list(CONTEXT_NAMES), "objects": list(OBJ_NAMES), "attributes": list(ATTR_NAMES),
            "relations": list(RELATIONS)}


def _csr(lists: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    ptr = np.zeros(len(lists) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(x) for x in lists])
    ids = np.fromiter((f for x in lists for f in x), dtype=np.int64, count=int(ptr[-1]))
    return ptr, ids


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def read_demo_facts(folder: str | os.PathLike, split: str) -> DemoFacts:
    """Read ``{split}_facts.json`` written by :func:`generate_demo`.

    Raises:
        DataFormatError: the file is missing, not a demo facts file, or inconsistent.
    """
    path = facts_path(folder, split)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFormatError(f"{path}: demo facts file not found; generate the demo first") from None
    except (OSError, ValueError) as err:
        raise DataFormatError(f"{path}: unreadable demo facts file ({err})") from None
    if not isinstance(raw, dict) or raw.get("format") != FACTS_FORMAT:
        raise DataFormatError(f"{path}: not a {FACTS_FORMAT} file (field 'format')")
    if raw.get("version") != FACTS_VERSION:
        raise DataFormatError(f"{path}: facts version {raw.get('version')!r}, this bcls reads {FACTS_VERSION}; "
                              "regenerate the demo")
    try:
        names = tuple(str(x) for x in raw["fact_names"])
        cpi = int(raw["captions_per_image"])
        image_ids = np.asarray(raw["image_ids"], dtype=np.int64).reshape(-1)
        img_ptr, img_ids = _csr(raw["image_facts"])
        cap_ptr, cap_ids = _csr(raw["caption_facts"])
    except (KeyError, TypeError, ValueError) as err:
        raise DataFormatError(f"{path}: malformed demo facts file ({type(err).__name__}: {err})") from None
    n_img = len(raw["image_facts"])
    if image_ids.shape[0] != n_img or cpi < 1 or len(raw["caption_facts"]) != n_img * cpi:
        raise DataFormatError(f"{path}: {n_img} images, {image_ids.shape[0]} ids and {len(raw['caption_facts'])} "
                              f"captions do not match captions_per_image={cpi}")
    for what, ids in (("image_facts", img_ids), ("caption_facts", cap_ids)):
        if ids.size and (ids.min() < 0 or ids.max() >= len(names)):
            raise DataFormatError(f"{path}: field '{what}' has fact ids outside the {len(names)}-fact vocabulary")
    return DemoFacts(split=split, image_ids=image_ids, captions_per_image=cpi, image_fact_ptr=img_ptr,
                     image_fact_ids=img_ids, caption_fact_ptr=cap_ptr, caption_fact_ids=cap_ids, fact_names=names)


def _off_diagonal_stats(rel: np.ndarray, cpi: int) -> dict[str, float]:
    own = np.zeros(rel.shape, dtype=bool)
    own[np.arange(rel.shape[1]) // cpi, np.arange(rel.shape[1])] = True
    off = rel[~own]
    return {"zero": round(float(np.mean(off == 0)), 6),
            "partial": round(float(np.mean((off > 0) & (off < 1))), 6),
            "one": round(float(np.mean(off == 1)), 6),
            "mean": round(float(off.mean()), 6)}


def _image_probe(feats: np.ndarray, facts: DemoFacts, protos: DemoPrototypes) -> float:
    """Precision of "the k objects whose prototype best matches some region" (k = true object count)."""
    n_c = len(CONTEXTS)
    scores = np.einsum("nrd,od->nor", feats, protos.objects).max(axis=2)
    hits, total = 0, 0
    for i in range(facts.n_images):
        f = facts.image_facts(i)
        objs = f[(f >= n_c) & (f < n_c + len(OBJECTS))] - n_c
        top = np.argsort(-scores[i], kind="stable")[: objs.size]
        hits += int(np.isin(top, objs).sum())
        total += objs.size
    return round(hits / max(total, 1), 6)


def generate_demo(out_dir: str | os.PathLike, config: DemoConfig = DemoConfig()) -> dict[str, Any]:
    """Generate the synthetic scenes dataset into ``out_dir`` (see the module docstring for the files).

    Returns:
        The content of ``demo.json``: config, seed, bcls version, counts, statistics and file checksums.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    protos = demo_prototypes(config)
    vocab = vocabulary()
    summary: dict[str, Any] = {
        "format": "bcls-demo", "bcls_version": __version__, "seed": config.seed,
        "config": dataclasses.asdict(config), "n_facts": len(VOCAB.names), "vocabulary": vocab, "splits": {},
    }
    files: dict[str, str] = {}
    next_id = 0
    for k, (split, n) in enumerate(config.split_sizes().items()):
        rng = np.random.default_rng([config.seed, 1, k])
        scenes = [sample_scene(rng, config) for _ in range(n)]
        captions: list[str] = []
        cap_facts: list[list[int]] = []
        for sc in scenes:
            for text, f in scene_captions(rng, sc, config.captions_per_image):
                captions.append(text)
                cap_facts.append(f)
        img_facts = [sc.facts() for sc in scenes]
        feats, region_probe = region_features(rng, scenes, config, protos)
        image_ids = np.arange(next_id, next_id + n, dtype=np.int64)
        next_id += n
        paths = write_precomp_split(out, split, captions, feats, image_ids=image_ids)
        payload = {"format": FACTS_FORMAT, "version": FACTS_VERSION, "split": split,
                   "captions_per_image": config.captions_per_image, "image_ids": image_ids.tolist(),
                   "fact_names": list(VOCAB.names), "vocabulary": vocab,
                   "image_facts": img_facts, "caption_facts": cap_facts}
        atomic_write_bytes(facts_path(out, split),
                            json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8"))
        facts = read_demo_facts(out, split)
        n_cap_facts = np.diff(facts.caption_fact_ptr)
        stats: dict[str, Any] = {
            "n_images": n, "n_captions": len(captions), "first_image_id": int(image_ids[0]),
            "mean_objects_per_image": round(float(np.mean([len(s.objects) for s in scenes])), 6),
            "mean_relations_per_image": round(float(np.mean([len(s.relations) for s in scenes])), 6),
            "mean_facts_per_image": round(float(np.mean(np.diff(facts.image_fact_ptr))), 6),
            "mean_facts_per_caption": round(float(n_cap_facts.mean()), 6),
            "mean_words_per_caption": round(float(np.mean([len(c.split()) for c in captions])), 6),
            "distinct_captions": len(set(captions)),
            "context_counts": {c: int(sum(s.context == i for s in scenes)) for i, c in enumerate(CONTEXT_NAMES)},
            "object_counts": {o: int(sum(i in s.objects for s in scenes)) for i, o in enumerate(OBJ_NAMES)},
            "object_region_probe_accuracy": round(region_probe, 6),
            "object_image_probe_precision": _image_probe(feats, facts, protos),
        }
        if split != "train":
            rel = demo_relevance(facts)
            stats["off_diagonal_relevance"] = _off_diagonal_stats(rel, config.captions_per_image)
            rel_path = out / f"{split}_relevance.npy"
            atomic_write_bytes(rel_path, _npy_bytes(rel.astype(np.float16)))
            paths = {**paths, "relevance": rel_path}
        for p in (*paths.values(), facts_path(out, split)):
            files[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
        summary["splits"][split] = stats
        logger.info("demo %s: %d images, %d captions, %.2f facts/caption", split, n, len(captions),
                    stats["mean_facts_per_caption"])
    summary["files"] = dict(sorted(files.items()))
    atomic_write_bytes(out / "demo.json", (json.dumps(summary, sort_keys=True, indent=2) + "\n").encode("utf-8"))
    logger.info("demo written to %s in %.2fs", out, time.perf_counter() - t0)
    return summary
