"""Pixels into what large_image returns: its bands, PIL resizing and the output formats.

Mirrors large_image's output path: RGBA bands from its OpenSlide source, ``PIL`` resizing
(``tilesource/utilities.py``: BICUBIC up, LANCZOS down, NEAREST for ``resample=None``) and
``_encodeImage`` / ``_imageToPIL`` for ``TILE_FORMAT_NUMPY``, ``TILE_FORMAT_PIL`` and encoded
bytes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import dask.array as da
import numpy as np
from PIL import Image

TILE_FORMAT_IMAGE = "image"
TILE_FORMAT_PIL = "PIL"
TILE_FORMAT_NUMPY = "numpy"

#: PIL's image mode for a band count (other counts are not PIL images).
PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def with_bands(image: Any, band_count: int) -> np.ndarray:
    """An interleaved ``(h, w, band_count)`` array of ``image`` (DataArray, dask or not), with
    a full alpha band where large_image would return RGBA. Dask chunks are made RGBA and
    written straight into the output, in parallel, without a whole-image intermediate.

    (``np.concatenate`` interleaves band-planar pixels ~15x faster than assigning them
    into ``out[..., :3]``: measured 0.17 vs 3.1 ms per 1024² tile.)
    """
    height, width, channels = image.shape
    bands = min(channels, band_count)
    extra = band_count - bands
    fill = np.iinfo(image.dtype).max if image.dtype.kind in "ui" else 1
    if getattr(image, "chunks", None) is None:  # numpy or lazily indexed: read once
        pixels = np.asarray(image)[..., :bands]
        alpha = np.full((height, width, extra), fill, dtype=image.dtype)
        return np.concatenate([pixels, alpha], axis=2)
    data = image.data[..., :bands]
    if extra:
        alpha = da.full(
            (height, width, extra), fill, dtype=image.dtype, chunks=(*data.chunks[:2], extra)
        )
        data = da.concatenate([data, alpha], axis=2)
    out = np.empty((height, width, band_count), dtype=image.dtype)
    da.store(data, out, lock=False)
    return out


def resize(
    image: np.ndarray, width: int, height: int, *, upsample: bool, resample: Any
) -> np.ndarray:
    """Resize with PIL as large_image does: ``resample`` None is NEAREST, True picks BICUBIC
    up and LANCZOS down, and a PIL filter (e.g. ``Image.Resampling.BOX``) is used as given.
    Images PIL cannot hold (not uint8, or not 1, 3 or 4 bands) are sampled nearest."""
    if resample is None:
        method = Image.Resampling.NEAREST
    elif resample is True:
        method = Image.Resampling.BICUBIC if upsample else Image.Resampling.LANCZOS
    else:
        method = Image.Resampling(resample)
    mode = PIL_MODES.get(image.shape[2])
    if image.dtype != np.uint8 or mode is None:
        rows = (np.arange(height) * image.shape[0] / height).astype(int)
        cols = (np.arange(width) * image.shape[1] / width).astype(int)
        return image[rows][:, cols]
    pil = Image.fromarray(image[..., 0] if mode == "L" else image, mode)
    out = np.asarray(pil.resize((width, height), method))
    return out if out.ndim == 3 else out[..., np.newaxis]


def encode(image: np.ndarray, format: Any, options: Mapping[str, Any]) -> tuple[Any, str]:
    """``(image, format or mime type)`` in the first of the accepted ``format`` (one name or a
    tuple) large_image would pick: numpy, then PIL, then bytes in ``options["encoding"]``
    (JPEG by default, at ``options["jpegQuality"]``, 95 by default)."""
    formats = (format,) if isinstance(format, str) else tuple(format)
    if TILE_FORMAT_NUMPY in formats:
        return image, TILE_FORMAT_NUMPY
    mode = PIL_MODES[image.shape[2]]
    pil = Image.fromarray(image[..., 0] if mode == "L" else image.astype(np.uint8), mode)
    if TILE_FORMAT_PIL in formats:
        return pil, TILE_FORMAT_PIL
    encoding = str(options.get("encoding", "JPEG")).upper()
    buffer = io.BytesIO()
    if encoding in ("JPEG", "JFIF"):
        pil.convert("RGB").save(buffer, "JPEG", quality=options.get("jpegQuality", 95))
        return buffer.getvalue(), "image/jpeg"
    pil.save(buffer, encoding)
    return buffer.getvalue(), f"image/{encoding.lower()}"
