"""The ``coco`` caption format: MS-COCO ``captions_*.json`` (image id, annotation id, caption)."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import zipfile
from pathlib import Path

import numpy as np

from bcls.data.infra.errors import ConfigError, setting_is

from ..tables import fail, int_list, load_json, missing_key
from .table import RawCaptions, texts_of

logger = logging.getLogger(__name__)


def read_coco(path: Path, split: str | None = None, allow_unknown_images: bool = False) -> RawCaptions:
    """An MS-COCO caption JSON (``{"annotations": [{"image_id", "id", "caption"}], "images": [...]}``); no split
    column. Annotations of images that ``images`` does not list are refused unless ``allow_unknown_images``."""
    data = load_json(path)
    if not isinstance(data, dict) or "annotations" not in data:
        top = ", ".join(data) if isinstance(data, dict) else type(data).__name__
        raise fail(path, f"no 'annotations' key (top level: {top or 'empty'}); not a COCO caption file")
    anns = data["annotations"]
    if not isinstance(anns, list):
        raise fail(path, f"'annotations' is a {type(anns).__name__}, expected a list")

    def where(i: int) -> str:
        return f"annotations[{i}]"

    keys = ("image_id", "id", "caption")
    try:
        image_ids = [a["image_id"] for a in anns]
        caption_ids = [a["id"] for a in anns]
        captions = [a["caption"] for a in anns]
    except (KeyError, TypeError):
        for i, a in enumerate(anns):
            if not isinstance(a, dict) or any(k not in a for k in keys):
                raise missing_key(path, where(i), a, keys) from None
        raise
    texts = texts_of(path, captions, where, "caption")
    raw = RawCaptions(
        path, "coco", int_list(path, image_ids, where, "image_id"), int_list(path, caption_ids, where, "id"),
        texts, None, where, caption_id_name="annotation id",
    )
    images = data.get("images")
    if isinstance(images, list) and images and anns:
        try:
            known = np.array([im["id"] for im in images], dtype=np.int64)
        except (KeyError, TypeError, ValueError, OverflowError):
            known = None
        if known is not None:
            unknown = ~np.isin(raw.image_ids, known)
            if unknown.any():
                first = int(np.argmax(unknown))
                what = (f"{int(unknown.sum())} annotation(s) refer to image ids not listed in 'images' (first: "
                        f"{where(first)}, image_id {int(raw.image_ids[first])})")
                if not allow_unknown_images:
                    raise fail(path, f"{what}; fix the file or pass {setting_is('allow_unknown_images', True)} to "
                                      "keep them")
                logger.warning("%s: %s; kept them", path, what)
            uncaptioned = ~np.isin(known, raw.image_ids)
            if uncaptioned.any():
                first = int(np.argmax(uncaptioned))
                logger.warning("%s: %d image(s) listed in 'images' have no caption (first: images[%d], id %d); "
                               "they are left out", path, int(uncaptioned.sum()), first, int(known[first]))
    return raw


def packaged_val2014(what: str) -> tuple[list[dict], np.ndarray]:
    """The COCO val2014 annotations (``captions_val2014.json`` inside pycocoevalcap's ``spice-1.0.jar``) and the
    Karpathy 5K test split's annotation ids in Karpathy order (eccv-caption's ``coco_test_ids.npy``); both packages
    are dependencies. ``what`` names the caller in the error when one is missing."""
    spec = importlib.util.find_spec("pycocoevalcap")
    eccv = importlib.util.find_spec("eccv_caption")
    if spec is None or eccv is None or not spec.submodule_search_locations or not eccv.submodule_search_locations:
        raise ConfigError(f"{what} come from the packages pycocoevalcap and eccv-caption: "
                          "pip install pycocoevalcap eccv-caption")
    jar = Path(spec.submodule_search_locations[0]) / "spice" / "spice-1.0.jar"
    with zipfile.ZipFile(jar) as zf:
        data = json.load(io.TextIOWrapper(zf.open("coco/annotations/captions_val2014.json"), encoding="utf-8"))
    return data["annotations"], np.load(Path(eccv.submodule_search_locations[0]) / "data" / "coco_test_ids.npy")
