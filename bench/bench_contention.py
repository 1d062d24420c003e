"""Benchmark: how much slower training gets beside another busy process, and which thread settings degrade best.

    python bench/bench_contention.py [--steps 60] [--threads 2]

On a generated demo (1,000 training images, stand-in encoder) it times ``--steps`` training steps of the default
model in a child process, alone and beside a competitor (a pure-Python busy loop, one core), for each thread
setting: torch's default OpenMP wait policy, ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of
spinning), and ``auto``, what the ``bcls`` command decides for itself (``bcls.data.infra.runtime.choose_openmp_wait_policy``:
PASSIVE only when other processes already keep half a core busy). Reported: steps/s and the slowdown beside the
competitor (the target is at most 2.5× on 2 cores; 1.5× is what sharing 2 cores three ways costs when no thread
spins). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import os, sys, time
if os.environ.pop("BCLS_AUTO_POLICY", None):  # what `bcls train` decides for itself
    from bcls.data.infra.runtime import choose_openmp_wait_policy
    print("auto:", choose_openmp_wait_policy() or "default policy", file=sys.stderr)
import torch
from bcls.trainer.config import TrainConfig
from bcls.trainer.train import Trainer
config = TrainConfig(data=sys.argv[1], labels=sys.argv[2], out=sys.argv[3], warmup_epochs=0)
run = Trainer(config)
batches = list(run.batches(1))
run.step(batches[0], 2, 0)
start = time.perf_counter()
for s in range(int(sys.argv[4])):
    run.step(batches[1 + s % (len(batches) - 1)], 2, s)
print((time.perf_counter() - start) / int(sys.argv[4]))
"""


def _steps_per_s(data: Path, labels: Path, out: Path, steps: int, env: dict[str, str]) -> float:
    result = subprocess.run([sys.executable, "-c", CHILD, str(data), str(labels), str(out), str(steps)], env=env,
                            capture_output=True, text=True, check=True)
    return 1.0 / float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bcls.data.demo import DemoConfig, generate_demo
    from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels
    from tests.conftest import hash_encoder

    tmp = Path(tempfile.mkdtemp(prefix="bcls-contention-"))
    generate_demo(tmp / "data", DemoConfig(n_train=1000, n_dev=50, n_test=50))
    build_labels(LabelBuildConfig(captions=str(tmp / "data"), split="train", out=str(tmp / "labels"), k=16),
                 encoder=hash_encoder(), encoder_id="hash64")
    # spin10k/spin100k (GOMP_SPINCOUNT) were measured once, 2.4-2.5 steps/s alone and 3.6x / 9.6x slower beside
    # the busy loop: no better than either, so they are not repeated
    settings = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "auto": {"BCLS_AUTO_POLICY": "1"}}
    results: dict[str, float] = {}
    print(f"{'setting':<10} {'alone steps/s':>14} {'beside a busy loop':>19} {'slowdown':>9}")
    for name, extra in settings.items():
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | extra | {
            "OMP_NUM_THREADS": str(args.threads)}
        alone = _steps_per_s(tmp / "data", tmp / "labels", tmp / f"run-{name}-a", args.steps, env)
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(0.5)
            shared = _steps_per_s(tmp / "data", tmp / "labels", tmp / f"run-{name}-b", args.steps, env)
        finally:
            busy.kill()
            busy.wait()
        results |= {f"{name}_alone": round(alone, 3), f"{name}_beside": round(shared, 3),
                    f"{name}_slowdown": round(alone / shared, 2)}
        print(f"{name:<10} {alone:>14.2f} {shared:>19.2f} {alone / shared:>8.2f}x", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
