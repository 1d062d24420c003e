"""The ``karpathy`` caption format: Karpathy's ``dataset_coco.json`` / ``dataset_flickr30k.json`` /
``dataset_flickr8k.json``; following his convention, ``split="train"`` selects ``train`` *and* ``restval``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..tables import fail, int_list, load_json, missing_key, shown
from .table import RawCaptions, texts_of


def read_karpathy(path: Path, split: str | None = None, allow_unknown_images: bool = False) -> RawCaptions:
    """Karpathy's ``dataset_*.json``: image id ``cocoid`` (else ``imgid``), caption id ``sentid``, text ``raw``;
    the images' ``split``, where ``train`` also selects ``restval``."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        keys = ", ".join(data) if isinstance(data, dict) else type(data).__name__
        raise fail(path, f"no 'images' list (top level: {keys or 'empty'}); not a Karpathy dataset_*.json")
    images = data["images"]
    img_keys = ("split", "sentences")
    counts = np.zeros(len(images), dtype=np.int64)
    image_ids: list[Any] = []
    split_names: list[str] = []
    sentences: list[Any] = []
    for i, im in enumerate(images):
        if not isinstance(im, dict) or any(k not in im for k in img_keys) or not isinstance(im["sentences"], list):
            if isinstance(im, dict) and "sentences" in im and "split" in im:
                raise fail(path, f"images[{i}].sentences is a {type(im['sentences']).__name__}, expected a list")
            raise missing_key(path, f"images[{i}]", im, img_keys)
        image_id = im.get("cocoid", im.get("imgid"))
        if image_id is None:
            raise missing_key(path, f"images[{i}]", im, ("imgid",))
        sents = im["sentences"]
        counts[i] = len(sents)
        image_ids.append(image_id)
        split_names.append(im["split"])
        sentences.extend(sents)
    starts = np.concatenate([[0], np.cumsum(counts)])

    def where(r: int) -> str:
        i = int(np.searchsorted(starts, r, side="right")) - 1
        return f"images[{i}].sentences[{r - int(starts[i])}]"

    def img_where(i: int) -> str:
        return f"images[{i}]"

    try:
        raws = [s["raw"] for s in sentences]
        sent_ids = [s["sentid"] for s in sentences]
    except (KeyError, TypeError):
        for r, s in enumerate(sentences):
            if not isinstance(s, dict) or "raw" not in s or "sentid" not in s:
                raise missing_key(path, where(r), s, ("raw", "sentid")) from None
        raise
    per_image_ids = int_list(path, image_ids, img_where, "cocoid/imgid")
    for i, s in enumerate(split_names):
        if not isinstance(s, str):
            raise fail(path, f"images[{i}]: 'split' is {shown(s)}, not a string")
    split_arr = np.array(split_names, dtype=object)
    return RawCaptions(
        path, "karpathy",
        np.repeat(per_image_ids, counts),
        int_list(path, sent_ids, where, "sentid"),
        texts_of(path, raws, where, "raw"),
        np.repeat(split_arr, counts) if len(split_arr) else np.zeros(0, dtype=object),
        where,
        caption_id_name="sentid",
        split_names=lambda s: ("train", "restval") if s == "train" else (s,),
    )

