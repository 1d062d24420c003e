"""Caption tables: one row per caption, read from the common caption file formats.

* :mod:`~bcls.data.captions.table` — :class:`CaptionTable` and the checks every reader shares;
* one module per format — ``table`` (:mod:`~.tabular`: CSV/TSV/Parquet), ``coco``, ``karpathy``, ``precomp``,
  ``flickr8k`` — each a reader registered in :data:`CAPTION_FORMATS`;
* :mod:`~bcls.data.captions.read` — :func:`read_captions` and :func:`detect_format`.

Every reader reports a bad input as a one-line :class:`~bcls.data.infra.errors.DataFormatError` naming the file, the
row or field, and what to do. May import: :mod:`bcls.data` modules only.
"""

from .flickr8k import flickr8k_ids, flickr8k_image_name
from .read import CAPTION_FORMATS, detect_format, read_captions
from .table import CaptionTable, RawCaptions

__all__ = ["CAPTION_FORMATS", "CaptionTable", "RawCaptions", "detect_format", "flickr8k_ids", "flickr8k_image_name",
           "read_captions"]
