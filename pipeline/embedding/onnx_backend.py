"""ONNX Runtime backends of the sentence model: ``onnx`` (fp32) and ``onnx-int8`` (dynamic int8 quantisation).

sentence-transformers' own ONNX backend needs ``optimum-onnx``, which pins transformers 4.x while this project
runs transformers 5, so the export is done here: the model's transformer is exported locally from the packaged
weights with ``torch.onnx.export`` (nothing is downloaded), once per model, into
``<embedding cache>/onnx/<sha256(model id)[:32]>/`` (``model.onnx``, ``model-int8.onnx``, ``export.json`` with the model
id and the versions). Inference runs the transformer in ONNX Runtime and then the model's own pooling (mean over
the attention mask, as the packaged MiniLM and MPNet pool) and L2 normalisation.

int8 (our choice of settings, measured): dynamic quantisation of the weight matrices' MatMuls, per output channel,
signed int8 weights, leaving the feed-forward output projections (``output.dense``) in fp32: quantising those as
well moved the embeddings most (mean cosine to fp32 0.993, minimum 0.986 on 2,048 COCO captions, against 0.996 /
0.992 without them). Activations are quantised per batch (dynamic quantisation), so an int8 embedding depends
slightly on the other captions of its batch: the same captions give the same embeddings (a label build sorts
them by length into fixed batches, and the cache keeps what was computed), a caption embedded among others moves
a little (cosine > 0.98 in the tests). The figures that decide whether a backend keeps the labels (cosine to the fp32
embeddings, rank correlation of the built labels, agreement with human judgments) and its speed are in
docs/label_sources.md and ``bench/bench_embed.py``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from bcls.data.infra.errors import ConfigError, setting

log = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("torch", "onnx", "onnx-int8", "openvino", "openvino-int8", "torch-bf16", "torch-fp16")
"""Sentence-model backends: ``torch`` (sentence-transformers as is, the reference), ``onnx`` and ``onnx-int8``
(here), ``openvino`` and ``openvino-int8`` (:mod:`bcls.pipeline.embedding.openvino_backend`, from this module's export),
``torch-bf16`` and ``torch-fp16`` (torch under autocast; :data:`bcls.pipeline.embedding.embed.HALF_BACKENDS`)."""

#: MatMuls left in fp32 by the int8 export (feed-forward output projections; see the module docstring).
FP32_MATMULS = "/output/dense/MatMul"


#: The packages each exported backend needs, and the extra that installs them (both export through torch.onnx,
#: which needs onnx). A build's provenance records their versions.
BACKEND_PACKAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "onnx": ("onnx", ("onnxruntime", "onnx")), "onnx-int8": ("onnx", ("onnxruntime", "onnx")),
    "openvino": ("openvino", ("openvino", "onnx")), "openvino-int8": ("openvino", ("openvino", "nncf", "onnx"))}


def check_backend(backend: str) -> None:
    """Refuse an unknown backend, or an ONNX or OpenVINO one without its packages installed, naming what to do."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown sentence-model {setting('backend')} {backend!r}; valid: {', '.join(BACKENDS)}")
    extra, needed = BACKEND_PACKAGES.get(backend, ("", ()))
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"backend {backend!r} needs {' and '.join(missing)}: pip install 'bcls[{extra}]' (or "
                          f"pip install {' '.join(missing)}), or use --backend torch")


def onnx_dir(cache_root: str | os.PathLike, model_id: str) -> Path:
    """Where the ONNX files of the model with cache id ``model_id`` live."""
    return Path(cache_root) / "onnx" / hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:32]


def export_onnx(st_model, folder: Path, model_id: str, int8: bool) -> Path:
    """The ONNX file of ``st_model``'s transformer in ``folder`` (exported, and quantised for ``int8``, when
    missing; written under temporary names and renamed, so an interrupted export leaves nothing half-written)."""
    import torch

    from bcls.data.infra.atomic import atomic_path, atomic_write_json

    fp32 = folder / "model.onnx"
    target = folder / ("model-int8.onnx" if int8 else "model.onnx")
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    if not fp32.is_file():
        transformer = st_model[0].auto_model.eval()
        sample = st_model.tokenizer(["a dog runs on the beach", "two cats"], padding=True, return_tensors="pt")

        class Hidden(torch.nn.Module):  # the transformer's token embeddings from ids and mask, nothing else
            def __init__(self, inner: torch.nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
                return self.inner(input_ids=ids, attention_mask=mask).last_hidden_state

        log.info("onnx: exporting %s to %s (once per model)", model_id, fp32)
        axes = {"ids": {0: "batch", 1: "tokens"}, "mask": {0: "batch", 1: "tokens"},
                "hidden": {0: "batch", 1: "tokens"}}
        # the TorchScript exporter warns about its own deprecation and generic corner cases (negative gather
        # indices, which BERT does not use); the tests hold the export's embeddings to torch's (cosine > 0.9999)
        with atomic_path(fp32, suffix=".onnx") as tmp, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(Hidden(transformer), (sample["input_ids"], sample["attention_mask"]), str(tmp),
                              input_names=["ids", "mask"], output_names=["hidden"], dynamic_axes=axes,
                              opset_version=17, dynamo=False)
    if int8:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        keep = [n.name for n in onnx.load(str(fp32)).graph.node
                if n.op_type == "MatMul" and n.name.endswith(FP32_MATMULS) and "attention" not in n.name]
        log.info("onnx: quantising %s to int8 (%d MatMuls kept in fp32)", fp32.name, len(keep))
        root = logging.getLogger()  # onnxruntime's quantiser logs a few dozen notes on the root logger (a
        quiet = _DropRootNotes()   # suggested pre-processing pass, MatMuls it skips): not for our users
        root.addFilter(quiet)
        try:
            with atomic_path(target, suffix=".onnx") as tmp:
                quantize_dynamic(str(fp32), str(tmp), op_types_to_quantize=["MatMul"], per_channel=True,
                                 weight_type=QuantType.QInt8, nodes_to_exclude=keep)
        finally:
            root.removeFilter(quiet)
    import onnxruntime
    import transformers

    atomic_write_json(folder / "export.json", {"model": model_id, "torch": torch.__version__,
                                               "transformers": transformers.__version__,
                                               "onnxruntime": onnxruntime.__version__, "opset": 17,
                                               "int8": {"op_types": ["MatMul"], "per_channel": True,
                                                        "weight_type": "QInt8", "fp32": FP32_MATMULS}})
    return target


class _DropRootNotes(logging.Filter):
    """Drops records below ERROR logged on the root logger itself (``logging.info(…)``, ``logging.warning(…)``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != "root" or record.levelno >= logging.ERROR


class OnnxSentenceEncoder:
    """Sentence embeddings from an ONNX export of a sentence-transformers model (mean pooling, L2-normalised)."""

    def __init__(self, st_model, path: Path, threads: int | None = None) -> None:
        import onnxruntime

        check_mean_pooling(st_model)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.st_model = st_model
        self.dim = embedding_dim(st_model)

    def __call__(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """float32 ``(N, d)`` L2-normalised embeddings of ``texts`` (batched in the given order)."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for lo in range(0, len(texts), batch_size):
            inputs = model_inputs(self.st_model, texts[lo:lo + batch_size])
            out[lo:lo + batch_size] = mean_pool(self.session.run(None, inputs)[0], inputs["mask"])
        return out


def embedding_dim(st_model) -> int:
    """The sentence embedding's dimension of a sentence-transformers model (the method was renamed in v5)."""
    dim_of = getattr(st_model, "get_embedding_dimension", None) or st_model.get_sentence_embedding_dimension
    return int(dim_of())


def check_mean_pooling(st_model) -> None:
    """Refuse a model that does not pool by the mean of its tokens (the ONNX and OpenVINO backends pool so)."""
    pooling = getattr(st_model[1], "pooling_mode", None) if len(st_model) > 1 else None
    if pooling != "mean":
        raise ConfigError(f"the ONNX and OpenVINO backends pool by the mean of the tokens; this model pools by "
                          f"{pooling!r}: use --backend torch")


def model_inputs(st_model, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """The exported transformer's inputs for ``texts``: int64 token ids and attention mask, padded to the longest
    and truncated at the model's maximum length (:mod:`bcls.pipeline.embedding.tokens` where it passes its check)."""
    from .tokens import fast_tokenizer

    fast = fast_tokenizer(st_model)
    if fast is not None:
        batch = fast(texts)
        return {"ids": batch["input_ids"], "mask": batch["attention_mask"]}
    max_length = int(getattr(st_model[0], "max_seq_length", None) or 512)
    batch = st_model.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                               return_tensors="np")
    return {"ids": batch["input_ids"].astype(np.int64), "mask": batch["attention_mask"].astype(np.int64)}


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """L2-normalised mean of the token states over the attention mask, float32 ``(batch, d)``."""
    weights = mask[..., None].astype(np.float32)
    pooled = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def describe(folder: Path) -> dict:
    """The provenance of an export (``export.json``), or {} when there is none."""
    meta = folder / "export.json"
    return json.loads(meta.read_text()) if meta.is_file() else {}
