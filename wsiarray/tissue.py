"""Tissue detection at low resolution: which parts of the glass carry tissue."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from wsiarray.errors import MissingResolutionError
from wsiarray.units import to_mm

if TYPE_CHECKING:
    import xarray as xr

    from wsiarray.slide import Slide

__all__ = ["otsu_threshold", "tissue_mask"]

#: Default analysis pixel size in µm: 8 µm, where a 2 x 1.5 cm section is about 2500 x 1900 px.
MASK_MPP = 8.0


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values``: the cut that maximises the between-class variance.

    Examples
    --------
    >>> otsu_threshold(np.r_[np.linspace(0.0, 0.5, 300), np.linspace(0.3, 1.0, 100)])
    0.4140625

    Where many cuts separate the classes equally (empty bins between them), the lowest wins:

    >>> round(otsu_threshold(np.array([0.1] * 50 + [0.9] * 50)), 3)
    0.103
    """
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[np.argmax(between) + 1])


def _saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation: glass is grey-white (low), stained tissue is coloured (high)."""
    high = rgb.max(axis=2).astype(np.float32)
    low = rgb.min(axis=2).astype(np.float32)
    return np.where(high > 0, (high - low) / np.maximum(high, 1), 0)


def _open_close(mask: np.ndarray, radius: int) -> np.ndarray:
    """Morphological opening then closing with a square, by shifted minima and maxima."""

    def filter_(image: np.ndarray, reduce: np.ufunc) -> np.ndarray:
        padded = np.pad(image, radius, mode="edge")
        out = image.copy()
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                shifted = padded[
                    radius + dy : radius + dy + image.shape[0],
                    radius + dx : radius + dx + image.shape[1],
                ]
                out = reduce(out, shifted)
        return out

    opened = filter_(filter_(mask, np.minimum), np.maximum)
    return filter_(filter_(opened, np.maximum), np.minimum)


def tissue_mask(
    slide: Slide, *, mpp: float | None = MASK_MPP, threshold: float | None = None, smooth: int = 1
) -> xr.DataArray:
    """A boolean tissue mask of the slide at low resolution, with mm coordinates.

    Pixels whose colour saturation is above Otsu's threshold (or ``threshold``) are tissue;
    an opening and a closing (radius ``smooth`` pixels) remove specks and fill pinholes.

    Parameters
    ----------
    slide : Slide
        The slide.
    mpp : float, optional
        Pixel size of the mask in micrometres (8 by default), or the slide's full resolution
        if that is coarser; ``None`` uses the smallest level.
    threshold : float, optional
        Saturation cut between 0 and 1; Otsu's by default.
    smooth : int
        Radius of the cleanup, in mask pixels (0 for none).

    Returns
    -------
    xarray.DataArray
        ``(y, x)`` booleans with the coordinates of that resolution; attrs ``threshold``.
    """
    if mpp is not None and slide.mm_x is None:
        msg = "the slide's pixel size is unknown; pass mpp=None to use its smallest level"
        raise MissingResolutionError(msg)
    if mpp is None:
        image = slide.image(slide.level_count - 1)
    else:
        image = slide.image(downsample=max(1.0, to_mm(mpp, "um") / slide.mm_x))
    rgb = np.asarray(image.values)[..., :3]
    saturation = _saturation(rgb)
    cut = otsu_threshold(saturation.ravel()) if threshold is None else threshold
    mask = saturation > cut
    if smooth:
        mask = _open_close(mask, smooth)
    result = image.isel(c=0, drop=True).copy(data=mask)
    result.name = "tissue"
    result.attrs = {**image.attrs, "threshold": cut}
    return result
