"""FAISS indexes over caption embeddings: which index (:class:`IndexSpec`), building it, and searching it.

Indexes: ``exact`` (``IndexFlatIP``), ``ivf`` (inverted lists, inner product; the vectors in the lists stored as
float16 by default, ``IndexIVFScalarQuantizer``, or as float32, ``IndexIVFFlat``) and ``hnsw`` (``IndexHNSWFlat``,
inner product). ``exact`` and ``ivf`` run on every GPU faiss sees (one GPU: a plain GPU clone; several: the base
sharded over all of them) and on the CPU otherwise; faiss has no GPU HNSW, so ``hnsw`` always runs on the CPU.
Queries are searched in blocks so memory stays bounded, with a rate/ETA log.

When faiss sees no GPU but torch does (a faiss-cpu install on a CUDA machine: the CUDA-12 faiss-gpu wheels need
CUDA-12 runtime libraries that a CUDA-13 machine lacks), ``exact`` runs as :class:`TorchExactIndex` on the first
CUDA device: float16 matrix products and ``torch.topk``, the top ``k + 32`` re-scored in float32, so the same
neighbours as ``IndexFlatIP`` up to float rounding and the order of ties (our choice; the tests run the same code
in bfloat16 on the CPU and compare it with faiss).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from bcls.data.infra.errors import ConfigError, setting
from bcls.data.infra.progress import Progress

from .torch_search import TorchExactIndex

log = logging.getLogger(__name__)

INDEX_KINDS = ("exact", "ivf", "hnsw")
#: How an IVF index stores the vectors of its lists.
IVF_CODES = ("float16", "float32")
_GPU_RESOURCES: list[Any] = []


def faiss_gpu_count() -> int:
    """Number of GPUs faiss can use (0 with faiss-cpu, or without faiss: a CUDA machine can search with torch)."""
    try:
        import faiss
    except ImportError:
        return 0
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def torch_cuda_available() -> bool:
    """Whether torch sees a CUDA device (False when torch is a CPU build)."""
    import torch

    return bool(torch.cuda.is_available())


def search_device(kind: str, use_gpu: bool | None = None) -> str:
    """Where :func:`build_index` puts an index of ``kind``: ``"faiss-gpu"`` (every GPU faiss sees; exact and IVF),
    ``"torch-cuda"`` (exact search in torch, when faiss sees no GPU but torch sees CUDA) or ``"cpu"`` (HNSW
    always: faiss has no GPU HNSW). ``use_gpu=False`` forces the CPU."""
    if use_gpu is False or kind == "hnsw":
        return "cpu"
    if faiss_gpu_count():
        return "faiss-gpu"
    return "torch-cuda" if kind == "exact" and torch_cuda_available() else "cpu"


@dataclass(frozen=True)
class IndexSpec:
    """Which FAISS index finds caption neighbours, and its parameters.

    Attributes:
        kind: ``exact`` (brute force), ``ivf`` (inverted lists; ``codes`` says how their vectors are stored) or
            ``hnsw`` (graph).
        nlist: IVF lists; ``None`` = ``4·sqrt(N)``, at most ``N / 39`` (faiss wants ≥ 39 training points a list).
        nprobe: IVF lists visited per query.
        codes: how an IVF index stores its vectors: ``float16`` (faiss's ``IndexIVFScalarQuantizer`` with
            ``QT_fp16``, no residuals; queries stay float32) or ``float32`` (``IndexIVFFlat``). Our choice:
            float16 searches faster in half the memory with practically the same neighbours (docs/benchmarks.md,
            "Measurements behind the code").
        train_per_list: the IVF k-means trains on at most this many sampled vectors a list (faiss's
            ``max_points_per_centroid``, whose default is 256). Our choice: it trains much faster with the same
            recall (docs/benchmarks.md, "Measurements behind the code").
        hnsw_m: HNSW links per node.
        ef_construction / ef_search: HNSW candidate-list sizes when adding / searching (``ef_search`` is raised
            to the number of neighbours asked for).
    """

    kind: str = "exact"
    nlist: int | None = None
    nprobe: int = 32
    train_per_list: int = 64
    codes: str = "float16"
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ConfigError(f"unknown {setting('index')} {self.kind!r}; valid: {', '.join(INDEX_KINDS)}")
        for name in ("nprobe", "train_per_list", "hnsw_m", "ef_construction", "ef_search"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{setting(name)} must be at least 1, got {getattr(self, name)}")
        if self.nlist is not None and self.nlist < 1:
            raise ConfigError(f"{setting('nlist')} must be at least 1, got {self.nlist}")
        if self.codes not in IVF_CODES:
            raise ConfigError(f"unknown {setting('ivf_codes')} {self.codes!r}; valid: {', '.join(IVF_CODES)}")

    def settings(self) -> dict[str, Any]:
        """The parameters that matter for this kind (JSON-able; part of a build's identity)."""
        if self.kind == "exact":
            return {"kind": "exact"}
        if self.kind == "ivf":
            return {"kind": "ivf", "nlist": self.nlist, "nprobe": self.nprobe, "train_per_list": self.train_per_list,
                    "codes": self.codes}
        return {"kind": "hnsw", "m": self.hnsw_m, "ef_construction": self.ef_construction,
                "ef_search": self.ef_search}

    def resolved_nlist(self, n: int) -> int:
        """The IVF list count used for a base of ``n`` vectors."""
        if self.nlist is not None:
            return max(1, min(self.nlist, n))
        return max(1, min(int(4 * math.sqrt(n)), n // 39))


def _to_gpu(index: Any, n_gpus: int) -> Any:
    import faiss

    if n_gpus == 1:
        if not _GPU_RESOURCES:
            _GPU_RESOURCES.append(faiss.StandardGpuResources())  # one per process, alive as long as it
        return faiss.index_cpu_to_gpu(_GPU_RESOURCES[0], 0, index)
    options = faiss.GpuMultipleClonerOptions()
    options.shard = True  # split the base over the GPUs (memory scales with the GPU count)
    return faiss.index_cpu_to_all_gpus(index, co=options)


def build_index(base: np.ndarray, spec: IndexSpec = IndexSpec(), use_gpu: bool | None = None,
                seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """Build an inner-product index over ``base`` (float32 ``(N, d)``, L2-normalised for cosine).

    Args:
        use_gpu: ``None`` uses every GPU faiss sees (for ``exact`` and ``ivf``); ``False`` forces the CPU.
        seed: k-means seed of the IVF quantizer.

    Returns:
        ``(index, info)``; ``info`` has the index description, its device, and the build time in seconds.
    """
    base = np.ascontiguousarray(base, dtype=np.float32)
    n, d = base.shape
    t0 = time.perf_counter()
    where = search_device(spec.kind, use_gpu)
    n_gpus = faiss_gpu_count() if where == "faiss-gpu" else 0
    info: dict[str, Any] = {"kind": spec.kind}
    if where == "torch-cuda":
        exact = TorchExactIndex(base, "cuda")
        info |= {"description": "exact inner product (torch float16 matmul + topk, float32 re-scoring)",
                 "device": "1 GPU (torch)", "build_seconds": round(time.perf_counter() - t0, 3)}
        log.info("exact search over %d vectors with torch on CUDA (faiss sees no GPU)", n)
        return exact, info
    import faiss

    index: Any  # one of faiss's index classes

    if spec.kind == "exact":
        index = faiss.IndexFlatIP(d)
        info["description"] = "IndexFlatIP (exact)"
    elif spec.kind == "ivf":
        nlist = spec.resolved_nlist(n)
        quantizer = faiss.IndexFlatIP(d)
        if spec.codes == "float16":
            index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_fp16,
                                                  faiss.METRIC_INNER_PRODUCT, False)
        else:
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.cp.max_points_per_centroid = spec.train_per_list
        index.nprobe = min(spec.nprobe, nlist)
        index.train(base)  # faiss's Python constructor keeps a reference to the quantizer
        name = "IndexIVFScalarQuantizer (float16 codes, " if spec.codes == "float16" else "IndexIVFFlat ("
        info |= {"description": f"{name}inner product, nlist {nlist}, nprobe {index.nprobe})",
                 "nlist": nlist, "nprobe": int(index.nprobe)}
    else:
        index = faiss.IndexHNSWFlat(d, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = spec.ef_construction
        index.hnsw.efSearch = spec.ef_search
        info |= {"description": f"IndexHNSWFlat (inner product, M {spec.hnsw_m}, efConstruction "
                                f"{spec.ef_construction}, efSearch {spec.ef_search})"}
        if use_gpu is None and faiss_gpu_count():
            log.info("faiss has no GPU HNSW: building and searching it on the CPU")
    if n_gpus:
        index = _to_gpu(index, n_gpus)
        info["device"] = f"{n_gpus} GPU(s)" + (" (sharded)" if n_gpus > 1 else "")
    else:
        info["device"] = "cpu"
    index.add(base)
    info["build_seconds"] = round(time.perf_counter() - t0, 3)
    log.info("FAISS %s over %d vectors on %s built in %.1fs", info["description"], n, info["device"],
             info["build_seconds"])
    return index, info


def _prepare_search(index: Any, k: int) -> None:
    """Raise an HNSW index's ``efSearch`` to at least the ``k`` neighbours asked for."""
    hnsw = getattr(index, "hnsw", None)
    if hnsw is not None and hnsw.efSearch < k:
        hnsw.efSearch = k


def ivf_base_order(index: Any) -> np.ndarray | None:
    """The positions of a CPU IVF index's vectors, list after list; None for other indexes.

    Searching the indexed vectors themselves in this order instead of their own is faster with the same results
    (docs/benchmarks.md, "Measurements behind the code"): consecutive queries visit mostly the same lists, which
    then stay in the CPU's caches."""
    if not hasattr(index, "invlists"):  # exact, HNSW, TorchExactIndex: no lists, and faiss may be absent
        return None
    import faiss

    if not isinstance(index, faiss.IndexIVF) or not hasattr(index.invlists, "get_ids"):
        return None
    lists = index.invlists
    if lists is None:
        return None
    parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
             for i in range(index.nlist) if lists.list_size(i)]
    order = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    if len(order) != index.ntotal or not np.array_equal(np.sort(order), np.arange(index.ntotal)):
        return None  # vectors added with ids of their own
    return order.astype(np.int64, copy=False)


def search_blocks(index: Any, queries: np.ndarray, k: int, block: int = 8192, phase: str = "neighbour search",
                  rows: np.ndarray | None = None) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Search ``queries`` (float32 ``(Q, d)``) block by block, showing progress (rate, ETA).

    Args:
        rows: search ``queries[rows]`` (in that order; e.g. :func:`ivf_base_order`) instead of all of ``queries``.

    Yields:
        ``(lo, hi, scores float32 (hi-lo, k), ids int64 (hi-lo, k))``, best first, for queries ``lo:hi`` (of
        ``rows`` when given); ``ids`` is -1 where an approximate index found fewer than ``k`` neighbours.
    """
    k = min(k, index.ntotal)
    _prepare_search(index, k)
    total = queries.shape[0] if rows is None else len(rows)
    progress = Progress(total, phase, "queries", log)
    for lo in range(0, total, block):
        hi = min(lo + block, total)
        batch = queries[lo:hi] if rows is None else queries[rows[lo:hi]]
        scores, ids = index.search(np.ascontiguousarray(batch, dtype=np.float32), k)
        progress.update(hi - lo)
        yield lo, hi, scores, ids
    progress.close()


def knn(index: Any, queries: np.ndarray, k: int, block: int = 8192,
        phase: str = "neighbour search") -> tuple[np.ndarray, np.ndarray]:
    """All of :func:`search_blocks`: ``(scores float32 (Q, k), ids int64 (Q, k))``."""
    k = min(k, index.ntotal)
    scores = np.empty((queries.shape[0], k), dtype=np.float32)
    ids = np.empty((queries.shape[0], k), dtype=np.int64)
    for lo, hi, s, i in search_blocks(index, queries, k, block, phase):
        scores[lo:hi], ids[lo:hi] = s, i
    return scores, ids


def exact_knn(queries: np.ndarray, base: np.ndarray, k: int, block: int = 8192,
              use_gpu: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product k-nearest neighbours, in query blocks so memory stays bounded.

    Args:
        queries: float32 ``(Q, d)``; base: float32 ``(N, d)`` (L2-normalised for cosine).
        k: neighbours per query (clipped to ``N``).
        use_gpu: ``None`` uses a GPU index whenever faiss sees a GPU.

    Returns:
        ``(scores float32 (Q, k), indices int64 (Q, k))``, best first.
    """
    index, _ = build_index(base, IndexSpec("exact"), use_gpu)
    return knn(index, queries, k, block)


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean over queries of ``|approx top-K ∩ exact top-K| / K`` (int ``(Q, K)`` each; -1 entries never match)."""
    if exact_ids.size == 0:
        return 1.0
    k = exact_ids.shape[1]
    hits = sum(np.isin(a[a >= 0], e).sum() for a, e in zip(approx_ids[:, :k], exact_ids))
    return float(hits) / float(exact_ids.size)


def measure_recall(index: Any, base: np.ndarray, ks: list[int], queries: int = 1000, seed: int = 0,
                   use_gpu: bool | None = None) -> dict[str, Any]:
    """Recall@K of ``index`` against exact search, on a seeded sample of ``queries`` rows of ``base``.

    Returns:
        ``{"queries": Q, "seed": seed, "recall": {"K": recall, ...}}``.
    """
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(base.shape[0], size=min(queries, base.shape[0]), replace=False))
    kmax = min(max(ks), base.shape[0])
    if use_gpu is False or not (faiss_gpu_count() or torch_cuda_available()):
        import faiss  # the CPU's exact search without an index, which would copy the base (0.9 GiB at full COCO)

        base = np.ascontiguousarray(base, dtype=np.float32)
        _, truth = faiss.knn(base[sample], base, kmax, faiss.METRIC_INNER_PRODUCT)
    else:
        exact, _ = build_index(base, IndexSpec("exact"), use_gpu)
        _, truth = knn(exact, base[sample], kmax, phase="recall: exact search")
    _, got = knn(index, base[sample], kmax, phase="recall: index search")
    out = {str(k): round(recall_at_k(got[:, :k], truth[:, :k]), 5) for k in ks if k <= kmax}
    return {"queries": int(len(sample)), "seed": seed, "recall": out}
