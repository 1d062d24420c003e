"""OpenVINO backends of the sentence model: ``openvino`` (fp32) and ``openvino-int8`` (static int8, NNCF).

Both start from the ONNX export of :mod:`bcls.pipeline.embedding.onnx_backend` (made locally from the packaged weights,
nothing downloaded) and run it in OpenVINO on the CPU, then pool as the packaged models do (mean over the
attention mask, L2 normalisation). Requests run asynchronously, as many at once as OpenVINO's throughput mode
asks for on the threads torch is given (two one-thread streams on two cores).

``openvino-int8`` (our choice of method, measured in docs/label_sources.md): NNCF post-training quantisation of the
transformer (``ModelType.TRANSFORMER``: SmoothQuant, then int8 weights per channel and int8 activations with
ranges fixed on :data:`CALIBRATION_SIZE` calibration captions). The ranges are static, so unlike ``onnx-int8``
(ranges per batch) a caption's embedding does not depend on the other captions of its batch. The calibration
captions are fixed, not taken from the build's input, so the quantised model is one file per model, exported once
into ``<embedding cache>/onnx/<id>/model-ov-int8.xml`` (+ ``.bin``, ``openvino.json`` with the provenance): they
are COCO val2014 captions (from pycocoevalcap's jar, a dependency) of images outside the Karpathy 1K/5K test
split (from eccv-caption), every n-th by annotation id. The quantised model and the embeddings cached with it are
kept across openvino/nncf upgrades (``openvino.json`` says which versions made them); delete the embedding cache
folder to quantise and embed again.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .onnx_backend import check_mean_pooling, embedding_dim, mean_pool, model_inputs

log = logging.getLogger(__name__)

CALIBRATION_SIZE = 1024
"""Captions whose activations fix the int8 ranges."""


def calibration_set(n: int = CALIBRATION_SIZE) -> list[dict]:
    """``n`` COCO val2014 captions (``{"id", "image_id", "caption"}``, whitespace normalised) of images outside
    the Karpathy test split, evenly spaced by annotation id."""
    from bcls.data.captions.coco import packaged_val2014

    annotations, test_id_array = packaged_val2014("backend 'openvino-int8' calibrates on COCO captions, which")
    test_ids = set(test_id_array.tolist())
    test_images = {a["image_id"] for a in annotations if a["id"] in test_ids}
    pool = sorted((a for a in annotations if a["image_id"] not in test_images), key=lambda a: a["id"])
    step = max(len(pool) // n, 1)
    return [{"id": a["id"], "image_id": a["image_id"], "caption": " ".join(a["caption"].split())}
            for a in pool[::step][:n]]


def export_openvino(st_model, onnx_path: Path, int8: bool, calibration: int = CALIBRATION_SIZE) -> Path:
    """The OpenVINO model to run: the fp32 ONNX file itself, or its int8 quantisation beside it, made when
    missing. The calibration captions are tokenised here; NNCF quantises in a child process (:func:`quantise`),
    so a label build never holds NNCF's modules and buffers through its later phases. The child writes
    into a temporary folder, renamed ``.bin`` before ``.xml``, so an interrupted export leaves no model that
    looks whole."""
    if not int8:
        return onnx_path
    import openvino

    from bcls.data.infra.atomic import atomic_write_json
    from bcls.data.infra.version import package_versions

    folder = onnx_path.parent
    target = folder / "model-ov-int8.xml"
    if target.is_file() and (folder / "model-ov-int8.bin").is_file():
        return target
    texts = [row["caption"] for row in calibration_set(calibration)]
    log.info("openvino: quantising %s to int8 on %d COCO captions (once per model)", onnx_path.name,
             len(texts))
    tmp = folder / f".ov-int8.tmp-{os.getpid()}"
    try:
        tmp.mkdir(exist_ok=True)
        batches = [model_inputs(st_model, texts[lo:lo + 32]) for lo in range(0, len(texts), 32)]
        arrays: dict[str, Any] = {f"{key}{i}": b[key] for i, b in enumerate(batches) for key in b}
        np.savez(tmp / "calibration.npz", **arrays)
        done = subprocess.run(_quantise_command(onnx_path, tmp / "calibration.npz", tmp / target.name),
                              capture_output=True, text=True)
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise RuntimeError(f"openvino: quantising {onnx_path} failed (exit {done.returncode}): {tail}")
        os.replace(tmp / "model-ov-int8.bin", folder / "model-ov-int8.bin")
        os.replace(tmp / target.name, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_json(folder / "openvino.json", {
        "source": onnx_path.name, "openvino": openvino.__version__, "nncf": package_versions(("nncf",)).get("nncf"),
        "int8": {"method": "nncf.quantize", "model_type": "TRANSFORMER", "calibration": {
            "captions": len(texts), "from": "COCO val2014 outside the Karpathy test split, every n-th by id",
            "batch": 32}}})
    return target


def _quantise_command(onnx_path: Path, batches: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "bcls.pipeline.embedding.openvino_backend", str(onnx_path), str(batches), str(out)]


def quantise(onnx_path: str, batches_path: str, out: str) -> None:
    """Quantise the ONNX model to int8 with NNCF on the tokenised calibration batches (``ids<i>`` / ``mask<i>``
    arrays of an ``.npz``) and save it as OpenVINO IR at ``out`` (the child process of :func:`export_openvino`)."""
    import nncf
    import openvino

    with np.load(batches_path) as arrays:
        batches = [{"ids": arrays[f"ids{i}"], "mask": arrays[f"mask{i}"]} for i in range(len(arrays.files) // 2)]
    model = openvino.Core().read_model(onnx_path)
    quantised = nncf.quantize(model, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(batches))
    openvino.save_model(quantised, out)


class OpenVinoSentenceEncoder:
    """Sentence embeddings from an OpenVINO-compiled transformer (mean pooling, L2-normalised), requests in
    flight asynchronously."""

    def __init__(self, st_model, path: Path, threads: int | None = None) -> None:
        import openvino

        check_mean_pooling(st_model)
        config: dict[str, Any] = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = openvino.Core().compile_model(str(path), "CPU", config)
        self.queue = openvino.AsyncInferQueue(self.compiled,
                                              int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self.st_model = st_model
        self.dim = embedding_dim(st_model)

    def __call__(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """float32 ``(N, d)`` L2-normalised embeddings of ``texts`` (batched in the given order)."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        failed: list[BaseException] = []

        def done(request, where: tuple[int, np.ndarray]) -> None:  # runs on OpenVINO's thread as a batch ends
            try:
                out[where[0]:where[0] + len(where[1])] = mean_pool(request.get_output_tensor(0).data, where[1])
            except BaseException as exc:  # noqa: BLE001 -- raised below, in the caller's thread
                failed.append(exc)

        self.queue.set_callback(done)
        for lo in range(0, len(texts), batch_size):  # the next batch is tokenised while the others run
            inputs = model_inputs(self.st_model, texts[lo:lo + batch_size])
            self.queue.start_async(inputs, (lo, inputs["mask"]))
        self.queue.wait_all()
        if failed:
            raise failed[0]
        return out


if __name__ == "__main__":  # python -m bcls.pipeline.embedding.openvino_backend ONNX BATCHES.npz OUT.xml
    quantise(*sys.argv[1:4])
