"""The MS-COCO Karpathy 5K test captions the benchmarks use, from public packages or from a TSV you give.

Where they come from: the captions are COCO's (CC BY 4.0), in ``captions_val2014.json`` inside the PyPI package
``pycocoevalcap`` (``pycocoevalcap/spice/spice-1.0.jar``, under ``coco/annotations/``); the Karpathy test split
is the 5,000 images and 25,000 caption ids of the PyPI package ``eccv-caption`` (``coco_test_ids.npy``, the
Karpathy/precomp caption order). :func:`rows` joins the two; the text is COCO's raw text (the community's
precomp files hold a tokenised copy of the same captions, so figures measured on those can differ slightly).

    python bench/coco_test5k.py --out test5k_captions.tsv     # write the TSV once; then pass it with --captions

A TSV given instead has the columns ``row, coco_ann_id, coco_image_id, caption`` (tab-separated, header row).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

COLUMNS = ("row", "coco_ann_id", "coco_image_id", "caption")


def _from_packages() -> list[dict[str, str]]:
    from bcls.data.captions.coco import packaged_val2014
    from bcls.data.infra.errors import ConfigError

    try:
        annotations, ids = packaged_val2014("the COCO test captions (or pass --captions TSV)")
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    by_id = {a["id"]: a for a in annotations}
    return [{"row": str(i), "coco_ann_id": str(int(a)), "coco_image_id": str(by_id[int(a)]["image_id"]),
             "caption": " ".join(by_id[int(a)]["caption"].split())} for i, a in enumerate(ids)]


def rows(path: str | Path | None = None) -> list[dict[str, str]]:
    """The 25,000 test captions in Karpathy order, as dicts with :data:`COLUMNS` (from ``path`` when given)."""
    if path is None:
        return _from_packages()
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def add_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--captions`` option every COCO benchmark takes."""
    parser.add_argument("--captions", type=Path, default=None, help="TSV of the Karpathy 5K test captions (row, "
                        "coco_ann_id, coco_image_id, caption); default: built from pycocoevalcap and eccv-caption")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    with open(args.out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, delimiter="\t")
        writer.writeheader()
        writer.writerows(rows())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
