"""``examples.html``: what a trained model retrieves, to look at rather than read (``bcls eval --images DIR``).

A self-contained page (thumbnails embedded as base64 JPEG, no other file needed): ``n`` image queries with their
top 5 captions and ``n`` caption queries with their top 5 images, drawn with a fixed seed from the split (image
queries from the judged images when judgments are given). Each retrieved item shows its rank and similarity; the
ground truth is marked, and where a human judgment of the (image, caption) pair exists its score is shown.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
from pathlib import Path

import numpy as np
import torch

from bcls.data.captions import CaptionTable
from bcls.data.infra.atomic import atomic_write_bytes
from bcls.data.judgments import Judgments

log = logging.getLogger(__name__)

TOP = 5
THUMB_PX = 160

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
.query { border-top: 1px solid #ccc; padding: .8em 0; display: flex; gap: 1.2em; align-items: flex-start; }
.q { width: 180px; flex: none; font-weight: 600; }
.hits { display: flex; gap: .8em; flex-wrap: wrap; }
.hit { width: 170px; font-size: .85em; border: 2px solid transparent; padding: 3px; border-radius: 4px; }
.hit.gt { border-color: #2a9d3a; background: #eefbea; }
.caps { font-size: .9em; } .caps li { margin: .25em 0; } .caps li.gt { color: #1d7a2c; font-weight: 600; }
.meta { color: #666; font-size: .85em; } .judged { color: #8a4b00; }
img { width: 160px; height: 160px; object-fit: cover; border-radius: 3px; display: block; }
"""


def _thumb(path: Path | None) -> str:
    """``<img>`` with the image as an embedded JPEG thumbnail (a grey box when there is no file)."""
    if path is None:
        return '<div style="width:160px;height:160px;background:#ddd">no file</div>'
    from PIL import Image

    with Image.open(path) as opened:
        im = opened.convert("RGB")
        im.thumbnail((THUMB_PX, THUMB_PX))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=80)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img src="data:image/jpeg;base64,{data}" alt="{html.escape(path.name)}">'


def example_queries(n_images: int, n_captions: int, n: int, seed: int = 0,
                    preferred_images: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(image positions, caption positions)``: up to ``n`` of each, drawn without replacement with ``seed``;
    image queries come from ``preferred_images`` (positions) when it holds at least one."""
    rng = np.random.default_rng(seed)
    pool = np.unique(preferred_images) if preferred_images is not None and len(preferred_images) else \
        np.arange(n_images)
    images = np.sort(rng.choice(pool, size=min(n, len(pool)), replace=False))
    captions = np.sort(rng.choice(n_captions, size=min(n, n_captions), replace=False))
    return images, captions


def write_examples(path: str | os.PathLike, sims: torch.Tensor, table: CaptionTable, images: str | os.PathLike,
                   judgments: Judgments | None = None, n: int = 20, seed: int = 0) -> Path:
    """Write ``examples.html`` (see the module docstring).

    Args:
        sims: ``(n_images, n_captions)`` similarities, images in ``table.unique_images()`` order.
        table: the evaluated split's captions.
        images: the folder of the image files (found as ``bcls features extract`` finds them).
        judgments: human judgments to show beside the retrieved pairs (optional).
        n: queries per direction.

    Returns:
        The path written.
    """
    from bcls.pipeline.images.image_encoders import image_files

    image_ids = table.unique_images()
    files = image_files(table, images)
    c2i = table.image_index()
    human: dict[tuple[int, int], float] = {}
    preferred = None
    if judgments is not None:
        caps, imgs = judgments.caption_image_pairs()
        human = {(int(i), int(c)): float(s) for c, i, s in zip(caps, imgs, judgments.scores)}
        preferred = np.flatnonzero(np.isin(image_ids, imgs))
    q_img, q_cap = example_queries(len(image_ids), len(table), n, seed, preferred)
    s = sims.float()

    def judged(i: int, c: int) -> str:
        score = human.get((int(image_ids[i]), int(table.caption_ids[c])))
        return "" if score is None else f' <span class="judged">human {score:.2f}</span>'

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>bcls examples</title>"
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>Retrieval examples</h1><p class='meta'>{html.escape(str(table.path))}: {len(image_ids)} images, "
             f"{len(table)} captions. Ground truth is marked green; <span class='judged'>human</span> is the human "
             f"score of the pair where one exists{' (' + html.escape(str(judgments.path)) + ')' if judgments else ''}."
             f" Queries drawn with seed {seed}.</p>",
             f"<h2>Image → text: top {TOP} captions of {len(q_img)} image queries</h2>"]
    for i in q_img.tolist():
        top = torch.topk(s[i], min(TOP, s.shape[1])).indices.tolist()
        n_gt = int((c2i == i).sum())
        items = "".join(
            f"<li class='{'gt' if c2i[c] == i else ''}'>{r + 1}. {html.escape(table.texts[c])} "
            f"<span class='meta'>({float(s[i, c]):.3f}{', ground truth' if c2i[c] == i else ''})</span>"
            f"{judged(i, c)}</li>" for r, c in enumerate(top))
        parts.append(f"<div class='query'><div class='q'>{_thumb(files.get(int(image_ids[i])))}"
                     f"<div class='meta'>image {int(image_ids[i])} · {n_gt} own captions</div></div>"
                     f"<ol class='caps' style='list-style:none;padding:0'>{items}</ol></div>")
    parts.append(f"<h2>Text → image: top {TOP} images of {len(q_cap)} caption queries</h2>")
    for c in q_cap.tolist():
        top = torch.topk(s[:, c], min(TOP, s.shape[0])).indices.tolist()
        hits = "".join(
            f"<div class='hit{' gt' if i == c2i[c] else ''}'>{_thumb(files.get(int(image_ids[i])))}"
            f"{r + 1}. image {int(image_ids[i])} <span class='meta'>({float(s[i, c]):.3f})</span>"
            f"{'<br><b>ground truth</b>' if i == c2i[c] else ''}{judged(i, c)}</div>" for r, i in enumerate(top))
        parts.append(f"<div class='query'><div class='q'>“{html.escape(table.texts[c])}”<div class='meta'>"
                     f"caption {int(table.caption_ids[c])} of image {int(image_ids[c2i[c]])}</div></div>"
                     f"<div class='hits'>{hits}</div></div>")
    parts.append("</body></html>\n")
    path = Path(path)
    atomic_write_bytes(path, "".join(parts).encode())
    return path
