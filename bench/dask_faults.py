"""Rounds of the distributed label build with a worker or the scheduler killed mid-build (SIGKILL), on a real
``dask scheduler`` + two ``dask worker`` processes on this machine; each round is bounded by a timeout.

    python bench/dask_faults.py --rounds 10 --scenario worker      # the build finishes; shards == a local build
    python bench/dask_faults.py --rounds 10 --scenario scheduler   # one ClusterError; a local rerun reuses shards

Prints one line per round and a JSON summary (rounds passed, seconds per round). The cluster and the test source
are ``tests/pipeline/cluster_kit.py`` (the tests run one round of each in ``tests/pipeline/test_cluster.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "pipeline"))
sys.path.insert(0, str(ROOT))  # for tests.conftest

import cluster_kit  # noqa: E402

from bcls.data.infra.errors import ClusterError  # noqa: E402
from bcls.pipeline.building.label_build import LabelBuildConfig, build_labels  # noqa: E402
from tests.conftest import hash_encoder, label_files, write_caption_csv  # noqa: E402


def build(captions: Path, out: Path, scheduler: str, timeout: float) -> BaseException | None:
    """The build, bounded by ``timeout``: its error (TimeoutError for a hang), or None."""
    config = LabelBuildConfig(captions=str(captions), out=str(out), k=3, sources=("gated",), images_per_shard=1,
                              use_cache=False, scheduler=scheduler)
    try:
        cluster_kit.call_with_timeout(lambda: build_labels(config, encoder=hash_encoder()), timeout)
    except BaseException as err:
        return err
    return None


def one_round(root: Path, scenario: str, reference: dict[str, str], captions: Path, timeout: float) -> str:
    out, gate = root / "dist", root / "gate"
    with cluster_kit.Cluster(root / "cluster", env={"BCLS_TEST_GATE": str(gate), "BCLS_TEST_OUT": str(out)}) as c:
        c.wait_for_workers()

        def kill() -> None:
            cluster_kit.wait_for(lambda: cluster_kit.shard_count(out) >= 2, timeout, "the first shards")
            c.kill_worker(0) if scenario == "worker" else c.kill_scheduler()
            gate.touch()

        killer = threading.Thread(target=kill, daemon=True)
        killer.start()
        error = build(captions, out, c.address, timeout)
        killer.join(timeout)
    if scenario == "worker":
        if error is not None:
            return f"FAIL: {type(error).__name__}: {error}"
        return "ok" if label_files(out) == reference else "FAIL: shards differ from the local build"
    if not isinstance(error, ClusterError):
        return f"FAIL: expected a ClusterError, got {type(error).__name__}: {error}"
    kept = cluster_kit.shard_count(out)
    again = build(captions, out, "threads", timeout)
    if again is not None:
        return f"FAIL on the rerun: {type(again).__name__}: {again}"
    return f"ok ({kept} shards kept)" if label_files(out) == reference else "FAIL: rerun differs from the local build"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--scenario", choices=("worker", "scheduler"), default="worker")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed for each build")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    cluster_kit.register()
    with tempfile.TemporaryDirectory(prefix="bcls-dask-faults-") as tmp:
        captions = write_caption_csv(Path(tmp) / "caps.csv", n_images=12)
        error = build(captions, Path(tmp) / "local", "threads", args.timeout)
        assert error is None, error
        reference = label_files(Path(tmp) / "local")
        results, seconds = [], []
        for r in range(args.rounds):
            t0 = time.perf_counter()
            result = one_round(Path(tmp) / f"round{r}", args.scenario, reference, captions, args.timeout)
            seconds.append(round(time.perf_counter() - t0, 1))
            results.append(result)
            print(f"round {r + 1}/{args.rounds}: {result} in {seconds[-1]} s", file=sys.stderr, flush=True)
    passed = sum(r.startswith("ok") for r in results)
    print(json.dumps({"scenario": args.scenario, "rounds": args.rounds, "passed": passed, "seconds": seconds,
                      "timeout_s": args.timeout}))
    sys.exit(0 if passed == args.rounds else 1)


if __name__ == "__main__":
    main()
