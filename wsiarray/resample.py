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


def lanczos_thumbnail(
    pixels: np.ndarray, max_size: int, *, shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Reduce an image to a longer side of at most ``max_size`` pixels.

    8-bit grey, RGB and RGBA are reduced with Pillow's Lanczos filter; other images (16-bit,
    float, more channels) take the pixel nearest each output pixel's centre.

    Parameters
    ----------
    pixels : numpy.ndarray
        ``(h, w, c)`` pixels.
    max_size : int
        The longer side of the result at most.
    shape : tuple of int, optional
        ``(height, width)`` of the image ``pixels`` stand for, when they are a reduced copy of
        it (:meth:`Slide.thumbnail` area-averages a large level first): the result's size
        follows it, so it is the same whichever way the pixels were read. ``pixels.shape``
        by default.

    Returns
    -------
    numpy.ndarray
        ``(h', w', c)`` pixels, ``h'`` and ``w'`` those of ``shape`` scaled by one factor and
        rounded (at least 1), in ``pixels``' dtype; ``(h', w')`` for one 8-bit channel.

    Examples
    --------
    >>> lanczos_thumbnail(np.zeros((300, 600, 3), np.uint8), 100).shape
    (50, 100, 3)
    >>> lanczos_thumbnail(np.zeros((1023, 700, 5), np.uint16), 512).shape
    (512, 350, 5)
    """
    height, width = shape or pixels.shape[:2]
    scale = min(1.0, max_size / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if pixels.dtype != np.uint8 or pixels.shape[2] not in (1, 3, 4):
        # one stride per axis (rows and columns taken at h // h' and w // w') broke the
        # longer-side bound and the aspect: (1023, 700) to 512 gave (1023, 350)
        rows = _nearest(pixels.shape[0], size[1])
        cols = _nearest(pixels.shape[1], size[0])
        return pixels[rows][:, cols]
    from PIL import Image

    image = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS))


def _nearest(length: int, size: int) -> np.ndarray:
    """The index of the input pixel nearest each of ``size`` output pixel centres."""
    centres = (np.arange(size) + 0.5) * (length / size)
    return np.minimum(centres.astype(np.intp), length - 1)
