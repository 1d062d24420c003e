"""Caption neighbours with FAISS and the candidate (image, caption) pairs built from them.

Indexes (:class:`IndexSpec`): ``exact`` (``IndexFlatIP``), ``ivf`` (``IndexIVFFlat``, inner product) and ``hnsw``
(``IndexHNSWFlat``, inner product). ``exact`` and ``ivf`` run on every GPU faiss sees (one GPU: a plain GPU
clone; several: the base sharded over all of them) and on the CPU otherwise; faiss has no GPU HNSW, so ``hnsw``
always runs on the CPU. Queries are searched in blocks so memory stays bounded, with a rate/ETA log.

When faiss sees no GPU but torch does (a faiss-cpu install on a CUDA machine: the CUDA-12 faiss-gpu wheels need
CUDA-12 runtime libraries that a CUDA-13 machine lacks), ``exact`` runs as :class:`TorchExactIndex` on the first
CUDA device: fp32 matrix products (TF32 off) and ``torch.topk``, the same neighbours as ``IndexFlatIP`` up to float
rounding and the order of ties (our choice; the tests compare it with faiss on the CPU).

Candidates (:func:`candidate_pairs`) are the union of

* for each image, its top-``k`` captions by ``max over r in refs(i), r != c of <e_c, e_r>``;
* for each caption, its top-``caption_k`` images by the same score, and always its own image (the positive
  pair); ``caption_k = 0`` turns the caption side off (image side only, as before).
"""

from __future__ import annotations

import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from bcls.data.errors import ConfigError
from bcls.data.progress import Progress

from .sources.hashing import sorted_unique
from .torch_search import TorchExactIndex

log = logging.getLogger(__name__)

INDEX_KINDS = ("exact", "ivf", "hnsw")
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


@dataclass(frozen=True)
class IndexSpec:
    """Which FAISS index finds caption neighbours, and its parameters.

    Attributes:
        kind: ``exact`` (brute force), ``ivf`` (inverted lists, flat codes) or ``hnsw`` (graph).
        nlist: IVF lists; ``None`` = ``4·sqrt(N)``, at most ``N / 39`` (faiss wants ≥ 39 training points a list).
        nprobe: IVF lists visited per query.
        train_per_list: the IVF k-means trains on at most this many sampled vectors a list (faiss's
            ``max_points_per_centroid``, whose default is 256). Our choice, measured on the 592,623 distinct COCO
            captions (3,079 lists, 2 cores; ``bench/bench_ivf.py``): 64 trains in 42 s against 112 s, recall@33 0.983
            for both.
        hnsw_m: HNSW links per node.
        ef_construction / ef_search: HNSW candidate-list sizes when adding / searching (``ef_search`` is raised
            to the number of neighbours asked for).
    """

    kind: str = "exact"
    nlist: int | None = None
    nprobe: int = 32
    train_per_list: int = 64
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ConfigError(f"unknown index {self.kind!r}; valid: {', '.join(INDEX_KINDS)}")
        for name in ("nprobe", "train_per_list", "hnsw_m", "ef_construction", "ef_search"):
            if getattr(self, name) < 1:
                raise ConfigError(f"index {name} must be at least 1, got {getattr(self, name)}")
        if self.nlist is not None and self.nlist < 1:
            raise ConfigError(f"index nlist must be at least 1, got {self.nlist}")

    def settings(self) -> dict[str, Any]:
        """The parameters that matter for this kind (JSON-able; part of a build's identity)."""
        if self.kind == "exact":
            return {"kind": "exact"}
        if self.kind == "ivf":
            return {"kind": "ivf", "nlist": self.nlist, "nprobe": self.nprobe, "train_per_list": self.train_per_list}
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
    n_gpus = faiss_gpu_count() if use_gpu is not False else 0
    info: dict[str, Any] = {"kind": spec.kind}
    if spec.kind == "exact" and use_gpu is not False and not n_gpus and torch_cuda_available():
        index = TorchExactIndex(base, "cuda")
        info |= {"description": "exact inner product (torch fp32 matmul + topk)", "device": "1 GPU (torch)",
                 "build_seconds": round(time.perf_counter() - t0, 3)}
        log.info("exact search over %d vectors with torch on CUDA (faiss sees no GPU)", n)
        return index, info
    import faiss

    if spec.kind == "exact":
        index = faiss.IndexFlatIP(d)
        info["description"] = "IndexFlatIP (exact)"
    elif spec.kind == "ivf":
        nlist = spec.resolved_nlist(n)
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.cp.max_points_per_centroid = spec.train_per_list
        index.nprobe = min(spec.nprobe, nlist)
        index.train(base)  # faiss's Python constructor keeps a reference to the quantizer
        info |= {"description": f"IndexIVFFlat (inner product, nlist {nlist}, nprobe {index.nprobe})",
                 "nlist": nlist, "nprobe": int(index.nprobe)}
    else:
        index = faiss.IndexHNSWFlat(d, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = spec.ef_construction
        index.hnsw.efSearch = spec.ef_search
        info |= {"description": f"IndexHNSWFlat (inner product, M {spec.hnsw_m}, efConstruction "
                                f"{spec.ef_construction}, efSearch {spec.ef_search})"}
        if n_gpus and use_gpu is None:
            log.info("faiss has no GPU HNSW: building and searching it on the CPU")
        n_gpus = 0
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

    Searching the indexed vectors themselves in this order instead of their own is 1.44× faster with the same
    results (60,000 full-COCO captions, 3,079 lists, nprobe 32, 2 cores; ``bench/bench_ivf.py``): consecutive
    queries visit mostly the same lists, which then stay in the CPU's caches."""
    import faiss

    if not isinstance(index, faiss.IndexIVF) or not hasattr(index.invlists, "get_ids"):
        return None
    lists = index.invlists
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
    exact, _ = build_index(base, IndexSpec("exact"), use_gpu)
    _, truth = knn(exact, base[sample], kmax, phase="recall: exact search")
    _, got = knn(index, base[sample], kmax, phase="recall: index search")
    out = {str(k): round(recall_at_k(got[:, :k], truth[:, :k]), 5) for k in ks if k <= kmax}
    return {"queries": int(len(sample)), "seed": seed, "recall": out}


#: Query captions per thread below which the image side is reduced on one thread.
MIN_ROWS_PER_THREAD = 50_000


def _image_side(scores: np.ndarray, neighbours: np.ndarray, image_index: np.ndarray,
                k: int, threads: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` captions per image from every caption's neighbour list (see :func:`image_candidates`).

    The images are split into ``threads`` (default: one per CPU core) contiguous ranges of about equal caption
    counts, each reduced in its own thread (numpy's sorts release the GIL); the ranges' results, concatenated in
    order, are exactly the single-threaded result, which is sorted by image first."""
    n = len(image_index)
    threads = min(threads or os.cpu_count() or 1, max(1, n // MIN_ROWS_PER_THREAD))
    if threads <= 1:
        return _image_side_rows(scores, neighbours, image_index, None, n, k)
    n_images = int(image_index.max()) + 1
    cuts = np.searchsorted(np.cumsum(np.bincount(image_index, minlength=n_images)),
                           np.linspace(0, n, threads + 1)[1:-1])
    bounds = np.r_[0, cuts, n_images]
    part_of = np.searchsorted(bounds[1:], image_index, side="right")
    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(lambda t: _image_side_rows(scores, neighbours, image_index,
                                                         np.flatnonzero(part_of == t), n, k), range(threads)))
    return tuple(np.concatenate([p[j] for p in parts]) for j in range(3))  # type: ignore[return-value]


def _image_side_rows(scores: np.ndarray, neighbours: np.ndarray, image_index: np.ndarray, rows: np.ndarray | None,
                     n: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_image_side` over the query captions ``rows`` (the images of one range; None: all, no copy)."""
    if rows is None:
        rows = np.arange(n, dtype=np.int64)
    else:
        scores, neighbours = scores[rows], neighbours[rows]
    n_neighbours = neighbours.shape[1]
    image = np.repeat(image_index[rows], n_neighbours)
    query = np.repeat(rows, n_neighbours)
    caption = neighbours.ravel()
    score = scores.ravel()
    keep = (caption != query) & (caption >= 0)
    image, caption, score = image[keep], caption[keep], score[keep]
    # max over references of the same (image, caption): sort by key, reduce.
    key = image * np.int64(n) + caption
    order = np.lexsort((-score, key))
    key, score = key[order], score[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    key, score = key[first], score[first]
    image, caption = key // n, key % n
    # top-k per image by score (ties: lower caption position first)
    order = np.lexsort((caption, -score, image))
    image, caption, score = image[order], caption[order], score[order]
    starts = np.flatnonzero(np.r_[True, image[1:] != image[:-1]])
    rank = np.arange(len(image)) - np.repeat(starts, np.diff(np.r_[starts, len(image)]))
    keep = rank < k
    return image[keep], caption[keep], score[keep]


def image_candidates(embeddings: np.ndarray, image_index: np.ndarray, k: int,
                     use_gpu: bool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each image, its top-``k`` captions by maximum similarity to the image's reference captions.

    A caption is never its own reference: the score of (image i, caption c) is
    ``max over r in refs(i), r != c of <e_c, e_r>``.

    Searching ``k + 1`` neighbours per caption is exact: if c is in image i's top-k through reference r*,
    every caption closer to r* than c is also scored above c for image i, so at most ``k - 1`` captions plus r*
    itself precede c in r*'s neighbour list.

    Args:
        embeddings: float32 ``(N, d)`` L2-normalised caption embeddings.
        image_index: int64 ``(N,)`` image position (0..n_images-1) of each caption.

    Returns:
        ``(image_pos int64 (P,), caption_pos int64 (P,), score float32 (P,))`` sorted by image, then by score
        descending; ``P <= n_images * k``.
    """
    scores, neighbours = exact_knn(embeddings, embeddings, k + 1, use_gpu=use_gpu)
    return _image_side(scores, neighbours, np.asarray(image_index, dtype=np.int64), k)


def _caption_side(ids: np.ndarray, rows: np.ndarray, image_index: np.ndarray, n_images: int,
                  k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` images of captions ``rows`` from their neighbour lists ``ids`` (int64 ``(B, m)``, best first).

    An image's score for caption c is its best caption other than c, i.e. its first appearance in c's list.

    Returns:
        ``(image_pos (P,), caption_pos (P,), found int64 (B,))``: the pairs, and how many distinct images each
        row's list held (capped at ``k``).
    """
    b, m = ids.shape
    img = np.where(ids >= 0, image_index[np.maximum(ids, 0)], -1)
    img[ids == rows[:, None]] = -1
    row = np.repeat(np.arange(b, dtype=np.int64), m)
    rank = np.tile(np.arange(m, dtype=np.int64), b)
    img = img.ravel()
    valid = img >= 0
    row, rank, img = row[valid], rank[valid], img[valid]
    key = row * n_images + img
    order = np.lexsort((rank, key))
    key, rank = key[order], rank[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    key, rank = key[first], rank[first]
    row, img = key // n_images, key % n_images
    order = np.lexsort((rank, row))
    row, img = row[order], img[order]
    starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]]) if len(row) else np.zeros(0, dtype=np.int64)
    pos = np.arange(len(row)) - np.repeat(starts, np.diff(np.r_[starts, len(row)]))
    keep = pos < k
    found = np.minimum(np.bincount(row, minlength=b), k)
    return img[keep], rows[row[keep]], found


@dataclass(frozen=True)
class CandidateSet:
    """Candidate (image, caption) pairs of a build.

    Attributes:
        image_pos, caption_pos: int64 ``(P,)``, sorted by image, then caption; unique pairs.
        info: JSON-able description (index, device, counts, recall against exact search).
    """

    image_pos: np.ndarray
    caption_pos: np.ndarray
    info: dict[str, Any]


def candidate_pairs(embeddings: np.ndarray, image_index: np.ndarray, k: int, caption_k: int = 0,
                    spec: IndexSpec = IndexSpec(), use_gpu: bool | None = None, recall_queries: int = 1000,
                    block: int = 8192, seed: int = 0) -> CandidateSet:
    """The union of the image-side top-``k`` and the caption-side top-``caption_k`` (plus positive) pairs.

    One neighbour search serves both sides: ``max(k + 1, ~1.25·caption_k·captions-per-image + 2)`` neighbours
    per caption. The image side is exact with ``k + 1`` neighbours (see :func:`image_candidates`). A caption
    whose list holds fewer than ``caption_k`` distinct images is searched again with
    ``caption_k · max-captions-per-image + 1`` neighbours, which always holds them, so with ``exact`` both
    sides are exact.

    Args:
        embeddings: float32 ``(N, d)`` L2-normalised caption embeddings.
        image_index: int64 ``(N,)`` image position of each caption.
        k: captions per image; caption_k: images per caption besides its own (0: no caption side, no positives).
        spec: the FAISS index; recall@K against exact search is measured on ``recall_queries`` sampled
            captions for approximate kinds and recorded in ``info["recall"]``.
    """
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    image_index = np.asarray(image_index, dtype=np.int64)
    n = len(image_index)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return CandidateSet(empty, empty, {"index": spec.settings(), "pairs": 0})
    n_images = int(image_index.max()) + 1
    counts = np.bincount(image_index, minlength=n_images)
    max_refs = int(counts.max())
    depth = k + 1
    if caption_k:
        depth = max(depth, int(math.ceil(1.25 * caption_k * n / max(int((counts > 0).sum()), 1))) + 2)
    depth = min(depth, n)
    full_depth = min(n, caption_k * max_refs + 1)
    t0 = time.perf_counter()
    index, info = build_index(embeddings, spec, use_gpu, seed=seed)
    order = ivf_base_order(index)  # queries near each other in the index, searched together (same results)
    img_scores = np.empty((n, min(k + 1, depth)), dtype=np.float32)
    img_ids = np.empty_like(img_scores, dtype=np.int64)
    cap_parts: list[tuple[np.ndarray, np.ndarray]] = []
    retry: list[np.ndarray] = []
    pending: list[tuple[np.ndarray, Any]] = []

    def collect(keep: int) -> None:  # the merged caption sides of all but the last ``keep`` blocks, in order
        while len(pending) > keep:
            rows, future = pending.pop(0)
            ci, cc, found = future.result()
            short = found < min(caption_k, n_images - 1)
            if depth < full_depth and short.any():
                ok = ~np.isin(cc, rows[short])
                ci, cc = ci[ok], cc[ok]
                retry.append(rows[short])
            cap_parts.append((ci, cc))

    with ThreadPoolExecutor(1) as merger:  # a block's caption side is merged while the next block is searched
        for lo, hi, scores, ids in search_blocks(index, embeddings, depth, block, rows=order):
            rows = np.arange(lo, hi, dtype=np.int64) if order is None else order[lo:hi]
            img_scores[rows], img_ids[rows] = scores[:, :img_scores.shape[1]], ids[:, :img_scores.shape[1]]
            if caption_k:
                pending.append((rows, merger.submit(_caption_side, ids, rows, image_index, n_images, caption_k)))
                collect(1)  # at most two blocks' neighbour lists alive at once
        collect(0)
    n_retry = int(sum(len(r) for r in retry))
    if n_retry:
        rows = np.concatenate(retry)
        log.info("caption-side candidates: %d captions searched again with %d neighbours", n_retry, full_depth)
        for lo, hi, _, ids in search_blocks(index, embeddings[rows], full_depth, block, "neighbour search (deeper)"):
            ci, cc, _ = _caption_side(ids, rows[lo:hi], image_index, n_images, caption_k)
            cap_parts.append((ci, cc))
    t_search = time.perf_counter() - t0
    ii, ic, _ = _image_side(img_scores, img_ids, image_index, k)
    parts_i = [ii] + [p[0] for p in cap_parts]
    parts_c = [ic] + [p[1] for p in cap_parts]
    if caption_k:  # the caption side always holds the caption's own image
        parts_i.append(image_index)
        parts_c.append(np.arange(n, dtype=np.int64))
    key = sorted_unique(np.concatenate(parts_i) * np.int64(n) + np.concatenate(parts_c))
    image_pos, caption_pos = key // n, key % n
    info = {"index": spec.settings() | {"description": info["description"]}, "device": info["device"],
            "neighbours_searched": int(depth), "captions_searched_deeper": n_retry,
            "image_side_pairs": int(len(ii)), "caption_side_pairs": int(sum(len(p[0]) for p in cap_parts)),
            "pairs": int(len(key))}
    if spec.kind != "exact" and recall_queries > 0:
        ks = sorted({min(k + 1, n), depth})
        info["recall"] = measure_recall(index, embeddings, ks, recall_queries, seed, use_gpu)
        log.info("%s recall against exact search on %d sampled captions: %s", spec.kind,
                 info["recall"]["queries"], ", ".join(f"R@{a}={b:.4f}" for a, b in info["recall"]["recall"].items()))
    else:
        info["recall"] = {"exact": True}
    log.info("candidates: %d pairs (%d image-side, %d caption-side%s) in %.1fs", len(key), len(ii),
             info["caption_side_pairs"], f", {n} positives" if caption_k else "", t_search)
    return CandidateSet(image_pos, caption_pos, info)
