"""Exact inner-product search in torch, for CUDA machines where faiss cannot use the GPU
(:class:`TorchExactIndex`; :func:`bcls.pipeline.search.indexes.build_index` chooses it).

Choosing the top k of each row of a score matrix (:func:`select_topk`) can be done three ways, all exact:
``torch`` (one ``torch.topk`` per row), ``chunk:N`` (:func:`chunked_topk`) and ``threshold:G`` (:func:`threshold_topk`).
On the GPU measured so far one ``torch.topk`` per row was the fastest (docs/benchmarks.md, "Measurements behind the
code"), so :data:`TOPK` is ``torch``; the others stay for other GPUs (the environment variable ``BCLS_TORCH_TOPK`` picks
one for a build, and the bench measures them).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from bcls.data.infra.errors import ConfigError

#: The top-k of the search (:func:`select_topk`): ``$BCLS_TORCH_TOPK``, else ``torch``, the fastest on an H200.
TOPK = os.environ.get("BCLS_TORCH_TOPK", "torch")
#: Above this many candidates per row (the rows of a block with the most), :func:`threshold_topk` falls back to
#: ``torch.topk`` over the full rows.
THRESHOLD_MAX_CANDIDATES = 16384


def chunked_topk(scores: Any, k: int, chunk: int) -> Any:
    """Column indices of the ``k`` largest entries of each row of ``scores`` (torch ``(R, N)``), best first.

    Our choice, written when one ``torch.topk`` over rows of 617k scores looked slow on a GPU (a few slices that are
    each very long; measured since, it was not: module docstring). Here the row is cut into chunks of ``chunk``
    columns, the top ``k`` of every chunk are found in one batched call (many short slices), and the top ``k`` of
    those ``(N / chunk) · k`` survivors are the row's top ``k``: every entry of the row's top ``k`` is in its
    chunk's top ``k``. Ties may come back in another order than ``torch.topk``'s. The last chunk is padded with
    ``-inf`` columns, which never win while ``k ≤ N``. Rows shorter than two chunks, or ``k ≥ chunk``, take the
    single call.
    """
    import torch

    rows, n = scores.shape
    if not chunk or n < 2 * chunk or k >= chunk:
        return torch.topk(scores, k, dim=1).indices
    chunks = -(-n // chunk)
    if chunks * chunk != n:
        scores = torch.nn.functional.pad(scores, (0, chunks * chunk - n), value=float("-inf"))
    values, within = torch.topk(scores.view(rows, chunks, chunk), k, dim=2)
    best = torch.topk(values.view(rows, chunks * k), k, dim=1).indices
    columns = within + chunk * torch.arange(chunks, device=scores.device)[:, None]  # chunk-local -> row columns
    return columns.view(rows, chunks * k).gather(1, best)


def threshold_topk(scores: Any, k: int, groups: int) -> Any:
    """Column indices of the ``k`` largest entries of each row of ``scores`` (torch ``(R, N)``), best first.

    Our choice, another candidate for the GPU search (slower than ``torch.topk`` on an H200: module docstring): a row is
    cut into ``groups`` groups of consecutive columns and each group's maximum taken (one pass over the scores). The
    ``k``-th largest of those maxima, ``t``, is a lower bound of the row's ``k``-th largest entry (the ``k`` best
    groups hold ``k`` distinct entries ``≥ t``), so the row's top ``k`` are among its entries ``≥ t``: typically not
    many more than ``k`` when ``groups`` is well above ``k``. Those entries are gathered into a small ``(R, C)``
    matrix (``C``: the most any row has) and one ``torch.topk`` over it picks the ``k``. Exact, like
    :func:`chunked_topk`; ties may come back in another order than ``torch.topk``'s. Falls back to ``torch.topk``
    when ``groups < k``, when a row is shorter than two groups' worth, or when ``C`` exceeds
    :data:`THRESHOLD_MAX_CANDIDATES` (rows of many equal scores).
    """
    import torch

    rows, n = scores.shape
    width = -(-n // groups) if groups else 0
    if groups < k or width < 2 or rows == 0:
        return torch.topk(scores, k, dim=1).indices
    padded = scores
    if groups * width != n:
        padded = torch.nn.functional.pad(scores, (0, groups * width - n), value=float("-inf"))
    group_max = padded.view(rows, groups, width).amax(dim=2)
    bound = torch.topk(group_max, k, dim=1).values[:, -1:]
    keep = scores >= bound
    counts = keep.sum(dim=1)
    most = int(counts.max())
    if most > THRESHOLD_MAX_CANDIDATES or int(counts.min()) < k:  # (fewer than k: NaN scores)
        return torch.topk(scores, k, dim=1).indices
    row, col = keep.nonzero(as_tuple=True)  # row-major: each row's columns together, in order
    slot = torch.arange(len(row), device=scores.device) - (torch.cumsum(counts, 0) - counts)[row]
    values = torch.full((rows, most), float("-inf"), dtype=scores.dtype, device=scores.device)
    columns = torch.zeros((rows, most), dtype=torch.int64, device=scores.device)
    values[row, slot] = scores[row, col]
    columns[row, slot] = col
    return columns.gather(1, torch.topk(values, k, dim=1).indices)


def parse_topk(spec: str) -> tuple[str, int]:
    """``(method, size)`` of a top-k spec: ``torch``, ``chunk:N`` (columns per chunk) or ``threshold:G`` (groups
    per row); a malformed spec is a :class:`ConfigError`."""
    method, _, size = spec.partition(":")
    if method == "torch" and not size:
        return method, 0
    if method in ("chunk", "threshold") and size.isdigit() and int(size) > 0:
        return method, int(size)
    raise ConfigError(f"unknown top-k {spec!r} (BCLS_TORCH_TOPK or topk=): give torch, chunk:N or threshold:G (N, G "
                      "positive integers)")


def select_topk(scores: Any, k: int, spec: str = TOPK) -> Any:
    """Column indices of the ``k`` largest entries of each row of ``scores``, best first, by the method ``spec``
    names (:func:`parse_topk`)."""
    import torch

    method, size = parse_topk(spec)
    if method == "chunk":
        return chunked_topk(scores, k, size)
    if method == "threshold":
        return threshold_topk(scores, k, size)
    return torch.topk(scores, k, dim=1).indices


class TorchExactIndex:
    """Exact inner-product search with torch (``IndexFlatIP``'s ``search`` and ``ntotal``), for a CUDA device
    that faiss cannot use.

    Each query block is cut into sub-blocks whose score matrix stays near ``max_scores`` entries. With
    ``low_precision`` (default float16 on CUDA) the base is also held in that type and the sub-block's scores are
    computed there (tensor cores), the top ``k + margin`` candidates (:func:`select_topk` by the method ``topk``)
    are re-scored in float32 from the float32 base, and the top ``k`` of those are
    returned: the float32 exact result whenever the true top ``k`` are among the low-precision top ``k + margin``
    (float16 scores of unit vectors err by about 1e-3, so ``margin`` = 32 covers neighbours packed that closely).
    ``low_precision=None`` multiplies in float32 with TF32 off. The same code runs on the CPU (tests use bfloat16
    there).
    """

    def __init__(self, base: np.ndarray, device: str = "cuda", max_scores: int = 1 << 28,
                 low_precision: Any = "auto", margin: int = 32, topk: str = TOPK) -> None:
        import torch

        self.device = torch.device(device)
        self.base = torch.from_numpy(np.ascontiguousarray(base, dtype=np.float32)).to(self.device)
        self.ntotal = int(self.base.shape[0])
        self.max_scores = max_scores
        if low_precision == "auto":
            low_precision = torch.float16 if self.device.type == "cuda" else None
        self.low = self.base.to(low_precision) if low_precision is not None else None
        self.margin = margin
        parse_topk(topk)  # a malformed spec fails here, not at the first search
        self.topk = topk

    @property
    def block_rows(self) -> int:
        """Queries per sub-block: their score matrix holds about ``max_scores`` entries."""
        return max(1, self.max_scores // max(self.ntotal, 1))

    def sorted_unique(self, values: np.ndarray) -> np.ndarray:
        """:func:`bcls.pipeline.sources.hashing.sorted_unique` of an int64 array on this index's device (the
        candidate keys of a search run here, where a CPU core would spend seconds sorting them)."""
        import torch

        flat = torch.from_numpy(np.ascontiguousarray(values, dtype=np.int64).ravel()).to(self.device)
        return torch.unique(flat, sorted=True).cpu().numpy()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores float32 (Q, k), ids int64 (Q, k))``, best first (``k`` clipped to ``ntotal``)."""
        import torch

        k = min(k, self.ntotal)
        step = self.block_rows
        scores = np.empty((queries.shape[0], k), dtype=np.float32)
        ids = np.empty((queries.shape[0], k), dtype=np.int64)
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            with torch.no_grad():
                for lo in range(0, queries.shape[0], step):
                    q = torch.from_numpy(np.ascontiguousarray(queries[lo:lo + step], dtype=np.float32))
                    q = q.to(self.device)
                    if self.low is None:
                        top = torch.topk(q @ self.base.T, k, dim=1)
                        values, indices = top.values, top.indices
                    else:
                        wide = min(self.ntotal, k + self.margin)
                        cand = select_topk(q.to(self.low.dtype) @ self.low.T, wide, self.topk)
                        exact = torch.einsum("qd,qcd->qc", q, self.base[cand])  # float32 re-scoring
                        top = torch.topk(exact, k, dim=1)
                        values, indices = top.values, torch.gather(cand, 1, top.indices)
                    scores[lo:lo + step] = values.cpu().numpy()
                    ids[lo:lo + step] = indices.cpu().numpy()
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
        return scores, ids
