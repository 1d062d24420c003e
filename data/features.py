"""Pre-extracted image features stored as a ``.npy`` array, opened memory-mapped."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bcls.data.infra.errors import DataFormatError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ImageFeatures:
    """Image features, one row per image.

    Attributes:
        array: memory-mapped ``(N, R, D)`` region features or ``(N, D)`` global features, in the stored float
            dtype (float16, float32 or float64).
        path: the ``.npy`` file.
    """

    array: np.ndarray
    path: str
    rows: np.ndarray | None = None  # row of ``array`` for each image (a view over some rows), or all rows

    @property
    def kind(self) -> str:
        """``"regions"`` for ``(N, R, D)`` features, ``"global"`` for ``(N, D)``."""
        return "regions" if self.array.ndim == 3 else "global"

    @property
    def n_images(self) -> int:
        """``N`` (the rows of the view when :attr:`rows` is set)."""
        return int(self.array.shape[0]) if self.rows is None else len(self.rows)

    @property
    def dim(self) -> int:
        """Feature dimension ``D``."""
        return int(self.array.shape[-1])

    @property
    def n_regions(self) -> int:
        """Regions per image ``R`` (1 for global features)."""
        return int(self.array.shape[1]) if self.array.ndim == 3 else 1

    def __len__(self) -> int:
        return self.n_images

    def __repr__(self) -> str:
        return f"ImageFeatures(shape={tuple(self.array.shape)}, dtype={self.array.dtype}, path={self.path!r})"

    def batch(self, idx: np.ndarray, dtype: npt.DTypeLike | None = np.float32) -> np.ndarray:
        """A copy of the rows ``idx``, float32 unless ``dtype`` says otherwise.

        Args:
            idx: ``(B,)`` integer image indices (or a boolean mask over the ``N`` images).
            dtype: the copy's dtype; ``None`` keeps the stored one (e.g. float16, for a GPU to convert: numpy's
                float16 → float32 cast is slow on the CPU, docs/benchmarks.md).

        Returns:
            ``(B, R, D)`` or ``(B, D)``, independent of the memory-mapped file.
        """
        rows = np.asarray(idx)
        if rows.dtype != bool and not np.issubdtype(rows.dtype, np.integer):
            raise TypeError(f"batch() takes integer image indices or a boolean mask, got dtype {rows.dtype}")
        if self.rows is not None:
            rows = self.rows[rows]
        out = np.asarray(self.array[rows])  # fancy indexing copies
        return out if dtype is None else out.astype(dtype, copy=False)

    def take(self, rows: np.ndarray) -> "ImageFeatures":
        """A view whose image ``k`` is this one's image ``rows[k]`` (nothing is copied)."""
        rows = np.asarray(rows, dtype=np.int64)
        return ImageFeatures(self.array, self.path, rows if self.rows is None else self.rows[rows])


def load_features(path: str | os.PathLike, *, check_finite: bool = True, chunk: int = 4096) -> ImageFeatures:
    """Open a ``.npy`` feature file memory-mapped and check its layout.

    Args:
        path: ``.npy`` holding ``(N, R, D)`` or ``(N, D)`` floats.
        check_finite: scan the array (``chunk`` images at a time, so memory stays bounded) for NaN/Inf.
        chunk: images per scanned chunk.

    Raises:
        DataFormatError: the file is missing, not a ``.npy`` (or its header is unreadable/truncated), its rank is
            not 2 or 3, its dtype is not floating point, it has no images or a zero-sized dimension, or (with
            ``check_finite``) some image has a NaN/Inf value.
    """
    p = Path(path)
    if not p.exists():
        raise DataFormatError(f"{p}: no such file; check the features path")
    if not p.is_file():
        raise DataFormatError(f"{p}: not a file; pass the .npy features file")
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise DataFormatError(
            f"{p}: not a readable .npy file ({reason}); save the features with numpy.save"
        ) from None
    if not isinstance(arr, np.ndarray):  # e.g. an .npz archive
        if hasattr(arr, "close"):
            arr.close()
        raise DataFormatError(f"{p}: is an .npz archive, not a .npy array; save one array with numpy.save")
    if arr.ndim not in (2, 3):
        raise DataFormatError(
            f"{p}: features have shape {tuple(arr.shape)} (rank {arr.ndim}); expected (N, R, D) regions or (N, D)"
        )
    if arr.dtype.kind != "f":
        raise DataFormatError(f"{p}: features have dtype {arr.dtype}; expected float16, float32 or float64")
    if arr.shape[0] == 0:
        raise DataFormatError(f"{p}: features have zero images (shape {tuple(arr.shape)})")
    if 0 in arr.shape:
        raise DataFormatError(f"{p}: features have a zero-sized dimension (shape {tuple(arr.shape)})")
    if check_finite:
        _check_finite(p, arr, max(1, int(chunk)))
    logger.debug("opened features %s: shape %s, dtype %s", p, arr.shape, arr.dtype)
    return ImageFeatures(array=arr, path=str(p))


def _check_finite(path: Path, arr: np.ndarray, chunk: int) -> None:
    n_bad = 0
    first_bad = -1
    axes = tuple(range(1, arr.ndim))
    for start in range(0, arr.shape[0], chunk):
        with np.errstate(over="ignore"):  # float64 values beyond float32's range become Inf in batches
            block = np.asarray(arr[start : start + chunk]).astype(np.float32, copy=False)
        bad = ~np.isfinite(block).all(axis=axes)
        if bad.any():
            if first_bad < 0:
                first_bad = start + int(np.argmax(bad))
            n_bad += int(bad.sum())
    if n_bad:
        raise DataFormatError(
            f"{path}: {n_bad} image(s) have NaN/Inf features, first at image index {first_bad}"
            f"{' (or values beyond the float32 range)' if arr.dtype.itemsize > 4 else ''}; "
            "regenerate the features or pass check_finite=False"
        )
