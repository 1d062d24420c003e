"""Benchmark: a label build over the complete MS-COCO 2014 captions (123,287 images, 616,767 captions).

Two steps:

* ``python bench/bench_coco_full.py table --out coco_full.parquet`` extracts ``captions_train2014.json`` and
  ``captions_val2014.json`` from the ``spice-1.0.jar`` inside the PyPI package ``pycocoevalcap`` (or ``--jar``)
  and writes one caption table (``image_id, caption_id, text``; Parquet) with every caption of both files;
* ``python bench/bench_coco_full.py build --captions coco_full.parquet --out DIR [-- extra build options]`` runs
  ``bcls labels build`` on it as a child process, samples the resident memory of the child and its children
  every 0.5 s, and reads the phase times from the build's log. Default options: ``--sources sbert,cider,spice
  --k 32 --index ivf`` (exact search over 617k captions costs about 1.5e14 multiply-adds, 20+ minutes on two
  cores; IVF with nprobe 32 visits about 1 % of the lists and logs its recall against exact search).

Peak memory is the largest sum over the process tree of each process's PSS (proportional set size: pages shared
between processes, such as a freshly forked child's, count once; RSS where PSS cannot be read) seen by the sampler
(it can miss spikes shorter than 0.5 s), overall and per phase (embedding, search, spice parse, the rest of
scoring + writing; a phase starts at its log line). The embedding cache is used as configured (``--cache``); pass a fresh folder for a cold run. The last line
printed is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

MEMBERS = ("coco/annotations/captions_train2014.json", "coco/annotations/captions_val2014.json")
PHASES = {
    "embedding": re.compile(r"phase embedding: .* in ([\d.]+)s"),
    "search": re.compile(r"phase search: .* in ([\d.]+)s"),
    "scoring_writing": re.compile(r"phase scoring\+writing: .* in ([\d.]+)s"),
    "total": re.compile(r"label build done: .* in ([\d.]+)s;"),
}
#: Log lines after which the build is in another phase, for the per-phase memory peaks.
PHASE_STARTS = ((re.compile(r"phase embedding: "), "search"), (re.compile(r"phase search: "), "scoring_writing"),
                (re.compile(r"spice: parsing"), "spice_parse"), (re.compile(r"spice: parsed "), "scoring_writing"))
RECALL = re.compile(r"recall against exact search on \d+ sampled captions: (.*)$")


def default_jar() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("pycocoevalcap is not installed: pip install pycocoevalcap, or pass --jar")
    return Path(list(spec.submodule_search_locations)[0]) / "spice" / "spice-1.0.jar"


def write_table(jar: Path, out: Path) -> dict[str, int]:
    """One Parquet caption table with every annotation of the train and val 2014 caption files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    image_ids, caption_ids, texts = [], [], []
    with zipfile.ZipFile(jar) as zf:
        for member in MEMBERS:
            data = json.load(io.TextIOWrapper(zf.open(member), encoding="utf-8"))
            for ann in data["annotations"]:
                image_ids.append(int(ann["image_id"]))
                caption_ids.append(int(ann["id"]))
                texts.append(ann["caption"])
    table = pa.table({"image_id": pa.array(image_ids, pa.int64()), "caption_id": pa.array(caption_ids, pa.int64()),
                      "text": pa.array(texts, pa.string())})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, out)
    return {"captions": len(texts), "images": len(set(image_ids))}


def tree_memory(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:  # PSS: shared pages split between the processes that share them (RSS would count a forked
            total += p.memory_full_info().pss  # child's copy-on-write pages twice)
        except (psutil.NoSuchProcess, psutil.AccessDenied, AttributeError):
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
    return total


def run_build(captions: Path, out: Path, extra: list[str], log_path: Path) -> dict[str, object]:
    cmd = [sys.executable, "-m", "bcls.cli", "labels", "build", "--captions", str(captions), "--out", str(out)]
    defaults = {"--sources": "sbert,cider,spice", "--k": "32", "--index": "ivf"}
    for flag, value in defaults.items():
        if flag not in extra:
            cmd += [flag, value]
    cmd += extra
    print("running:", " ".join(cmd), flush=True)
    peak = 0
    phase = "embedding"
    phase_peak: dict[str, int] = {}
    figures: dict[str, object] = {"command": " ".join(cmd[1:])}
    start = time.perf_counter()
    with open(log_path, "w", buffering=1) as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                now, current = tree_memory(proc.pid), phase
                peak = max(peak, now)
                phase_peak[current] = max(phase_peak.get(current, 0), now)
                done.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
            for name, pattern in PHASES.items():
                m = pattern.search(line)
                if m:
                    figures[f"{name}_s"] = float(m.group(1))
            for pattern, name in PHASE_STARTS:
                if pattern.search(line):
                    phase = name
            m = RECALL.search(line)
            if m:
                figures["recall"] = m.group(1).strip()
        rc = proc.wait()
        done.set()
        sampler.join()
    figures |= {"returncode": rc, "wall_s": round(time.perf_counter() - start, 1),
                "peak_memory_gib": round(peak / 2**30, 2),
                "phase_peak_gib": {name: round(value / 2**30, 2) for name, value in phase_peak.items()}}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    t = sub.add_parser("table", help="write the full COCO 2014 caption table")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--jar", type=Path, default=None)
    b = sub.add_parser("build", help="time `bcls labels build` on the table")
    b.add_argument("--captions", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--log", type=Path, default=None, help="copy of the build log [OUT.log]")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    if args.step == "table":
        counts = write_table(args.jar or default_jar(), args.out)
        print(f"{args.out}: {counts['captions']} captions of {counts['images']} images")
        print(json.dumps(counts))
        return
    log_path = args.log or args.out.with_name(args.out.name + ".log")
    figures = run_build(args.captions, args.out, extra, log_path)
    print("\nphase                 seconds")
    for name in ("embedding", "search", "scoring_writing", "total"):
        if f"{name}_s" in figures:
            print(f"{name:<20} {figures[f'{name}_s']:>8.1f}")
    print(f"peak memory (PSS of the process tree, sampled): {figures['peak_memory_gib']} GiB; wall {figures['wall_s']} s")
    print("peak memory per phase (GiB):", figures["phase_peak_gib"])
    print(json.dumps(figures))
    sys.exit(int(figures["returncode"]))


if __name__ == "__main__":
    main()
