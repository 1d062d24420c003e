"""Check: a label build run many times from Python exits cleanly every time (exit code 0, no abort in native
thread teardown) — what lets the CLI end the normal way instead of with ``os._exit``.

    python bench/check_clean_exit.py [--runs 30] [--real-model]

Each run is a fresh process that builds ``sbert,cider,spice`` labels of 40 generated images in 8 shards (threads
scheduler) with ``build_labels`` and returns. ``--real-model`` embeds with the packaged sentence model instead of
a stand-in (torch's threads then run too). Prints each exit code and, last, one JSON line with the counts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import sys
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from tests.conftest import hash_encoder, write_caption_csv
from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
root = Path(sys.argv[1])
caps = write_caption_csv(root / "caps.csv", n_images=40)
real = sys.argv[2] == "1"
build_labels(LabelBuildConfig(captions=str(caps), out=str(root / "labels"), k=4, images_per_shard=5,
                              sources=("sbert", "cider", "spice"), use_cache=not real),
             encoder=None if real else hash_encoder(), encoder_id=None if real else "hash")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--real-model", action="store_true")
    args = parser.parse_args()
    codes = Counter()
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            result = subprocess.run([sys.executable, "-c", CHILD, tmp, "1" if args.real_model else "0", str(ROOT)],
                                    capture_output=True, text=True)
        aborted = "terminate called" in result.stderr or result.returncode < 0
        codes["aborted" if aborted else f"exit {result.returncode}"] += 1
        print(f"run {i + 1}: exit code {result.returncode}{' (abort)' if aborted else ''}", flush=True)
    print(json.dumps(dict(codes)))


if __name__ == "__main__":
    main()
