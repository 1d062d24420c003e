"""Exact inner-product search in torch, for CUDA machines where faiss cannot use the GPU
(:class:`TorchExactIndex`; :func:`bcls.pipeline.indexes.build_index` chooses it)."""

from __future__ import annotations

from typing import Any

import numpy as np

#: Columns per chunk of the two-stage top-k (:func:`chunked_topk`); 0 turns it off (one ``torch.topk`` per row).
#: 0 until measured on a GPU: ``bench/bench_torch_search.py`` (step "search" of ``bench/gpu_full_build.sh``) times
#: chunks of 4096–32768 against it; on the CPU (where this index is not used) chunks are 0.8× as fast.
TOPK_CHUNK = 0


def chunked_topk(scores: Any, k: int, chunk: int = TOPK_CHUNK) -> Any:
    """Column indices of the ``k`` largest entries of each row of ``scores`` (torch ``(R, N)``), best first.

    Our choice, for the GPU search: one ``torch.topk`` over rows of 617k scores is slow on a GPU (a few slices
    that are each very long). Here the row is cut into chunks of ``chunk`` columns, the top ``k`` of every chunk
    are found in one batched call (many short slices), and the top ``k`` of those ``(N / chunk) · k`` survivors
    are the row's top ``k``: every entry of the row's top ``k`` is in its chunk's top ``k``. Ties may come back
    in another order than ``torch.topk``'s. The last chunk is padded with ``-inf`` columns, which never win while
    ``k ≤ N``. Rows shorter than two chunks, or ``k ≥ chunk``, take the single call.
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


class TorchExactIndex:
    """Exact inner-product search with torch (``IndexFlatIP``'s ``search`` and ``ntotal``), for a CUDA device
    that faiss cannot use.

    Each query block is cut into sub-blocks whose score matrix stays near ``max_scores`` entries. With
    ``low_precision`` (default float16 on CUDA) the base is also held in that type and the sub-block's scores are
    computed there (tensor cores), the top ``k + margin`` candidates (:func:`chunked_topk`, chunks of
    ``topk_chunk`` columns) are re-scored in float32 from the float32 base, and the top ``k`` of those are
    returned: the float32 exact result whenever the true top ``k`` are among the low-precision top ``k + margin``
    (float16 scores of unit vectors err by about 1e-3, so ``margin`` = 32 covers neighbours packed that closely).
    ``low_precision=None`` multiplies in float32 with TF32 off. The same code runs on the CPU (tests use bfloat16
    there).
    """

    def __init__(self, base: np.ndarray, device: str = "cuda", max_scores: int = 1 << 28,
                 low_precision: Any = "auto", margin: int = 32, topk_chunk: int = TOPK_CHUNK) -> None:
        import torch

        self.device = torch.device(device)
        self.base = torch.from_numpy(np.ascontiguousarray(base, dtype=np.float32)).to(self.device)
        self.ntotal = int(self.base.shape[0])
        self.max_scores = max_scores
        if low_precision == "auto":
            low_precision = torch.float16 if self.device.type == "cuda" else None
        self.low = self.base.to(low_precision) if low_precision is not None else None
        self.margin = margin
        self.topk_chunk = topk_chunk

    @property
    def block_rows(self) -> int:
        """Queries per sub-block: their score matrix holds about ``max_scores`` entries."""
        return max(1, self.max_scores // max(self.ntotal, 1))

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
                        cand = chunked_topk(q.to(self.low.dtype) @ self.low.T, wide, self.topk_chunk)
                        exact = torch.einsum("qd,qcd->qc", q, self.base[cand])  # float32 re-scoring
                        top = torch.topk(exact, k, dim=1)
                        values, indices = top.values, torch.gather(cand, 1, top.indices)
                    scores[lo:lo + step] = values.cpu().numpy()
                    ids[lo:lo + step] = indices.cpu().numpy()
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
        return scores, ids
