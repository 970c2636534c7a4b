"""Resampling: area means for images at a resolution, Lanczos for thumbnails.

Area resampling: each output pixel is the mean of the input area it covers. For an integer
factor this is block averaging (``coarsen(...).mean()``); for any other factor it is the
antialiased area-weighted mean. It is computed per output window from exactly the input
pixels that window covers, so chunked results have no seams.

Thumbnails (:func:`lanczos_thumbnail`) are Pillow's Lanczos reduction of a whole image, as
every viewer makes them.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["area_resample", "input_span", "lanczos_thumbnail"]


def input_span(out_start: int, out_stop: int, factor: float, size: int) -> tuple[int, int]:
    """Input pixels ``[start, stop)`` covered by output pixels ``[out_start, out_stop)``.

    Output pixel ``j`` covers input interval ``[j * factor, (j + 1) * factor)``.

    Examples
    --------
    >>> input_span(2, 4, 2.5, 100)
    (5, 10)
    """
    eps = 1e-9
    start = math.floor(out_start * factor + eps)
    stop = math.ceil(out_stop * factor - eps)
    return max(0, min(start, size)), max(0, min(stop, size))


def _axis_weights(
    out_start: int, n_out: int, factor: float, in_start: int, n_in: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(n_out, span)`` into the input and area weights summing to 1 per output."""
    starts = (out_start + np.arange(n_out)) * factor - in_start
    stops = starts + factor
    span = math.ceil(factor) + 1
    first = np.floor(starts + 1e-9).astype(np.int64)
    indices = first[:, None] + np.arange(span)[None, :]
    lows = np.maximum(indices, starts[:, None])
    highs = np.minimum(indices + 1, stops[:, None])
    weights = np.clip(highs - lows, 0.0, None)
    weights[(indices < 0) | (indices >= n_in)] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    return np.clip(indices, 0, n_in - 1), weights


def _resample_axis(
    block: np.ndarray, axis: int, out_start: int, n_out: int, factor: float, in_start: int
) -> np.ndarray:
    moved = np.moveaxis(block, axis, 0)
    indices, weights = _axis_weights(out_start, n_out, factor, in_start, moved.shape[0])
    out = np.zeros((n_out, *moved.shape[1:]), dtype=np.float32)
    extra = (1,) * (moved.ndim - 1)
    for k in range(indices.shape[1]):
        w = weights[:, k]
        if not w.any():
            continue
        out += w.reshape(-1, *extra).astype(np.float32) * moved[indices[:, k]]
    return np.moveaxis(out, 0, axis)


def area_resample(
    block: np.ndarray,
    *,
    rows: tuple[int, int],
    cols: tuple[int, int],
    factor: tuple[float, float],
    origin: tuple[int, int],
    dtype: np.dtype,
) -> np.ndarray:
    """Resample output rows ``rows`` and columns ``cols`` from an input block.

    Parameters
    ----------
    block : ndarray
        ``(h, w, c)`` input pixels starting at input pixel ``origin`` (row, column).
    rows, cols : tuple of int
        Output window ``[start, stop)`` per axis.
    factor : tuple of float
        Input pixels per output pixel, ``(rows, columns)``.
    origin : tuple of int
        Input coordinates of ``block[0, 0]``.
    dtype : numpy.dtype
        Output dtype; integer outputs are rounded to nearest and clipped to the dtype's range.
    """
    out = _resample_axis(block, 0, rows[0], rows[1] - rows[0], factor[0], origin[0])
    out = _resample_axis(out, 1, cols[0], cols[1] - cols[0], factor[1], origin[1])
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(dtype)
    return out.astype(dtype)


def lanczos_thumbnail(pixels: np.ndarray, max_size: int) -> np.ndarray:
    """``(h, w, c)`` pixels reduced to a longer side of at most ``max_size``: Pillow's Lanczos
    filter for 8-bit grey, RGB and RGBA, rows and columns taken at a stride otherwise.

    Examples
    --------
    >>> lanczos_thumbnail(np.zeros((300, 600, 3), np.uint8), 100).shape
    (50, 100, 3)
    """
    height, width = pixels.shape[:2]
    scale = min(1.0, max_size / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if pixels.dtype != np.uint8 or pixels.shape[2] not in (1, 3, 4):
        return pixels[:: max(1, height // size[1]), :: max(1, width // size[0])]
    from PIL import Image

    image = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS))
