"""Rounds of ``torchrun --max-restarts 1`` on 2 CPU ranks (gloo) where rank 1 kills itself with SIGKILL at epoch 2,
step 1 of the first attempt (``tests/trainer/kill_rank.py``): each round must finish (rc 0) with the weights of an
uninterrupted 2-rank run. Each round is bounded by a timeout.

    python bench/torchrun_restarts.py --rounds 10

Prints one line per round and a JSON summary (rounds passed, seconds per round, the failures' last log line).
The test ``test_a_rank_killed_mid_epoch_restarts_from_last_pt_and_ends_as_an_uninterrupted_run`` runs one round.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.conftest

import torch  # noqa: E402

from bcls.data.demo import DemoConfig, generate_demo  # noqa: E402
from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels  # noqa: E402
from bcls.trainer.checkpoint import load_checkpoint  # noqa: E402
from tests.conftest import hash_encoder  # noqa: E402


def torchrun(out: Path, entry: list[str], restarts: int, common: list[str], timeout: float) -> tuple[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KILL_RANK": "1"}
    try:
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                               "--max-restarts", str(restarts), "--monitor-interval", "0.2", *entry, "train",
                               "--out", str(out), *common], capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, f"no end within {timeout:.0f} s"
    return proc.returncode, proc.stderr


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_checkpoint(a)["state_dict"], load_checkpoint(b)["state_dict"]
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed for each torchrun")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bcls-torchrun-restarts-") as tmp:
        root = Path(tmp)
        generate_demo(root / "data", DemoConfig(n_train=40, n_dev=10, n_test=10, seed=5))
        build_labels(LabelBuildConfig(captions=str(root / "data"), split="train", out=str(root / "labels"), k=5),
                     encoder=hash_encoder())
        (root / "settings.json").write_text(json.dumps({"batch_size": 16, "embed_dim": 16, "word_dim": 8,
                                                        "epochs": 3, "lam": 0.5}))
        common = ["--data", str(root / "data"), "--labels", str(root / "labels"), "--config",
                  str(root / "settings.json")]
        rc, err = torchrun(root / "whole", ["-m", "bcls.cli"], 0, common, args.timeout)
        assert rc == 0, err[-3000:]
        results, seconds, failures = [], [], []
        for r in range(args.rounds):
            t0 = time.perf_counter()
            out = root / f"killed{r}"
            rc, err = torchrun(out, [str(ROOT / "tests" / "trainer" / "kill_rank.py")], 1, common, args.timeout)
            ok = rc == 0 and "failed (exitcode: -9) local_rank: 1" in err and same_weights(root / "whole" / "last.pt",
                                                                                           out / "last.pt")
            seconds.append(round(time.perf_counter() - t0, 1))
            results.append(ok)
            if not ok:
                failures.append(next((line for line in reversed(err.splitlines()) if "refused" in line or
                                      "Error" in line), err.strip().splitlines()[-1] if err.strip() else f"rc {rc}"))
            print(f"round {r + 1}/{args.rounds}: {'ok' if ok else 'FAIL ' + failures[-1]} in {seconds[-1]} s",
                  file=sys.stderr, flush=True)
    print(json.dumps({"rounds": args.rounds, "passed": sum(results), "seconds": seconds, "failures": failures}))
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
