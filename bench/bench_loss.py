"""Benchmark: Kendall ranking loss with SW-HS (O(B^2 log B)) vs the explicit O(B^3) reference, on CPU.

Run ``python bench/bench_loss.py``. For B in (128, 256, 512) it times forward + backward of
``kendall_loss`` (SW-HS, n_hard 1 and 2), ``kendall_naive`` and, for scale, the VSE++ triplet loss (median of a few repeats, after a warm-up), float32,
dense labels (every entry known: the "in-batch sbert labels" case, the most work for both), default
hyper-parameters (window 1, gap 0, sigmoid, temperature 0.1).

Peak memory at B = 512 is measured two ways, each in a fresh subprocess so that measurements do not see each
other's allocations:

* ``rss_mib``: increase of the process's peak resident set size (``VmHWM`` of ``/proc/self/status``; Linux) over
  one forward + backward, relative to the peak just before (inputs built and kernels warmed up on a tiny batch).
  This is what the machine actually pays, including temporaries that autograd does not keep. (Not
  ``getrusage().ru_maxrss``: that survives ``exec`` and would report the parent's peak.)
* ``saved_mib``: bytes of the distinct tensors autograd saves for backward during the forward
  (``torch.autograd.graph.saved_tensors_hooks``), i.e. the memory held between forward and backward.

The last line printed is one JSON object with all figures.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import torch

from bcls.trainer.losses import KendallParams, TripletLoss, kendall_loss, kendall_naive

SIZES = (128, 256, 512)
MEM_B = 512
VARIANTS = {
    "swhs": lambda S, R, M: kendall_loss(S, R, M),
    "swhs_n2": lambda S, R, M: kendall_loss(S, R, M, KendallParams(n_hard=2)),
    "naive": lambda S, R, M: kendall_naive(S, R, M),
}
_TRIPLET = TripletLoss(0.2, "hardest")
TIMED = {**VARIANTS, "triplet": lambda S, R, M: _TRIPLET(S)}  # the binary loss, for scale


def _inputs(B: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    S = (torch.rand(B, B, generator=g) * 2 - 1).requires_grad_(True)
    R = torch.rand(B, B, generator=g)
    R.fill_diagonal_(1.0)
    M = torch.ones(B, B, dtype=torch.bool)
    return S, R, M


def _time(fn, B: int, repeats: int) -> float:
    S, R, M = _inputs(B)
    fn(S, R, M).backward()  # warm-up
    times = []
    for _ in range(repeats):
        S.grad = None
        t0 = time.perf_counter()
        fn(S, R, M).backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _peak_rss_kib() -> int:
    """Peak resident set size of this process in KiB (``VmHWM``; reset by ``exec``, unlike ``ru_maxrss``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _memory_child(variant: str, B: int) -> None:
    """Runs in a subprocess: prints JSON {rss_mib, saved_mib} for one forward + backward."""
    fn = VARIANTS[variant]
    s, r, m = _inputs(8)
    fn(s, r, m).backward()  # load kernels / allocator state on a tiny batch
    S, R, M = _inputs(B)
    before = _peak_rss_kib()
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        seen[st.data_ptr()] = max(seen.get(st.data_ptr(), 0), st.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = fn(S, R, M)
    loss.backward()
    after = _peak_rss_kib()
    print(json.dumps({"rss_mib": (after - before) / 1024, "saved_mib": sum(seen.values()) / 2**20}))


def _memory(variant: str, B: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--memory-child", variant, str(B)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    figures: dict[str, object] = {"device": "cpu", "threads": torch.get_num_threads(), "dtype": "float32"}
    timing: dict[str, dict[str, float]] = {}
    print(f"forward+backward, CPU ({torch.get_num_threads()} threads), float32, dense labels; median ms")
    print(f"{'B':>5} {'triplet':>10} {'swhs':>10} {'swhs_n2':>10} {'naive':>10} {'naive/swhs':>11}")
    for B in SIZES:
        repeats = 10 if B <= 256 else 5
        row = {name: _time(fn, B, repeats if name != "naive" else (5 if B <= 256 else 1)) for name, fn in TIMED.items()}
        timing[str(B)] = row
        print(f"{B:>5} {row['triplet']:>10.2f} {row['swhs']:>10.2f} {row['swhs_n2']:>10.2f} {row['naive']:>10.2f} "
              f"{row['naive'] / row['swhs']:>10.1f}x")
    figures["time_ms"] = timing
    memory = {name: _memory(name, MEM_B) for name in VARIANTS}
    figures[f"memory_B{MEM_B}_mib"] = memory
    print(f"\npeak memory at B={MEM_B} (MiB): rss = peak RSS increase over fwd+bwd; saved = autograd saved tensors")
    print(f"{'variant':>8} {'rss':>10} {'saved':>10}")
    for name, mem in memory.items():
        print(f"{name:>8} {mem['rss_mib']:>10.1f} {mem['saved_mib']:>10.1f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--memory-child":
        _memory_child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
