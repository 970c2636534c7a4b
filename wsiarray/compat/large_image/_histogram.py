"""large_image's ``TileSource.histogram``: band statistics and histograms over tiles.

Two passes over the tiles ``tileIterator`` yields (``large_image/tilesource/base.py``,
``histogram``): per-band min, max, mean and population stdev first, then per-band
histograms over ``[min, max + 1)`` (or the given range; ``"round"`` shrinks the bins of
integer data to whole-number steps).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np


def tile_arrays(tiles: Iterable[Mapping[str, Any]], dtype: Any) -> Iterator[np.ndarray]:
    """The tiles' pixels; with ``dtype``, tiles of another dtype are skipped, except uint8
    made uint16 (``* 257``), as large_image does."""
    for tile in tiles:
        pixels = tile["tile"]
        if dtype is not None and pixels.dtype != dtype:
            if not (pixels.dtype == np.uint8 and np.dtype(dtype) == np.uint16):
                continue
            pixels = pixels.astype(np.uint16) * 257
        yield pixels


def band_statistics(tiles: Iterable[np.ndarray]) -> dict[str, Any]:
    """Per-band min, max, mean and (population) stdev over all tiles' pixels; bands past the
    first tile's are ignored. Empty without tiles."""
    acc: dict[str, Any] = {}
    for tile in tiles:
        flat = tile.reshape(-1, tile.shape[-1])
        values = {
            "min": flat.min(axis=0),
            "max": flat.max(axis=0),
            "sum": flat.sum(axis=0, dtype=np.float64),
            "sum2": (flat.astype(np.float64) ** 2).sum(axis=0),
        }
        if not acc:
            acc = {**values, "count": flat.shape[0]}
            continue
        bands = len(acc["min"])
        acc["min"] = np.minimum(acc["min"], values["min"][:bands])
        acc["max"] = np.maximum(acc["max"], values["max"][:bands])
        acc["sum"] += values["sum"][:bands]
        acc["sum2"] += values["sum2"][:bands]
        acc["count"] += flat.shape[0]
    if not acc:
        return {}
    mean = acc["sum"] / acc["count"]
    stdev = np.maximum(acc["sum2"] / acc["count"] - mean**2, 0) ** 0.5
    return {"min": acc["min"], "max": acc["max"], "mean": mean, "stdev": stdev}


def histogram_record(
    stats: Mapping[str, Any],
    band: int,
    bins: int,
    density: bool,
    hist_range: Any,
    dtype: np.dtype,
) -> dict[str, Any]:
    """One band's record before counting: its statistics, bins and range (``"round"`` on
    integer data with fewer than 10 values per bin: whole steps, maybe fewer bins)."""
    low, high = float(stats["min"][band]), float(stats["max"][band])
    value_range = (low, high + 1) if hist_range in (None, "round") else hist_range
    if (
        hist_range == "round"
        and np.issubdtype(dtype, np.integer)
        and value_range[1] - value_range[0] < bins * 10
    ):
        step = math.ceil((value_range[1] - value_range[0]) / bins)
        bins = math.ceil((value_range[1] - value_range[0]) / step)
        value_range = (value_range[0], value_range[0] + step * bins)
    return {
        "min": low,
        "max": high,
        "mean": float(stats["mean"][band]),
        "stdev": float(stats["stdev"][band]),
        "range": value_range,
        "hist": None,
        "bin_edges": None,
        "bins": bins,
        "density": bool(density),
    }


def histogram(
    tiles: Callable[[], Iterable[np.ndarray]],
    *,
    dtype: Any,
    only_min_max: bool,
    bins: int,
    density: bool,
    hist_range: Any,
) -> dict[str, Any]:
    """``TileSource.histogram``'s result from ``tiles()``, called once per pass; ``dtype``
    is the one whose integer-ness ``"round"`` tests."""
    stats = band_statistics(tiles())
    if not stats or only_min_max:
        return stats
    stats["histogram"] = [
        histogram_record(stats, band, bins, density, hist_range, np.dtype(dtype))
        for band in range(len(stats["min"]))
    ]
    for tile in tiles():
        for band, record in enumerate(stats["histogram"][: tile.shape[-1]]):
            counts, edges = np.histogram(tile[:, :, band], record["bins"], record["range"])
            record["hist"] = counts if record["hist"] is None else record["hist"] + counts
            record["bin_edges"] = edges
    for record in stats["histogram"]:
        if record["hist"] is not None:
            record["samples"] = np.sum(record["hist"])
            if density:
                record["hist"] = record["hist"].astype(float) / record["samples"]
    return stats
